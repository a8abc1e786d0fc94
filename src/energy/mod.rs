//! Energy: sensors (NVML counter / power, RAPL, estimate, none), the meter, attribution to steps and
//! kernels, records.
//!
//! The training loop uses only `Meter` (below): `open` once, `measure_idle` before the run,
//! `begin_step`/`end_step` around every step (after the step's work has finished on the device), and
//! `finish` at the end. The meter observes; it never changes what is computed.

use crate::backend::{DeviceKind, KernelTiming};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Where a number came from. An estimate is never presented as a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnergySource {
    #[serde(rename = "nvml-counter")]
    NvmlCounter,
    #[serde(rename = "nvml-power")]
    NvmlPower,
    #[serde(rename = "rapl")]
    Rapl,
    #[serde(rename = "estimate")]
    Estimate,
    #[serde(rename = "none")]
    None,
}

impl EnergySource {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergySource::NvmlCounter => "nvml-counter",
            EnergySource::NvmlPower => "nvml-power",
            EnergySource::Rapl => "rapl",
            EnergySource::Estimate => "estimate",
            EnergySource::None => "none",
        }
    }
    /// True for sources that read a sensor (not an estimate, not none).
    pub fn is_measurement(self) -> bool {
        matches!(self, EnergySource::NvmlCounter | EnergySource::NvmlPower | EnergySource::Rapl)
    }
}

/// What `--energy`, `--watts` and `--per-kernel` asked for.
#[derive(Clone, Debug)]
pub struct MeterConfig {
    /// auto, nvml, rapl, estimate or none
    pub source: String,
    pub watts: Option<f64>,
    pub per_kernel: bool,
    /// The device the run computes on (auto prefers NVML on cuda, RAPL then none on cpu).
    pub device: DeviceKind,
    pub gpu_ordinal: usize,
}

/// One kernel's share of a step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelEnergy {
    pub name: String,
    pub launches: u32,
    pub time_s: f64,
    pub energy_j: Option<f64>,
}

/// One step's energy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepEnergy {
    /// None when the source is `none`.
    pub energy_j: Option<f64>,
    /// Half-width of the interval around energy_j (J), when known.
    pub uncertainty_j: Option<f64>,
    /// How the number was obtained ("counter-delta", "power-integral", "watts-x-time", ...).
    pub method: String,
    /// Per-kernel shares (only with --per-kernel); they sum to energy_j.
    pub kernels: Vec<KernelEnergy>,
}

/// Totals of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunEnergy {
    pub source: String,
    pub total_j: Option<f64>,
    /// Idle (static) share: measured idle power x run time.
    pub idle_j: Option<f64>,
    /// total - idle.
    pub active_j: Option<f64>,
    pub idle_power_w: Option<f64>,
    pub wall_s: f64,
    /// Sensor context: GPU name, UUID, driver, power limit, clocks, update period, ...
    pub context: serde_json::Value,
}

/// The meter the training loop talks to.
pub struct Meter {
    cfg: MeterConfig,
    source: EnergySource,
    step_start_s: f64,
    run_start_s: Option<f64>,
    total_j: f64,
    last_end_s: f64,
}

impl Meter {
    /// Pick and open the source. An explicitly requested source that is unavailable is an error that says
    /// why; `auto` falls back (nvml -> rapl -> none) and says which it chose.
    pub fn open(cfg: MeterConfig) -> Result<Meter> {
        let source = match cfg.source.as_str() {
            "none" | "auto" => EnergySource::None,
            "estimate" => {
                if cfg.watts.is_none() {
                    anyhow::bail!("--energy estimate needs --watts W (the power to assume while busy)");
                }
                EnergySource::Estimate
            }
            "nvml" | "rapl" => anyhow::bail!("--energy {}: not available in this build yet", cfg.source),
            other => anyhow::bail!("unknown --energy '{other}': use auto, nvml, rapl, estimate or none"),
        };
        Ok(Meter { cfg, source, step_start_s: 0.0, run_start_s: None, total_j: 0.0, last_end_s: 0.0 })
    }
    pub fn source(&self) -> EnergySource {
        self.source
    }
    /// Measure the idle baseline for about `secs` seconds (no-op where it cannot be measured).
    pub fn measure_idle(&mut self, _secs: f64) -> Result<()> {
        Ok(())
    }
    /// `now_s` on the backend's clock (`Backend::clock_s`).
    pub fn begin_step(&mut self, now_s: f64) {
        self.step_start_s = now_s;
        if self.run_start_s.is_none() {
            self.run_start_s = Some(now_s);
        }
    }
    /// Called once the step's work has finished on the device.
    pub fn end_step(&mut self, now_s: f64, kernels: &[KernelTiming]) -> StepEnergy {
        let dt = (now_s - self.step_start_s).max(0.0);
        self.last_end_s = now_s;
        let _ = kernels;
        match self.source {
            EnergySource::Estimate => {
                let e = self.cfg.watts.unwrap_or(0.0) * dt;
                self.total_j += e;
                StepEnergy {
                    energy_j: Some(e),
                    uncertainty_j: None,
                    method: "watts-x-time (estimate)".into(),
                    kernels: vec![],
                }
            }
            _ => StepEnergy { energy_j: None, uncertainty_j: None, method: "none".into(), kernels: vec![] },
        }
    }
    /// Energy of work outside steps (evaluation), measured like a step.
    pub fn finish(self) -> RunEnergy {
        let wall = self.last_end_s - self.run_start_s.unwrap_or(self.last_end_s);
        RunEnergy {
            source: self.source.as_str().into(),
            total_j: if self.source == EnergySource::None { None } else { Some(self.total_j) },
            idle_j: None,
            active_j: None,
            idle_power_w: None,
            wall_s: wall,
            context: serde_json::json!({}),
        }
    }
}

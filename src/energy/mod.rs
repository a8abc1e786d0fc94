//! Energy: sensors (NVML counter / power, RAPL, estimate, none), the meter, attribution to steps and
//! kernels, records.
//!
//! The training loop uses only `Meter` (`meter.rs`): `open` once, `measure_idle` before the run,
//! `begin_step`/`end_step` around every step (after the step's work has finished on the device), and
//! `finish` at the end. The meter observes; it never changes what is computed.
//!
//! Windows are contiguous (`MeterOptions::contiguous`, on by default): a step's window starts where the previous
//! window ended, so the host time before a step (loading its batch, writing the previous record, evaluation
//! bookkeeping) is in that step's energy, reported apart as `StepEnergy::gap_s` / `gap_energy_j` and as a
//! `(between steps)` kernel row; windows then sum to the run's total (`closure` in the run context). On an
//! H100 the earlier step-only windows held 84 % of the counter's run total. Beside a counter the sampler
//! also integrates the sensor's cross-check power readings (`Sensor::check_labels`: NVML's instant field and
//! buffered samples) over the run window and reports the gap (`power_check`).
//!
//! Clock: every time is seconds on the backend's clock (`Backend::clock_s`). Call `Meter::set_clock(origin)`
//! with the backend's creation `Instant` right after `open`; without it the first `begin_step(now_s)` aligns
//! the meter's clock to `now_s` (earlier timeline points are shifted).
//!
//! Files: `meter.rs` (the `Meter`, composed of the three parts below), `sampling.rs` (the sensor side: clock,
//! sampler thread, cross-checks, edge reads and the counter sum), `window.rs` (window edges and a window's
//! energy from the sensor), `attribution.rs` (power timeline, short-window interpolation with a carried
//! residual, per-kernel split and profiles, kernels.csv's rows), `bookkeeping.rs` (sums over the windows, the
//! run's total and its accounting), `context.rs` (the typed energy context of summary.json), `sensors.rs` (the
//! `Sensor` trait; tests script it), `nvml.rs` (counter, buffered samples, instant field; init once),
//! `rapl.rs` (powercap, wraparound, permissions), `resolution.rs` (what the counter can resolve: labels for
//! windows, runs and comparisons; the stored `bench sensor` verdicts), `predict.rs`, `calibrate.rs` (repeat-and-divide for `bench
//! kernels --energy`), `records.rs` (carbon, probe text).
//!
//! Method labels on `StepEnergy::method`: `counter-delta` (window >= 4 update periods), `counter-edges-
//! interpolated` (shorter windows: energy from the update edges, extrapolated at the latest power and
//! corrected later), `power-integral`, `watts-x-time (estimate)`, `none`, and `invalid: ...`,
//! `sensor-error: ...`, `counter-not-updated-yet ...` with no number. Measured on an H100 (driver 580):
//! the counter updates every ~100 ms and one counter read costs ~4 ms, so step edges use the sampler's
//! latest read; buffered power samples come every 20 ms.

pub mod attribution;
mod bookkeeping;
pub mod calibrate;
pub mod context;
pub mod device_power;
pub mod inplace;
mod meter;
pub mod nvml;
pub mod powercal;
pub mod predict;
pub mod rapl;
pub mod records;
pub mod resolution;
mod sampling;
pub mod sensors;
pub mod truth;
pub mod twin;
pub mod uncertainty;
mod window;

pub use crate::rundir::{KernelRow, KernelsCsv};
pub use attribution::{KernelTable, KernelTotal, Timeline, BETWEEN_KERNELS, BETWEEN_STEPS};
pub use calibrate::{calibrate_per_launch, CalibrateOpts, Calibration};
pub use context::{EnergyContext, KernelTimingInfo, PowerCheck, PowerReading, RunAccounting};
pub use meter::Meter;
pub use predict::{Prediction, Predictor};
pub use records::{carbon_block, probe_text, window_s};
pub use sensors::{Reading, Sensor, Stamp};

use crate::ops::{DeviceKind, KernelTiming};
use serde::{Deserialize, Serialize};
use serde_json::json;

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
    /// The sensor twin (`--energy sim`, `twin.rs`): a model, never a measurement.
    #[serde(rename = "sim")]
    Sim,
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
            EnergySource::Sim => "sim",
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

/// What `--energy sim`, `--sim-model`, `--sim-sensor`, `--calibration` and the step's shape add to a
/// `MeterConfig` (`Meter::open_with`).
#[derive(Clone, Debug, Default)]
pub struct EnergyOptions {
    /// The twin's power model (None: `PowerModel::default`).
    pub sim_model: Option<twin::PowerModel>,
    /// The twin's counter (None: `SensorModel::default`, continuous).
    pub sim_sensor: Option<twin::SensorModel>,
    pub calibration: powercal::CalibrationChoice,
    /// The training step's shape (`model/bBATCH`), the key of the calibrated powers.
    pub shape: String,
    /// Print what the meter does before the first step (an in-place calibration and its cost).
    pub verbose: bool,
}

/// One kernel's share of a step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelEnergy {
    pub name: String,
    pub launches: u32,
    pub time_s: f64,
    pub energy_j: Option<f64>,
    /// Half-width around `energy_j` (J): the kernel's share of the step's uncertainty plus the difference
    /// between the power-weighted split and a plain GPU-time split (how much the split depends on the power
    /// timeline). None where the step has no uncertainty (estimates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_j: Option<f64>,
    /// `--energy sim` only: the twin's true energy of this row (never present for a real sensor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_energy_j: Option<f64>,
}

/// One step's energy.
///
/// Windows are contiguous by default (`MeterOptions::contiguous`): a step's window runs from the end of the
/// previous metered window to the end of this step, so it also holds the host work before the step (loading
/// its batch, writing the previous record, evaluation bookkeeping). That part is `gap_s` / `gap_energy_j`;
/// windows then sum to the run's total.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepEnergy {
    /// None when the source is `none`.
    pub energy_j: Option<f64>,
    /// Length of the metered window (s): `gap_s` plus the step's own time.
    pub window_s: f64,
    /// Host time between the previous window's end and this step's start (s); 0 for a first window.
    pub gap_s: f64,
    /// The part of `energy_j` in that host gap (power-weighted time share).
    pub gap_energy_j: Option<f64>,
    /// Half-width of the interval around energy_j (J), when known: `uncertainty_stat_j + uncertainty_sys_j`
    /// (see `uncertainty.rs`).
    pub uncertainty_j: Option<f64>,
    /// Its statistical part (counter edges and interpolation; cancels between contiguous windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_stat_j: Option<f64>,
    /// Its systematic part (sensor gain and offset; the same sign in every window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty_sys_j: Option<f64>,
    /// `--energy sim` only: the twin's true energy of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_energy_j: Option<f64>,
    /// How the number was obtained ("counter-delta", "power-integral", "watts-x-time", ...).
    pub method: String,
    /// Per-kernel shares (only with --per-kernel); they sum to energy_j.
    pub kernels: Vec<KernelEnergy>,
    /// With --per-kernel: true when this step's launches were timed, false when the latest timed profile of
    /// the same kind of step stood in for them (`--kernel-sample`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels_timed: Option<bool>,
}

/// How a step's kernels were timed (see `Meter::end_step_with`).
#[derive(Clone, Copy, Debug)]
pub enum StepKernels<'a> {
    /// The step's launches were timed; with a key they become the profile of that kind of step (e.g. a
    /// training step of batch size 64), replacing the previous one.
    Timed(&'a [KernelTiming], Option<u64>),
    /// Not timed: the latest timed profile of this key stands in (positions scaled into the step's window,
    /// durations as timed), with the profile's step-to-step spread added to each share's uncertainty.
    Profiled(u64),
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
    /// Sensor context: GPU name, UUID, driver, power limit, clocks, update period, the run's accounting, ...
    pub context: EnergyContext,
    /// `--energy sim`: the attribution against the twin's truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution_error: Option<truth::AttributionError>,
    /// With --per-kernel: how the split was made, and the additivity check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_split: Option<powercal::SplitReport>,
}

/// How the meter runs (defaults are right for real runs; tests turn the sampler and start-up
/// characterisation off and drive time themselves).
#[derive(Clone, Debug)]
pub struct MeterOptions {
    /// Run the background sampler thread that keeps the power timeline.
    pub sampler: bool,
    /// Run the sensor's start-up self-characterisation (about 1.5 s on a GPU).
    pub characterise: bool,
    /// Maximum segments kept in the power timeline (a ring buffer).
    pub timeline_cap: usize,
    /// A window at least this many update periods long reports the raw counter delta; shorter ones are
    /// attributed from the update edges.
    pub long_window_periods: f64,
    /// With the sampler running on a counter, take step-edge values from the sampler's latest read instead
    /// of reading the counter on the training thread (an NVML counter read took ~4 ms on an H100).
    pub nonblocking_edges: bool,
    /// Start each window where the previous one ended (the host gap between steps belongs to the next step),
    /// so that windows sum to the run's total. Off: windows cover only begin_step..end_step.
    pub contiguous: bool,
}

impl Default for MeterOptions {
    fn default() -> Self {
        MeterOptions {
            sampler: true,
            characterise: true,
            timeline_cap: 1 << 18,
            long_window_periods: 4.0,
            nonblocking_edges: true,
            contiguous: true,
        }
    }
}

/// What sensors this machine offers and why others are missing (for `powertrain info`); `probe_text`
/// renders it for people.
pub fn probe_report() -> serde_json::Value {
    probe_report_with(std::path::Path::new(rapl::POWERCAP_ROOT))
}

/// `probe_report` with a configurable powercap root (tests).
pub fn probe_report_with(powercap_root: &std::path::Path) -> serde_json::Value {
    let nv = nvml::probe();
    let ra = rapl::probe_at(powercap_root);
    let counter = nv["devices"].as_array().and_then(|d| d.first()).map(|d| d["counter"]["available"] == json!(true));
    let power = nv["devices"].as_array().and_then(|d| d.first()).map(|d| d["power"]["available"] == json!(true));
    let cuda = match (counter, power) {
        (Some(true), _) => "nvml-counter",
        (_, Some(true)) => "nvml-power",
        _ => "none",
    };
    let cpu = if ra["available"] == json!(true) { "rapl" } else { "none" };
    json!({
        "nvml": nv,
        "rapl": ra,
        "estimate": "always available with --energy estimate --watts W (labelled an estimate)",
        "auto": { "cuda": cuda, "cpu": cpu },
    })
}

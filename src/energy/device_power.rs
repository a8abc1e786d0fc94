//! The device power model behind `--energy auto` when no sensor can be read: a labelled estimate, so that
//! every training run shows joules, marked "estimate (no sensor)" wherever they appear.
//!
//! The model (stated, not measured):
//! - **CPU**: busy power = 8 W per logical CPU the run uses (rayon's threads), at least 15 W and at most
//!   250 W. Typical rated powers (TDP) divided by hardware threads: a 65 W desktop part with 8 threads is
//!   8.1 W per thread, a 280 W server part with 64 threads 4.4 W; 8 W errs on the high side. Idle share 30 %
//!   (a package's idle draw against its rated power), reported, not subtracted.
//! - **GPU without NVML**: 300 W busy (between a 250 W PCIe and a 700 W SXM data-centre board; without NVML
//!   the board's own power limit cannot be read), idle share 25 %.
//!
//! Energy = busy power x the metered windows' time (the `estimate` source's arithmetic). It is the shape of
//! the costs (which configuration takes longer on this device), not a measurement: a real sensor can differ
//! by a factor of two either way. `--energy estimate --watts W` states the power by hand; `--energy none`
//! still means none. Bench commands never fall back to it (their figures would be made up).
use super::{Meter, MeterConfig};
use crate::ops::DeviceKind;
use anyhow::Result;

/// The power model of one device.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerModel {
    /// The device as named by the machine (CPU model name) or "GPU (no NVML)".
    pub device: String,
    /// Power assumed while the run computes (W).
    pub busy_w: f64,
    /// The share of `busy_w` drawn at idle (documented; the estimate does not split it).
    pub idle_share: f64,
    /// Where `busy_w` comes from, in words.
    pub basis: String,
}

/// Watts per logical CPU, and the bounds of the CPU's busy power.
pub const CPU_W_PER_THREAD: f64 = 8.0;
pub const CPU_MIN_W: f64 = 15.0;
pub const CPU_MAX_W: f64 = 250.0;
pub const GPU_W: f64 = 300.0;

impl PowerModel {
    /// The model for a CPU run on `threads` logical CPUs named `name`.
    pub fn cpu(name: &str, threads: usize) -> PowerModel {
        let busy_w = (CPU_W_PER_THREAD * threads as f64).clamp(CPU_MIN_W, CPU_MAX_W);
        PowerModel {
            device: name.to_string(),
            busy_w,
            idle_share: 0.3,
            basis: format!(
                "{CPU_W_PER_THREAD} W per logical CPU x {threads} threads (bounded to {CPU_MIN_W}..{CPU_MAX_W} W)"
            ),
        }
    }

    /// The model for a GPU whose power cannot be read.
    pub fn gpu() -> PowerModel {
        PowerModel {
            device: "GPU (no NVML)".into(),
            busy_w: GPU_W,
            idle_share: 0.25,
            basis: format!("{GPU_W} W stated for a data-centre GPU (its power limit cannot be read without NVML)"),
        }
    }

    /// The model of this machine's `device`.
    pub fn of(device: DeviceKind) -> PowerModel {
        match device {
            DeviceKind::Cpu => PowerModel::cpu(&cpu_name(), rayon::current_num_threads()),
            DeviceKind::Cuda => PowerModel::gpu(),
        }
    }

    /// The note stored in the run's energy context.
    pub fn note(&self) -> String {
        format!(
            "estimate (no sensor): device power model for {}: {} W busy ({}), idle share {:.0} %, x the metered \
             windows' time; not a measurement (see src/energy/device_power.rs)",
            self.device,
            self.busy_w,
            self.basis,
            100.0 * self.idle_share
        )
    }
}

/// The CPU's model name from /proc/cpuinfo ("CPU" when unreadable).
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "CPU".into())
}

/// The meter for a training run: what `Meter::open` picks, except that `--energy auto` without a sensor
/// becomes an estimate from the device power model (why auto fell back is kept in the context).
pub fn open_for_training(cfg: MeterConfig, extra: &super::EnergyOptions) -> Result<Meter> {
    let m = Meter::open_with(cfg.clone(), extra)?;
    if cfg.source != "auto" || m.source() != super::EnergySource::None {
        return Ok(m);
    }
    let why = m.energy_context().auto_fallback.clone();
    let pm = PowerModel::of(cfg.device);
    let mut m = Meter::without_sensor(MeterConfig { source: "estimate".into(), watts: Some(pm.busy_w), ..cfg });
    m.note_estimate(pm.note(), why.map(|w| format!("{w}; estimated from the device power model instead")));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_scales_with_threads_within_bounds() {
        assert_eq!(PowerModel::cpu("x", 4).busy_w, 32.0);
        assert_eq!(PowerModel::cpu("x", 1).busy_w, CPU_MIN_W);
        assert_eq!(PowerModel::cpu("x", 128).busy_w, CPU_MAX_W);
        let n = PowerModel::cpu("Some CPU", 2).note();
        assert!(n.starts_with("estimate (no sensor)") && n.contains("Some CPU") && n.contains("16 W"), "{n}");
    }

    #[test]
    fn auto_without_sensor_is_a_labelled_estimate_and_none_stays_none() {
        let cfg = |s: &str| MeterConfig {
            source: s.into(),
            watts: None,
            per_kernel: false,
            device: DeviceKind::Cpu,
            gpu_ordinal: 0,
        };
        let m = open_for_training(cfg("auto"), &Default::default()).unwrap();
        if m.source() == super::super::EnergySource::Estimate {
            let e = m.energy_context().estimate.clone().unwrap();
            assert_eq!(e.watts, Some(PowerModel::of(DeviceKind::Cpu).busy_w));
            assert!(e.note.contains("estimate (no sensor)"), "{}", e.note);
            assert!(m.energy_context().auto_fallback.as_deref().unwrap_or("").contains("device power model"));
        }
        assert_eq!(
            open_for_training(cfg("none"), &Default::default()).unwrap().source(),
            super::super::EnergySource::None
        );
    }
}

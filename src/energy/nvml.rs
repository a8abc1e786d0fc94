//! NVML sensors (nvml-wrapper 0.13.0): the total-energy counter (`nvml-counter`, mJ, Volta and newer) and
//! power (`nvml-power`: the driver's buffered samples `Device::samples(Sampling::Power, last_ts)`, else the
//! instant power field NVML_FI_DEV_POWER_INSTANT (186) via `field_values_for`, else `power_usage()`, which
//! is a 1 s average on Ampere and newer and is labelled so).
//!
//! NVML is initialised once per process (`nvml()`) and shared. Capabilities are probed by calling them,
//! never guessed from the architecture. A MIG instance reports its parent GPU's energy, labelled as shared.

use super::sensors::{Reading, Sensor, Stamp};
use super::EnergySource;
use anyhow::{anyhow, Result};
use nvml_wrapper::enum_wrappers::device::{Clock, Sampling, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;
use nvml_wrapper::{Device, Nvml};
use serde_json::json;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static NVML: OnceLock<std::result::Result<Nvml, String>> = OnceLock::new();

/// The process-wide NVML handle (initialised on first use). Without a driver this is an error that says so.
pub fn nvml() -> Result<&'static Nvml> {
    NVML.get_or_init(|| {
        Nvml::init().map_err(|e| {
            format!(
                "NVML unavailable ({e}): no libnvidia-ml.so.1 / NVIDIA driver here; on a GPU machine install \
                 the driver, otherwise use --energy estimate --watts W or --energy none"
            )
        })
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// How the power is read when there is no counter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PowerMode {
    /// Driver-buffered power samples (timestamps in µs, Unix time).
    Samples,
    /// NVML_FI_DEV_POWER_INSTANT; `scale` converts the raw value to watts (1e-3 for mW).
    InstantField { scale: f64 },
    /// `power_usage()` in mW, averaged by the driver (1 s on Ampere and newer).
    AveragedUsage,
}

impl PowerMode {
    pub fn label(self) -> &'static str {
        match self {
            PowerMode::Samples => "nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)",
            PowerMode::InstantField { .. } => "field NVML_FI_DEV_POWER_INSTANT (186)",
            PowerMode::AveragedUsage => "nvmlDeviceGetPowerUsage (driver-averaged)",
        }
    }
}

fn value_f64(v: &SampleValue) -> f64 {
    match *v {
        SampleValue::F64(x) => x,
        SampleValue::U32(x) => x as f64,
        SampleValue::U64(x) => x as f64,
        SampleValue::I64(x) => x as f64,
    }
}

/// Raw value of the instant power field, if the device supports it.
fn instant_raw(dev: &Device<'static>) -> Result<f64> {
    let v = dev.field_values_for(&[FieldId(NVML_FI_DEV_POWER_INSTANT)])?;
    let s = v.into_iter().next().ok_or_else(|| anyhow!("no field value returned"))??;
    Ok(value_f64(&s.value?))
}

/// NVML's spelling of a device UUID: `prefix` ("GPU" or "MIG") and the 16 bytes as lower-case hex in 8-4-4-4-12
/// groups, e.g. `GPU-5f3c0a2e-1b7d-4c9e-8a01-23456789abcd` (what `nvidia-smi -L` shows and `device_by_uuid`
/// expects).
pub fn format_uuid(prefix: &str, bytes: &[u8; 16]) -> String {
    let hex = |r: std::ops::Range<usize>| bytes[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!("{prefix}-{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16))
}

/// The NVML device of CUDA ordinal `ordinal`: the CUDA driver gives the device's UUID (`cuDeviceGetUuid`,
/// which already honours CUDA_VISIBLE_DEVICES, its UUID entries and CUDA_DEVICE_ORDER: CUDA counts
/// fastest-first by default, NVML by PCI bus), and NVML opens the device with that UUID (a GPU's as `GPU-...`,
/// a MIG instance's as `MIG-...`). Without a CUDA driver NVML's index `ordinal` is used, and the note says that
/// it may not be the GPU that runs the kernels. Returns the handle to read energy from and notes (MIG, fallback).
fn resolve(nvml: &'static Nvml, ordinal: usize) -> Result<(Device<'static>, Option<String>)> {
    let (dev, mut notes) = match crate::ops::cuda::device_uuid(ordinal) {
        Ok(bytes) => {
            let (gpu, mig) = (format_uuid("GPU", &bytes), format_uuid("MIG", &bytes));
            let dev = nvml.device_by_uuid(gpu.as_str()).or_else(|e| nvml.device_by_uuid(mig.as_str()).map_err(|_| e));
            let dev = dev.map_err(|e| {
                anyhow!("NVML: no device with the UUID of CUDA device {ordinal} ({gpu}, or {mig} for MIG): {e}")
            })?;
            (dev, vec![format!("NVML device opened by the UUID of CUDA device {ordinal} ({gpu})")])
        }
        Err(e) => {
            let dev =
                nvml.device_by_index(ordinal as u32).map_err(|err| anyhow!("NVML: no device {ordinal}: {err}"))?;
            let why = format!(
                "no CUDA device UUID ({e:#}): NVML index {ordinal} is read, which may not be the GPU that runs the \
                 kernels"
            );
            (dev, vec![why])
        }
    };
    if dev.mig_is_mig_device_handle().unwrap_or(false) {
        let parent = dev.mig_parent_device().map_err(|e| anyhow!("NVML: MIG parent of device: {e}"))?;
        notes.push("MIG instance: energy is the parent GPU's, shared with every instance on it".into());
        return Ok((parent, Some(notes.join("; "))));
    }
    if let Ok(m) = dev.mig_mode() {
        if m.current == 1 {
            notes.push("MIG enabled on this GPU: energy is the whole GPU's, shared with every instance".into());
        }
    }
    Ok((dev, Some(notes.join("; "))))
}

/// An NVML answer as JSON, or why it is unavailable.
fn ok(r: std::result::Result<serde_json::Value, NvmlError>) -> serde_json::Value {
    r.unwrap_or_else(|e| json!(format!("unavailable: {e}")))
}

/// Device context for records: name, UUID, driver, power limit, clocks, temperature, throttle reasons, ...
pub fn device_context(nvml: &Nvml, dev: &Device<'static>) -> serde_json::Value {
    let mut c = json!({
        "gpu_name": ok(dev.name().map(|v| json!(v))),
        "gpu_uuid": ok(dev.uuid().map(|v| json!(v))),
        "driver_version": ok(nvml.sys_driver_version().map(|v| json!(v))),
        "nvml_version": ok(nvml.sys_nvml_version().map(|v| json!(v))),
        "power_limit_w": ok(dev.enforced_power_limit().map(|v| json!(v as f64 / 1000.0))),
        "persistence_mode": ok(dev.is_in_persistent_mode().map(|v| json!(v))),
    });
    if let (Some(c), serde_json::Value::Object(s)) = (c.as_object_mut(), device_state(dev)) {
        c.extend(s);
    }
    c
}

/// What changes during a run: clocks, temperature, throttle reasons.
fn device_state(dev: &Device<'static>) -> serde_json::Value {
    json!({
        "sm_clock_mhz": ok(dev.clock_info(Clock::SM).map(|v| json!(v))),
        "mem_clock_mhz": ok(dev.clock_info(Clock::Memory).map(|v| json!(v))),
        "temperature_c": ok(dev.temperature(TemperatureSensor::Gpu).map(|v| json!(v))),
        "throttle_reasons": ok(dev.current_throttle_reasons().map(|v| json!(format!("{v:?}")))),
    })
}

/// An NVML sensor on one device.
pub struct NvmlSensor {
    dev: Device<'static>,
    /// `None`: the counter; `Some`: power.
    power: Option<PowerMode>,
    last_sample_us: u64,
    context: serde_json::Value,
    period_s: Option<f64>,
    /// With the counter: power readings integrated beside it to report the counter-vs-power gap.
    checks: Vec<PowerMode>,
    /// Last buffered-sample timestamp returned to the cross-check (µs).
    check_sample_us: u64,
}

/// Which NVML source the caller wants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Want {
    /// The counter, else power.
    Best,
    Counter,
    Power,
}

/// The instant field is in mW; if it reads like watts next to power_usage (mW), use watts.
fn instant_scale(dev: &Device<'static>, raw: f64) -> f64 {
    match dev.power_usage() {
        Ok(mw) if mw > 0 && (raw * 1000.0) / (mw as f64) > 0.3 && (raw * 1000.0) / (mw as f64) < 3.0 => 1.0,
        _ => 1e-3,
    }
}

/// One power reading in `mode`: the new buffered samples since `*last_us` (advanced), or one instant /
/// averaged value stamped now.
fn read_power(dev: &Device<'static>, mode: PowerMode, last_us: &mut u64) -> Result<Vec<(Stamp, f64)>> {
    match mode {
        PowerMode::Samples => new_samples(dev, last_us),
        PowerMode::InstantField { scale } => Ok(vec![(Stamp::Now, instant_raw(dev)? * scale)]),
        PowerMode::AveragedUsage => Ok(vec![(Stamp::Now, dev.power_usage()? as f64 * 1e-3)]),
    }
}

/// New buffered power samples since `*last_us` (which is advanced), as (Unix time, watts).
fn new_samples(dev: &Device<'static>, last_us: &mut u64) -> Result<Vec<(Stamp, f64)>> {
    let last = if *last_us == 0 { None } else { Some(*last_us) };
    let v = match dev.samples(Sampling::Power, last) {
        Ok(v) => v,
        // NVML answers NotFound when no sample is newer than `last` (seen on H100, driver 580).
        Err(NvmlError::NotFound) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        if s.timestamp <= *last_us {
            continue;
        }
        *last_us = s.timestamp;
        // Power samples are in mW.
        out.push((Stamp::Unix(s.timestamp as f64 * 1e-6), value_f64(&s.value) * 1e-3));
    }
    Ok(out)
}

fn probe_power(dev: &Device<'static>) -> Result<PowerMode> {
    let mut why = Vec::new();
    match dev.samples(Sampling::Power, None) {
        Ok(v) if !v.is_empty() => return Ok(PowerMode::Samples),
        Ok(_) => why.push("power samples: buffer empty".to_string()),
        Err(e) => why.push(format!("power samples: {e}")),
    }
    match instant_raw(dev) {
        Ok(raw) => return Ok(PowerMode::InstantField { scale: instant_scale(dev, raw) }),
        Err(e) => why.push(format!("instant power field: {e}")),
    }
    match dev.power_usage() {
        Ok(_) => Ok(PowerMode::AveragedUsage),
        Err(e) => {
            why.push(format!("power usage: {e}"));
            Err(anyhow!("no NVML power reading on this GPU ({})", why.join("; ")))
        }
    }
}

impl NvmlSensor {
    /// Open the sensor for CUDA ordinal `ordinal`. The counter is probed by reading it.
    pub fn open(ordinal: usize, want: Want) -> Result<NvmlSensor> {
        let nvml = nvml()?;
        let (dev, notes) = resolve(nvml, ordinal)?;
        let mut context = device_context(nvml, &dev);
        if let Some(m) = notes {
            context["device_selection"] = json!(m);
        }
        let counter = dev.total_energy_consumption();
        let power = match (want, &counter) {
            (Want::Best | Want::Counter, Ok(_)) => None,
            (Want::Counter, Err(e)) => {
                return Err(anyhow!("--energy nvml: this GPU has no total-energy counter ({e})"));
            }
            (Want::Best, Err(e)) => {
                context["counter_missing"] = json!(format!("{e}"));
                Some(probe_power(&dev)?)
            }
            (Want::Power, _) => Some(probe_power(&dev)?),
        };
        let mut checks = Vec::new();
        if let Some(p) = power {
            context["power_reading"] = json!(p.label());
        } else {
            context["counter"] = json!("nvmlDeviceGetTotalEnergyConsumption (mJ)");
            // Cross-checks: the instant field (polled) and the driver's buffered samples, where they work.
            if let Ok(raw) = instant_raw(&dev) {
                checks.push(PowerMode::InstantField { scale: instant_scale(&dev, raw) });
            }
            if matches!(dev.samples(Sampling::Power, None), Ok(v) if !v.is_empty()) {
                checks.push(PowerMode::Samples);
            }
        }
        Ok(NvmlSensor { dev, power, last_sample_us: 0, context, period_s: None, checks, check_sample_us: 0 })
    }

    pub fn power_mode(&self) -> Option<PowerMode> {
        self.power
    }
}

/// Smallest and median gap between value changes over `dur` of tight reads of `f`.
fn change_gaps(dur: Duration, mut f: impl FnMut() -> Option<f64>) -> (Option<f64>, Option<f64>, usize) {
    let t0 = Instant::now();
    let mut last: Option<f64> = None;
    let mut edges: Vec<f64> = Vec::new();
    let mut reads = 0usize;
    while t0.elapsed() < dur {
        let v = f();
        reads += 1;
        let t = t0.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (last, v) {
            if a != b {
                edges.push(t);
            }
        }
        if v.is_some() {
            last = v;
        }
    }
    let gaps = crate::stats::sorted(&edges.windows(2).map(|w| w[1] - w[0]).collect::<Vec<f64>>());
    (gaps.first().copied(), crate::stats::median_opt(&gaps), reads)
}

impl Sensor for NvmlSensor {
    fn source(&self) -> EnergySource {
        if self.power.is_some() {
            EnergySource::NvmlPower
        } else {
            EnergySource::NvmlCounter
        }
    }
    fn read(&mut self, _now_s: f64) -> Result<Reading> {
        match self.power {
            None => Ok(Reading::Counter { energy_j: self.dev.total_energy_consumption()? as f64 * 1e-3 }),
            Some(mode) => Ok(Reading::Power(read_power(&self.dev, mode, &mut self.last_sample_us)?)),
        }
    }
    fn quantum_j(&self) -> f64 {
        if self.power.is_none() {
            1e-3
        } else {
            0.0
        }
    }
    fn nominal_period_s(&self) -> Option<f64> {
        self.period_s.or(match self.power {
            Some(PowerMode::AveragedUsage) => Some(1.0),
            _ => None,
        })
    }
    fn poll_interval_s(&self) -> f64 {
        match self.power {
            None => 0.005,
            Some(PowerMode::Samples) => 0.05,
            Some(PowerMode::InstantField { .. }) => 0.01,
            Some(PowerMode::AveragedUsage) => 0.1,
        }
    }
    fn context(&self) -> serde_json::Value {
        self.context.clone()
    }
    fn state(&mut self) -> serde_json::Value {
        device_state(&self.dev)
    }
    fn check_labels(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|m| match m {
                PowerMode::InstantField { .. } => format!("{}, polled every 50 ms", m.label()),
                _ => m.label().to_string(),
            })
            .collect()
    }
    fn check_interval_s(&self, i: usize) -> f64 {
        match self.checks.get(i) {
            Some(PowerMode::InstantField { .. }) => 0.05,
            _ => 0.1,
        }
    }
    fn read_check(&mut self, i: usize, _now_s: f64) -> Result<Vec<(Stamp, f64)>> {
        match self.checks.get(i).copied() {
            Some(mode) => read_power(&self.dev, mode, &mut self.check_sample_us),
            None => Ok(Vec::new()),
        }
    }
    /// About 1.5 s of tight reads: the counter's update period (smallest and median gap between changes),
    /// the instant field's update period, and the spacing of buffered power samples.
    fn characterise(&mut self) -> serde_json::Value {
        let dev = &self.dev;
        let (cmin, cmed, creads) =
            change_gaps(Duration::from_millis(800), || dev.total_energy_consumption().ok().map(|v| v as f64));
        let (imin, imed, ireads) = change_gaps(Duration::from_millis(400), || instant_raw(dev).ok());
        let sample_gap = dev.samples(Sampling::Power, None).ok().and_then(|v| {
            let g: Vec<f64> = v.windows(2).map(|w| (w[1].timestamp as f64 - w[0].timestamp as f64) * 1e-6).collect();
            crate::stats::median_opt(&g)
        });
        // The smallest gap between changes, unless it is an outlier (two changes bracketing one read: the
        // instant field showed 1 µs gaps on an H100 next to a 100 ms median); then the median.
        let robust = |min: Option<f64>, med: Option<f64>| match (min, med) {
            (Some(a), Some(m)) if a < 0.5 * m => Some(m),
            (a, m) => a.or(m),
        };
        self.period_s = match self.power {
            None => robust(cmin, cmed),
            Some(PowerMode::Samples) => sample_gap,
            Some(PowerMode::InstantField { .. }) => robust(imin, imed),
            Some(PowerMode::AveragedUsage) => Some(1.0),
        };
        let out = json!({
            "counter_update_period_s_min": cmin, "counter_update_period_s_median": cmed, "counter_reads": creads,
            "counter_read_cost_s": 0.8 / creads.max(1) as f64,
            "instant_power_update_period_s_min": imin, "instant_power_update_period_s_median": imed,
            "instant_power_reads": ireads, "power_samples_spacing_s_median": sample_gap,
            "note": "measured at start-up with tight reads (smallest/median gap between value changes)",
        });
        self.context["self_characterisation"] = out.clone();
        if self.power.is_none() && cmin.is_none() {
            self.context["counter_warning"] = json!("the counter did not change twice in 0.8 s of reads");
        }
        out
    }
}

/// What NVML offers here (for `powertrain info`): per device, the counter and power readings, or why not.
pub fn probe() -> serde_json::Value {
    let nvml = match nvml() {
        Ok(n) => n,
        Err(e) => return json!({ "available": false, "reason": format!("{e:#}") }),
    };
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => return json!({ "available": false, "reason": format!("NVML device count: {e}") }),
    };
    let mut devs = Vec::new();
    for i in 0..count {
        let d = match nvml.device_by_index(i) {
            Ok(d) => d,
            Err(e) => {
                devs.push(json!({ "index": i, "error": format!("{e}") }));
                continue;
            }
        };
        let mut c = device_context(nvml, &d);
        c["index"] = json!(i);
        c["counter"] = match d.total_energy_consumption() {
            Ok(mj) => json!({ "available": true, "value_mj": mj }),
            Err(e) => json!({ "available": false, "reason": format!("{e}") }),
        };
        c["power"] = match probe_power(&d) {
            Ok(p) => json!({ "available": true, "reading": p.label() }),
            Err(e) => json!({ "available": false, "reason": format!("{e:#}") }),
        };
        if let Ok(m) = d.mig_mode() {
            c["mig_enabled"] = json!(m.current == 1);
        }
        devs.push(c);
    }
    json!({ "available": true, "devices": devs })
}

#[cfg(test)]
mod tests {
    use super::format_uuid;

    #[test]
    fn uuids_are_spelled_as_nvml_expects() {
        let b: [u8; 16] =
            [0x5f, 0x3c, 0x0a, 0x2e, 0x1b, 0x7d, 0x4c, 0x9e, 0x8a, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd];
        assert_eq!(format_uuid("GPU", &b), "GPU-5f3c0a2e-1b7d-4c9e-8a01-23456789abcd");
        assert_eq!(format_uuid("MIG", &[0u8; 16]), "MIG-00000000-0000-0000-0000-000000000000");
        let ff = format_uuid("GPU", &[0xff; 16]);
        assert_eq!(ff.len(), "GPU-".len() + 36);
        assert_eq!(ff.matches('-').count(), 5);
    }
}

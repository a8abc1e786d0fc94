//! Energy: sensors (NVML counter / power, RAPL, estimate, none), the meter, attribution to steps and
//! kernels, records.
//!
//! The training loop uses only `Meter` (below): `open` once, `measure_idle` before the run,
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
//! Files: `sensors.rs` (the `Sensor` trait; tests script it), `nvml.rs` (counter, buffered samples, instant
//! field; init once), `rapl.rs` (powercap, wraparound, permissions), `attribution.rs` (power timeline,
//! short-window interpolation with a carried residual, per-kernel split, kernels.csv), `predict.rs`,
//! `calibrate.rs` (repeat-and-divide for `bench kernels --energy`), `records.rs` (carbon, probe text).
//!
//! Method labels on `StepEnergy::method`: `counter-delta` (window >= 4 update periods), `counter-edges-
//! interpolated` (shorter windows: energy from the update edges, extrapolated at the latest power and
//! corrected later), `power-integral`, `watts-x-time (estimate)`, `none`, and `invalid: ...`,
//! `sensor-error: ...`, `counter-not-updated-yet ...` with no number. Measured on an H100 (driver 580):
//! the counter updates every ~100 ms and one counter read costs ~4 ms, so step edges use the sampler's
//! latest read; buffered power samples come every 20 ms.

pub mod attribution;
pub mod calibrate;
pub mod nvml;
pub mod predict;
pub mod rapl;
pub mod records;
pub mod sensors;
pub mod twin;

pub use attribution::{KernelRow, KernelTable, KernelTotal, KernelsCsv, Timeline, BETWEEN_KERNELS, BETWEEN_STEPS};
pub use calibrate::{calibrate_per_launch, CalibrateOpts, Calibration};
pub use predict::{Prediction, Predictor};
pub use records::{carbon_block, probe_text, window_s};
pub use sensors::{Reading, Sensor, Stamp};

use crate::ops::{DeviceKind, KernelTiming};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// One kernel's share of a step.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
}

/// One step's energy.
///
/// Windows are contiguous by default (`MeterOptions::contiguous`): a step's window runs from the end of the
/// previous metered window to the end of this step, so it also holds the host work before the step (loading
/// its batch, writing the previous record, evaluation bookkeeping). That part is `gap_s` / `gap_energy_j`;
/// windows then sum to the run's total.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepEnergy {
    /// None when the source is `none`.
    pub energy_j: Option<f64>,
    /// Length of the metered window (s): `gap_s` plus the step's own time.
    pub window_s: f64,
    /// Host time between the previous window's end and this step's start (s); 0 for a first window.
    pub gap_s: f64,
    /// The part of `energy_j` in that host gap (power-weighted time share).
    pub gap_energy_j: Option<f64>,
    /// Half-width of the interval around energy_j (J), when known.
    pub uncertainty_j: Option<f64>,
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

/// The launches of the latest timed step of one kind.
#[derive(Clone, Debug, Default)]
struct KernelProfile {
    /// (name, start relative to the step's start (s), duration (s)), in launch order.
    launches: Vec<(&'static str, f64, f64)>,
    /// The step's own time (s): its start to its end.
    span_s: f64,
    /// Per kernel, the relative change of its summed time between the last two timed steps.
    spread: BTreeMap<&'static str, f64>,
    /// Timed steps seen of this kind.
    samples: u32,
}

impl KernelProfile {
    fn update(&mut self, kernels: &[KernelTiming], work: f64, b: f64) {
        let sums = |v: &[(&'static str, f64, f64)]| {
            let mut m: BTreeMap<&'static str, f64> = BTreeMap::new();
            for (n, _, d) in v {
                *m.entry(*n).or_default() += d.max(0.0);
            }
            m
        };
        let launches: Vec<(&'static str, f64, f64)> =
            kernels.iter().map(|k| (k.name, k.start_s - work, k.dur_s.max(0.0))).collect();
        if self.samples > 0 {
            let (old, new) = (sums(&self.launches), sums(&launches));
            self.spread = new
                .iter()
                .map(|(n, t)| {
                    let o = old.get(n).copied().unwrap_or(0.0);
                    (*n, if o > 0.0 { (t - o).abs() / o } else { 1.0 })
                })
                .collect();
        }
        self.launches = launches;
        self.span_s = (b - work).max(0.0);
        self.samples += 1;
    }

    /// The profile's launches placed in a step running from `work` to `b`.
    fn place(&self, work: f64, b: f64) -> Vec<KernelTiming> {
        let scale = if self.span_s > 0.0 { ((b - work) / self.span_s).min(1.0) } else { 1.0 };
        self.launches
            .iter()
            .map(|&(name, rel, dur)| KernelTiming { name, start_s: work + rel.max(0.0) * scale, dur_s: dur })
            .collect()
    }
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

/// The meter's clock: seconds since `origin`, which should be the backend's creation instant so that
/// `now_s` from `Backend::clock_s()` and the sampler's timestamps agree (see `Meter::set_clock`).
#[derive(Clone, Copy, Debug)]
struct ClockMap {
    origin: Instant,
    /// Unix time (s) at `origin`, to map NVML sample timestamps.
    unix_at_origin: f64,
}

impl ClockMap {
    fn new(origin: Instant) -> ClockMap {
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        ClockMap { origin, unix_at_origin: unix_now - origin.elapsed().as_secs_f64() }
    }
    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
    /// A sample's time on this clock; `read_at` is when the sensor was read (for `Stamp::Now`).
    fn stamp_s(&self, stamp: Stamp, read_at: f64) -> f64 {
        match stamp {
            Stamp::Now => read_at,
            Stamp::Unix(u) => u - self.unix_at_origin,
            Stamp::Clock(c) => c,
        }
    }
}

type SharedSensor = Arc<Mutex<Box<dyn Sensor>>>;

/// Feed one reading taken at `t` into the timeline; returns the counter value for counter sensors.
fn feed(tl: &Mutex<Timeline>, clock: &ClockMap, t: f64, r: Reading) -> Option<f64> {
    let Ok(mut tl) = tl.lock() else { return None };
    match r {
        Reading::Counter { energy_j } => {
            tl.observe_counter(t, energy_j);
            Some(energy_j)
        }
        Reading::Power(v) => {
            for (stamp, w) in v {
                tl.observe_power(clock.stamp_s(stamp, t), w);
            }
            None
        }
    }
}

/// Cross-check power readings kept beside a counter (see `Sensor::check_labels`): one timeline each.
struct Checks {
    labels: Vec<String>,
    tls: Vec<Timeline>,
    interval_s: Vec<f64>,
    next_due: Vec<f64>,
    errors: u64,
}

type SharedChecks = Arc<Mutex<Checks>>;

/// Read the cross-checks that are due at `t` (sampler thread, or `Meter::poll` in tests).
fn poll_checks(sensor: &SharedSensor, checks: &SharedChecks, clock: &ClockMap, t: f64) {
    let due: Vec<usize> = {
        let c = lock(checks);
        (0..c.labels.len()).filter(|&i| t >= c.next_due[i]).collect()
    };
    for i in due {
        let r = lock(sensor).read_check(i, t);
        let mut c = lock(checks);
        c.next_due[i] = t + c.interval_s[i];
        match r {
            Ok(v) => {
                for (stamp, w) in v {
                    c.tls[i].observe_power(clock.stamp_s(stamp, t), w);
                }
            }
            Err(_) => c.errors += 1,
        }
    }
}

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[derive(Clone, Debug)]
struct OpenStep {
    /// Window start (the previous window's end when contiguous).
    a: f64,
    /// Start of the step's own work (`begin_step`'s time).
    work: f64,
    counter: Option<f64>,
    error: Option<String>,
}

/// The meter the training loop talks to.
pub struct Meter {
    cfg: MeterConfig,
    opts: MeterOptions,
    source: EnergySource,
    clock: Arc<Mutex<ClockMap>>,
    clock_set: bool,
    sensor: Option<SharedSensor>,
    is_counter: bool,
    quantum_j: f64,
    tl: Arc<Mutex<Timeline>>,
    checks: SharedChecks,
    sampler: Option<Sampler>,
    sampler_errors: Arc<AtomicU64>,
    step: Option<OpenStep>,
    run_start_s: Option<f64>,
    last_end_s: f64,
    /// End of the previous window and the counter value read there, for contiguous windows.
    prev_end: Option<(f64, Option<f64>)>,
    /// Sum of the host gaps folded into windows (s).
    gap_s: f64,
    /// Last counter value read by the meter itself (step edges) and the run's counter sum.
    last_counter: Option<f64>,
    counter_run_j: f64,
    counter_reset: bool,
    steps_j: f64,
    steps_with_energy: u64,
    steps_without_energy: u64,
    busy_s: f64,
    read_errors: u64,
    /// The sensor's poll interval, cached at the first step edge: asking the sensor on every edge would wait
    /// for its lock, which the sampler holds during each (millisecond-long) NVML read.
    edge_poll_s: Option<f64>,
    last_error: Option<String>,
    idle_power_w: Option<f64>,
    kernels: KernelTable,
    /// Timed kernel profiles by key (`StepKernels`).
    profiles: BTreeMap<u64, KernelProfile>,
    context: serde_json::Value,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in the sampler thread cannot leave the timeline half-updated in a way that matters here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Meter {
    /// Pick and open the source. An explicitly requested source that is unavailable is an error that says
    /// why; `auto` picks nvml-counter > nvml-power > none on a cuda run and rapl > none on a cpu run (never
    /// an estimate), and records why in the context.
    pub fn open(cfg: MeterConfig) -> Result<Meter> {
        let mut why: Option<String> = None;
        let sensor: Option<Box<dyn Sensor>> = match cfg.source.as_str() {
            "none" => None,
            "estimate" => match cfg.watts {
                Some(w) if w.is_finite() && w > 0.0 => None,
                Some(w) => bail!("--watts {w}: must be a positive number of watts"),
                None => bail!("--energy estimate needs --watts W (the power to assume while busy)"),
            },
            "nvml" => Some(Box::new(
                nvml::NvmlSensor::open(cfg.gpu_ordinal, nvml::Want::Best)
                    .map_err(|e| anyhow::anyhow!("--energy nvml: {e:#}"))?,
            )),
            "rapl" => Some(Box::new(rapl::RaplSensor::open().map_err(|e| anyhow::anyhow!("--energy rapl: {e:#}"))?)),
            "auto" => match cfg.device {
                DeviceKind::Cuda => match nvml::NvmlSensor::open(cfg.gpu_ordinal, nvml::Want::Best) {
                    Ok(s) => Some(Box::new(s)),
                    Err(e) => {
                        why = Some(format!("auto: no NVML ({e:#}); energy not measured"));
                        None
                    }
                },
                DeviceKind::Cpu => match rapl::RaplSensor::open() {
                    Ok(s) => Some(Box::new(s)),
                    Err(e) => {
                        why = Some(format!("auto: no RAPL ({e:#}); energy not measured"));
                        None
                    }
                },
            },
            other => bail!("unknown --energy '{other}': use auto, nvml, rapl, estimate or none"),
        };
        let mut m = match sensor {
            Some(s) => Meter::with_sensor(cfg, s, MeterOptions::default()),
            None => Meter::without_sensor(cfg),
        };
        if let Some(w) = why {
            m.context["auto_fallback"] = json!(w);
        }
        Ok(m)
    }

    /// A meter without a sensor: `estimate` (with `cfg.watts`) or `none`.
    pub fn without_sensor(cfg: MeterConfig) -> Meter {
        let source =
            if cfg.source == "estimate" && cfg.watts.is_some() { EnergySource::Estimate } else { EnergySource::None };
        let mut m = Meter::blank(cfg, MeterOptions::default(), source, None);
        if source == EnergySource::Estimate {
            m.context["estimate"] = json!({
                "watts": m.cfg.watts,
                "note": "an estimate: --watts x the metered windows' time (steps, evaluations and the host time before each); not a measurement",
            });
        }
        m
    }

    /// A meter on any sensor (tests feed scripted sensors here). Runs the characterisation and starts the
    /// sampler as `opts` says.
    pub fn with_sensor(cfg: MeterConfig, mut sensor: Box<dyn Sensor>, opts: MeterOptions) -> Meter {
        let source = sensor.source();
        if opts.characterise {
            let _ = sensor.characterise();
        }
        let mut m = Meter::blank(cfg, opts, source, Some(sensor));
        if m.opts.sampler {
            m.start_sampler();
        }
        if m.is_counter {
            m.context["edge_reads"] = json!(if m.opts.nonblocking_edges && m.sampler.is_some() {
                "the sampler's latest counter read (non-blocking)"
            } else {
                "a counter read on the calling thread at each step edge"
            });
        }
        m
    }

    fn blank(cfg: MeterConfig, opts: MeterOptions, source: EnergySource, sensor: Option<Box<dyn Sensor>>) -> Meter {
        let (period, quantum, context) = match &sensor {
            Some(s) => (s.nominal_period_s(), s.quantum_j(), s.context()),
            None => (None, 0.0, json!({})),
        };
        let labels = sensor.as_ref().map(|s| s.check_labels()).unwrap_or_default();
        let interval_s: Vec<f64> =
            (0..labels.len()).map(|i| sensor.as_ref().map_or(0.1, |s| s.check_interval_s(i)).max(0.001)).collect();
        let checks = Checks {
            tls: labels.iter().map(|_| Timeline::new(opts.timeline_cap, None)).collect(),
            next_due: vec![f64::NEG_INFINITY; labels.len()],
            interval_s,
            labels,
            errors: 0,
        };
        let is_counter = matches!(source, EnergySource::NvmlCounter | EnergySource::Rapl | EnergySource::Sim);
        let mut context = if context.is_object() { context } else { json!({ "sensor": context }) };
        context["source"] = json!(source.as_str());
        Meter {
            tl: Arc::new(Mutex::new(Timeline::new(opts.timeline_cap, period))),
            checks: Arc::new(Mutex::new(checks)),
            cfg,
            opts,
            source,
            clock: Arc::new(Mutex::new(ClockMap::new(Instant::now()))),
            clock_set: false,
            sensor: sensor.map(|s| Arc::new(Mutex::new(s))),
            is_counter,
            quantum_j: quantum,
            sampler: None,
            sampler_errors: Arc::new(AtomicU64::new(0)),
            step: None,
            run_start_s: None,
            last_end_s: 0.0,
            prev_end: None,
            gap_s: 0.0,
            last_counter: None,
            counter_run_j: 0.0,
            counter_reset: false,
            steps_j: 0.0,
            steps_with_energy: 0,
            steps_without_energy: 0,
            busy_s: 0.0,
            read_errors: 0,
            edge_poll_s: None,
            last_error: None,
            idle_power_w: None,
            kernels: KernelTable::default(),
            profiles: BTreeMap::new(),
            context,
        }
    }

    fn start_sampler(&mut self) {
        let Some(sensor) = self.sensor.clone() else { return };
        let interval = Duration::from_secs_f64(lock(&sensor).poll_interval_s().clamp(0.001, 1.0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tl, clock, errors, stop2) =
            (self.tl.clone(), self.clock.clone(), self.sampler_errors.clone(), stop.clone());
        let checks = self.checks.clone();
        let has_checks = !lock(&checks).labels.is_empty();
        let handle = std::thread::Builder::new()
            .name("powertrain-energy-sampler".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    let c = *lock(&clock);
                    let t = c.now_s();
                    let r = lock(&sensor).read(t);
                    match r {
                        Ok(r) => {
                            feed(&tl, &c, t, r);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if has_checks {
                        poll_checks(&sensor, &checks, &c, c.now_s());
                    }
                }
            })
            .ok();
        if handle.is_none() {
            self.context["sampler"] = json!("could not start the sampler thread: step-edge reads only");
        }
        self.sampler = Some(Sampler { stop, handle });
    }

    pub fn source(&self) -> EnergySource {
        self.source
    }

    /// The sensor context so far (GPU name, driver, update period, idle baseline, why auto fell back, ...).
    pub fn context(&self) -> &serde_json::Value {
        &self.context
    }

    /// Set the clock origin to the backend's creation instant, so that the meter's clock equals
    /// `Backend::clock_s()`. Call it right after `open`, before `measure_idle`. Without it the first
    /// `begin_step(now_s)` aligns the clock to `now_s` (assuming `now_s` was read just before the call).
    pub fn set_clock(&mut self, origin: Instant) {
        let mut c = lock(&self.clock);
        let delta =
            if origin >= c.origin { (origin - c.origin).as_secs_f64() } else { -(c.origin - origin).as_secs_f64() };
        *c = ClockMap::new(origin);
        drop(c);
        lock(&self.tl).shift(delta);
        self.clock_set = true;
    }

    /// Seconds on the meter's clock now.
    pub fn now_s(&self) -> f64 {
        lock(&self.clock).now_s()
    }

    /// Read the sensor once at `now_s` (the sampler does this in the background; tests call it to script
    /// the read times).
    pub fn poll(&mut self, now_s: f64) -> Result<Option<f64>> {
        let Some(sensor) = self.sensor.clone() else { return Ok(None) };
        let c = *lock(&self.clock);
        poll_checks(&sensor, &self.checks, &c, now_s);
        let r = lock(&sensor).read(now_s);
        match r {
            Ok(r) => {
                let c = *lock(&self.clock);
                Ok(feed(&self.tl, &c, now_s, r))
            }
            Err(e) => {
                self.read_errors += 1;
                self.last_error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Best current estimate of the sensor's update period (s).
    pub fn period_s(&self) -> Option<f64> {
        lock(&self.tl).period_s()
    }

    /// Measure the idle baseline for about `secs` seconds (no-op where it cannot be measured).
    pub fn measure_idle(&mut self, secs: f64) -> Result<()> {
        if self.sensor.is_none() || secs <= 0.0 {
            return Ok(());
        }
        let step = self.sensor.as_ref().map(|s| lock(s).poll_interval_s()).unwrap_or(0.01).clamp(0.001, 0.1);
        let t0 = self.now_s();
        let c0 = self.poll(t0).ok().flatten();
        loop {
            std::thread::sleep(Duration::from_secs_f64(step));
            let t = self.now_s();
            if self.sampler.is_none() {
                let _ = self.poll(t);
            }
            if t - t0 >= secs {
                break;
            }
        }
        let t1 = self.now_s();
        let c1 = self.poll(t1).ok().flatten();
        let p = match (c0, c1) {
            (Some(a), Some(b)) if b >= a && t1 > t0 => Some((b - a) / (t1 - t0)),
            (Some(_), Some(_)) => None,
            _ => {
                // Power samples arrive with a lag: give them a moment, then integrate what covers the window.
                std::thread::sleep(Duration::from_millis(100));
                let _ = self.poll(self.now_s());
                let i = lock(&self.tl).integrate(t0, t1);
                let covered = (t1 - t0) - i.unknown_s;
                if covered > 0.5 * (t1 - t0) {
                    Some(i.known_j / covered)
                } else {
                    None
                }
            }
        };
        self.idle_power_w = p.filter(|w| w.is_finite() && *w >= 0.0);
        self.context["idle"] = json!({
            "power_w": self.idle_power_w, "window_s": t1 - t0,
            "note": if self.idle_power_w.is_some() { "measured before the run" } else { "idle power could not be measured" },
        });
        Ok(())
    }

    /// Measured idle power (W), once `measure_idle` ran.
    pub fn idle_power_w(&self) -> Option<f64> {
        self.idle_power_w
    }

    /// `now_s` on the backend's clock (`Backend::clock_s`). With contiguous windows (the default) the window
    /// starts where the previous one ended, and no sensor is read here.
    pub fn begin_step(&mut self, now_s: f64) {
        if !self.clock_set && self.run_start_s.is_none() {
            // Align our clock with the caller's: origin = now - now_s.
            if let Some(origin) = Instant::now().checked_sub(Duration::from_secs_f64(now_s.max(0.0))) {
                self.set_clock(origin);
            }
        }
        if let Some((t, counter)) = self.prev_end.filter(|(t, _)| self.opts.contiguous && *t <= now_s) {
            self.step = Some(OpenStep { a: t, work: now_s, counter, error: None });
            return;
        }
        let (counter, error) = self.edge_read(now_s);
        if self.run_start_s.is_none() {
            self.run_start_s = Some(now_s);
        }
        self.step = Some(OpenStep { a: now_s, work: now_s, counter, error });
    }

    /// Stop the sampler thread (`bench step --energy` pauses a meter through the rounds of the other modes);
    /// `resume_sampler` starts it again. Call `break_window` before the next step: the paused time belongs to
    /// no window.
    pub fn pause_sampler(&mut self) {
        self.sampler = None;
    }

    /// Restart the sampler `pause_sampler` stopped (if the meter runs one).
    pub fn resume_sampler(&mut self) {
        if self.sampler.is_none() && self.opts.sampler && self.sensor.is_some() {
            self.start_sampler();
        }
    }

    /// Start the next window afresh at the next `begin_step` (the time until then belongs to no window), e.g.
    /// after a pause the run should not be charged for.
    pub fn break_window(&mut self) {
        self.prev_end = None;
    }

    /// Read at a step edge; keeps the run's counter sum (positive deltas between the meter's own reads).
    fn edge_read(&mut self, now_s: f64) -> (Option<f64>, Option<String>) {
        if self.sensor.is_none() {
            return (None, None);
        }
        let latest = if self.is_counter && self.opts.nonblocking_edges && self.sampler.is_some() {
            // The sampler's latest read stands for the counter at `now_s` when it is recent: the counter only
            // changes once per update period, so a read a few ms old holds the same value unless an update
            // fell in between (one update's energy moves to the next window; covered by the uncertainty).
            let sensor = &self.sensor;
            let poll = *self
                .edge_poll_s
                .get_or_insert_with(|| sensor.as_ref().map(|s| lock(s).poll_interval_s()).unwrap_or(0.01));
            lock(&self.tl).last_read().filter(|&(t, _)| now_s - t <= (4.0 * poll).max(0.02) && t <= now_s + 1e-3)
        } else {
            None
        };
        let read = match latest {
            Some((_, e)) => Ok(Some(e)),
            None => self.poll(now_s),
        };
        match read {
            Ok(Some(c)) => {
                if let Some(prev) = self.last_counter {
                    if c >= prev {
                        self.counter_run_j += c - prev;
                    } else {
                        self.counter_reset = true;
                    }
                }
                self.last_counter = Some(c);
                (Some(c), None)
            }
            Ok(None) => (None, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    }

    /// Called once the step's work has finished on the device; `kernels` are its timed launches (with
    /// --per-kernel).
    pub fn end_step(&mut self, now_s: f64, kernels: &[KernelTiming]) -> StepEnergy {
        self.end_step_with(now_s, StepKernels::Timed(kernels, None))
    }

    /// Timed steps seen so far of the kind `key` (see `StepKernels`).
    pub fn kernel_profile_samples(&self, key: u64) -> u32 {
        self.profiles.get(&key).map_or(0, |p| p.samples)
    }

    /// `end_step`, with the step's kernels timed or stood in for by a profile.
    pub fn end_step_with(&mut self, now_s: f64, step_kernels: StepKernels<'_>) -> StepEnergy {
        let open = self.step.take().unwrap_or(OpenStep {
            a: self.last_end_s,
            work: self.last_end_s,
            counter: None,
            error: None,
        });
        let a = open.a;
        let b = now_s.max(a);
        let work = open.work.clamp(a, b);
        let dt = b - a;
        self.busy_s += b - work;
        self.gap_s += work - a;
        self.last_end_s = b;
        let (energy, unc, method) = match self.source {
            EnergySource::None => {
                self.prev_end = Some((b, None));
                (None, None, "none".to_string())
            }
            EnergySource::Estimate => {
                self.prev_end = Some((b, None));
                (Some(self.cfg.watts.unwrap_or(0.0) * dt), None, "watts-x-time (estimate)".to_string())
            }
            _ => {
                let (counter_b, err) = self.edge_read(b);
                self.prev_end = if err.is_none() { Some((b, counter_b)) } else { None };
                self.measured_window(&open, b, counter_b, err)
            }
        };
        let energy = energy.filter(|e| e.is_finite() && *e >= 0.0);
        if energy.is_some() {
            self.steps_j += energy.unwrap_or(0.0);
            self.steps_with_energy += 1;
        } else {
            self.steps_without_energy += 1;
        }
        let (rows, gap_energy) = {
            let tl = lock(&self.tl);
            let p = tl.recent_power_w().unwrap_or(1.0);
            let measured = self.source.is_measurement();
            // Power-weighted time: the timeline's energy where it is known, uniform power where it is not.
            let power_j = |t0: f64, t1: f64| {
                if measured {
                    let i = tl.integrate(t0, t1);
                    i.known_j + i.unknown_s * p
                } else {
                    t1 - t0
                }
            };
            let gap_energy = energy.map(|e| {
                let whole = power_j(a, b);
                if work <= a {
                    0.0
                } else if whole > 0.0 {
                    e * (power_j(a, work) / whole).clamp(0.0, 1.0)
                } else if dt > 0.0 {
                    e * (work - a) / dt
                } else {
                    0.0
                }
            });
            let rows = if self.cfg.per_kernel {
                match step_kernels {
                    StepKernels::Timed(kernels, key) => {
                        if let Some(key) = key {
                            self.profiles.entry(key).or_default().update(kernels, work, b);
                        }
                        attribution::split_kernels(a, work, b, energy, unc, kernels, &power_j)
                    }
                    StepKernels::Profiled(key) => {
                        let profile = self.profiles.get(&key);
                        let placed = profile.map(|p| p.place(work, b)).unwrap_or_default();
                        let mut rows = attribution::split_kernels(a, work, b, energy, unc, &placed, &power_j);
                        // Measured steps only: estimates carry no uncertainty (see KernelEnergy).
                        if let (Some(p), Some(_)) = (profile, unc) {
                            for r in rows.iter_mut().filter(|r| r.launches > 0) {
                                // Unknown spread (a single timed step): the whole share is uncertain.
                                let spread = p.spread.get(r.name.as_str()).copied().unwrap_or(1.0);
                                if let Some(e) = r.energy_j {
                                    r.uncertainty_j = Some(r.uncertainty_j.unwrap_or(0.0) + e * spread);
                                }
                            }
                        }
                        rows
                    }
                }
            } else {
                Vec::new()
            };
            (rows, gap_energy)
        };
        let timed = matches!(step_kernels, StepKernels::Timed(..));
        self.kernels.add_step(&rows, timed);
        StepEnergy {
            energy_j: energy,
            window_s: dt,
            gap_s: work - a,
            gap_energy_j: gap_energy,
            uncertainty_j: unc,
            method,
            kernels: rows,
            kernels_timed: self.cfg.per_kernel.then_some(timed),
        }
    }

    /// Energy of [open.a, b] from the sensor: (joules, half-width, method).
    fn measured_window(
        &mut self,
        open: &OpenStep,
        b: f64,
        counter: Option<f64>,
        err: Option<String>,
    ) -> (Option<f64>, Option<f64>, String) {
        let a = open.a;
        let dt = b - a;
        if let Some(e) = err {
            return (None, None, format!("sensor-error: {e}"));
        }
        if let Some(e) = &open.error {
            return (None, None, format!("sensor-error at step start: {e}"));
        }
        let quantum = self.quantum_j;
        let long = self.opts.long_window_periods;
        let mut tl = lock(&self.tl);
        let period = tl.period_s();
        if self.is_counter {
            let (Some(ca), Some(cb)) = (open.counter, counter) else {
                return (None, None, "sensor-error: no counter value".into());
            };
            let d = cb - ca;
            if d < 0.0 || tl.reset_within(a, b) || (dt > 0.0 && d / dt > attribution::MAX_PLAUSIBLE_W) {
                return (None, None, "invalid: counter went backwards or jumped (reset or wrap) in this window".into());
            }
            tl.settle();
            let p = tl.recent_power_w();
            if let Some(per) = period.filter(|per| dt >= long * per) {
                let e = tl.absorb_residual(d);
                let unc = quantum + p.unwrap_or(d / dt.max(1e-9)) * per;
                return (Some(e), Some(unc), "counter-delta".into());
            }
            match tl.window_energy(a, b) {
                Some((est, _)) => {
                    let e = tl.absorb_residual(est);
                    let p = tl.recent_power_w().unwrap_or(0.0);
                    let unc = quantum + p * period.unwrap_or(dt).min(dt.max(0.0));
                    (Some(e), Some(unc), "counter-edges-interpolated (window shorter than the update period)".into())
                }
                None => (
                    None,
                    None,
                    "counter-not-updated-yet (no update edge seen; this energy is carried to later steps)".into(),
                ),
            }
        } else {
            match tl.window_energy(a, b) {
                Some((est, _)) => {
                    let e = tl.absorb_residual(est);
                    let p = tl.recent_power_w().unwrap_or(0.0);
                    // The sensor's averaging window smears energy across window edges; add 5 % for the
                    // sensor's stated accuracy.
                    let unc = 0.05 * e + p * period.unwrap_or(0.0).min(dt);
                    (Some(e), Some(unc), "power-integral".into())
                }
                None => (None, None, "no-power-samples-yet (carried to later steps)".into()),
            }
        }
    }

    /// Add `flops` floating-point operations to kernel `name` (for J/GFLOP in kernels.csv).
    pub fn add_flops(&mut self, name: &str, flops: f64) {
        self.kernels.add_flops(name, flops);
    }

    /// Per-kernel totals so far (with --per-kernel).
    pub fn kernel_table(&self) -> &KernelTable {
        &self.kernels
    }

    /// kernels.csv content (columns: `KernelsCsv::COLUMNS`).
    pub fn kernels_csv(&self) -> String {
        self.kernels.to_csv(self.source != EnergySource::None)
    }

    /// The power timeline (t on the meter clock, watts), oldest first.
    pub fn power_timeline(&self) -> Vec<(f64, f64)> {
        lock(&self.tl).points()
    }

    /// Stop the sampler and report the run's totals. The total covers the first `begin_step` to the last
    /// `end_step`, including work between steps (evaluation).
    pub fn finish(mut self) -> RunEnergy {
        // Give a real counter/power sensor one more update so the last windows settle.
        if self.sampler.is_some() {
            let wait = self.period_s().unwrap_or(0.1).clamp(0.0, 0.3);
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        self.sampler = None;
        let state_at_end = self.sensor.as_ref().map(|s| lock(s).state()).filter(|v| !v.is_null());
        let run_start = self.run_start_s.unwrap_or(self.last_end_s);
        let wall = (self.last_end_s - run_start).max(0.0);
        let mut tl = lock(&self.tl);
        tl.settle();
        let residual = tl.residual_j;
        let (total, total_note) = match self.source {
            EnergySource::None => (None, "no energy source"),
            EnergySource::Estimate => (Some(self.steps_j), "estimate: --watts x the windows' time"),
            _ if self.is_counter => {
                if self.counter_reset {
                    (None, "counter went backwards during the run: no total (see total_lower_bound_j)")
                } else if self.last_counter.is_none() {
                    (None, "no successful counter read")
                } else {
                    (Some(self.counter_run_j), "counter delta, first begin_step to last end_step")
                }
            }
            _ => {
                let i = tl.integrate(run_start, self.last_end_s);
                let p = tl.recent_power_w();
                match p {
                    Some(p) if i.unknown_s < 0.5 * wall.max(1e-9) => {
                        (Some(i.known_j + i.unknown_s * p), "power integral over the run")
                    }
                    _ => (None, "power timeline does not cover the run"),
                }
            }
        };
        let total = total.filter(|t| t.is_finite() && *t >= 0.0);
        let idle_j = match (self.idle_power_w, total) {
            (Some(p), Some(_)) => Some(p * wall),
            _ => None,
        };
        let active_j = match (total, idle_j) {
            (Some(t), Some(i)) => Some((t - i).max(0.0)),
            _ => None,
        };
        let mut ctx = self.context.clone();
        ctx["total_method"] = json!(total_note);
        ctx["steps_j"] = json!(if self.source == EnergySource::None { None } else { Some(self.steps_j) });
        ctx["steps_with_energy"] = json!(self.steps_with_energy);
        ctx["steps_without_energy"] = json!(self.steps_without_energy);
        ctx["busy_s"] = json!(self.busy_s);
        ctx["gap_s"] = json!(self.gap_s);
        if let Some(st) = state_at_end {
            // Clocks, temperature and throttle reasons at the end (the context's top level has them at start).
            ctx["state_at_end"] = st;
        }
        ctx["windows"] = json!(if self.opts.contiguous {
            "contiguous: each window starts where the previous ended (host gaps included), so windows sum to the total"
        } else {
            "step work only: host time between steps is in the total but in no window"
        });
        // Closure: the windows' attributed energies over the run's total (1 = every joule attributed).
        ctx["closure"] = json!(match total {
            Some(t) if t > 0.0 => Some(self.steps_j / t),
            _ => None,
        });
        ctx["unattributed_residual_j"] = json!(residual);
        ctx["update_period_s"] = json!(tl.period_s());
        ctx["counter_quantum_j"] = json!(self.quantum_j);
        ctx["timeline_points"] = json!(tl.len());
        ctx["unsettled_windows"] = json!(tl.unsettled);
        ctx["read_errors"] = json!(self.read_errors + self.sampler_errors.load(Ordering::Relaxed));
        if let Some(e) = &self.last_error {
            ctx["last_read_error"] = json!(e);
        }
        if self.counter_reset {
            ctx["total_lower_bound_j"] = json!(self.counter_run_j);
        }
        let checks = lock(&self.checks);
        if !checks.labels.is_empty() {
            ctx["power_check"] = power_check(&checks, run_start, self.last_end_s, total);
        }
        drop(checks);
        if let (Some(t), Some(i)) = (total, idle_j) {
            if i > t {
                ctx["idle_note"] = json!("idle power x wall time exceeds the total: active clamped to 0");
            }
        }
        drop(tl);
        RunEnergy {
            source: self.source.as_str().into(),
            total_j: total,
            idle_j,
            active_j,
            idle_power_w: self.idle_power_w,
            wall_s: wall,
            context: ctx,
        }
    }
}

/// The cross-checks over the run window [a, b] against the counter's `total`: each reading's integral, how
/// much of the window its samples cover, and the gap to the counter.
fn power_check(c: &Checks, a: f64, b: f64, total: Option<f64>) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = c
        .labels
        .iter()
        .zip(&c.tls)
        .map(|(label, tl)| {
            let i = tl.integrate(a, b);
            let window = (b - a).max(0.0);
            let covered = if window > 0.0 { ((window - i.unknown_s) / window).clamp(0.0, 1.0) } else { 0.0 };
            // Uncovered time (before the first sample arrived, after the last) at the covered mean power.
            let integral = (covered >= 0.5).then(|| i.known_j / covered);
            let gap = match (integral, total) {
                (Some(p), Some(t)) if t > 0.0 => Some((p - t) / t),
                _ => None,
            };
            json!({
                "reading": label, "integral_j": integral, "covered_fraction": covered, "samples": tl.len(),
                "counter_j": total, "gap_rel": gap,
            })
        })
        .collect();
    json!({
        "window_s": (b - a).max(0.0),
        "readings": rows,
        "read_errors": c.errors,
        "note": "power readings integrated over the same run window as the counter's total; gap_rel = \
                 (integral - counter) / counter. On A100/H100 the instant reading covers ~25 ms of every 100 ms \
                 (Yang et al.), so polling it can alias with periodic work; the counter is the reference.",
    })
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

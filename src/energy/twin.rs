//! The sensor twin (`--energy sim`): a ground-truth power trace driven by the real kernels' measured times,
//! observed by a model of the NVML energy counter. It runs on any machine; it is never a measurement.
//!
//! Why: on real hardware nobody knows the true joules of a 40 µs kernel, so an attribution method cannot be
//! checked against the truth. The twin knows the truth by construction, so the meter's numbers can be
//! compared with it (tests, `true_energy_j` in the records), and a student without a GPU can see what a real
//! counter does to the numbers (update period, part-time sampling, lag, quantisation, gain and offset).
//!
//! ## The power model (ground truth)
//! Power is piecewise constant:
//!
//! ```text
//! P(t) = idle_w + busy_w * [a kernel ran within hold_s before t] + sum over kernels running at t of dyn_w(kernel)
//! ```
//!
//! `dyn_w` comes from a small table keyed by kernel-name prefix (`PowerModel::default`, or `--sim-model FILE`
//! with the same JSON shape as `PowerModel::to_json`): compute-bound matmul-like kernels draw more than
//! memory-bound elementwise passes, as on a real GPU. The kernels' start and duration are the ones the
//! backend measured (wall clock on the CPU backend, CUDA events or stamps on a GPU), fed to the twin after
//! each step (`SimHandle::observe`).
//!
//! ## The counter model (what the meter sees)
//! The counter updates every `period_s` at `t_k = phase_s + k * period_s`. Each update adds
//! - `continuous`: the true energy of the period, `E(t_k) - E(t_{k-1})`;
//! - `part-time`: the mean power over the last `window_s` of the period times `period_s` (on A100/H100 the
//!   power is sampled about 25 ms of every 100 ms, Yang et al. 2024), so work outside the window is missed;
//!
//! then applies the sensor's gain and offset (`gain * inc + offset_w * period_s`) and Gaussian noise
//! (`noise_w * period_s` standard deviation per update, seeded), and is reported `lag_s` after `t_k`,
//! floored to `quantum_j` (NVML: 1 mJ). The meter reads it through the ordinary `Sensor` trait, exactly as it
//! reads NVML; nothing else of the twin is visible to it.
//!
//! ## Time and causality
//! The trace is known up to a horizon: kernels are fed after their step finished, so while a step is open
//! (`SimHandle::begin`) the counter only reports updates up to the step's start; outside steps the device is
//! idle and the horizon follows the clock. An update is computed once, from a trace that can no longer
//! change, so a value the counter reported never changes afterwards (kernels fed with a start before the
//! horizon are clamped to it and counted in `late_launches`).

use super::sensors::{Reading, Sensor};
use super::EnergySource;
use crate::ops::KernelTiming;
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Ground-truth power of the simulated device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerModel {
    /// Power of the idle device (W).
    pub idle_w: f64,
    /// Extra power while the device is busy: a kernel ran within `hold_s` (clocks up, caches and memory
    /// active), whatever the kernel (W).
    pub busy_w: f64,
    /// How long the busy power lingers after a kernel ends (s).
    pub hold_s: f64,
    /// Dynamic power of a running kernel by name prefix, first match wins (W).
    pub kernels: Vec<KernelPower>,
    /// Dynamic power of a kernel no prefix matches (W).
    pub default_dyn_w: f64,
}

/// One row of the dynamic-power table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelPower {
    pub prefix: String,
    pub dyn_w: f64,
}

impl Default for PowerModel {
    /// An H100-like device in round numbers: the matmul-like kernels (convolutions, GEMM) near 2.5x the
    /// dynamic power of memory-bound passes. Chosen so that kernels of unequal power make a time-proportional
    /// split visibly wrong; not a claim about any real card.
    fn default() -> Self {
        let k = |prefix: &str, dyn_w: f64| KernelPower { prefix: prefix.into(), dyn_w };
        PowerModel {
            idle_w: 75.0,
            busy_w: 40.0,
            hold_s: 0.002,
            kernels: vec![
                k("gemm", 300.0),
                k("conv2d_forward", 280.0),
                k("conv2d_backward_data", 260.0),
                k("conv2d_backward_filter", 240.0),
                k("maxpool2d", 120.0),
                k("avgpool2d", 110.0),
                k("bias", 100.0),
                k("relu", 100.0),
                k("softmax_xent", 80.0),
                k("bce_logits", 80.0),
                k("accuracy", 70.0),
                k("adam_step", 130.0),
                k("sgd_step", 120.0),
                k("fill", 90.0),
            ],
            default_dyn_w: 100.0,
        }
    }
}

impl PowerModel {
    /// Dynamic power of kernel `name`.
    pub fn dyn_w(&self, name: &str) -> f64 {
        self.kernels.iter().find(|k| name.starts_with(&k.prefix)).map_or(self.default_dyn_w, |k| k.dyn_w)
    }

    /// Read a `--sim-model` JSON file (the shape `serde_json::to_string(&PowerModel::default())` writes).
    pub fn from_file(path: &std::path::Path) -> Result<PowerModel> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--sim-model {}: cannot read (a JSON power table)", path.display()))?;
        let m: PowerModel = serde_json::from_str(&text).with_context(|| {
            format!(
                "--sim-model {}: not a power table (keys idle_w, busy_w, hold_s, kernels [{{prefix, dyn_w}}], \
                 default_dyn_w)",
                path.display()
            )
        })?;
        m.validate().with_context(|| format!("--sim-model {}", path.display()))?;
        Ok(m)
    }

    fn validate(&self) -> Result<()> {
        let ok = |w: f64| w.is_finite() && (0.0..=20_000.0).contains(&w);
        if !ok(self.idle_w) || !ok(self.busy_w) || !ok(self.default_dyn_w) {
            bail!("watts must be finite and between 0 and 20000");
        }
        if !(self.hold_s.is_finite() && (0.0..=10.0).contains(&self.hold_s)) {
            bail!("hold_s must be between 0 and 10 s");
        }
        if let Some(k) = self.kernels.iter().find(|k| !ok(k.dyn_w) || k.prefix.is_empty()) {
            bail!("kernel row '{}': a non-empty prefix and watts between 0 and 20000", k.prefix);
        }
        Ok(())
    }
}

/// How the simulated counter integrates power between updates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "integration", rename_all = "kebab-case")]
pub enum Integration {
    /// Every joule of the period counts.
    Continuous,
    /// Only the last `window_s` of each period is sampled; its mean power stands for the whole period.
    PartTime { window_s: f64 },
}

/// The simulated NVML energy counter (`--sim-sensor`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorModel {
    /// Seconds between counter updates.
    pub period_s: f64,
    /// Time of the first update on the meter's clock, within one period (None: drawn from the seed).
    pub phase_s: Option<f64>,
    #[serde(flatten)]
    pub integration: Integration,
    /// Delay between an update and the moment a read can see it (s).
    pub lag_s: f64,
    /// Counter resolution (J); NVML's is 1 mJ.
    pub quantum_j: f64,
    /// Multiplicative error of the sensor (1 = exact).
    pub gain: f64,
    /// Additive error (W).
    pub offset_w: f64,
    /// Standard deviation of each update's mean power error (W).
    pub noise_w: f64,
    /// Seed of the phase and the noise.
    pub seed: u64,
}

impl Default for SensorModel {
    /// A continuous counter updating every 100 ms with NVML's 1 mJ resolution, no lag, no error.
    fn default() -> Self {
        SensorModel {
            period_s: 0.1,
            phase_s: None,
            integration: Integration::Continuous,
            lag_s: 0.0,
            quantum_j: 1e-3,
            gain: 1.0,
            offset_w: 0.0,
            noise_w: 0.0,
            seed: 0,
        }
    }
}

impl SensorModel {
    /// Parse `--sim-sensor SPEC`: `continuous` or `part-time`, optionally followed by `:key=value,...` with keys
    /// period, window (part-time), phase, lag, quantum, gain, offset, noise, seed (seconds, watts, joules).
    /// Example: `part-time:period=0.1,window=0.025,lag=0.005,gain=1.02,offset=3`.
    pub fn parse(spec: &str) -> Result<SensorModel> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut m = SensorModel::default();
        let mut window = None;
        for kv in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').with_context(|| format!("--sim-sensor: '{kv}' is not key=value"))?;
            let x: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .with_context(|| format!("--sim-sensor: {k}={v} is not a finite number"))?;
            match k.trim() {
                "period" => m.period_s = x,
                "window" => window = Some(x),
                "phase" => m.phase_s = Some(x),
                "lag" => m.lag_s = x,
                "quantum" => m.quantum_j = x,
                "gain" => m.gain = x,
                "offset" => m.offset_w = x,
                "noise" => m.noise_w = x,
                "seed" => m.seed = x as u64,
                other => bail!(
                    "--sim-sensor: unknown key '{other}' (use period, window, phase, lag, quantum, gain, offset, \
                     noise, seed)"
                ),
            }
        }
        m.integration = match kind.trim() {
            "continuous" if window.is_none() => Integration::Continuous,
            "continuous" => bail!("--sim-sensor: window= applies to part-time sampling only"),
            "part-time" => Integration::PartTime { window_s: window.unwrap_or(0.025) },
            other => bail!("--sim-sensor '{other}': use continuous or part-time (optionally :key=value,...)"),
        };
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<()> {
        if !(self.period_s.is_finite() && (1e-4..=10.0).contains(&self.period_s)) {
            bail!("--sim-sensor: period must be between 0.0001 and 10 s");
        }
        if let Integration::PartTime { window_s } = self.integration {
            if !(window_s > 0.0 && window_s <= self.period_s) {
                bail!("--sim-sensor: window must be > 0 and at most the period ({} s)", self.period_s);
            }
        }
        if !(0.0..=10.0).contains(&self.lag_s) || !(0.0..=1.0).contains(&self.quantum_j) {
            bail!("--sim-sensor: lag must be 0..10 s and quantum 0..1 J");
        }
        if !(0.5..=2.0).contains(&self.gain) || self.offset_w.abs() > 1000.0 || !(0.0..=1000.0).contains(&self.noise_w)
        {
            bail!("--sim-sensor: gain must be 0.5..2, |offset| and noise at most 1000 W");
        }
        Ok(())
    }

    /// The settings in words, for records and reports.
    pub fn describe(&self) -> String {
        let integ = match self.integration {
            Integration::Continuous => "continuous integration".to_string(),
            Integration::PartTime { window_s } => {
                format!("part-time sampling ({:.0} ms of every {:.0} ms)", window_s * 1e3, self.period_s * 1e3)
            }
        };
        format!(
            "simulated counter: update every {:.0} ms, {integ}, lag {:.0} ms, resolution {} J, gain {}, offset {} W, \
             noise {} W",
            self.period_s * 1e3,
            self.lag_s * 1e3,
            self.quantum_j,
            self.gain,
            self.offset_w,
            self.noise_w
        )
    }
}

/// A power change at time `t`: `dyn_w` added to the running kernels' power, `busy` added to the busy count.
#[derive(Clone, Copy, Debug)]
struct Event {
    t: f64,
    dyn_w: f64,
    busy: i32,
}

/// The true power trace: breakpoints with the cumulative energy at each, up to `horizon`.
#[derive(Debug)]
struct Trace {
    power: PowerModel,
    /// Breakpoint times (increasing); the trace starts at `t[0]`.
    t: Vec<f64>,
    /// Cumulative true energy at each breakpoint (J).
    e: Vec<f64>,
    /// Power from breakpoint i on (W).
    w: Vec<f64>,
    /// Events not yet applied (at or after the horizon).
    pending: Vec<Event>,
    dyn_now: f64,
    busy_now: i32,
    late_launches: u64,
}

impl Trace {
    fn new(power: PowerModel, t0: f64) -> Trace {
        let w0 = power.idle_w;
        Trace {
            power,
            t: vec![t0],
            e: vec![0.0],
            w: vec![w0],
            pending: Vec::new(),
            dyn_now: 0.0,
            busy_now: 0,
            late_launches: 0,
        }
    }

    fn horizon(&self) -> f64 {
        *self.t.last().unwrap_or(&0.0)
    }

    fn current_w(&self) -> f64 {
        self.power.idle_w + if self.busy_now > 0 { self.power.busy_w } else { 0.0 } + self.dyn_now
    }

    /// Append a breakpoint at `t` (>= horizon) holding the current power from there on.
    fn push(&mut self, t: f64) {
        let (t_last, e_last, w_last) = (self.horizon(), *self.e.last().unwrap_or(&0.0), *self.w.last().unwrap_or(&0.0));
        if t <= t_last {
            let w = self.current_w();
            if let Some(last) = self.w.last_mut() {
                *last = w;
            }
            return;
        }
        self.t.push(t);
        self.e.push(e_last + w_last * (t - t_last));
        self.w.push(self.current_w());
    }

    /// Queue the launches (clamped to the horizon: history already reported cannot change).
    fn add_kernels(&mut self, kernels: &[KernelTiming]) {
        let h = self.horizon();
        for k in kernels {
            let (mut s, mut e) = (k.start_s, k.start_s + k.dur_s.max(0.0));
            if !(s.is_finite() && e.is_finite()) {
                continue;
            }
            if s < h {
                self.late_launches += 1;
                s = h;
                e = e.max(h);
            }
            let d = self.power.dyn_w(k.name);
            self.pending.push(Event { t: s, dyn_w: d, busy: 1 });
            self.pending.push(Event { t: e, dyn_w: -d, busy: 0 });
            self.pending.push(Event { t: e + self.power.hold_s, dyn_w: 0.0, busy: -1 });
        }
    }

    /// Apply every event up to `until` and extend the trace to it.
    fn advance(&mut self, until: f64) {
        if until <= self.horizon() {
            return;
        }
        self.pending.sort_by(|a, b| a.t.total_cmp(&b.t));
        let n = self.pending.partition_point(|ev| ev.t <= until);
        let due: Vec<Event> = self.pending.drain(..n).collect();
        for ev in due {
            self.push(ev.t);
            self.dyn_now += ev.dyn_w;
            self.busy_now += ev.busy;
            if self.busy_now == 0 && self.dyn_now.abs() < 1e-9 {
                self.dyn_now = 0.0; // no drift from float sums once idle
            }
            self.push(ev.t);
        }
        self.push(until);
    }

    /// True cumulative energy at `t` (t <= horizon; earlier than the start: extrapolated at idle).
    fn energy_at(&self, t: f64) -> f64 {
        let i = self.t.partition_point(|&x| x <= t).saturating_sub(1);
        self.e[i] + self.w[i] * (t - self.t[i])
    }

    /// Drop breakpoints before `t` (keeping one at or before it), so long runs stay small.
    fn trim_before(&mut self, t: f64) {
        let i = self.t.partition_point(|&x| x <= t).saturating_sub(1);
        if i > 4096 {
            self.t.drain(..i);
            self.e.drain(..i);
            self.w.drain(..i);
        }
    }
}

/// The counter's state: updates computed so far.
#[derive(Debug)]
struct Counter {
    model: SensorModel,
    phase_s: f64,
    /// Index of the next update to compute.
    next_k: i64,
    /// The counter's value after the last computed update (J, unquantised, before the base).
    value_j: f64,
    /// Arbitrary origin, like a real counter's joules since the driver loaded.
    base_j: f64,
    rng: rand_chacha::ChaCha8Rng,
    normal: rand_distr::Normal<f64>,
}

impl Counter {
    fn new(model: SensorModel, t0: f64) -> Counter {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(model.seed);
        let phase_s = match model.phase_s {
            Some(p) => p.rem_euclid(model.period_s),
            None => rand::Rng::random::<f64>(&mut rng) * model.period_s,
        };
        // The first update after the trace's start (the device was idle before it).
        let next_k = ((t0 - phase_s) / model.period_s).floor() as i64 + 1;
        Counter {
            model,
            phase_s,
            next_k,
            value_j: 0.0,
            base_j: 123_456.0,
            rng,
            normal: rand_distr::Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!("unit normal")),
        }
    }

    fn t_of(&self, k: i64) -> f64 {
        self.phase_s + k as f64 * self.model.period_s
    }

    /// Compute every update at or before `limit` from the trace.
    fn advance(&mut self, trace: &Trace, limit: f64) {
        let p = self.model.period_s;
        while self.t_of(self.next_k) <= limit {
            let tk = self.t_of(self.next_k);
            let inc = match self.model.integration {
                Integration::Continuous => trace.energy_at(tk) - trace.energy_at(tk - p),
                Integration::PartTime { window_s } => {
                    (trace.energy_at(tk) - trace.energy_at(tk - window_s)) / window_s * p
                }
            };
            let noise =
                if self.model.noise_w > 0.0 { self.normal.sample(&mut self.rng) * self.model.noise_w * p } else { 0.0 };
            self.value_j += (self.model.gain * inc + self.model.offset_w * p + noise).max(0.0);
            self.next_k += 1;
        }
    }

    /// The reported value: base + value floored to the quantum.
    fn reported(&self) -> f64 {
        let q = self.model.quantum_j;
        let v = if q > 0.0 { (self.value_j / q).floor() * q } else { self.value_j };
        self.base_j + v
    }
}

#[derive(Debug)]
struct TwinState {
    trace: Trace,
    counter: Counter,
    /// Start of the open step (kernels from here on are not fed yet), if one is open.
    open_since: Option<f64>,
    launches: u64,
}

impl TwinState {
    /// Bring the trace and the counter up to what a read at `now_s` may know.
    fn sync(&mut self, now_s: f64) {
        let known = match self.open_since {
            Some(t) => t.min(now_s),
            None => now_s,
        };
        self.trace.advance(known);
        let limit = (now_s - self.counter.model.lag_s).min(self.trace.horizon());
        self.counter.advance(&self.trace, limit);
    }
}

/// The training loop's side of the twin: it feeds the kernels and asks for the truth. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SimHandle {
    state: Arc<Mutex<TwinState>>,
    power: PowerModel,
    sensor: SensorModel,
}

fn lock(s: &Mutex<TwinState>) -> std::sync::MutexGuard<'_, TwinState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimHandle {
    /// A twin whose trace starts at `t0_s` on the meter's clock (idle before the first kernel).
    pub fn new(power: PowerModel, sensor: SensorModel, t0_s: f64) -> SimHandle {
        let state = TwinState {
            trace: Trace::new(power.clone(), t0_s),
            counter: Counter::new(sensor.clone(), t0_s),
            open_since: None,
            launches: 0,
        };
        SimHandle { state: Arc::new(Mutex::new(state)), power, sensor }
    }

    /// The sensor the meter reads (share of the same twin).
    pub fn sensor(&self) -> SimSensor {
        SimSensor { twin: self.clone() }
    }

    pub fn power_model(&self) -> &PowerModel {
        &self.power
    }

    pub fn sensor_model(&self) -> &SensorModel {
        &self.sensor
    }

    /// A step starts at `t_s`: its kernels will be fed when it ends; until then the counter cannot report
    /// updates after `t_s`.
    pub fn begin(&self, t_s: f64) {
        let mut s = lock(&self.state);
        s.trace.advance(t_s);
        s.open_since = Some(t_s.max(s.trace.horizon()));
    }

    /// The step's launches, measured by the backend; the trace is complete up to `until_s` (the step's end).
    pub fn observe(&self, kernels: &[KernelTiming], until_s: f64) {
        let mut s = lock(&self.state);
        s.trace.add_kernels(kernels);
        s.launches += kernels.len() as u64;
        s.trace.advance(until_s);
        s.open_since = None;
    }

    /// True energy of the device over [a, b] (J); b must not be later than the last `observe`/`begin` time
    /// (else the part after it is counted at the power known so far).
    pub fn true_energy(&self, a: f64, b: f64) -> f64 {
        let mut s = lock(&self.state);
        if s.open_since.is_none() {
            s.trace.advance(b);
        }
        s.trace.energy_at(b) - s.trace.energy_at(a)
    }

    /// True energy of each launch (its own interval, idle and busy power included), in the order given.
    pub fn true_kernel_energies(&self, kernels: &[KernelTiming]) -> Vec<f64> {
        let s = lock(&self.state);
        kernels
            .iter()
            .map(|k| {
                let (a, b) = (k.start_s, k.start_s + k.dur_s.max(0.0));
                s.trace.energy_at(b) - s.trace.energy_at(a)
            })
            .collect()
    }

    /// True power at `t` (W).
    pub fn true_power_w(&self, t: f64) -> f64 {
        let s = lock(&self.state);
        let i = s.trace.t.partition_point(|&x| x <= t).saturating_sub(1);
        s.trace.w[i]
    }

    /// Forget trace history before `t` (the caller no longer asks for truth before it).
    pub fn trim_before(&self, t: f64) {
        let mut s = lock(&self.state);
        // The counter still needs the trace from its next update's period start on.
        let needed = s.counter.t_of(s.counter.next_k) - self.sensor.period_s;
        s.trace.trim_before(t.min(needed));
    }

    /// The twin's settings and counts, for the run's energy context.
    pub fn context(&self) -> serde_json::Value {
        let s = lock(&self.state);
        serde_json::json!({
            "method": "sim: a sensor twin; the power trace is a model driven by the measured kernel times, never a measurement",
            "power_model": self.power,
            "sensor_model": self.sensor,
            "sensor": self.sensor.describe(),
            "phase_s": s.counter.phase_s,
            "launches_observed": s.launches,
            "late_launches": s.trace.late_launches,
        })
    }
}

/// The twin's counter as a `Sensor`: the meter reads it exactly as it reads NVML's total-energy counter.
pub struct SimSensor {
    twin: SimHandle,
}

impl Sensor for SimSensor {
    fn source(&self) -> EnergySource {
        EnergySource::Sim
    }
    fn read(&mut self, now_s: f64) -> Result<Reading> {
        let mut s = lock(&self.twin.state);
        s.sync(now_s);
        Ok(Reading::Counter { energy_j: s.counter.reported() })
    }
    fn quantum_j(&self) -> f64 {
        self.twin.sensor.quantum_j
    }
    fn poll_interval_s(&self) -> f64 {
        0.005
    }
    fn context(&self) -> serde_json::Value {
        serde_json::json!({ "sim": self.twin.context() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &'static str, start_s: f64, dur_s: f64) -> KernelTiming {
        KernelTiming { name, start_s, dur_s }
    }

    fn flat(idle: f64) -> PowerModel {
        PowerModel { idle_w: idle, busy_w: 0.0, hold_s: 0.0, kernels: vec![], default_dyn_w: 0.0 }
    }

    #[test]
    fn trace_integrates_idle_busy_and_kernel_power() {
        let p = PowerModel {
            idle_w: 50.0,
            busy_w: 10.0,
            hold_s: 0.01,
            kernels: vec![KernelPower { prefix: "gemm".into(), dyn_w: 200.0 }],
            default_dyn_w: 100.0,
        };
        let twin = SimHandle::new(p, SensorModel::default(), 0.0);
        twin.begin(1.0);
        twin.observe(&[k("gemm", 1.0, 0.1), k("relu_forward", 1.2, 0.05)], 1.5);
        // idle 50 W x 1.5 s + busy 10 W x (0.1 + 0.01 + 0.05 + 0.01) + gemm 200 x 0.1 + relu 100 x 0.05
        let want = 50.0 * 1.5 + 10.0 * 0.17 + 20.0 + 5.0;
        assert!((twin.true_energy(0.0, 1.5) - want).abs() < 1e-9, "{}", twin.true_energy(0.0, 1.5));
        let per = twin.true_kernel_energies(&[k("gemm", 1.0, 0.1)]);
        assert!((per[0] - (50.0 + 10.0 + 200.0) * 0.1).abs() < 1e-9);
        assert_eq!(twin.true_power_w(1.05), 260.0);
        assert_eq!(twin.true_power_w(1.105), 60.0, "busy power lingers for hold_s");
        assert_eq!(twin.true_power_w(1.3), 50.0);
    }

    #[test]
    fn continuous_counter_sums_to_the_truth_within_one_update_and_is_quantised() {
        let s = SensorModel { phase_s: Some(0.03), ..SensorModel::default() };
        let twin = SimHandle::new(PowerModel::default(), s, 0.0);
        let mut sensor = twin.sensor();
        let mut t = 0.0;
        let mut c0 = None;
        for i in 0..200 {
            if i == 5 {
                // After the update at 0.03 s: the delta to the end spans whole updates from there.
                let Reading::Counter { energy_j } = sensor.read(t).unwrap() else { panic!("a counter") };
                c0 = Some((energy_j, 0.03 + ((t - 0.03) / 0.1).floor() * 0.1));
            }
            twin.begin(t);
            let ks = [k("gemm", t + 0.001, 0.004), k("relu_forward", t + 0.006, 0.002)];
            twin.observe(&ks, t + 0.01);
            t += 0.01 + 0.001 * (i % 3) as f64;
        }
        let Reading::Counter { energy_j: c1 } = sensor.read(t).unwrap() else { panic!("a counter") };
        let (c0, u0) = c0.unwrap();
        let last_update = 0.03 + ((t - 0.03) / 0.1).floor() * 0.1;
        let truth_between_updates = twin.true_energy(u0, last_update);
        assert!((c1 - c0 - truth_between_updates).abs() < 2e-3, "{} vs {truth_between_updates}", c1 - c0);
        assert!(twin.true_energy(last_update, t) < 0.1 * 600.0, "the rest is under one update's energy");
        let mj = (c1 - c0) * 1e3;
        assert!((mj - mj.round()).abs() < 1e-6, "1 mJ steps");
    }

    #[test]
    fn part_time_sampling_misses_work_outside_its_window() {
        // A burst in the first half of each 100 ms period: a 25 ms window at the period's end never sees it.
        let s = SensorModel {
            phase_s: Some(0.0),
            integration: Integration::PartTime { window_s: 0.025 },
            quantum_j: 0.0,
            ..SensorModel::default()
        };
        let twin = SimHandle::new(flat(100.0), s, 0.0);
        let mut p = flat(100.0);
        p.default_dyn_w = 200.0;
        let twin_hot = SimHandle::new(p.clone(), twin.sensor_model().clone(), 0.0);
        let mut sensor = twin_hot.sensor();
        let Reading::Counter { energy_j: c0 } = sensor.read(0.0).unwrap() else { panic!() };
        for i in 0..10 {
            let t = i as f64 * 0.1;
            twin_hot.begin(t);
            twin_hot.observe(&[k("x", t + 0.01, 0.04)], t + 0.1);
        }
        let Reading::Counter { energy_j: c1 } = sensor.read(1.0).unwrap() else { panic!() };
        assert!((c1 - c0 - 100.0).abs() < 1e-6, "idle only: {}", c1 - c0);
        assert!((twin_hot.true_energy(0.0, 1.0) - 180.0).abs() < 1e-9);
        drop(twin);
    }

    #[test]
    fn lag_delays_what_a_read_sees_and_reported_values_never_change() {
        let s = SensorModel { phase_s: Some(0.0), lag_s: 0.02, quantum_j: 0.0, ..SensorModel::default() };
        let twin = SimHandle::new(flat(10.0), s, 0.0);
        let mut sensor = twin.sensor();
        let r = |sensor: &mut SimSensor, t: f64| match sensor.read(t).unwrap() {
            Reading::Counter { energy_j } => energy_j - 123_456.0,
            _ => panic!(),
        };
        assert!((r(&mut sensor, 0.115)).abs() < 1e-9, "the 0.1 s update is visible only from 0.12 s");
        assert!((r(&mut sensor, 0.121) - 1.0).abs() < 1e-9);
        // An open step holds the counter at the step's start until its kernels are fed.
        twin.begin(0.15);
        assert!((r(&mut sensor, 0.5) - 1.0).abs() < 1e-9);
        twin.observe(&[], 0.5);
        assert!((r(&mut sensor, 0.5) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn gain_offset_and_noise_bias_the_counter_as_stated() {
        let s = SensorModel {
            phase_s: Some(0.0),
            gain: 1.05,
            offset_w: 3.0,
            noise_w: 2.0,
            quantum_j: 0.0,
            ..SensorModel::default()
        };
        let twin = SimHandle::new(flat(100.0), s, 0.0);
        let mut sensor = twin.sensor();
        let Reading::Counter { energy_j: c } = sensor.read(100.0).unwrap() else { panic!() };
        // 1000 updates: 1.05 x 100 W + 3 W = 108 W x 100 s, noise 2 W x sqrt(1000) x 0.1 s ~ 6 J.
        let got = c - 123_456.0;
        assert!((got - 10_800.0).abs() < 30.0, "{got}");
        assert!((got - 10_800.0).abs() > 1e-6, "noise is present");
    }

    #[test]
    fn late_launches_are_clamped_and_counted() {
        let twin = SimHandle::new(flat(10.0), SensorModel::default(), 0.0);
        twin.observe(&[], 1.0);
        twin.observe(&[k("gemm", 0.5, 0.6)], 2.0);
        assert_eq!(twin.context()["late_launches"], 1);
        assert!(twin.true_energy(0.0, 1.0) - 10.0 < 1e-9, "history before the horizon is unchanged");
    }

    #[test]
    fn sensor_specs_parse_and_refuse_nonsense() {
        let m = SensorModel::parse("part-time:period=0.1,window=0.025,lag=0.005,gain=1.02,offset=3").unwrap();
        assert_eq!(m.integration, Integration::PartTime { window_s: 0.025 });
        assert_eq!((m.lag_s, m.gain, m.offset_w), (0.005, 1.02, 3.0));
        assert_eq!(SensorModel::parse("continuous").unwrap(), SensorModel::default());
        for bad in [
            "magic",
            "continuous:window=0.01",
            "part-time:window=0.5",
            "continuous:period=0",
            "part-time:x=1",
            "continuous:gain=nan",
        ] {
            let e = SensorModel::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--sim-sensor"), "{bad}: {e}");
        }
        let text = serde_json::to_string(&PowerModel::default()).unwrap();
        let back: PowerModel = serde_json::from_str(&text).unwrap();
        assert_eq!(back, PowerModel::default());
        assert_eq!(back.dyn_w("conv2d_forward"), 280.0);
        assert_eq!(back.dyn_w("unknown_kernel"), 100.0);
    }
}

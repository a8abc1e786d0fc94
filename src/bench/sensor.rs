//! `powertrain bench sensor`: what the energy counter is, measured from outside. Square-wave and phase-locked
//! bursts of load find
//! - the **update period**: the median gap between counter changes under a square-wave load (on 1.3 periods,
//!   off 1.3 periods, so that every update adds something whatever the idle power);
//! - **continuous vs part-time integration, the window and the lag**: phase-locked bursts. Lock on a counter
//!   change (an update became visible at `v`), then turn the load on `d` before the next-but-one visible
//!   update `v + 2 period` and keep it on past it. That update holds the burst's extra energy only if the burst
//!   began before the update was taken (`d > lag`); a continuous counter then adds `P_extra (d - lag)` up to a
//!   whole period, a part-time one `P_extra (period / window) (d - lag)` up to `window` and then stays flat.
//!   So the extra energy against `d` is a ramp starting at the lag and lasting the window: a least-squares line
//!   through the ramp's 15-85 % points gives the lag (where it crosses zero) and the ramp's length
//!   (plateau / slope); a ramp shorter than 80 % of the period is part-time sampling with that window;
//! - **instant vs counter**: where the sensor has an instant power reading beside the counter (NVML field 186),
//!   its integral over steady load against the counter's energy for the same span.
//!
//! The verdict is printed and stored (`energy::resolution::SensorVerdict`, in the cache folder keyed by the
//! GPU's UUID, or `sim`), so `powertrain info` and every run's summary.json show the sensor's character and
//! the resolution that follows from it.
//!
//! On `--energy-source sim` the twin (`energy::twin`) is driven directly with a synthetic load on a virtual
//! clock (the CPU cannot produce real power): the probe must recover the twin's settings, which is its test.
//! On a GPU the load is back-to-back 2048³ GEMMs and the clock is the wall clock (unverified on GPU).
use crate::energy::resolution::SensorVerdict;
use crate::energy::sensors::{Reading, Sensor};
use crate::energy::twin::{PowerModel, SensorModel, SimHandle, SimSensor};
use crate::ops::KernelTiming;
use anyhow::{bail, Result};

/// What the probe drives: a load it turns on and off, a clock, and the counter it reads.
pub trait Rig {
    /// Seconds on the rig's clock.
    fn now(&self) -> f64;
    /// Keep the load as `on` until `t` (busy work or idle waiting), then return.
    fn run_until(&mut self, t: f64, on: bool) -> Result<()>;
    /// The counter (J).
    fn counter_j(&mut self) -> Result<f64>;
    /// An instant power reading (W), where the sensor has one beside the counter.
    fn instant_w(&mut self) -> Option<f64> {
        None
    }
    /// Smallest useful step between reads (s).
    fn tick_s(&self) -> f64;
}

/// How long the probe runs.
#[derive(Clone, Debug)]
pub struct ProbeOpts {
    /// Counter changes to collect for the period.
    pub period_edges: usize,
    /// Burst offsets in the phase scan, spread over 0 .. 1.5 periods.
    pub scan_points: usize,
}

impl Default for ProbeOpts {
    fn default() -> Self {
        ProbeOpts { period_edges: 30, scan_points: 60 }
    }
}

/// Read tightly with the load `on` until the counter changes or `limit` passes: (time seen, value before,
/// value after).
fn next_change(rig: &mut impl Rig, on: bool, limit: f64) -> Result<Option<(f64, f64, f64)>> {
    let before = rig.counter_j()?;
    while rig.now() < limit {
        let t = rig.now() + rig.tick_s();
        rig.run_until(t, on)?;
        let v = rig.counter_j()?;
        if v != before {
            return Ok(Some((rig.now(), before, v)));
        }
    }
    Ok(None)
}

/// The update period: the median gap between changes seen under a square-wave load of 1.3 x `guess`.
fn update_period(rig: &mut impl Rig, guess: f64, edges: usize) -> Result<(f64, Vec<f64>)> {
    let half = 1.3 * guess;
    let mut seen = Vec::new();
    let mut on = true;
    let mut flip = rig.now() + half;
    let deadline = rig.now() + (edges as f64 + 5.0) * guess * 4.0;
    let mut last = rig.counter_j()?;
    while seen.len() < edges && rig.now() < deadline {
        let t = rig.now() + rig.tick_s();
        rig.run_until(t, on)?;
        if rig.now() >= flip {
            on = !on;
            flip += half;
        }
        let v = rig.counter_j()?;
        if v != last {
            seen.push(rig.now());
            last = v;
        }
    }
    let gaps: Vec<f64> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    let p = crate::stats::median(&gaps);
    if !(p > 0.0) {
        bail!("bench sensor: the counter changed {} times in {:.1} s: no update period", seen.len(), half * 2.0);
    }
    Ok((p, gaps))
}

/// Extra energy of the update visible about two periods after a lock, for a burst starting `d` before it.
fn burst(rig: &mut impl Rig, period: f64, d: f64, idle_inc: f64) -> Result<Option<f64>> {
    // Lock: an update just became visible at v (idle, so the previous bursts have faded).
    let Some((v, _, _)) = next_change(rig, false, rig.now() + 3.0 * period)? else { return Ok(None) };
    let (target, on_from) = (v + 2.0 * period, v + 2.0 * period - d);
    // Start watching 0.3 periods before the target: the update visible at v + period is in the base by then,
    // and a slightly wrong period cannot make the watch miss the target's update.
    let look = target - 0.3 * period;
    if on_from < look {
        rig.run_until(on_from, false)?;
    }
    rig.run_until(look, on_from < look)?;
    let before = rig.counter_j()?;
    let limit = target + 0.5 * period;
    while rig.now() < limit {
        let on = rig.now() + 1e-12 >= on_from;
        let t = if on { rig.now() + rig.tick_s() } else { on_from.min(rig.now() + rig.tick_s()) };
        rig.run_until(t, on)?;
        let after = rig.counter_j()?;
        if after != before {
            rig.run_until(rig.now() + 1.5 * period, false)?;
            return Ok(Some(after - before - idle_inc));
        }
    }
    Ok(None)
}

/// The idle increment per update (J): median of a few idle updates.
fn idle_increment(rig: &mut impl Rig, period: f64) -> Result<f64> {
    rig.run_until(rig.now() + 2.0 * period, false)?;
    let mut incs = Vec::new();
    for _ in 0..7 {
        if let Some((_, b, a)) = next_change(rig, false, rig.now() + 3.0 * period)? {
            incs.push(a - b);
        }
    }
    Ok(crate::stats::median(&incs))
}

/// Least-squares line y = a + b x.
fn line(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| (my - sxy / sxx * mx, sxy / sxx))
}

/// The ramp of extra energy against burst offset: (lag, ramp length, plateau).
fn ramp(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let plateau = crate::stats::quantile(&ys, 0.9);
    if !(plateau > 0.0) {
        return None;
    }
    let mid: Vec<(f64, f64)> =
        points.iter().copied().filter(|&(_, y)| y > 0.15 * plateau && y < 0.85 * plateau).collect();
    let (a, b) = line(&mid)?;
    if !(b > 0.0) {
        return None;
    }
    Some((-a / b, plateau / b, plateau))
}

/// Characterise the counter behind `rig`; `guess` is a first guess of its period (s).
pub fn probe(rig: &mut impl Rig, guess: f64, opts: &ProbeOpts) -> Result<serde_json::Value> {
    let (period, gaps) = update_period(rig, guess, opts.period_edges)?;
    let idle_inc = idle_increment(rig, period)?;
    let mut points = Vec::new();
    for i in 0..opts.scan_points {
        let d = 1.5 * period * (i as f64 + 0.5) / opts.scan_points as f64;
        if let Some(x) = burst(rig, period, d, idle_inc)? {
            points.push((d, x));
        }
    }
    let r = ramp(&points);
    let (integration, window, lag) = match r {
        Some((lag, len, _)) if len < 0.8 * period => ("part-time", Some(len), Some(lag.max(0.0))),
        Some((lag, _, _)) => ("continuous", None, Some(lag.max(0.0))),
        None => ("unknown", None, None),
    };
    let instant = instant_vs_counter(rig, period)?;
    Ok(serde_json::json!({
        "update_period_s": period,
        "period_gaps": gaps.len(),
        "period_gap_p10_s": crate::stats::quantile(&gaps, 0.1),
        "period_gap_p90_s": crate::stats::quantile(&gaps, 0.9),
        "idle_increment_j": idle_inc,
        "integration": integration,
        "sampling_window_s": window,
        "lag_s": lag,
        "ramp": r.map(|(lag, len, plateau)| serde_json::json!({"lag_s": lag, "length_s": len, "plateau_j": plateau})),
        "scan": points.iter().map(|(d, x)| [d, x]).collect::<Vec<_>>(),
        "instant_vs_counter": instant,
    }))
}

/// Over 10 periods of steady load: the instant readings' integral against the counter, (instant - counter) /
/// counter; None without an instant reading.
fn instant_vs_counter(rig: &mut impl Rig, period: f64) -> Result<Option<f64>> {
    if rig.instant_w().is_none() {
        return Ok(None);
    }
    // From one visible update to the one ten periods later, load on throughout.
    let Some((t0, _, c0)) = next_change(rig, true, rig.now() + 3.0 * period)? else { return Ok(None) };
    let (mut integral, mut last_t) = (0.0, t0);
    let mut c1 = c0;
    let end = t0 + 10.0 * period;
    while rig.now() < end {
        rig.run_until(rig.now() + rig.tick_s().max(0.005), true)?;
        if let Some(w) = rig.instant_w() {
            integral += w * (rig.now() - last_t);
        }
        last_t = rig.now();
    }
    if let Some((t1, _, c)) = next_change(rig, true, end + 2.0 * period)? {
        if let Some(w) = rig.instant_w() {
            integral += w * (t1 - last_t);
        }
        c1 = c;
    }
    rig.run_until(rig.now() + period, false)?;
    Ok((c1 > c0).then(|| (integral - (c1 - c0)) / (c1 - c0)))
}

/// The verdict in one line, and the stored record.
pub fn verdict(device: &str, source: &str, method: &str, found: serde_json::Value) -> SensorVerdict {
    let p = found["update_period_s"].as_f64().unwrap_or(f64::NAN);
    let integration = found["integration"].as_str().unwrap_or("unknown").to_string();
    let window = found["sampling_window_s"].as_f64();
    let lag = found["lag_s"].as_f64();
    let instant = found["instant_vs_counter"].as_f64();
    let how = match (integration.as_str(), window) {
        ("part-time", Some(w)) => format!(
            "part-time sampling: about {:.0} ms of every {:.0} ms is seen; work outside that window is missed, \
             so short windows and kernels are not resolved",
            w * 1e3,
            p * 1e3
        ),
        ("continuous", _) => "continuous integration: every joule of a period counts".into(),
        _ => "integration not established (the phase scan found no ramp)".into(),
    };
    let res = crate::energy::resolution::SensorResolution {
        update_period_s: p,
        integration: integration.clone(),
        sampling_window_s: window,
        from: "this probe".into(),
    };
    let line = format!(
        "{source}: counter updates every {:.1} ms; {how}; lag {}; {}; a window needs {:.2} s, a run or \
         comparison {:.2} s to be resolved",
        p * 1e3,
        lag.map_or("unknown".into(), |l| format!("{:.1} ms", l * 1e3)),
        instant.map_or("no instant reading beside the counter".into(), |g| format!(
            "instant power vs counter {:+.1} %",
            g * 100.0
        )),
        res.min_duration_s(crate::energy::resolution::Span::Window),
        res.min_duration_s(crate::energy::resolution::Span::Comparison),
    );
    SensorVerdict {
        device: device.into(),
        source: source.into(),
        update_period_s: p,
        integration,
        sampling_window_s: window,
        lag_s: lag,
        instant_vs_counter: instant,
        verdict: line,
        measured_at: utc_now(),
        method: method.into(),
        details: found,
    }
}

/// `bench sensor --energy-source sim`: probe the twin with `model` (virtual clock, default power model).
pub fn characterise_sim(model: &SensorModel) -> Result<SensorVerdict> {
    let mut rig = SimRig::new(PowerModel::default(), model.clone());
    let found = probe(&mut rig, 0.1, &ProbeOpts::default())?;
    let mut v = verdict(
        "sim",
        "sim",
        "sim: the sensor twin driven with a synthetic load on a virtual clock; recovers the twin's settings, \
         not a measurement",
        found,
    );
    v.details["twin_settings"] = serde_json::to_value(model)?;
    Ok(v)
}

/// `bench sensor` on GPU 0: the NVML counter under GEMM load (unverified on GPU).
pub fn characterise_gpu<B: crate::ops::Backend>(be: &B) -> Result<SensorVerdict> {
    use crate::energy::nvml::{NvmlSensor, Want};
    let sensor = NvmlSensor::open(0, Want::Counter)?;
    let ctx = sensor.context();
    let key = ctx["gpu_uuid"].as_str().unwrap_or("gpu0").to_string();
    let mut rig = GpuRig::new(be, Box::new(sensor), 2048)?;
    let found = probe(&mut rig, 0.1, &ProbeOpts::default())?;
    let mut v = verdict(&key, "nvml-counter", "measured: square-wave and phase-locked GEMM bursts on this GPU", found);
    v.details["device"] = ctx;
    Ok(v)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date: H. Hinnant's algorithm).
fn utc_now() -> String {
    fmt_utc(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64)
}

fn fmt_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The twin driven on a virtual clock: the load is one long "gemm" launch per step of time.
pub struct SimRig {
    twin: SimHandle,
    sensor: SimSensor,
    t: f64,
    tick: f64,
}

impl SimRig {
    pub fn new(power: PowerModel, sensor: SensorModel) -> SimRig {
        let twin = SimHandle::new(power, sensor, 0.0);
        let s = twin.sensor();
        SimRig { twin, sensor: s, t: 0.0, tick: 2.5e-4 }
    }
}

impl Rig for SimRig {
    fn now(&self) -> f64 {
        self.t
    }
    fn run_until(&mut self, t: f64, on: bool) -> Result<()> {
        if t <= self.t {
            return Ok(());
        }
        self.twin.begin(self.t);
        let k = [KernelTiming { name: "gemm", start_s: self.t, dur_s: t - self.t }];
        self.twin.observe(if on { &k } else { &[] }, t);
        self.t = t;
        self.twin.trim_before(t - 5.0);
        Ok(())
    }
    fn counter_j(&mut self) -> Result<f64> {
        match self.sensor.read(self.t)? {
            Reading::Counter { energy_j } => Ok(energy_j),
            Reading::Power(_) => bail!("the twin reads as a counter"),
        }
    }
    fn tick_s(&self) -> f64 {
        self.tick
    }
}

/// A GPU under load: back-to-back GEMMs of `n`³ on the backend (each waited for), the NVML counter and, where
/// the GPU has it, the instant power field beside it. Unverified on GPU.
pub struct GpuRig<'b, B: crate::ops::Backend> {
    be: &'b B,
    bufs: [B::Buf; 3],
    params: crate::ops::GemmParams,
    sensor: Box<dyn Sensor>,
    instant: Option<usize>,
    t0: std::time::Instant,
}

impl<'b, B: crate::ops::Backend> GpuRig<'b, B> {
    pub fn new(be: &'b B, sensor: Box<dyn Sensor>, n: usize) -> Result<Self> {
        let bufs = [be.upload(&vec![0.5f32; n * n])?, be.upload(&vec![0.25f32; n * n])?, be.alloc(n * n)?];
        let instant = sensor.check_labels().iter().position(|l| l.contains("(186)"));
        Ok(GpuRig {
            be,
            bufs,
            params: crate::ops::GemmParams::new(n, n, n, false, false),
            sensor,
            instant,
            t0: std::time::Instant::now(),
        })
    }
}

impl<B: crate::ops::Backend> Rig for GpuRig<'_, B> {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
    fn run_until(&mut self, t: f64, on: bool) -> Result<()> {
        while self.now() < t {
            if on {
                let [a, b, c] = &mut self.bufs;
                self.be.gemm(&self.params, self.be.view(a), self.be.view(b), self.be.view_mut(c))?;
                self.be.synchronize()?;
            } else {
                std::thread::sleep(std::time::Duration::from_secs_f64((t - self.now()).clamp(0.0, 2e-4)));
            }
        }
        Ok(())
    }
    fn counter_j(&mut self) -> Result<f64> {
        match self.sensor.read(self.now())? {
            Reading::Counter { energy_j } => Ok(energy_j),
            Reading::Power(_) => bail!("bench sensor needs an energy counter (nvml-counter); this sensor reads power"),
        }
    }
    fn instant_w(&mut self) -> Option<f64> {
        let i = self.instant?;
        let now = self.now();
        self.sensor.read_check(i, now).ok()?.last().map(|s| s.1)
    }
    fn tick_s(&self) -> f64 {
        5e-4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &str) -> SensorVerdict {
        let model = SensorModel::parse(spec).unwrap();
        let mut rig = SimRig::new(PowerModel::default(), model);
        let found = probe(&mut rig, 0.05, &ProbeOpts::default()).unwrap();
        verdict("sim", "sim", "sim", found)
    }

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(fmt_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_now().len(), 20);
    }

    #[test]
    fn recovers_a_continuous_counter() {
        let v = run("continuous:period=0.1,lag=0.01,quantum=0.001");
        assert!((v.update_period_s - 0.1).abs() < 0.01, "{v:?}");
        assert_eq!(v.integration, "continuous", "{}", v.details["ramp"]);
        assert!((v.lag_s.unwrap() - 0.01).abs() < 0.004, "lag {:?}", v.lag_s);
    }

    #[test]
    fn recovers_part_time_sampling_and_its_window() {
        let v = run("part-time:period=0.1,window=0.025,lag=0.005");
        assert!((v.update_period_s - 0.1).abs() < 0.01, "{v:?}");
        assert_eq!(v.integration, "part-time", "{}", v.details["ramp"]);
        let w = v.sampling_window_s.unwrap();
        assert!((w - 0.025).abs() < 0.0025, "window {w}");
        assert!((v.lag_s.unwrap() - 0.005).abs() < 0.004, "lag {:?}", v.lag_s);
        assert!(v.verdict.contains("part-time"), "{}", v.verdict);
        // Another period: 50 ms with a 10 ms window.
        let v = run("part-time:period=0.05,window=0.01");
        assert!((v.update_period_s - 0.05).abs() < 0.005, "{v:?}");
        assert!((v.sampling_window_s.unwrap() - 0.01).abs() < 0.001, "{v:?}");
    }
}

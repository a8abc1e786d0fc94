//! The meter on scripted sensors (deterministic counter and power sequences, no GPU), the estimate meter on
//! a real timed loop, and the calibration helper.

use anyhow::{anyhow, Result};
use powertrain::energy::{
    calibrate_per_launch, CalibrateOpts, EnergySource, KernelsCsv, Meter, MeterConfig, MeterOptions, Reading, Sensor,
    Stamp, StepEnergy, StepKernels, BETWEEN_KERNELS, BETWEEN_STEPS,
};
use powertrain::ops::{DeviceKind, KernelTiming};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A counter like NVML's: it updates every `period` s (at `phase + k * period`), holding the energy of a
/// constant `watts` since long ago, quantised to `quantum`; it may fail in a time range or reset at a time.
struct ScriptedCounter {
    period: f64,
    phase: f64,
    quantum: f64,
    watts: f64,
    fail: Option<(f64, f64)>,
    reset_at: Option<f64>,
    source: EnergySource,
    /// Reads so far (shared, to watch the sampler thread).
    reads: Arc<AtomicUsize>,
}

impl ScriptedCounter {
    fn new(period: f64, watts: f64) -> Self {
        ScriptedCounter {
            period,
            phase: 0.037,
            quantum: 1e-3,
            watts,
            fail: None,
            reset_at: None,
            source: EnergySource::NvmlCounter,
            reads: Arc::new(AtomicUsize::new(0)),
        }
    }
    fn last_update(&self, t: f64) -> f64 {
        self.phase + ((t - self.phase) / self.period).floor() * self.period
    }
}

impl Sensor for ScriptedCounter {
    fn source(&self) -> EnergySource {
        self.source
    }
    fn read(&mut self, now_s: f64) -> Result<Reading> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some((a, b)) = self.fail {
            if now_s >= a && now_s < b {
                return Err(anyhow!("scripted failure (like NVML_ERROR_GPU_IS_LOST)"));
            }
        }
        let tu = self.last_update(now_s);
        // The counter has been running for 1000 s.
        let mut e = self.watts * (tu + 1000.0);
        if let Some(r) = self.reset_at {
            if now_s >= r {
                e -= self.watts * (self.last_update(r) + 1000.0); // back to ~0 and counting again
            }
        }
        Ok(Reading::Counter { energy_j: (e / self.quantum).floor() * self.quantum })
    }
    fn quantum_j(&self) -> f64 {
        self.quantum
    }
    fn nominal_period_s(&self) -> Option<f64> {
        Some(self.period)
    }
}

/// Instant power samples every 1 ms up to the read time (like NVML's buffered samples).
struct ScriptedPower {
    power: fn(f64) -> f64,
    /// Index of the last sample returned (sample k is at k ms).
    last: i64,
}

impl Sensor for ScriptedPower {
    fn source(&self) -> EnergySource {
        EnergySource::NvmlPower
    }
    fn read(&mut self, now_s: f64) -> Result<Reading> {
        let mut v = Vec::new();
        while ((self.last + 1) as f64) * 1e-3 <= now_s + 1e-9 {
            self.last += 1;
            let t = self.last as f64 * 1e-3;
            v.push((Stamp::Clock(t), (self.power)(t - 0.5e-3)));
        }
        Ok(Reading::Power(v))
    }
    fn quantum_j(&self) -> f64 {
        0.0
    }
    fn nominal_period_s(&self) -> Option<f64> {
        Some(1e-3)
    }
}

fn cfg(source: &str, per_kernel: bool) -> MeterConfig {
    MeterConfig { source: source.into(), watts: None, per_kernel, device: DeviceKind::Cuda, gpu_ordinal: 0 }
}

fn scripted_meter(sensor: Box<dyn Sensor>, per_kernel: bool) -> Meter {
    let opts = MeterOptions { sampler: false, characterise: false, ..MeterOptions::default() };
    let mut m = Meter::with_sensor(cfg("nvml", per_kernel), sensor, opts);
    // Fix the clock so that begin_step does not re-align it (times below are scripted).
    m.set_clock(std::time::Instant::now());
    m
}

/// A 10 ms counter at 80 W on the meter's real clock, read by the sampler thread.
fn sampled_80w_counter_meter() -> Meter {
    Meter::with_sensor(
        cfg("nvml", false),
        Box::new(ScriptedCounter { phase: 0.0, ..ScriptedCounter::new(0.01, 80.0) }),
        MeterOptions { sampler: true, characterise: false, ..MeterOptions::default() },
    )
}

/// Back-to-back steps of `dt` from 0 to `n * dt`, with the sampler's reads every `poll` s in between.
fn run_steps(
    m: &mut Meter,
    n: usize,
    dt: f64,
    poll: Option<f64>,
    kernels: impl Fn(f64, f64) -> Vec<KernelTiming>,
) -> Vec<StepEnergy> {
    let mut out = Vec::new();
    for i in 0..n {
        let a = i as f64 * dt;
        let b = a + dt;
        m.begin_step(a);
        if let Some(p) = poll {
            let mut t = a + p;
            while t < b {
                let _ = m.poll(t);
                t += p;
            }
        }
        out.push(m.end_step(b, &kernels(a, b)));
    }
    out
}

fn sane(steps: &[StepEnergy]) {
    for s in steps {
        if let Some(e) = s.energy_j {
            assert!(e.is_finite() && e >= 0.0, "bad energy {e} ({})", s.method);
        }
        if let Some(u) = s.uncertainty_j {
            assert!(u.is_finite() && u >= 0.0, "bad uncertainty {u}");
        }
        for k in &s.kernels {
            if let Some(e) = k.energy_j {
                assert!(e.is_finite() && e >= 0.0, "bad kernel energy {e}");
            }
        }
    }
}

fn no_kernels(_: f64, _: f64) -> Vec<KernelTiming> {
    Vec::new()
}

#[test]
fn long_windows_report_the_quantised_counter_delta() {
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 200.0)), false);
    assert_eq!(m.source(), EnergySource::NvmlCounter);
    let steps = run_steps(&mut m, 6, 0.5, None, no_kernels);
    sane(&steps);
    for s in &steps {
        assert_eq!(s.method, "counter-delta");
        let e = s.energy_j.expect("energy");
        // 0.5 s at 200 W = 100 J; the counter steps every 0.1 s (20 J) and is quantised to 1 mJ.
        assert!((e - 100.0).abs() <= 20.0 + 1e-3, "step energy {e}");
        let u = s.uncertainty_j.expect("uncertainty");
        assert!(u >= 1e-3 && (e - 100.0).abs() <= u + 1e-9, "uncertainty {u} must cover the error of {e}");
    }
    let run = m.finish();
    assert_eq!(run.source, "nvml-counter");
    let total = run.total_j.expect("total");
    assert!((total - 600.0).abs() <= 20.0, "total {total}");
    let sum: f64 = steps.iter().filter_map(|s| s.energy_j).sum();
    assert!((sum - total).abs() < 1e-6, "steps {sum} vs total {total}");
}

#[test]
fn short_windows_are_not_a_silent_zero() {
    // 10 ms steps, counter updating every 100 ms at 200 W.
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 200.0)), false);
    let steps = run_steps(&mut m, 100, 0.01, None, no_kernels);
    sane(&steps);
    // Before the first update edge nothing is known: no number, labelled, never 0 J.
    assert!(steps[0].energy_j.is_none());
    assert!(steps[0].method.contains("not-updated-yet"), "{}", steps[0].method);
    let mut with = 0;
    for s in &steps[10..] {
        let e = s.energy_j.expect("energy after the first edge");
        assert!(s.method.contains("interpolated"), "{}", s.method);
        assert!(e > 0.5, "a 10 ms step at 200 W read as {e} J");
        let u = s.uncertainty_j.expect("uncertainty set");
        assert!(u > 0.0);
        with += 1;
    }
    assert_eq!(with, 90);
    // Steady state: a 10 ms window at 200 W is 2 J (after the carried residual is absorbed).
    let late: Vec<f64> = steps[50..].iter().map(|s| s.energy_j.unwrap()).collect();
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!((mean - 2.0).abs() < 0.05, "mean short-step energy {mean}");
    // Closure: steps plus the residual still carried equal the counter total within one update (20 J).
    let _ = m.poll(1.25);
    let run = m.finish();
    let total = run.total_j.unwrap();
    let sum: f64 = steps.iter().filter_map(|s| s.energy_j).sum();
    let resid = run.context.to_json()["unattributed_residual_j"].as_f64().unwrap();
    assert!((total - 200.0).abs() <= 20.0 + 1e-6, "total {total}");
    assert!((sum + resid - total).abs() <= 20.0, "steps {sum} + residual {resid} vs total {total}");
    assert!((sum - 200.0).abs() <= 10.0, "steps sum {sum} vs 200 J");
}

#[test]
fn counter_reset_marks_the_window_invalid() {
    let mut c = ScriptedCounter::new(0.1, 150.0);
    c.reset_at = Some(1.23);
    let mut m = scripted_meter(Box::new(c), false);
    let steps = run_steps(&mut m, 6, 0.5, Some(0.02), no_kernels);
    sane(&steps);
    // The step [1.0, 1.5] holds the reset.
    assert!(steps[2].energy_j.is_none(), "{:?}", steps[2]);
    assert!(steps[2].method.starts_with("invalid"), "{}", steps[2].method);
    for (i, s) in steps.iter().enumerate() {
        if i != 2 {
            let e = s.energy_j.expect("valid step");
            assert!(e < 150.0 * 0.5 + 20.0, "step {i}: {e} J is huge");
        }
    }
    let run = m.finish();
    assert!(run.total_j.is_none(), "no total across a reset");
    let lb = run.context.to_json()["total_lower_bound_j"].as_f64().unwrap();
    assert!(lb > 0.0 && lb < 450.0, "lower bound {lb}");
}

#[test]
fn sensor_failing_mid_run_is_labelled_not_faked() {
    let mut c = ScriptedCounter::new(0.1, 100.0);
    c.fail = Some((1.2, 2.2));
    let mut m = scripted_meter(Box::new(c), false);
    let steps = run_steps(&mut m, 8, 0.5, None, no_kernels);
    sane(&steps);
    // Edges at 1.5 and 2.0 fail: steps [1.0,1.5], [1.5,2.0] (end), [2.0,2.5] (start) have no number.
    for i in [2, 3, 4] {
        assert!(steps[i].energy_j.is_none(), "step {i}: {:?}", steps[i]);
        assert!(steps[i].method.starts_with("sensor-error"), "{}", steps[i].method);
    }
    for i in [0, 1, 5, 6, 7] {
        let e = steps[i].energy_j.expect("valid");
        assert!((e - 50.0).abs() <= 10.0 + 1e-3, "step {i}: {e}");
    }
    let run = m.finish();
    assert!(run.context.to_json()["read_errors"].as_u64().unwrap() >= 2);
    assert_eq!(run.context.to_json()["steps_without_energy"].as_u64().unwrap(), 3);
    // The counter kept counting through the failure: the run total is still the counter delta.
    assert!((run.total_j.unwrap() - 400.0).abs() <= 10.0);
}

/// Two kernels per 20 ms step: "hot" in the first 8 ms at 400 W, "cold" in the next 8 ms at 100 W,
/// 4 ms between (100 W).
fn square(t: f64) -> f64 {
    if (t.rem_euclid(0.02)) < 0.008 {
        400.0
    } else {
        100.0
    }
}

fn two_kernels(a: f64, _b: f64) -> Vec<KernelTiming> {
    vec![
        KernelTiming { name: "gemm", start_s: a, dur_s: 0.008 },
        KernelTiming { name: "relu_forward", start_s: a + 0.008, dur_s: 0.008 },
    ]
}

#[test]
fn per_kernel_parts_sum_to_the_step_and_follow_power() {
    let mut m = scripted_meter(Box::new(ScriptedPower { power: square, last: -50 }), true);
    assert_eq!(m.source(), EnergySource::NvmlPower);
    let steps = run_steps(&mut m, 50, 0.02, Some(0.005), two_kernels);
    sane(&steps);
    let mut step_sum = 0.0;
    for s in &steps[1..] {
        let e = s.energy_j.expect("energy");
        assert_eq!(s.method, "power-integral");
        let parts: f64 = s.kernels.iter().map(|k| k.energy_j.unwrap()).sum();
        assert!((parts - e).abs() <= 1e-3 * e, "parts {parts} vs step {e}");
        assert_eq!(s.kernels.len(), 3);
        let gap = s.kernels.iter().find(|k| k.name == BETWEEN_KERNELS).unwrap();
        assert!((gap.time_s - 0.004).abs() < 1e-9);
        let hot = s.kernels.iter().find(|k| k.name == "gemm").unwrap().energy_j.unwrap();
        let cold = s.kernels.iter().find(|k| k.name == "relu_forward").unwrap().energy_j.unwrap();
        // Same GPU time, 4x the power.
        assert!((hot / cold - 4.0).abs() < 0.2, "hot {hot} cold {cold}");
        // Each share carries an uncertainty: its part of the step's, plus how far the power weighting moved it
        // from a plain time split (the hot kernel holds 73 % of the energy in 40 % of the time).
        let su = s.uncertainty_j.unwrap();
        for k in &s.kernels {
            let (ke, ku) = (k.energy_j.unwrap(), k.uncertainty_j.expect("kernel uncertainty"));
            assert!(ku.is_finite() && ku >= ke / e * su - 1e-12, "{k:?}");
        }
        let hot_u = s.kernels.iter().find(|k| k.name == "gemm").unwrap().uncertainty_j.unwrap();
        assert!(hot_u >= (hot - 0.4 * e).abs(), "{hot_u} vs the time split's {}", 0.4 * e);
        step_sum += e;
    }
    let e0 = steps[0].energy_j.unwrap();
    step_sum += e0;
    // 0.02 s x (0.4 x 400 + 0.6 x 100) W = 4.4 J per step.
    assert!((steps[10].energy_j.unwrap() - 4.4).abs() < 0.05, "{:?}", steps[10].energy_j);
    let table = m.kernel_table();
    assert_eq!(table.get("gemm").unwrap().launches, 50);
    let table_sum: f64 = table.rows().map(|(_, t)| t.energy_j).sum();
    assert!((table_sum - step_sum).abs() <= 1e-3 * step_sum);
    m.add_flops("gemm", 50.0 * 2e9);
    let text = m.kernels_csv();
    assert!(text.starts_with(
        "name,launches,gpu_time_s,energy_j,j_per_launch,j_per_gflop,energy_uncertainty_j,timed_launches,method\n"
    ));
    assert!(text.contains(",time-proportional\n"), "no calibration: the split says it is by time");
    let csv = KernelsCsv::parse(&text, std::path::Path::new("kernels.csv")).unwrap();
    let gemm = csv.rows.iter().find(|r| r.name == "gemm").unwrap();
    assert_eq!(gemm.timed_launches, Some(50), "every launch was timed: {gemm:?}");
    assert!(gemm.energy_uncertainty_j.unwrap() > 0.0, "{gemm:?}");
    assert_eq!(gemm.launches, Some(50));
    let j = gemm.energy_j.unwrap();
    let jpg = gemm.j_per_gflop.unwrap();
    assert!((jpg - j / 100.0).abs() <= 1e-6 * j, "J/GFLOP {jpg} vs {j}/100");
    let run = m.finish();
    assert_eq!(run.source, "nvml-power");
    let total = run.total_j.unwrap();
    assert!((total - step_sum).abs() <= 0.01 * total, "total {total} vs steps {step_sum}");
}

#[test]
fn sampled_kernel_timing_stands_in_a_labelled_profile() {
    // --kernel-sample 10: steps 0, 1 (a profile and its spread) and every 10th are timed; the others take the
    // latest timed profile of their key. The timed gemm alternates between 8.4 ms and 8 ms.
    let mut m = scripted_meter(Box::new(ScriptedPower { power: square, last: -50 }), true);
    let key = 64;
    let mut steps = Vec::new();
    let mut timed_steps = 0;
    let mut gemm_of = Vec::new(); // the latest timed gemm time at each step
    for i in 0..40usize {
        let (a, b) = (i as f64 * 0.02, (i + 1) as f64 * 0.02);
        m.begin_step(a);
        let mut t = a + 0.005;
        while t < b {
            let _ = m.poll(t);
            t += 0.005;
        }
        let timed = i % 10 == 0 || m.kernel_profile_samples(key) < 2;
        let se = if timed {
            let gemm = if timed_steps % 2 == 1 { 0.008 } else { 0.0084 };
            timed_steps += 1;
            let k = vec![
                KernelTiming { name: "gemm", start_s: a, dur_s: gemm },
                KernelTiming { name: "relu_forward", start_s: a + gemm, dur_s: 0.008 },
            ];
            m.end_step_with(b, StepKernels::Timed(&k, Some(key)))
        } else {
            m.end_step_with(b, StepKernels::Profiled(key))
        };
        assert_eq!(se.kernels_timed, Some(timed), "step {i}");
        steps.push(se);
        gemm_of.push(if timed {
            if timed_steps % 2 == 0 {
                0.008
            } else {
                0.0084
            }
        } else {
            *gemm_of.last().unwrap()
        });
    }
    assert_eq!(timed_steps, 5); // steps 0, 1, 10, 20, 30
    sane(&steps);
    for (i, s) in steps.iter().enumerate().skip(2) {
        let e = s.energy_j.expect("energy");
        let parts: f64 = s.kernels.iter().map(|k| k.energy_j.unwrap()).sum();
        assert!((parts - e).abs() <= 1e-3 * e, "step {i}: parts {parts} vs step {e}");
        let gemm = s.kernels.iter().find(|k| k.name == "gemm").unwrap();
        let relu = s.kernels.iter().find(|k| k.name == "relu_forward").unwrap();
        assert_eq!((gemm.launches, relu.launches), (1, 1));
        // Untimed steps carry the profile's durations (the latest timed gemm) ...
        assert!((gemm.time_s - gemm_of[i]).abs() < 1e-12, "step {i}: {gemm:?}");
        // ... placed where the profile had them: gemm in the 400 W part, relu mostly in the 100 W part.
        let (hot, cold) = (gemm.energy_j.unwrap(), relu.energy_j.unwrap());
        assert!(hot / cold > 2.5, "step {i}: gemm {hot} relu {cold}");
    }
    // Step 11 (profiled) repeats timed step 10 exactly, but for the added spread: the gemm time moved from
    // 8 ms (step 1) to 8.4 ms (step 10), so 0.4 / 8 = 5 % of the gemm's share is added.
    let g = |i: usize| steps[i].kernels.iter().find(|k| k.name == "gemm").unwrap().clone();
    let (t10, p11) = (g(10), g(11));
    assert!((p11.energy_j.unwrap() - t10.energy_j.unwrap()).abs() < 1e-6 * t10.energy_j.unwrap());
    let added = p11.uncertainty_j.unwrap() - t10.uncertainty_j.unwrap();
    let want = 0.4 / 8.0 * p11.energy_j.unwrap();
    // (1 %: the steps' own half-widths differ a little, through the recent power in them.)
    assert!((added - want).abs() < 0.01 * want, "added {added}, want {want}");
    let csv = KernelsCsv::parse(&m.kernels_csv(), std::path::Path::new("kernels.csv")).unwrap();
    let gemm = csv.rows.iter().find(|r| r.name == "gemm").unwrap();
    assert_eq!((gemm.launches, gemm.timed_launches), (Some(40), Some(5)), "launches, timed_launches: {gemm:?}");
    // A key without a profile: the step keeps its energy, all of it between kernels, nothing invented.
    m.begin_step(0.8);
    let se = m.end_step_with(0.82, StepKernels::Profiled(7));
    assert_eq!(se.kernels_timed, Some(false));
    assert!(se.kernels.iter().all(|k| k.launches == 0), "{:?}", se.kernels);
    let parts: f64 = se.kernels.iter().filter_map(|k| k.energy_j).sum();
    assert!((parts - se.energy_j.unwrap()).abs() <= 1e-3 * parts.max(1e-9));
}

#[test]
fn counter_per_kernel_closure_and_labels() {
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 250.0)), true);
    let steps = run_steps(&mut m, 20, 0.05, Some(0.01), two_kernels);
    sane(&steps);
    for s in steps.iter().filter(|s| s.energy_j.is_some()) {
        let e = s.energy_j.unwrap();
        let parts: f64 = s.kernels.iter().map(|k| k.energy_j.unwrap()).sum();
        assert!((parts - e).abs() <= 1e-3 * e.max(1e-9), "parts {parts} vs {e}");
        // Gaps (60 % of a 50 ms step at constant power) go to the between-kernels row.
        let gap = s.kernels.iter().find(|k| k.name == BETWEEN_KERNELS).unwrap().energy_j.unwrap();
        assert!((gap / e - 0.68).abs() < 0.01, "gap share {}", gap / e);
    }
    // Steps without energy still carry kernel times and no made-up energy.
    for s in steps.iter().filter(|s| s.energy_j.is_none()) {
        assert!(s.kernels.iter().all(|k| k.energy_j.is_none()));
        assert!(s.kernels.iter().any(|k| k.time_s > 0.0));
    }
}

#[test]
fn estimate_meter_is_watts_times_time_on_a_timed_loop() {
    let mut c = cfg("estimate", false);
    c.watts = Some(50.0);
    let mut m = Meter::open(c).unwrap();
    assert_eq!(m.source(), EnergySource::Estimate);
    m.measure_idle(0.1).unwrap();
    let mut e = 0.0;
    let start = std::time::Instant::now();
    for _ in 0..10 {
        let a = m.now_s();
        m.begin_step(a);
        std::thread::sleep(std::time::Duration::from_millis(10));
        let b = m.now_s();
        let s = m.end_step(b, &[]);
        assert!(s.method.contains("estimate"), "{}", s.method);
        e += s.energy_j.unwrap();
    }
    // Wall time measured independently of the meter's clock.
    let wall = start.elapsed().as_secs_f64();
    assert!(wall > 0.09);
    assert!((e / wall - 50.0).abs() <= 0.02 * 50.0, "{} W", e / wall);
    let run = m.finish();
    assert_eq!(run.source, "estimate");
    assert!(run.idle_j.is_none(), "an estimate has no measured idle");
    assert!((run.total_j.unwrap() - e).abs() < 1e-9);
}

#[test]
fn explicit_sources_that_are_missing_are_errors_that_say_why() {
    let e = Meter::open(cfg("estimate", false)).err().unwrap().to_string();
    assert!(e.contains("--watts"), "{e}");
    // No GPU driver here: NVML fails to initialise.
    if let Err(e) = Meter::open(cfg("nvml", false)) {
        let s = format!("{e:#}");
        assert!(s.contains("NVML"), "{s}");
    }
    let e = Meter::open(cfg("joules", false)).err().unwrap().to_string();
    assert!(e.contains("auto, nvml, rapl, sim, estimate or none"), "{e}");
    // auto never picks an estimate.
    let m = Meter::open(cfg("auto", false)).unwrap();
    assert_ne!(m.source(), EnergySource::Estimate);
    let mut none = Meter::open(cfg("none", true)).unwrap();
    none.begin_step(0.0);
    let s = none.end_step(0.5, &two_kernels(0.0, 0.5));
    assert!(s.energy_j.is_none() && s.method == "none");
    assert!(s.kernels.iter().all(|k| k.energy_j.is_none()));
    let run = none.finish();
    assert!(run.total_j.is_none() && run.source == "none");
}

#[test]
fn idle_baseline_splits_the_total() {
    // A counter sensor driven by the meter's real clock: 80 W.
    let mut m = sampled_80w_counter_meter();
    m.measure_idle(0.3).unwrap();
    let p = m.idle_power_w().expect("idle power");
    assert!((p - 80.0).abs() < 8.0, "idle {p} W");
    let a = m.now_s();
    m.begin_step(a);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let b = m.now_s();
    let s = m.end_step(b, &[]);
    // Edge values come from the sampler's latest read (<= 40 ms old): off by at most a few 10 ms updates.
    let e = s.energy_j.expect("energy");
    assert!((e - 80.0 * (b - a)).abs() <= 4.0, "{e} J in {} s", b - a);
    let run = m.finish();
    assert!(run.context.to_json()["edge_reads"].as_str().unwrap().contains("non-blocking"));
    let (t, i, act) = (run.total_j.unwrap(), run.idle_j.unwrap(), run.active_j.unwrap());
    assert!(act >= 0.0 && (t - i - act).abs() < 1e-9 || act == 0.0);
    assert!((i - p * run.wall_s).abs() < 1e-9);
}

#[test]
fn a_paused_sampler_reads_nothing_and_a_resumed_one_meters_again() {
    // bench step --energy pauses a meter's sampler through the other modes' rounds.
    let sensor = ScriptedCounter { phase: 0.0, ..ScriptedCounter::new(0.01, 80.0) };
    let reads = sensor.reads.clone();
    let opts = MeterOptions { sampler: true, characterise: false, ..MeterOptions::default() };
    let mut m = Meter::with_sensor(cfg("nvml", false), Box::new(sensor), opts);
    std::thread::sleep(Duration::from_millis(60));
    assert!(reads.load(Ordering::Relaxed) >= 3, "the sampler reads every 10 ms");
    m.pause_sampler();
    let paused = reads.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(reads.load(Ordering::Relaxed), paused, "no read while paused");
    m.resume_sampler();
    m.break_window();
    std::thread::sleep(Duration::from_millis(30));
    let a = m.now_s();
    m.begin_step(a);
    std::thread::sleep(Duration::from_millis(200));
    let b = m.now_s();
    let s = m.end_step(b, &[]);
    assert!(reads.load(Ordering::Relaxed) >= paused + 10, "the sampler reads again");
    // The paused time belongs to no window, and the step is metered as before the pause.
    assert_eq!(s.gap_s, 0.0);
    let e = s.energy_j.expect("energy");
    assert!((e - 80.0 * (b - a)).abs() <= 4.0, "{e} J in {} s", b - a);
}

#[test]
fn calibration_gives_joules_per_launch_with_an_interval() {
    let mut c = cfg("estimate", false);
    c.watts = Some(40.0);
    let mut m = Meter::open(c).unwrap();
    let opts = CalibrateOpts { window_s: 0.05, windows: 3, seed: 1 };
    let cal = calibrate_per_launch(&mut m, &opts, || {
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(1)
    })
    .unwrap();
    // Each launch takes >= 2 ms at 40 W: >= 0.08 J, and sleeps overshoot by well under 3 ms here.
    assert!(cal.j_per_launch >= 0.08 && cal.j_per_launch < 0.4, "{cal:?}");
    assert!(cal.ci95_j.is_finite() && cal.ci95_j >= 0.0);
    assert_eq!(cal.windows, 3);
    assert!(cal.launches >= 3 * 5);
    assert_eq!(cal.source, "estimate");
    let mut none = Meter::open(cfg("none", false)).unwrap();
    assert!(calibrate_per_launch(&mut none, &opts, || Ok(1)).is_err());
}

/// Steps of `work` seconds with `gap` seconds of host time before each (loading the batch, writing records),
/// the sampler's reads every `poll` s throughout.
fn run_gapped_steps(
    m: &mut Meter,
    n: usize,
    gap: f64,
    work: f64,
    poll: f64,
    kernels: impl Fn(f64, f64) -> Vec<KernelTiming>,
) -> Vec<StepEnergy> {
    let mut out = Vec::new();
    let mut t = 0.0;
    for _ in 0..n {
        let next = t + gap;
        while t + poll < next {
            t += poll;
            let _ = m.poll(t);
        }
        let a = next;
        m.begin_step(a);
        let b = a + work;
        let mut p = a + poll;
        while p < b {
            let _ = m.poll(p);
            p += poll;
        }
        out.push(m.end_step(b, &kernels(a, b)));
        t = b;
    }
    out
}

#[test]
fn contiguous_windows_close_on_the_counter_total_with_host_gaps() {
    // 30 ms of host work before every 20 ms step (60 % of the time outside the step's own work), 250 W,
    // counter updating every 100 ms: windows must still sum to the counter's run total.
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 250.0)), true);
    let steps = run_gapped_steps(&mut m, 2000, 0.03, 0.02, 0.01, two_kernels);
    sane(&steps);
    let mut shares = Vec::new();
    for s in &steps[1..] {
        assert!((s.window_s - 0.05).abs() < 1e-9 && (s.gap_s - 0.03).abs() < 1e-9, "{s:?}");
        if let (Some(e), Some(g)) = (s.energy_j, s.gap_energy_j) {
            // Constant power: the gap holds 60 % of the window's energy (the timeline rebuilt from 100 ms
            // counter edges read every 10 ms is flat within a few per cent).
            assert!((g / e - 0.6).abs() < 0.05 || e == 0.0, "gap {g} of {e}");
            shares.push(g / e);
            let parts: f64 = s.kernels.iter().map(|k| k.energy_j.unwrap()).sum();
            assert!((parts - e).abs() <= 1e-9 * e.max(1.0), "parts {parts} vs {e}");
            let between = s.kernels.iter().find(|k| k.name == BETWEEN_STEPS).expect("between-steps row");
            assert!((between.energy_j.unwrap() - g).abs() <= 1e-9 * e.max(1.0));
            assert!((between.time_s - 0.03).abs() < 1e-9);
        }
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    assert!((mean - 0.6).abs() < 0.01, "mean gap share {mean}");
    // The first window starts at its own begin_step: no gap.
    assert_eq!(steps[0].gap_s, 0.0);
    let _ = m.poll(100.2);
    let run = m.finish();
    let total = run.total_j.expect("total");
    // 2000 x 50 ms - the first gap = 99.97 s at 250 W, within one counter update (25 J).
    assert!((total - 250.0 * 99.97).abs() <= 25.0 + 1e-6, "total {total}");
    let sum: f64 = steps.iter().filter_map(|s| s.energy_j).sum();
    let resid = run.context.to_json()["unattributed_residual_j"].as_f64().unwrap();
    // Closure over a 100 s run: attributed windows plus the carried residual equal the counter total within
    // 0.1 % (the counter's run total is itself only known to one update, 0.1 % here).
    assert!((sum + resid - total).abs() <= 1e-3 * total, "steps {sum} + residual {resid} vs total {total}");
    let closure = run.context.to_json()["closure"].as_f64().expect("closure");
    assert!((closure - 1.0).abs() <= 2e-3, "closure {closure}");
    assert!(steps.iter().filter(|s| s.energy_j.is_none()).count() <= 2, "only the first windows wait for an edge");
    assert!(run.context.to_json()["windows"].as_str().unwrap().starts_with("contiguous"));
    assert!((run.context.to_json()["gap_s"].as_f64().unwrap() - 1999.0 * 0.03).abs() < 1e-6);
    let table = m_kernel_rows(&steps);
    assert!(table > 0.0);
}

/// Sum of every per-kernel row over the steps (J).
fn m_kernel_rows(steps: &[StepEnergy]) -> f64 {
    steps.iter().flat_map(|s| s.kernels.iter()).filter_map(|k| k.energy_j).sum()
}

#[test]
fn windows_limited_to_the_step_leave_the_gaps_out_of_the_steps() {
    // The same run with contiguous windows off: each step holds only its 20 ms, the counter total still
    // covers the gaps, and the meter reports the shortfall through `closure` instead of hiding it.
    let opts = MeterOptions { sampler: false, characterise: false, contiguous: false, ..MeterOptions::default() };
    let mut m = Meter::with_sensor(cfg("nvml", false), Box::new(ScriptedCounter::new(0.1, 250.0)), opts);
    m.set_clock(std::time::Instant::now());
    let steps = run_gapped_steps(&mut m, 100, 0.03, 0.02, 0.01, no_kernels);
    sane(&steps);
    for s in &steps {
        assert_eq!(s.gap_s, 0.0);
        assert!((s.window_s - 0.02).abs() < 1e-9);
    }
    let late: Vec<f64> = steps[20..].iter().map(|s| s.energy_j.unwrap()).collect();
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!((mean - 5.0).abs() < 0.5, "20 ms at 250 W is 5 J, got {mean}");
    let _ = m.poll(5.2);
    let run = m.finish();
    assert!(run.context.to_json()["windows"].as_str().unwrap().starts_with("step work only"));
    let total = run.total_j.unwrap();
    assert!((total - 250.0 * 4.97).abs() <= 25.0 + 1e-6, "total {total}");
    // The steps hold 40 % of the time at constant power: closure reports the 60 % left out.
    let closure = run.context.to_json()["closure"].as_f64().expect("closure");
    assert!((closure - 0.4).abs() < 0.02, "closure {closure}");
}

#[test]
fn calibration_on_a_counter_divides_measured_window_energy() {
    // A 10 ms counter at 80 W on the meter's real clock, read by the sampler: each window's counter delta
    // over its launches. Launches of 2 ms: about 0.16 J each plus the loop's overhead.
    let mut m = sampled_80w_counter_meter();
    m.measure_idle(0.1).unwrap();
    let opts = CalibrateOpts { window_s: 0.25, windows: 3, seed: 7 };
    let cal = calibrate_per_launch(&mut m, &opts, || {
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(1)
    })
    .unwrap();
    assert_eq!(cal.source, "nvml-counter");
    assert!(cal.method.contains("counter"), "{}", cal.method);
    let expect = 80.0 * cal.seconds / cal.launches as f64;
    // Window edges come from the sampler's reads (a few 10 ms updates): within 10 %.
    assert!((cal.j_per_launch - expect).abs() <= 0.1 * expect, "{} vs {expect}", cal.j_per_launch);
    assert!(cal.ci95_j > 0.0 && cal.ci95_j < expect, "interval {}", cal.ci95_j);
    // All power is idle power here: the dynamic part is small.
    let dynamic = cal.dynamic_j_per_launch.expect("dynamic with an idle baseline");
    assert!(dynamic <= 0.15 * expect, "dynamic {dynamic} of {expect}");
}

/// A counter with a cross-check power reading that reads `check_w` (like NVML's instant field next to the
/// total-energy counter).
struct CounterWithCheck {
    inner: ScriptedCounter,
    check_w: f64,
    fail_check: bool,
}

impl Sensor for CounterWithCheck {
    fn source(&self) -> EnergySource {
        EnergySource::NvmlCounter
    }
    fn read(&mut self, now_s: f64) -> Result<Reading> {
        self.inner.read(now_s)
    }
    fn quantum_j(&self) -> f64 {
        self.inner.quantum_j()
    }
    fn nominal_period_s(&self) -> Option<f64> {
        self.inner.nominal_period_s()
    }
    fn check_labels(&self) -> Vec<String> {
        vec!["scripted instant power".into()]
    }
    fn check_interval_s(&self, _i: usize) -> f64 {
        0.025
    }
    fn state(&mut self) -> serde_json::Value {
        serde_json::json!({ "temperature_c": 71, "throttle_reasons": "SW_POWER_CAP" })
    }
    fn read_check(&mut self, _i: usize, _now_s: f64) -> Result<Vec<(Stamp, f64)>> {
        if self.fail_check {
            return Err(anyhow!("scripted: field not supported"));
        }
        Ok(vec![(Stamp::Now, self.check_w)])
    }
}

#[test]
fn counter_vs_integrated_power_gap_is_reported() {
    let s = CounterWithCheck { inner: ScriptedCounter::new(0.1, 200.0), check_w: 190.0, fail_check: false };
    let mut m = scripted_meter(Box::new(s), false);
    let steps = run_steps(&mut m, 100, 0.05, Some(0.01), no_kernels);
    sane(&steps);
    let _ = m.poll(5.2);
    let run = m.finish();
    let ctx = run.context.to_json();
    let pc = &ctx["power_check"];
    let r = &pc["readings"][0];
    assert_eq!(r["reading"], "scripted instant power");
    assert!(r["covered_fraction"].as_f64().unwrap() > 0.99, "{r}");
    // 190 W against a 200 W counter over 5 s: -5 %, within the counter's one-update edge (20 J of 1000 J).
    let gap = r["gap_rel"].as_f64().unwrap();
    assert!((gap + 0.05).abs() < 0.025, "gap {gap}");
    let integral = r["integral_j"].as_f64().unwrap();
    assert!((integral - 190.0 * 5.0).abs() < 190.0 * 0.05, "{integral}");
    // The check never feeds the step energies: those follow the counter (200 W x 50 ms = 10 J).
    let late: f64 = steps[20..].iter().map(|s| s.energy_j.unwrap()).sum::<f64>() / 80.0;
    assert!((late - 10.0).abs() < 0.3, "{late}");
    // The device's state at the end is recorded for thermal drift.
    assert_eq!(ctx["state_at_end"]["temperature_c"], 71);

    // A cross-check that fails is counted, not fatal, and gives no gap.
    let s = CounterWithCheck { inner: ScriptedCounter::new(0.1, 200.0), check_w: 0.0, fail_check: true };
    let mut m = scripted_meter(Box::new(s), false);
    let steps = run_steps(&mut m, 20, 0.05, Some(0.01), no_kernels);
    assert!(steps[5..].iter().all(|s| s.energy_j.is_some()));
    let run = m.finish();
    let ctx = run.context.to_json();
    let pc = &ctx["power_check"];
    assert!(pc["read_errors"].as_u64().unwrap() > 10);
    assert!(pc["readings"][0]["gap_rel"].is_null());
    assert!(run.total_j.is_some());
}

/// A device calibrator that "measures" given powers: gemm 300 W, relu_forward 100 W.
struct FakeDevice {
    asked: Vec<String>,
}

impl powertrain::energy::inplace::InPlaceCalibrator for FakeDevice {
    fn place(&self) -> &'static str {
        "the device"
    }
    fn calibrate(
        &mut self,
        todo: &[(String, String, f64)],
    ) -> Result<(powertrain::energy::powercal::PowerCalibration, powertrain::energy::powercal::CalibrationCost)> {
        use powertrain::energy::powercal::{CalibrationCost, KernelPowerRow, PowerCalibration};
        let mut c = PowerCalibration::new("GPU-fake", "nvml-counter", 60.0);
        c.gap_w = 60.0;
        for (name, shape, _) in todo {
            self.asked.push(name.clone());
            let power_w = if name == "gemm" { 300.0 } else { 100.0 };
            c.kernels.push(KernelPowerRow {
                name: name.clone(),
                shape: shape.clone(),
                power_w,
                ci95_w: 1.0,
                windows: 5,
                window_s: 0.5,
                launch_s: 0.008,
            });
        }
        Ok((c, CalibrationCost { kernels: todo.len(), device_s: 2.5 * todo.len() as f64, energy_j: 900.0, wall_s: 0.0 }))
    }
}

/// `train --per-kernel` on a sensor with no stored calibration: the training loop hands the meter the device's
/// calibrator before the first step; the split then follows the calibrated powers (gemm draws 3x relu, and
/// its share of each step is 3x relu's for the same time), and says where they came from and what they cost.
/// Without a calibrator the split is by time and says that none ran.
#[test]
fn a_sensor_meter_calibrates_the_device_before_the_first_step() {
    use powertrain::energy::EnergyOptions;
    let extra = EnergyOptions { shape: "pamap2/b64".into(), ..EnergyOptions::default() };
    let todo = |names: &[&str]| names.iter().map(|n| (n.to_string(), "pamap2/b64".to_string(), f64::NAN)).collect();
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 250.0)), true);
    m.setup_split(&extra).unwrap();
    assert!(m.wants_calibration_before_run());
    assert_eq!(m.split_shape(), "pamap2/b64");
    let mut dev = FakeDevice { asked: vec![] };
    m.calibrate_before_run(&mut dev, todo(&["gemm", "relu_forward"]));
    assert_eq!(dev.asked, ["gemm", "relu_forward"]);
    assert!(!m.wants_calibration_before_run(), "once");
    m.calibrate_before_run(&mut dev, todo(&["gemm"]));
    assert_eq!(dev.asked.len(), 2, "a second call does nothing");
    let steps = run_steps(&mut m, 30, 0.05, Some(0.01), two_kernels);
    let share = |s: &StepEnergy, n: &str| s.kernels.iter().find(|k| k.name == n).unwrap().energy_j.unwrap();
    let measured: Vec<&StepEnergy> = steps.iter().filter(|s| s.energy_j.is_some_and(|e| e > 0.0)).collect();
    assert!(!measured.is_empty());
    for s in &measured {
        let r = share(s, "gemm") / share(s, "relu_forward");
        assert!((r - 3.0).abs() < 1e-6, "gemm / relu = {r}: the calibrated 300 W / 100 W for equal times");
    }
    let run = m.finish();
    let split = run.kernel_split.unwrap();
    assert_eq!(split.method, "calibrated");
    assert!(split.calibration.contains("in place on the device"), "{}", split.calibration);
    assert_eq!(split.cost.unwrap().kernels, 2);

    // No calibrator handed over: by time, and it says none ran.
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 250.0)), true);
    m.setup_split(&extra).unwrap();
    let steps = run_steps(&mut m, 30, 0.05, Some(0.01), two_kernels);
    for s in steps.iter().filter(|s| s.energy_j.is_some_and(|e| e > 0.0)) {
        let r = share(s, "gemm") / share(s, "relu_forward");
        assert!((r - 1.0).abs() < 1e-6, "time split: equal times, equal shares ({r})");
    }
    let split = m.finish().kernel_split.unwrap();
    assert_eq!(split.method, "time-proportional");
    assert!(split.calibration.contains("none ran before the run"), "{}", split.calibration);

    // Without --per-kernel, nothing to calibrate.
    let mut m = scripted_meter(Box::new(ScriptedCounter::new(0.1, 250.0)), false);
    m.setup_split(&extra).unwrap();
    assert!(!m.wants_calibration_before_run());
}

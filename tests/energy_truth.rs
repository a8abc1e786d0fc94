//! Energy truth (issue 18): the meter against the sensor twin's ground truth. The meter reads only the
//! twin's counter (as it reads NVML); the twin knows every joule, so the attribution is checked against it.
//! Synthetic kernel timelines in simulated time (thousands of steps in a second), plus one real CPU training
//! through the binary.
use powertrain::energy::powercal::{calibrate_on_twin, CalibrationChoice, SimCalOpts};
use powertrain::energy::truth::AttributionError;
use powertrain::energy::twin::{Integration, KernelPower, PowerModel, SensorModel, SimHandle};
use powertrain::energy::{EnergyOptions, Meter, MeterConfig, MeterOptions, RunEnergy};
use powertrain::ops::{DeviceKind, KernelTiming};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// A training step's kernels: name and mean duration (s); about 20 ms a step.
const STEP: [(&str, f64); 10] = [
    ("conv2d_forward", 5e-3),
    ("conv2d_backward_data", 3e-3),
    ("conv2d_backward_filter", 4e-3),
    ("gemm", 3e-3),
    ("relu_forward", 0.8e-3),
    ("relu_backward", 0.8e-3),
    ("maxpool2d_forward", 1e-3),
    ("bias_forward", 0.4e-3),
    ("adam_step", 1.5e-3),
    ("softmax_xent", 0.3e-3),
];

const SHAPE: &str = "synth/b1";

/// A calibration file of the step's kernels on a twin of `power` and `sensor`, written into `dir`.
fn calibration(power: &PowerModel, sensor: &SensorModel, dir: &Path) -> CalibrationChoice {
    let ks: Vec<(String, String, f64)> = STEP.iter().map(|(n, d)| (n.to_string(), SHAPE.to_string(), *d)).collect();
    let (cal, cost) = calibrate_on_twin(power, sensor, &ks, &SimCalOpts::default()).unwrap();
    assert!(cost.device_s > 0.0 && cost.energy_j > 0.0);
    let f = dir.join("cal.json");
    cal.store(&f).unwrap();
    CalibrationChoice::File(f)
}

/// `steps` training steps of jittered kernels with host gaps, metered on a twin of `power` and `sensor`
/// (reads every 5 ms of simulated time, as the sampler would), split as `cal` says.
fn run(power: PowerModel, sensor: SensorModel, cal: CalibrationChoice, steps: usize) -> RunEnergy {
    let twin = SimHandle::new(power, sensor, 0.0);
    let cfg =
        MeterConfig { source: "sim".into(), watts: None, per_kernel: true, device: DeviceKind::Cpu, gpu_ordinal: 0 };
    let opts = MeterOptions { sampler: false, characterise: false, ..MeterOptions::default() };
    let extra = EnergyOptions { calibration: cal, shape: SHAPE.into(), ..EnergyOptions::default() };
    let mut m = Meter::with_twin(cfg, twin, opts, &extra).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut t = 0.5;
    let poll = |m: &mut Meter, from: f64, to: f64| {
        let mut x = from;
        while x < to {
            let _ = m.poll(x);
            x += 0.005;
        }
    };
    poll(&mut m, 0.0, t);
    for _ in 0..steps {
        let gap = rng.random_range(0.5e-3..1.5e-3);
        poll(&mut m, t, t + gap);
        t += gap;
        m.begin_step(t);
        let start = t;
        let mut ks = Vec::new();
        for (name, d) in STEP {
            let dur = d * rng.random_range(0.8..1.2);
            ks.push(KernelTiming { name, start_s: t, dur_s: dur });
            t += dur + 30e-6;
        }
        poll(&mut m, start, t);
        m.end_step(t, &ks);
    }
    m.finish()
}

fn err(r: &RunEnergy) -> &AttributionError {
    r.attribution_error.as_ref().expect("a sim run carries its attribution error")
}

fn print(label: &str, e: &AttributionError) {
    println!(
        "{label}: steps' median |err| {:.2} %, p95 {:.2} %, closure on the counter {:.4}, steps vs truth {:+.3} %",
        100.0 * e.step_rel_err_median.unwrap_or(f64::NAN),
        100.0 * e.step_rel_err_p95.unwrap_or(f64::NAN),
        e.closure_counter.unwrap_or(f64::NAN),
        100.0 * e.steps_vs_truth.unwrap_or(f64::NAN)
    );
    for k in &e.kernels {
        println!(
            "  {:<24} share {:5.1} %  attributed {:9.2} J  true {:9.2} J  err {:+6.2} %  +- {:.2} J  covered {:?}",
            k.name,
            100.0 * k.share,
            k.attributed_j,
            k.true_j,
            100.0 * k.rel_err.unwrap_or(f64::NAN),
            k.uncertainty_j.unwrap_or(f64::NAN),
            k.covered
        );
    }
}

#[test]
fn continuous_counter_calibrated_split_is_within_10_percent_and_steps_close_on_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (PowerModel::default(), SensorModel { seed: 3, ..SensorModel::default() });
    let r = run(p.clone(), s.clone(), calibration(&p, &s, dir.path()), 2000);
    let e = err(&r);
    print("continuous", e);
    assert!(e.windows >= 2000, "{}", e.windows);
    let big: Vec<_> = e.kernels.iter().filter(|k| k.share >= 0.05).collect();
    assert!(big.len() >= 4, "{big:?}");
    for k in &big {
        let re = k.rel_err.unwrap().abs();
        assert!(re <= 0.10, "{}: {:.1} % off the truth", k.name, 100.0 * re);
    }
    let closure = e.closure_counter.unwrap();
    assert!((closure - 1.0).abs() <= 0.005, "steps' sum over the twin counter: {closure}");
    let split = r.kernel_split.as_ref().unwrap();
    assert_eq!(split.method, "calibrated");
    let gap = split.additivity.as_ref().unwrap().gap_rel.unwrap();
    println!("additivity: calibrated model vs the counter's energy of the same steps: {:+.2} %", 100.0 * gap);
    assert!(gap.abs() < 0.05, "additivity gap {gap}");
}

#[test]
fn part_time_sampling_states_an_uncertainty_that_covers_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let p = PowerModel::default();
    let s = SensorModel {
        integration: Integration::PartTime { window_s: 0.025 },
        gain: 1.02,
        offset_w: 2.0,
        seed: 5,
        ..SensorModel::default()
    };
    let r = run(p.clone(), s.clone(), calibration(&p, &s, dir.path()), 2000);
    let e = err(&r);
    print("part-time 25 of 100 ms, gain 1.02, offset 2 W", e);
    let ks: Vec<_> = e.kernels.iter().filter(|k| k.covered.is_some()).collect();
    let covered = ks.iter().filter(|k| k.covered == Some(true)).count() as f64 / ks.len() as f64;
    println!("kernels within their 95 % interval: {:.0} % of {}", 100.0 * covered, ks.len());
    assert!(covered >= 0.9, "{covered}");
    // An interval that covers by being huge says nothing: the stated half-widths stay under 15 % of a share.
    let widths: Vec<f64> =
        e.kernels.iter().filter(|k| k.share >= 0.05).map(|k| k.uncertainty_j.unwrap() / k.attributed_j).collect();
    assert!(widths.iter().all(|w| *w < 0.15), "{widths:?}");
    // The error is reported: larger than with a continuous counter's gain of 1, and stated.
    assert!(e.kernel_max_rel_err.unwrap() > 0.0 && e.step_rel_err_p95.is_some());
    let u = r.context.totals().unwrap().uncertainty.as_ref().unwrap();
    assert!(u.sys_j.unwrap() > 0.0 && u.stat_j > 0.0);
    let total_err = (e.counter_j.unwrap() - e.true_sum_j).abs();
    assert!(total_err <= u.total_j, "run total off by {total_err} J, stated {} J", u.total_j);
}

#[test]
fn unequal_powers_make_a_time_split_wrong_and_the_calibrated_split_right() {
    let dir = tempfile::tempdir().unwrap();
    let k = |prefix: &str, dyn_w: f64| KernelPower { prefix: prefix.into(), dyn_w };
    // GEMM and convolutions draw 500 W above idle, everything else 10 W.
    let p = PowerModel {
        kernels: vec![k("gemm", 500.0), k("conv2d", 500.0)],
        default_dyn_w: 10.0,
        ..PowerModel::default()
    };
    let s = SensorModel { seed: 9, ..SensorModel::default() };
    let by_time = run(p.clone(), s.clone(), CalibrationChoice::Off, 1000);
    let calibrated = run(p.clone(), s.clone(), calibration(&p, &s, dir.path()), 1000);
    assert_eq!(by_time.kernel_split.as_ref().unwrap().method, "time-proportional");
    print("time-proportional", err(&by_time));
    print("calibrated", err(&calibrated));
    let of =
        |r: &RunEnergy, name: &str| err(r).kernels.iter().find(|k| k.name == name).and_then(|k| k.rel_err).unwrap();
    for name in ["gemm", "adam_step", "relu_forward"] {
        let (t, c) = (of(&by_time, name), of(&calibrated, name));
        println!("{name}: time-proportional {:+.1} %, calibrated {:+.1} %", 100.0 * t, 100.0 * c);
        assert!(t.abs() > 0.20, "{name}: a time split should be visibly wrong here ({t})");
        assert!(c.abs() <= 0.10, "{name}: calibrated {c}");
    }
}

#[test]
fn train_energy_sim_per_kernel_through_the_binary_records_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pamap2_data.safetensors");
    let fx = fx.to_str().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["train", "--model", "pamap2", "--data", fx, "--val", fx, "--device", "cpu", "--batch-size", "8"])
        .args(["--epochs", "2", "--energy", "sim", "--per-kernel", "--sim-sensor", "part-time:window=0.025"])
        .args(["--out", out.to_str().unwrap()])
        .env("POWERTRAIN_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("calibrating") && stderr.contains("simulated"),
        "says it calibrates and its cost: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("additivity"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["energy_source"], "sim");
    let ae = &summary["attribution_error"];
    assert!(ae["step_rel_err_median"].as_f64().is_some() && ae["closure_counter"].as_f64().is_some(), "{ae}");
    assert!(!ae["kernels"].as_array().unwrap().is_empty());
    assert_eq!(summary["kernel_split"]["method"], "calibrated");
    assert!(summary["kernel_split"]["cost"]["device_s"].as_f64().unwrap() > 0.0);
    let steps = std::fs::read_to_string(out.join("steps.jsonl")).unwrap();
    for l in steps.lines() {
        let s: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(s["true_energy_j"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["kernels"][0]["true_energy_j"].as_f64().is_some(), "{s}");
    }
    let csv = powertrain::energy::KernelsCsv::read(&out.join("kernels.csv")).unwrap();
    assert!(csv.has("true_energy_j") && csv.has("method"));
    assert!(csv.rows.iter().all(|r| r.method.as_deref() == Some("calibrated") && r.true_energy_j.is_some()));
    // A second run finds the calibration in the cache and does not calibrate again.
    let o2 = std::process::Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["train", "--model", "pamap2", "--data", fx, "--device", "cpu", "--batch-size", "8", "--epochs", "1"])
        .args(["--energy", "sim", "--per-kernel", "--sim-sensor", "part-time:window=0.025"])
        .env("POWERTRAIN_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(o2.status.success() && !String::from_utf8_lossy(&o2.stderr).contains("calibrating"));
}

#[test]
fn sim_flags_are_checked_before_any_work_and_name_the_flag() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pamap2_data.safetensors");
    let fx = fx.to_str().unwrap();
    for (extra, want) in [
        (vec!["--energy", "none", "--sim-sensor", "continuous"], "--sim-sensor applies to --energy sim"),
        (vec!["--energy", "sim", "--sim-sensor", "part-time:window=0.5"], "--sim-sensor"),
        (vec!["--energy", "sim", "--sim-model", "/nonexistent.json"], "--sim-model /nonexistent.json"),
        (vec!["--energy", "sim", "--calibration", "none"], "--calibration applies to per-kernel"),
        (vec!["--energy", "sim", "--per-kernel", "--calibration", "/nonexistent.json"], "--calibration"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_powertrain"))
            .args(["train", "--model", "pamap2", "--data", fx, "--device", "cpu"])
            .args(&extra)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(want), "{extra:?}: {e}");
    }
}

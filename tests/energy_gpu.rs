//! The NVML meter on a real GPU (ignored without one):
//! `cargo test --test energy_gpu -- --ignored --nocapture` on a machine with an NVIDIA driver.
//! It prints the probe report and the run context (update periods, device) for the log.

use powertrain::energy::{probe_report, probe_text, EnergySource, Meter, MeterConfig};
use powertrain::ops::DeviceKind;

#[test]
#[ignore = "needs an NVIDIA GPU and driver: cargo test --test energy_gpu -- --ignored --nocapture"]
fn nvml_meter_on_a_real_gpu() {
    let probe = probe_report();
    println!("{}", probe_text(&probe));
    assert_eq!(probe["nvml"]["available"], true, "{probe}");
    let cfg =
        MeterConfig { source: "nvml".into(), watts: None, per_kernel: false, device: DeviceKind::Cuda, gpu_ordinal: 0 };
    let mut m = Meter::open(cfg).expect("--energy nvml on a GPU");
    assert!(matches!(m.source(), EnergySource::NvmlCounter | EnergySource::NvmlPower));
    m.measure_idle(0.5).unwrap();
    let idle = m.idle_power_w().expect("idle power measured");
    assert!(idle > 5.0 && idle < 1500.0, "idle {idle} W");
    let mut sum = 0.0;
    for dt_ms in [5u64, 20, 50, 200, 5, 5, 5, 300, 500] {
        let a = m.now_s();
        let t = std::time::Instant::now();
        m.begin_step(a);
        let begin_cost = t.elapsed();
        std::thread::sleep(std::time::Duration::from_millis(dt_ms));
        let b = m.now_s();
        let t = std::time::Instant::now();
        let s = m.end_step(b, &[]);
        let end_cost = t.elapsed();
        println!(
            "{dt_ms:>4} ms: {:?} J +- {:?} ({}); begin_step {begin_cost:?}, end_step {end_cost:?}",
            s.energy_j, s.uncertainty_j, s.method
        );
        if let Some(e) = s.energy_j {
            assert!(e >= 0.0 && e < 1500.0 * (b - a) + 50.0, "{e} J in {} s", b - a);
            sum += e;
        }
    }
    let run = m.finish();
    println!("{}", serde_json::to_string_pretty(&run).unwrap());
    let total = run.total_j.expect("total");
    let w = total / run.wall_s;
    assert!(w > 5.0 && w < 1500.0, "mean power {w} W");
    let resid = run.context.to_json()["unattributed_residual_j"].as_f64().unwrap_or(0.0);
    assert!((sum + resid - total).abs() < 0.2 * total + 20.0, "steps {sum} + {resid} vs total {total}");
    // The counter's cross-checks: integrated instant power / buffered samples over the same window.
    if run.source == "nvml-counter" {
        let readings = run.context.to_json()["power_check"]["readings"].as_array().cloned().unwrap_or_default();
        assert!(!readings.is_empty(), "no power cross-check beside the counter: {}", run.context.to_json());
        for r in &readings {
            println!("counter vs {}: gap {:?}", r["reading"], r["gap_rel"]);
            if let Some(g) = r["gap_rel"].as_f64() {
                assert!(g.abs() < 0.5, "counter and integrated power differ by {g}: {r}");
            }
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver: cargo test --test energy_gpu -- --ignored --nocapture"]
fn nvml_power_path_on_a_real_gpu() {
    use powertrain::energy::nvml::{NvmlSensor, Want};
    use powertrain::energy::MeterOptions;
    let s = NvmlSensor::open(0, Want::Power).expect("NVML power reading");
    println!("power reading: {:?}", s.power_mode());
    let cfg =
        MeterConfig { source: "nvml".into(), watts: None, per_kernel: false, device: DeviceKind::Cuda, gpu_ordinal: 0 };
    let mut m = Meter::with_sensor(cfg, Box::new(s), MeterOptions::default());
    assert_eq!(m.source(), EnergySource::NvmlPower);
    m.measure_idle(0.5).unwrap();
    println!("idle {:?} W", m.idle_power_w());
    for dt_ms in [10u64, 100, 300] {
        let a = m.now_s();
        m.begin_step(a);
        std::thread::sleep(std::time::Duration::from_millis(dt_ms));
        let b = m.now_s();
        let st = m.end_step(b, &[]);
        println!("{dt_ms:>4} ms: {:?} J +- {:?} ({})", st.energy_j, st.uncertainty_j, st.method);
        assert!(!st.method.starts_with("sensor-error"), "{}", st.method);
    }
    let tl = m.power_timeline();
    println!("timeline points {} last {:?}", tl.len(), tl.last());
    let run = m.finish();
    println!("{}", serde_json::to_string_pretty(&run).unwrap());
    let w = run.total_j.expect("total") / run.wall_s;
    assert!(w > 5.0 && w < 1500.0, "mean power {w} W");
}

/// Mean GPU time per step of each op, the losses, and per step (first kernel start - step start, step end -
/// last kernel end).
type OpTimes = (std::collections::BTreeMap<&'static str, f64>, Vec<f32>, Vec<(f64, f64)>);

/// `OpTimes` of `steps` pamap2 training steps (batch 64) with `clock`.
fn op_times(be: &powertrain::ops::cuda::CudaBackend, clock: powertrain::ops::KernelClock, steps: usize) -> OpTimes {
    use powertrain::model::{Arch, Layout, Model, Optimizer};
    use powertrain::ops::prelude::*;
    let arch = Arch::parse("pamap2", 1).unwrap();
    let mut model = Model::new(be, arch, 64, &Layout::new(arch).init(3)).unwrap();
    let [c, h, w] = arch.input_shape();
    let x: Vec<f32> = (0..64 * c * h * w).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let y: Vec<i32> = (0..64).map(|i| i % 12).collect();
    model.load_batch(64, &x, &y, &[]).unwrap();
    let opt = Optimizer::parse("adam", 1e-3, 0.0, 0.0).unwrap();
    be.set_kernel_clock(clock).unwrap();
    be.set_kernel_timing(true);
    let mut sums = std::collections::BTreeMap::new();
    let mut losses = Vec::new();
    let mut spans = Vec::new();
    for i in 0..steps + 3 {
        let t0 = be.clock_s();
        losses.push(model.train_step(64, &opt).unwrap());
        let t1 = be.clock_s();
        let k = be.take_kernel_timings().unwrap();
        if i < 3 {
            continue; // warm-up: module loading, first anchors
        }
        let first = k.iter().map(|t| t.start_s).fold(f64::INFINITY, f64::min);
        let last = k.iter().map(|t| t.start_s + t.dur_s).fold(f64::NEG_INFINITY, f64::max);
        spans.push((first - t0, t1 - last));
        for t in k {
            assert!(t.dur_s >= 0.0 && t.dur_s < 0.1, "{t:?}");
            *sums.entry(t.name).or_insert(0.0) += t.dur_s / steps as f64;
        }
    }
    be.set_kernel_timing(false);
    be.set_kernel_clock(powertrain::ops::KernelClock::Events).unwrap();
    (sums, losses, spans)
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver: cargo test --test energy_gpu -- --ignored --nocapture"]
fn launch_stamps_agree_with_events_on_a_real_gpu() {
    use powertrain::ops::KernelClock;
    let be = powertrain::ops::cuda::CudaBackend::new(0).expect("a CUDA device");
    let (ev, loss_ev, span_ev) = op_times(&be, KernelClock::Events, 200);
    let (st, loss_st, span_st) = op_times(&be, KernelClock::Stamps, 200);
    // Stamps observe; they change nothing that is computed.
    assert_eq!(loss_ev, loss_st, "losses differ with launch stamps");
    println!("{:<24} {:>12} {:>12} {:>8}", "op", "events us", "stamps us", "ratio");
    let mut worst: f64 = 0.0;
    for (name, &e) in &ev {
        let s = st.get(name).copied().unwrap_or(f64::NAN);
        println!("{name:<24} {:>12.2} {:>12.2} {:>8.3}", e * 1e6, s * 1e6, s / e);
        // Events include the front end's launch time (~1-2 us per op); stamps cover first block start to last
        // block end. Agreement within 30 % or 3 us per op.
        let d = (s - e).abs();
        assert!(d <= 0.3 * e || d <= 3e-6, "{name}: events {e} s, stamps {s} s");
        worst = worst.max(d / e);
    }
    assert_eq!(ev.keys().collect::<Vec<_>>(), st.keys().collect::<Vec<_>>());
    // Both clocks map kernels inside the host's step window (within the anchor's half-width, ~10 us).
    for (label, spans) in [("events", &span_ev), ("stamps", &span_st)] {
        let lead = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let tail = spans.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
        println!(
            "{label}: first kernel starts >= {:.1} us after the step's start, last ends >= {:.1} us before its end",
            lead * 1e6,
            tail * 1e6
        );
        assert!(lead > -20e-6 && tail > -20e-6, "{label}: kernels mapped outside their step ({lead}, {tail})");
    }
    println!("largest relative difference {:.1} %", worst * 100.0);
}

//! The NVML meter on a real GPU (ignored without one):
//! `cargo test --test energy_gpu -- --ignored --nocapture` on a machine with an NVIDIA driver.
//! It prints the probe report and the run context (update periods, device) for the log.

use powertrain::backend::DeviceKind;
use powertrain::energy::{probe_report, probe_text, EnergySource, Meter, MeterConfig};

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
    let resid = run.context["unattributed_residual_j"].as_f64().unwrap_or(0.0);
    assert!((sum + resid - total).abs() < 0.2 * total + 20.0, "steps {sum} + {resid} vs total {total}");
    // The counter's cross-checks: integrated instant power / buffered samples over the same window.
    if run.source == "nvml-counter" {
        let readings = run.context["power_check"]["readings"].as_array().cloned().unwrap_or_default();
        assert!(!readings.is_empty(), "no power cross-check beside the counter: {}", run.context);
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

//! RAPL on a fake powercap tree (wraparound, zones, permissions), prediction math on synthetic epochs,
//! the carbon block and the probe report.

use powertrain::energy::rapl::{wrap_delta, RaplSensor};
use powertrain::energy::{
    carbon_block, probe_report, probe_report_with, probe_text, EnergySource, Meter, MeterConfig, MeterOptions,
    Predictor,
};
use powertrain::ops::DeviceKind;
use std::fs;
use std::path::Path;

fn zone(dir: &Path, name: &str, uj: u64, max: u64) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("name"), format!("{name}\n")).unwrap();
    fs::write(dir.join("energy_uj"), format!("{uj}\n")).unwrap();
    fs::write(dir.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
}

/// intel-rapl:0 (package-0) with a dram child, and intel-rapl:1 (psys, which must be ignored).
fn fake_powercap(root: &Path) {
    zone(&root.join("intel-rapl:0"), "package-0", 999_000, 1_000_000);
    zone(&root.join("intel-rapl:0").join("intel-rapl:0:0"), "dram", 10, 5_000_000);
    zone(&root.join("intel-rapl:0").join("intel-rapl:0:1"), "core", 0, 1_000_000);
    zone(&root.join("intel-rapl:1"), "psys", 123, 1_000_000);
}

fn set(root: &Path, rel: &str, uj: u64) {
    fs::write(root.join(rel).join("energy_uj"), format!("{uj}\n")).unwrap();
}

#[test]
fn wrap_delta_arithmetic() {
    assert_eq!(wrap_delta(100, 250, 1000), 150);
    // 999_000 -> 1_000_000 is 1000 µJ, the wrap to 0 one more, then 500.
    assert_eq!(wrap_delta(999_000, 500, 1_000_000), 1_501);
    assert_eq!(wrap_delta(7, 7, 1000), 0);
}

#[test]
fn rapl_reads_package_and_dram_across_a_wrap() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_powercap(root);
    let mut s = RaplSensor::open_at(root).unwrap();
    let names: Vec<&str> = s.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["package-0", "package-0/dram"]);
    assert_eq!(s.read_total_j().unwrap(), 0.0);
    set(root, "intel-rapl:0", 500); // wrapped: +1501 µJ
    set(root, "intel-rapl:0/intel-rapl:0:0", 2_010); // +2000 µJ
    set(root, "intel-rapl:1", 999_999); // psys: ignored
    let j = s.read_total_j().unwrap();
    assert!((j - 3_501e-6).abs() < 1e-12, "{j}");

    // Through the meter: a step whose window holds a wrap is a positive counter delta, labelled rapl.
    let cfg =
        MeterConfig { source: "rapl".into(), watts: None, per_kernel: false, device: DeviceKind::Cpu, gpu_ordinal: 0 };
    let opts = MeterOptions { sampler: false, characterise: false, ..MeterOptions::default() };
    let mut m = Meter::with_sensor(cfg, Box::new(RaplSensor::open_at(root).unwrap()), opts);
    m.set_clock(std::time::Instant::now());
    assert_eq!(m.source(), EnergySource::Rapl);
    let mut pkg = 500u64;
    let mut energies = Vec::new();
    for i in 0..5 {
        let a = i as f64 * 0.1;
        m.begin_step(a);
        // 0.1 s at 35 W on the package = 3.5 J = 3_500_000 µJ: wraps the 1 J range three times if read
        // once, so the sampler reads every 10 ms (0.35 J each).
        for k in 1..=10 {
            pkg = (pkg + 350_000) % 1_000_001;
            set(root, "intel-rapl:0", pkg);
            if k < 10 {
                m.poll(a + k as f64 * 0.01).unwrap();
            }
        }
        let s = m.end_step(a + 0.1, &[]);
        energies.push(s.energy_j.unwrap());
        assert_eq!(s.method, "counter-delta");
    }
    for e in &energies {
        assert!((e - 3.5).abs() < 1e-5, "{energies:?}");
    }
    let run = m.finish();
    assert_eq!(run.source, "rapl");
    assert!((run.total_j.unwrap() - 17.5).abs() < 1e-4);
}

#[test]
fn rapl_errors_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let e = format!("{:#}", RaplSensor::open_at(&tmp.path().join("missing")).unwrap_err());
    assert!(e.contains("no powercap"), "{e}");
    let e = format!("{:#}", RaplSensor::open_at(tmp.path()).unwrap_err());
    assert!(e.contains("no RAPL package zones"), "{e}");
    // Permission denied (only observable when not root: root reads mode-000 files).
    fake_powercap(tmp.path());
    let f = tmp.path().join("intel-rapl:0").join("energy_uj");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read_to_string(&f).is_err() {
        let e = format!("{:#}", RaplSensor::open_at(tmp.path()).unwrap_err());
        assert!(e.contains("CVE-2020-8694") && e.contains("--energy estimate --watts W"), "{e}");
    }
    let v = probe_report_with(tmp.path());
    assert_eq!(v["rapl"]["available"], serde_json::json!(fs::read_to_string(&f).is_ok()));
}

#[test]
fn probe_report_explains_missing_sources() {
    let v = probe_report();
    // No NVIDIA driver on the test machine: NVML is reported missing with its reason; on a GPU machine
    // the devices are listed.
    if v["nvml"]["available"] == serde_json::json!(false) {
        assert!(v["nvml"]["reason"].as_str().unwrap().contains("NVML"));
        assert_eq!(v["auto"]["cuda"], "none");
    } else {
        assert!(v["nvml"]["devices"].is_array());
    }
    let tmp = tempfile::tempdir().unwrap();
    fake_powercap(tmp.path());
    let v = probe_report_with(tmp.path());
    assert_eq!(v["rapl"]["available"], serde_json::json!(true));
    assert_eq!(v["auto"]["cpu"], "rapl");
    let text = probe_text(&v);
    assert!(text.contains("rapl: yes") && text.contains("estimate"), "{text}");
}

#[test]
fn carbon_needs_both_inputs_and_states_them() {
    assert!(carbon_block(Some(1.0), None, None).unwrap().is_null());
    assert!(carbon_block(Some(1.0), Some(400.0), None).is_err());
    assert!(carbon_block(Some(1.0), None, Some(1.2)).is_err());
    assert!(carbon_block(Some(1.0), Some(400.0), Some(0.9)).is_err());
    let v = carbon_block(Some(3.6e6), Some(400.0), Some(1.5)).unwrap();
    assert_eq!(v["carbon_intensity_g_per_kwh"], 400.0);
    assert_eq!(v["pue"], 1.5);
    assert!((v["co2e_g"].as_f64().unwrap() - 600.0).abs() < 1e-9);
    assert!((v["facility_energy_kwh"].as_f64().unwrap() - 1.5).abs() < 1e-12);
}

#[test]
fn prediction_to_the_epoch_limit() {
    let mut p = Predictor::new(1, 10, None);
    // Warm-up epoch is slower and costlier; it is excluded from the per-epoch mean.
    assert!(p.observe_epoch(1, Some(150.0), 15.0, None).is_none());
    assert!(p.observe_epoch(2, Some(100.0), 10.0, None).is_none());
    let pr = p.observe_epoch(3, Some(100.0), 10.0, None).unwrap();
    assert_eq!(pr.predicted_epochs, 10);
    assert!((pr.energy_j.unwrap() - (350.0 + 7.0 * 100.0)).abs() < 1e-9);
    assert!((pr.wall_s - (35.0 + 70.0)).abs() < 1e-9);
    // No spread in the steady epochs: a zero-width interval.
    assert!((pr.energy_hi_j.unwrap() - pr.energy_lo_j.unwrap()).abs() < 1e-9);
    let c = p.compare(Some(1050.0), 105.0, 10);
    assert_eq!(c["energy_error_pct"].as_f64().unwrap(), 0.0);
    assert_eq!(c["energy_within_interval"], true);
}

#[test]
fn prediction_to_a_target_with_noise() {
    // acc = 0.5 + 0.1 ln(epoch): 0.75 is reached at e^2.5 = 12.2, i.e. epoch 13; limit 30.
    let acc = |e: usize| 0.5 + 0.1 * (e as f64).ln();
    let energy = [120.0, 95.0, 105.0, 98.0, 102.0];
    let mut p = Predictor::new(1, 30, Some(0.75));
    let mut last = None;
    for (i, e) in energy.iter().enumerate() {
        let noise = if i % 2 == 0 { 0.004 } else { -0.004 };
        last = p.observe_epoch(i + 1, Some(*e), 10.0, Some(acc(i + 1) + noise));
    }
    let pr = last.unwrap();
    assert_eq!(pr.reaches_target, Some(true));
    assert!((12..=14).contains(&pr.predicted_epochs), "{pr:?}");
    assert!(pr.epochs_lo <= pr.predicted_epochs && pr.predicted_epochs <= pr.epochs_hi);
    let so_far: f64 = energy.iter().sum();
    let e = pr.energy_j.unwrap();
    assert!((e - (so_far + (pr.predicted_epochs - 5) as f64 * 100.0)).abs() < 1e-6, "{e}");
    assert!(pr.energy_lo_j.unwrap() < e && e < pr.energy_hi_j.unwrap());
    // The outcome (13 epochs at 100 J) lies inside the interval of the first prediction.
    let first = p.first().unwrap().clone();
    assert_eq!(first.made_after_epoch, 3);
    let actual = so_far + 8.0 * 100.0;
    let c = p.compare(Some(actual), 130.0, 13);
    assert_eq!(c["made"], true);
    assert!(c["energy_error_pct"].as_f64().unwrap().abs() < 60.0);

    // A target the fit never reaches: to the limit, reaches_target false.
    let mut p = Predictor::new(0, 8, Some(0.99));
    for e in 1..=3 {
        p.observe_epoch(e, None, 5.0, Some(0.6 - 0.01 * e as f64));
    }
    let pr = p.latest().unwrap();
    assert_eq!(pr.reaches_target, Some(false));
    assert_eq!(pr.predicted_epochs, 8);
    assert!(pr.energy_j.is_none(), "no energy source: no energy prediction");
    assert!((pr.wall_s - 40.0).abs() < 1e-9);
}

/// At the epoch limit with the target not yet reached, the prediction caps at the limit (this panicked in
/// `clamp(now + 1, limit)` when now == limit).
#[test]
fn prediction_at_the_last_epoch_caps_at_the_limit() {
    // The log fit of these accuracies crosses 0.6 before epoch 4, although epoch 4 itself is still under it.
    let mut p = powertrain::energy::predict::Predictor::new(1, 4, Some(0.6));
    let mut last = None;
    for (e, acc) in [(1, 0.3), (2, 0.5), (3, 0.58), (4, 0.59)] {
        last = p.observe_epoch(e, Some(10.0), 1.0, Some(acc));
    }
    assert!(last.is_none(), "at the epoch limit nothing is left to predict: {last:?}");
    let latest = p.latest().expect("a prediction after two post-warm-up epochs (epoch 3)");
    assert_eq!(latest.made_after_epoch, 3);
    assert_eq!(latest.predicted_epochs, 4);
}

/// A 3-epoch run with one warm-up epoch makes no prediction (it would be made at the last epoch, with
/// nothing left to predict and a zero-width interval); compare says why.
#[test]
fn no_prediction_at_the_last_epoch_of_a_short_run() {
    let mut p = Predictor::new(1, 3, None);
    for e in 1..=3 {
        assert!(p.observe_epoch(e, Some(10.0), 1.0, None).is_none(), "epoch {e}");
    }
    let c = p.compare(Some(30.0), 3.0, 3);
    assert_eq!(c["made"], false);
    assert!(c["reason"].as_str().unwrap().contains("at least 2"), "{c}");
}

/// The first prediction's 95 % interval covers the outcome at its stated rate on synthetic runs whose epochs
/// are independent draws of equal expected cost (energy 100 J +- 8 J, time 10 s +- 1 s; warm-up epoch costlier),
/// predicted after 2 post-warm-up epochs (t = 12.7) and after 4 (t = 3.18). With +-2 SE at 1 degree of freedom
/// this covered about 70 %.
#[test]
fn prediction_interval_covers_the_outcome_at_its_stated_rate() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
    let (ne, nw) = (Normal::new(100.0, 8.0).unwrap(), Normal::new(10.0, 1.0).unwrap());
    for min_epochs in [2usize, 4] {
        let trials = 2000;
        let (mut e_in, mut w_in) = (0, 0);
        for _ in 0..trials {
            let mut p = Predictor::new(1, 20, None);
            p.min_epochs = min_epochs;
            let (mut e_tot, mut w_tot) = (0.0, 0.0);
            for epoch in 1..=20 {
                let (e, w) = if epoch == 1 { (150.0, 15.0) } else { (ne.sample(&mut rng), nw.sample(&mut rng)) };
                e_tot += e;
                w_tot += w;
                p.observe_epoch(epoch, Some(e), w, None);
            }
            let c = p.compare(Some(e_tot), w_tot, 20);
            assert_eq!(c["prediction"]["made_after_epoch"], 1 + min_epochs as u64);
            e_in += (c["energy_within_interval"] == true) as usize;
            w_in += (c["wall_within_interval"] == true) as usize;
        }
        // Stated 95 %; 2000 trials give a binomial standard error of 0.5 %.
        for (what, k) in [("energy", e_in), ("time", w_in)] {
            let rate = k as f64 / trials as f64;
            assert!((0.93..=0.97).contains(&rate), "{what} after {min_epochs} epochs: coverage {rate}");
        }
    }
}

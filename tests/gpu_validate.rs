//! The dry run of `scripts/gpu-validate.sh` (`DEVICE=cpu ENERGY=sim QUICK=1`), so the GPU script never rots: every
//! step it can run on a CPU runs and succeeds (GPU-only steps say why they are skipped), the sensor probe on the
//! twin recovers its update period, and the summary ends.
use std::process::Command;

#[test]
fn gpu_validate_dry_run_on_cpu_and_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-validate.sh"))
        .env("DEVICE", "cpu")
        .env("ENERGY", "sim")
        .env("QUICK", "1")
        .env("OUT", &out)
        .env("BIN", env!("CARGO_BIN_EXE_powertrain"))
        .env("POWERTRAIN_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    assert!(o.status.success(), "{summary}\n{}", String::from_utf8_lossy(&o.stderr));
    for name in [
        "info",
        "sensor",
        "train_pamap2_off",
        "train_pamap2_step",
        "train_pamap2_kernel-events",
        "calibrate",
        "bench_step",
    ] {
        let line = summary.lines().find(|l| l.split_whitespace().next() == Some(name));
        let line = line.unwrap_or_else(|| panic!("no line for {name}:\n{summary}"));
        assert!(line.contains("rc=0 "), "{line}\n{summary}");
    }
    for gpu_only in ["context", "stamps"] {
        assert!(summary.lines().any(|l| l.starts_with(gpu_only) && l.contains("skipped")), "{gpu_only}:\n{summary}");
    }
    assert!(summary.contains("== done"), "{summary}");
    // The per-kernel run trained on the twin (--energy sim) with a calibrated split and its additivity check.
    assert!(summary.contains("additivity: {"), "{summary}");
    // Its kernel split says how it was made: calibrated in place (on the twin here) before the first split,
    // and what that cost.
    let split = summary.lines().find(|l| l.contains("run_pamap2_kernel-events: kernel_split:"));
    let split = split.unwrap_or_else(|| panic!("no kernel_split line:\n{summary}"));
    assert!(split.contains("calibrated | in place on the twin") && split.contains("\"device_s\""), "{split}");
    // The twin's default counter updates every 100 ms: the probe finds it within 10 %.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("r/sensor.json")).unwrap()).unwrap();
    let p = v["update_period_s"].as_f64().unwrap();
    assert!((p - 0.1).abs() < 0.01, "update period {p}");
    assert_eq!(v["integration"], "continuous");
    assert!(dir.path().join("cache/sensor/sim.json").is_file(), "the verdict is stored");
}

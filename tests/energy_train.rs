//! The estimate meter on a real CPU training run through the command line: every window is --watts x its
//! time, the windows (steps and evaluations) close on the run total, energy over wall time is --watts within
//! 2 %, and the per-kernel rows of every step sum to the step.

use std::path::Path;
use std::process::Command;

#[test]
fn estimate_on_a_real_cpu_run_is_watts_times_wall_time_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pamap2_data.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["train", "--model", "pamap2", "--data", fx.to_str().unwrap(), "--val", fx.to_str().unwrap()])
        .args(["--device", "cpu", "--batch-size", "8"])
        .args([
            "--epochs",
            "2",
            "--energy",
            "estimate",
            "--watts",
            "40",
            "--per-kernel",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["energy_source"], "estimate");
    let total = summary["total_energy_j"].as_f64().unwrap();
    let wall = summary["wall_s"].as_f64().unwrap();
    assert!((total / wall - 40.0).abs() <= 0.02 * 40.0, "{total} J over {wall} s = {} W", total / wall);
    let ctx = &summary["energy_context"];
    assert!((ctx["closure"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{ctx}");
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(out.join("steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(steps.len() >= 4);
    let mut sum = 0.0;
    for (i, s) in steps.iter().enumerate() {
        let e = s["energy_j"].as_f64().unwrap();
        let (win, gap, busy) =
            (s["window_s"].as_f64().unwrap(), s["gap_s"].as_f64().unwrap(), s["wall_s"].as_f64().unwrap());
        assert!((e - 40.0 * win).abs() <= 1e-9 * e.max(1.0), "step {i}: {e} J in {win} s");
        assert!((win - gap - busy).abs() < 1e-6, "step {i}: window {win} = gap {gap} + step {busy}");
        assert!(s["energy_method"].as_str().unwrap().contains("estimate"));
        if i == 0 {
            assert_eq!(gap, 0.0, "the first window starts at the first step");
        } else {
            assert!(gap > 0.0, "step {i}: loading the batch takes some time");
        }
        let parts: f64 = s["kernels"].as_array().unwrap().iter().map(|k| k["energy_j"].as_f64().unwrap()).sum();
        assert!((parts - e).abs() <= 1e-6 * e.max(1e-3), "step {i}: kernel rows {parts} vs {e}");
        sum += e;
    }
    // Steps plus evaluations (epochs.csv) make the total.
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    let eval: f64 = epochs.lines().skip(1).map(|l| l.split(',').nth(7).unwrap().parse::<f64>().unwrap()).sum();
    assert!(eval > 0.0, "evaluations are metered windows too");
    assert!((sum + eval - total).abs() <= 1e-6 * total, "steps {sum} + evaluations {eval} vs total {total}");
    // kernels.csv has the between-steps row with energy.
    let csv = std::fs::read_to_string(out.join("kernels.csv")).unwrap();
    let row = csv.lines().find(|l| l.starts_with("(between steps),")).expect("between-steps row");
    assert!(row.split(',').nth(3).unwrap().parse::<f64>().unwrap() > 0.0, "{row}");
    // An estimate has no measured uncertainty: the column is there and empty, never a made-up number.
    assert!(csv.lines().skip(1).all(|l| l.split(',').nth(6) == Some("")), "{csv}");
    assert!(steps[1]["kernels"][0].get("uncertainty_j").is_none());
}

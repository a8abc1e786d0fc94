//! The estimate meter on a real CPU training run through the command line: every window is --watts x its
//! time, the windows (steps and evaluations) close on the run total, energy over wall time is --watts within
//! 2 %, and the per-kernel rows of every step sum to the step.

use powertrain::energy::KernelsCsv;
use std::path::Path;
use std::process::Command;

/// `powertrain train` of the pamap2 fixture on the CPU, batch 8, 2 epochs, `--energy estimate --watts 40`,
/// plus `extra`, into `out`.
fn train(extra: &[&str], out: &Path) -> std::process::Output {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pamap2_data.safetensors");
    Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["train", "--model", "pamap2", "--data", fx.to_str().unwrap(), "--val", fx.to_str().unwrap()])
        .args(["--device", "cpu", "--batch-size", "8", "--epochs", "2", "--energy", "estimate", "--watts", "40"])
        .args(extra)
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn estimate_on_a_real_cpu_run_is_watts_times_wall_time_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train(&["--per-kernel"], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["energy_source"], "estimate");
    let total = summary["total_energy_j"].as_f64().unwrap();
    let wall = summary["wall_s"].as_f64().unwrap();
    let ctx = &summary["energy_context"];
    // The estimate is --watts x the metered windows' time exactly; the windows cover the run but for the
    // moments before the first step and after the last evaluation (a few ms, more on a loaded machine).
    let metered = ctx["busy_s"].as_f64().unwrap() + ctx["gap_s"].as_f64().unwrap();
    assert!((total - 40.0 * metered).abs() <= 1e-6 * total, "{total} J vs 40 W x {metered} s");
    assert!(metered <= wall + 1e-9 && metered >= 0.75 * wall, "windows {metered} s of a {wall} s run");
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
    let csv = KernelsCsv::read(&out.join("kernels.csv")).unwrap();
    let row = csv.rows.iter().find(|r| r.name == "(between steps)").expect("between-steps row");
    assert!(row.energy_j.unwrap() > 0.0, "{row:?}");
    // An estimate has no measured uncertainty: the column is there and empty, never a made-up number.
    assert!(csv.has("energy_uncertainty_j") && csv.rows.iter().all(|r| r.energy_uncertainty_j.is_none()), "{csv:?}");
    // J per GFLOP counts the FLOPs of every launch in the energy: the convolutions' forward runs in the training
    // steps and in the evaluations (here of the same samples), their backward-filter in the steps only, and both
    // are linear in the batch, so the GFLOP behind conv2d_forward is twice that behind conv2d_backward_filter.
    let gflop = |name: &str| {
        let r = csv.rows.iter().find(|r| r.name == name).unwrap();
        r.energy_j.unwrap() / r.j_per_gflop.unwrap()
    };
    let ratio = gflop("conv2d_forward") / gflop("conv2d_backward_filter");
    assert!((ratio - 2.0).abs() < 1e-3, "forward / backward-filter GFLOP {ratio}");
    assert!(steps[1]["kernels"][0].get("uncertainty_j").is_none());
}

#[test]
fn kernel_sample_times_every_nth_step_and_labels_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train(&["--per-kernel", "--kernel-sample", "3"], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kernel_sample"], 3);
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(out.join("steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut last_timed: std::collections::HashMap<u64, Vec<(String, u64)>> = Default::default();
    let (mut timed_kernel_launches, mut untimed) = (0u64, 0);
    for (i, s) in steps.iter().enumerate() {
        let timed = s["kernels_timed"].as_bool().expect("kernels_timed on every per-kernel step");
        let n = s["batch_size"].as_u64().unwrap();
        let launches: Vec<(String, u64)> = s["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["launches"].as_u64().unwrap() > 0)
            .map(|k| (k["name"].as_str().unwrap().to_string(), k["launches"].as_u64().unwrap()))
            .collect();
        let first_two = steps[..i].iter().filter(|p| p["batch_size"].as_u64() == Some(n)).count() < 2;
        assert_eq!(timed, i % 3 == 0 || first_two, "step {i} (batch {n})");
        let e = s["energy_j"].as_f64().unwrap();
        let parts: f64 = s["kernels"].as_array().unwrap().iter().map(|k| k["energy_j"].as_f64().unwrap()).sum();
        assert!((parts - e).abs() <= 1e-6 * e.max(1e-3), "step {i}: kernel rows {parts} vs {e}");
        if timed {
            timed_kernel_launches += launches.iter().map(|(_, l)| l).sum::<u64>();
            last_timed.insert(n, launches);
        } else {
            untimed += 1;
            // The stand-in is the latest timed step of the same batch size, launch for launch.
            assert_eq!(Some(&launches), last_timed.get(&n), "step {i}");
        }
    }
    assert!(untimed >= steps.len() / 3, "{untimed} of {} steps untimed", steps.len());
    // kernels.csv: every launch counted, the timed ones apart (evaluations are always timed).
    let csv = KernelsCsv::read(&out.join("kernels.csv")).unwrap();
    let (all, timed): (u64, u64) = csv
        .rows
        .iter()
        .filter(|r| !r.name.starts_with('('))
        .map(|r| (r.launches.unwrap(), r.timed_launches.unwrap()))
        .fold((0, 0), |(a, t), (x, y)| (a + x, t + y));
    assert!(timed < all, "timed {timed} of {all}");
    assert!(timed >= timed_kernel_launches, "timed {timed} vs {timed_kernel_launches} in timed steps");
    // summary.json says the same, and the run's report line.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let k = &summary["energy_context"]["kernel_timing"];
    assert_eq!((k["clock"].as_str(), k["sample"].as_u64()), (Some("wall clock"), Some(3)), "{k}");
    assert_eq!((k["launches"].as_u64(), k["timed_launches"].as_u64()), (Some(all), Some(timed)), "{k}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = format!("{timed} of {all} launches timed");
    assert!(stdout.contains("1 step in 3 timed") && stdout.contains(&line), "{stdout}");

    // Bad uses: clear errors, nothing written.
    for (extra, want) in [
        (&["--kernel-sample", "3"][..], "add --per-kernel"),
        (&["--per-kernel", "--kernel-sample", "0"][..], "at least 1"),
    ] {
        let bad = dir.path().join("bad");
        let o = train(extra, &bad);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("--kernel-sample") && err.contains(want), "{err}");
        assert!(!bad.exists(), "{extra:?} left {}", bad.display());
    }
}

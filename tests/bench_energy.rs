//! `powertrain bench kernels --energy` (calibration mode) through the real command line, on the CPU with the
//! labelled estimate source (this machine has no GPU and usually no readable RAPL): joules per launch that
//! follow from the windows, an interval, the comparison with a run's in-training attribution, and clean errors.

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_powertrain")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "powertrain panicked: {err}");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), err)
}

fn error_line(args: &[&str]) -> String {
    let (ok, _, err) = run(args);
    assert!(!ok, "expected failure for {args:?}");
    err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line in {err:?}")).to_string()
}

const CAL: [&str; 14] = [
    "bench",
    "kernels",
    "--device",
    "cpu",
    "--energy",
    "--energy-source",
    "estimate",
    "--watts",
    "40",
    "--windows",
    "3",
    "--window-s",
    "0.1",
    "--json",
];

#[test]
fn estimate_calibration_is_watts_times_window_time_per_launch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cal.json");
    let mut args = CAL.to_vec();
    let o = out.to_str().unwrap();
    args.extend_from_slice(&["--model", "pamap2", "--batch-size", "16", "--kernel", "relu_forward,gemm", "--out", o]);
    let (ok, stdout, err) = run(&args);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // --out holds the same document.
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(saved["rows"], doc["rows"]);
    assert_eq!(doc["energy"]["source"], "estimate");
    let rows = doc["rows"].as_array().unwrap();
    // pamap2: relu_forward on 3 conv layers and fc1, 3 gemms per fc layer.
    assert_eq!(rows.len(), 4 + 6, "{rows:?}");
    for r in rows {
        let e = &r["energy"];
        let (jpl, ci) = (e["j_per_launch"].as_f64().unwrap(), e["ci95_j"].as_f64().unwrap());
        let (launches, secs) = (e["launches"].as_f64().unwrap(), e["seconds"].as_f64().unwrap());
        assert_eq!(e["windows"], 3);
        assert!(e["source"] == "estimate" && e["method"].as_str().unwrap().contains("repeat-and-divide"));
        assert!(secs >= 0.3, "three windows of at least 0.1 s: {secs}");
        // The estimate is 40 W x window time: over all windows, 40 W x their seconds / their launches.
        let overall = 40.0 * secs / launches;
        assert!((jpl - overall).abs() <= 1e-6 * overall, "{jpl} J/launch vs 40 W x {secs} s / {launches}");
        // A launch cannot cost less than 40 W x (a good share of) its median time.
        let ms = r["median_ms"].as_f64().unwrap();
        assert!(jpl >= 0.3 * 40.0 * ms / 1e3, "{jpl} J for a {ms} ms launch at 40 W");
        assert!(ci.is_finite() && ci >= 0.0);
    }
    // The table form labels the estimate.
    let mut args = CAL.to_vec();
    args.retain(|a| *a != "--json");
    args.extend_from_slice(&["--model", "pamap2", "--batch-size", "16", "--kernel", "softmax_xent"]);
    let (ok, stdout, err) = run(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("ESTIMATE") && stdout.contains("J/launch"), "{stdout}");
}

#[test]
fn compare_sets_calibration_beside_the_runs_attribution() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pamap2_data.safetensors");
    let run_dir = d.join("run");
    let plain = d.join("plain");
    let train = |out: &Path, per_kernel: bool| {
        let mut a = vec![
            "train",
            "--model",
            "pamap2",
            "--data",
            fx.to_str().unwrap(),
            "--device",
            "cpu",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--energy",
            "estimate",
            "--watts",
            "40",
            "--out",
            out.to_str().unwrap(),
        ];
        if per_kernel {
            a.push("--per-kernel");
        }
        let (ok, _, err) = run(&a);
        assert!(ok, "{err}");
    };
    train(&run_dir, true);
    train(&plain, false);
    let mut args = CAL.to_vec();
    args.extend_from_slice(&["--kernel", "gemm,adam_step", "--compare", run_dir.to_str().unwrap()]);
    let (ok, stdout, err) = run(&args);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // The run's model and batch size were used.
    let rows = doc["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["model"] == "pamap2" && r["batch"] == 16));
    let cmp = doc["comparison"].as_array().unwrap();
    let gemm = cmp.iter().find(|c| c["kernel"] == "gemm").unwrap();
    assert_eq!(gemm["cases"], 6);
    let (cal, att) = (gemm["calibrated_j"].as_f64().unwrap(), gemm["attributed_j"].as_f64().unwrap());
    let ratio = gemm["ratio"].as_f64().unwrap();
    assert!((ratio - att / cal).abs() < 1e-9 * ratio.abs().max(1.0));
    // Same watts on both sides: per launch they agree within an order of magnitude (caches and the sync
    // after each batch differ; the ratio is what the comparison is for).
    assert!(ratio > 0.1 && ratio < 10.0, "ratio {ratio}");
    // The run used adam: its adam_step is compared, sgd is not calibrated.
    assert!(cmp.iter().any(|c| c["kernel"] == "adam_step" && c["ratio"].is_number()));
    assert!(rows.iter().all(|r| r["kernel"] != "sgd_step"));

    // Errors name the file and what to do.
    let l = error_line(&[&CAL[..], &["--compare", plain.to_str().unwrap()]].concat());
    assert!(l.contains("kernels.csv") && l.contains("--per-kernel"), "{l}");
    let missing = d.join("nope");
    let l = error_line(&[&CAL[..], &["--compare", missing.to_str().unwrap()]].concat());
    assert!(l.contains("config.json") && l.contains("powertrain train --out"), "{l}");
    let l = error_line(&[&CAL[..], &["--compare", run_dir.to_str().unwrap(), "--batch-size", "64"]].concat());
    assert!(l.contains("batch size 16"), "{l}");
    // A corrupt kernels.csv is an error naming the file and the line, not a comparison with holes.
    let csv_path = run_dir.join("kernels.csv");
    let good = std::fs::read_to_string(&csv_path).unwrap();
    let gemm_line = 1 + good.lines().position(|l| l.starts_with("gemm,")).unwrap();
    std::fs::write(&csv_path, good.replace("\ngemm,", "\ngemm,x")).unwrap();
    let l = error_line(&[&CAL[..], &["--compare", run_dir.to_str().unwrap()]].concat());
    assert!(l.contains("kernels.csv") && l.contains(&format!("line {gemm_line}:")), "{l}");
    std::fs::write(&csv_path, good).unwrap();
    // A CPU run is not compared with a GPU calibration.
    let cfg_path = run_dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace("\"device\": \"cpu\"", "\"device\": \"cuda\"");
    std::fs::write(&cfg_path, cfg).unwrap();
    let l = error_line(&[&CAL[..], &["--compare", run_dir.to_str().unwrap()]].concat());
    assert!(l.contains("trained on cuda") && l.contains("--device cuda"), "{l}");
}

#[test]
fn calibration_flags_are_checked() {
    let l = error_line(&["bench", "kernels", "--device", "cpu", "--watts", "40"]);
    assert!(l.contains("needs --energy"), "{l}");
    let l = error_line(&["bench", "step", "--device", "cpu", "--watts", "40"]);
    assert!(l.contains("need --energy"), "{l}");
    let l = error_line(&["bench", "step", "--device", "cpu", "--energy", "--energy-source", "none"]);
    assert!(l.contains("no energy source") && l.contains("--energy-source estimate --watts"), "{l}");
    let l = error_line(&["bench", "step", "--device", "cpu", "--energy", "--windows", "2"]);
    assert!(l.contains("bench kernels"), "{l}");
    let l = error_line(&[
        "bench",
        "kernels",
        "--device",
        "cpu",
        "--energy",
        "--windows",
        "1",
        "--energy-source",
        "estimate",
        "--watts",
        "5",
    ]);
    assert!(l.contains("at least 2 windows"), "{l}");
    let l = error_line(&["bench", "kernels", "--device", "cpu", "--energy", "--energy-source", "estimate"]);
    assert!(l.contains("--watts"), "{l}");
    let l = error_line(&["bench", "kernels", "--device", "cpu", "--kernel", "gemmm"]);
    assert!(l.contains("not a kernel") && l.contains("conv2d_forward"), "{l}");
    // No GPU: the missing driver is the error, not a missing sensor.
    if !powertrain::ops::cuda::cuda_available() {
        let l = error_line(&["bench", "kernels", "--device", "cuda", "--energy", "--kernel", "gemm"]);
        assert!(l.contains("no CUDA driver") && l.contains("--device cpu"), "{l}");
    }
    // auto on a machine without a readable sensor: a clear refusal, never a made-up number.
    let (ok, _, err) = run(&[
        "bench",
        "kernels",
        "--device",
        "cpu",
        "--energy",
        "--kernel",
        "fill",
        "--windows",
        "2",
        "--window-s",
        "0.05",
    ]);
    if !ok {
        let l = err.lines().find(|l| l.starts_with("error:")).unwrap();
        assert!(l.contains("--energy-source estimate --watts W") && l.contains("powertrain info"), "{l}");
    }
}

#[test]
fn bench_step_sets_kernel_timing_beside_timing_off() {
    // The structure and the counts, not the speed (a ratio printed for people, not asserted).
    let (ok, out, err) = run(&["bench", "step", "--device", "cpu", "--iters", "3", "--kernel-timing", "all", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let t = &v["kernel_timing"];
    assert_eq!((t["rounds"].as_u64(), t["steps_per_round"].as_u64()), (Some(5), Some(3)), "{t}");
    assert!(t["off_ms"].as_f64().unwrap() > 0.0);
    let modes = t["modes"].as_array().unwrap();
    // On the CPU "all" is events only (stamps are written by CUDA kernels).
    assert_eq!(modes.len(), 1, "{t}");
    let m = &modes[0];
    assert_eq!(m["timing"], "events");
    assert!(m["median_ms"].as_f64().unwrap() > 0.0 && m["overhead_pct"].as_f64().unwrap().is_finite(), "{m}");
    // A pamap2 Adam step runs 30-odd ops (conv, pool, relu, bias, gemm, loss, one Adam step per tensor).
    let ops = m["ops_per_step"].as_u64().unwrap();
    assert!((25..=60).contains(&ops), "{ops} ops timed per step");
}

#[test]
fn bench_step_energy_meters_steps_as_train_does_beside_metering_off() {
    let args = ["bench", "step", "--device", "cpu", "--iters", "4", "--energy", "--energy-source", "estimate"];
    let (ok, out, err) = run(&[&args[..], &["--watts", "40", "--json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let t = &v["metering"];
    assert_eq!(t["energy_source"], "estimate", "{t}");
    assert_eq!((t["rounds"].as_u64(), t["steps_per_round"].as_u64()), (Some(5), Some(4)), "{t}");
    let modes = t["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["per-step", "per-kernel/events"], "{t}");
    for m in modes {
        assert!(m["median_ms"].as_f64().unwrap() > 0.0 && m["overhead_pct"].as_f64().unwrap().is_finite(), "{m}");
        // The meter ran: its windows hold --watts x their time (an estimate's whole definition), so the
        // metered steps' energy over their windows is 40 W.
        let w = m["mean_power_w"].as_f64().unwrap();
        assert!((w - 40.0).abs() < 0.4, "{m}");
    }
    assert_eq!(modes[0]["ops_per_step"], 0, "per-step metering times no launch");
    assert!((25..=60).contains(&modes[1]["ops_per_step"].as_u64().unwrap()), "{}", modes[1]);
    // The printed table says it is an estimate.
    let (ok, out, err) = run(&[&args[..], &["--watts", "40"]].concat());
    assert!(ok, "{err}");
    assert!(
        out.contains("metering (estimate: an estimate, not measured)") && out.contains("per-kernel/events"),
        "{out}"
    );
}

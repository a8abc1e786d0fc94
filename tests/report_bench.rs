//! `bench kernels` on the CPU has measured ceilings (so %flop and %bw), and `powertrain report` draws its
//! `--json` output: roofline, per-kernel efficiency table, joules per launch with `--energy`. Through the real
//! command line; the numbers are checked for consistency with the document, never for speed.
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_powertrain")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "powertrain panicked: {err}");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), err)
}

fn bench(out: &Path, energy: bool) -> serde_json::Value {
    let o = out.to_str().unwrap();
    let mut args = vec![
        "bench",
        "kernels",
        "--device",
        "cpu",
        "--model",
        "pamap2",
        "--batch-size",
        "16",
        "--kernel",
        "relu_forward,gemm",
        "--iters",
        "3",
        "--json",
        "--out",
        o,
    ];
    if energy {
        args.extend_from_slice(&["--energy", "--energy-source", "estimate", "--watts", "40", "--windows", "3"]);
        args.extend_from_slice(&["--window-s", "0.05"]);
    }
    let (ok, stdout, err) = run(&args);
    assert!(ok, "{err}");
    // Not a terminal: no progress bar drawn into the captured stderr.
    assert!(!err.contains("bench kernels ["), "{err}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn cpu_rows_have_ceiling_fractions() {
    let d = tempfile::tempdir().unwrap();
    let doc = bench(&d.path().join("b.json"), false);
    let c = &doc["ceilings"];
    assert!(c["what"].as_str().unwrap().starts_with("cpu: GB/s of the STREAM triad"), "{c}");
    let (peak, bw) = (c["gemm_gflops"].as_f64().unwrap(), c["copy_gbps"].as_f64().unwrap());
    assert!(peak > 0.0 && bw > 0.0, "{c}");
    for r in doc["rows"].as_array().unwrap() {
        let gbps = r["gbps"].as_f64().unwrap();
        assert!((r["frac_peak_bw"].as_f64().unwrap() - gbps / bw).abs() < 1e-9 * (1.0 + gbps / bw), "{r}");
        match r["gflops"].as_f64() {
            Some(g) => assert!((r["frac_peak_flops"].as_f64().unwrap() - g / peak).abs() < 1e-9 * (1.0 + g), "{r}"),
            None => assert!(r["frac_peak_flops"].is_null(), "{r}"),
        }
    }
}

#[test]
fn report_of_a_kernel_bench_draws_the_roofline_table_and_joules() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("bench.json");
    let doc = bench(&file, true);
    // The file itself ...
    let (ok, stdout, err) = run(&["report", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(stdout.contains("(2 plots)"), "{stdout}");
    let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
    let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    let n = doc["rows"].as_array().unwrap().len();
    assert!(md.contains(&format!("**What was measured:** {n} kernel cases timed on")), "{md}");
    assert!(md.contains("energy per launch: estimate (no sensor)"), "{md}");
    assert!(md.contains("cases with FLOPs are memory-bound"), "{md}");
    assert!(!md.contains("## Runs") && !md.contains("no energy readings"), "{md}");
    assert!(!md.contains("Runs: 0 finished") && !md.contains("Protocol version []"), "{md}");
    // One table row per case; the gemm rows have an intensity and a bound, relu has no FLOPs counted.
    let table: Vec<&str> = md.lines().filter(|l| l.starts_with("| gemm") || l.starts_with("| relu_forward")).collect();
    assert_eq!(table.len(), n, "{md}");
    assert!(table
        .iter()
        .filter(|l| l.starts_with("| gemm"))
        .all(|l| l.contains("| memory |") || l.contains("| compute |")));
    assert!(table.iter().all(|l| l.contains(" ± ")), "J/launch in every row: {table:?}");
    // The roofline: a ceiling line and one dot per gemm case, with the case on hover.
    let svg = std::fs::read_to_string(d.path().join("bench_roofline_0.svg")).unwrap();
    let x = roxmltree::Document::parse(&svg).unwrap();
    let dots = x.descendants().filter(|e| e.tag_name().name() == "circle").count();
    let gemms = doc["rows"].as_array().unwrap().iter().filter(|r| r["kernel"] == "gemm").count();
    assert_eq!(dots, gemms);
    assert!(svg.contains("ceiling (ridge at") && svg.contains("pamap2 fc1"), "{svg}");
    assert!(html.contains("Energy per launch (J) [estimate (no sensor)]"));
    // ... and the folder holding it.
    let out = d.path().join("rep");
    let (ok, _, err) = run(&["report", d.path().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.join("bench_roofline_0.svg").exists());
}

#[test]
fn a_json_that_is_not_a_bench_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("other.json");
    std::fs::write(&f, "{\"a\": 1}").unwrap();
    let (ok, _, err) = run(&["report", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("other.json: not a `bench kernels --json` output"), "{err}");
}

//! The teaching pages and captions: the energy roofline with the device model fitted from a calibrated split
//! (and "none" without one), each run's page pointing at its own SVGs when several share a report folder, and
//! the multi-task caption saying which side did not reach its target.
mod study_fake;

use powertrain::report::roofline::step_work;
use powertrain::report::write_report;
use powertrain::study::MultitaskOptions;
use powertrain::train::TrainConfig;
use std::path::{Path, PathBuf};

fn fake_run(dir: &Path, batch: usize) {
    let mut t = TrainConfig::new("pamap2", Path::new("/data/pamap2"));
    t.epochs = 3;
    t.batch_size = batch;
    t.target_acc = Some(0.6);
    t.out = Some(dir.to_path_buf());
    study_fake::fake_train(&t).unwrap();
}

/// Rewrite the run's kernels.csv from a known device (50 W static, 2 pJ/FLOP, 30 pJ/byte) with the given
/// split method, and set the idle power in summary.json.
fn known_device(dir: &Path, method: &str) {
    let p = dir.join("summary.json");
    let mut s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    s["idle_power_w"] = serde_json::json!(50.0);
    let summary: powertrain::rundir::RunSummary = serde_json::from_value(s.clone()).unwrap();
    std::fs::write(&p, s.to_string()).unwrap();
    let steps = summary.steps as f64;
    let mut csv = String::from("name,launches,gpu_time_s,energy_j,j_per_launch,j_per_gflop,method\n");
    for (i, (name, (f, b))) in step_work(&summary).iter().filter(|(_, w)| w.0 > 0.0).enumerate() {
        let (f, b) = (f * steps, b * steps);
        let t = 1e-3 * (i + 1) as f64;
        let e = 50.0 * t + 2e-12 * f + 3e-11 * b;
        csv += &format!("{name},{},{t},{e},,{},{method}\n", summary.steps, e / (f * 1e-9));
    }
    std::fs::write(dir.join("kernels.csv"), csv).unwrap();
}

#[test]
fn energy_roofline_fits_the_device_of_a_calibrated_split() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("cal");
    fake_run(&run, 32);
    known_device(&run, "calibrated");
    let r = write_report(std::slice::from_ref(&run), None).unwrap();
    let page = std::fs::read_to_string(r.pages[0].with_extension("md")).unwrap();
    assert!(
        page.contains("static 50 W (idle power measured before the run), 2 pJ per FLOP, 30 pJ per byte moved"),
        "{page}"
    );
    let svg = std::fs::read_to_string(run.join("energy_roofline_cal.svg")).unwrap();
    let n = step_work(&serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap())
        .values()
        .filter(|w| w.0 > 0.0)
        .count();
    let x = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(
        x.descendants().filter(|e| e.tag_name().name() == "circle").count(),
        n,
        "one point per kernel with FLOPs"
    );
    assert!(svg.contains("device model (dynamic)") && svg.contains("Energy roofline: joules per FLOP"));

    // The same run with a time-proportional split: no device model, and the page says so.
    known_device(&run, "time-proportional");
    let r = write_report(std::slice::from_ref(&run), Some(&d.path().join("tp"))).unwrap();
    let page = std::fs::read_to_string(r.pages[0].with_extension("md")).unwrap();
    assert!(page.contains("**Device model: none.**"), "{page}");
    let svg = std::fs::read_to_string(d.path().join("tp/energy_roofline_cal.svg")).unwrap();
    assert!(!svg.contains("device model (dynamic)"));
}

#[test]
fn two_runs_in_one_folder_each_page_points_at_its_own_svgs() {
    let d = tempfile::tempdir().unwrap();
    let runs: Vec<PathBuf> = ["alpha", "beta"].iter().map(|n| d.path().join(n)).collect();
    fake_run(&runs[0], 32);
    fake_run(&runs[1], 128);
    let out = d.path().join("rep");
    let r = write_report(&runs, Some(&out)).unwrap();
    assert_eq!(r.pages.len(), 2);
    for (me, other) in [("alpha", "beta"), ("beta", "alpha")] {
        let md = std::fs::read_to_string(out.join(format!("joules_{me}.md"))).unwrap();
        let linked: Vec<&str> =
            md.lines().filter_map(|l| l.strip_prefix("![")).filter_map(|l| l.split("](").nth(1)).collect();
        assert!(!linked.is_empty(), "{md}");
        for f in &linked {
            let f = f.trim_end_matches(')');
            assert!(f.ends_with(&format!("_{me}.svg")), "{me}'s page links {f}");
            assert!(!f.contains(other));
            assert!(out.join(f).exists(), "{f} missing");
        }
        // The step timelines differ (batch 32 vs 128: different energy per step), so a shared file would show.
        let own = std::fs::read_to_string(out.join(format!("step_timeline_{me}.svg"))).unwrap();
        let theirs = std::fs::read_to_string(out.join(format!("step_timeline_{other}.svg"))).unwrap();
        assert_ne!(own, theirs);
    }
}

#[test]
fn multitask_caption_names_the_side_that_did_not_reach() {
    let d = tempfile::tempdir().unwrap();
    // Fake CelebA: alone, Smiling reaches at epoch 2 and Young at 3; together one epoch earlier. With 2
    // epochs the single Young network never reaches, so the single-task total is not reached either.
    let m = MultitaskOptions {
        model: "celeba".into(),
        data: "/data/celeba".into(),
        tasks: Some("Smiling,Young".into()),
        batch_size: 64,
        lr: 1e-3,
        epochs: 2,
        target_acc: Some(0.8),
        seeds: 1,
        device: "cpu".into(),
        energy: "estimate".into(),
        watts: Some(40.0),
        quick: false,
        extras: Default::default(),
        out: d.path().to_path_buf(),
    };
    powertrain::study::multitask_study_with(&m, &study_fake::fake_train).unwrap();
    let r = write_report(&[d.path().to_path_buf()], None).unwrap();
    let (_, cap) = r.plots.iter().find(|(f, _)| f == "multitask.svg").expect("the multi-task plot");
    assert!(cap.contains("; not reached: single-task total, single Young ["), "{cap}");
    assert!(!cap.contains("multi-task (2 outputs),"), "{cap}");
    // The bar of an unreached side is a lower bound and says so.
    let svg = std::fs::read_to_string(d.path().join("multitask.svg")).unwrap();
    assert!(svg.contains("single Young (not reached, ≥)"), "{svg}");
    assert!(!svg.contains("single Smiling (not reached"), "{svg}");
}

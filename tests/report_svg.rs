//! `powertrain report` on study and run directories written by the fake trainer (tests/study_fake): every
//! SVG is well-formed XML (roxmltree) and holds the expected series; estimate/none sources are marked.
mod study_fake;

use powertrain::report::write_report;
use powertrain::study::pretrain::TargetSplit;
use powertrain::study::{MultitaskOptions, PretrainOptions, SweepOptions};
use powertrain::train::TrainConfig;
use std::path::{Path, PathBuf};

/// Texts, polylines with at least 3 points (data series; mesh and legend lines have 2), and filled rects.
struct Svg {
    texts: Vec<String>,
    long_polylines: usize,
}

fn parse(path: &Path) -> Svg {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: invalid XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let mut texts = Vec::new();
    // The chart's caption (its root <title>): titles are wrapped over several <text> lines.
    if let Some(t) = doc.root_element().children().find(|n| n.tag_name().name() == "title") {
        texts.push(t.text().unwrap_or("").to_string());
    }
    let mut long_polylines = 0;
    for n in doc.descendants() {
        match n.tag_name().name() {
            "text" => texts.push(n.text().unwrap_or("").trim().to_string()),
            "polyline" => {
                let pts = n.attribute("points").unwrap_or("").split_whitespace().count();
                if pts >= 3 {
                    long_polylines += 1;
                }
            }
            _ => {}
        }
    }
    Svg { texts, long_polylines }
}

fn sweep(out: &Path, energy: &str) {
    let a = SweepOptions {
        model: "pamap2".into(),
        data: "/data/pamap2".into(),
        batch_sizes: Some("32,64,128".into()),
        lrs: Some("1e-4,1e-3,1e-2".into()),
        seeds: 1,
        target_acc: Some(0.6),
        epochs: 4,
        optimizer: "adam".into(),
        tasks: None,
        device: "cpu".into(),
        energy: energy.into(),
        // --energy estimate needs --watts (the fake trainer writes its own figures).
        watts: (energy == "estimate").then_some(40.0),
        extras: Default::default(),
        quick: false,
        prune: false,
        emit_slurm: None,
        only: None,
        out: out.to_path_buf(),
    };
    powertrain::study::sweep_with(&a, &study_fake::fake_train).unwrap();
}

#[test]
fn sweep_report_has_every_plot_with_its_series() {
    let d = tempfile::tempdir().unwrap();
    sweep(d.path(), "auto");
    let r = write_report(&[d.path().to_path_buf()], None).unwrap();
    let files: Vec<&str> = r.plots.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        files,
        vec!["heatmap.svg", "energy_per_epoch.svg", "acc_vs_energy.svg", "power_timeline.svg", "kernels.svg"]
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // Heatmap: 9 cells; lr 1e-4 never reaches the target (3 x n/r); bs128 lr1e-3 = 60 J x 2 epochs.
    let h = parse(&d.path().join("heatmap.svg"));
    assert_eq!(h.texts.iter().filter(|t| *t == "n/r").count(), 3, "{:?}", h.texts);
    for v in ["120", "420", "630", "180", "220", "330"] {
        assert!(h.texts.iter().any(|t| t == v), "{v} missing in {:?}", h.texts);
    }
    assert!(h.texts.iter().any(|t| t == "batch size") && h.texts.iter().any(|t| t == "learning rate"));
    assert!(h.texts.iter().any(|t| t.contains("(J; n/r = not reached)")));

    // Energy per epoch vs batch size: one line per learning rate, 3 points each.
    let p = parse(&d.path().join("energy_per_epoch.svg"));
    assert_eq!(p.long_polylines, 3);
    for lr in ["lr 0.0001", "lr 0.001", "lr 0.01"] {
        assert!(p.texts.iter().any(|t| t == lr), "{lr}: {:?}", p.texts);
    }
    assert!(p.texts.iter().any(|t| t == "energy per epoch (J)"));

    // Accuracy vs cumulative energy: one series per run (legend names).
    let a = parse(&d.path().join("acc_vs_energy.svg"));
    for id in ["bs32_lr0.0001_s0", "bs64_lr0.001_s0", "bs128_lr0.01_s0"] {
        assert!(a.texts.iter().any(|t| t == id), "{id}");
    }
    assert!(a.texts.iter().any(|t| t == "cumulative energy (J)"));
    // lr 1e-4 runs 4 epochs, lr 1e-2 runs 3: 6 series with at least 3 points.
    assert_eq!(a.long_polylines, 6);

    // Power timeline of the longest run (lr 1e-4 never reaches the target: 4 epochs x 2 steps).
    let t = parse(&d.path().join("power_timeline.svg"));
    assert!(t.texts.iter().any(|x| x.contains("_lr0.0001_s0") && x.contains("8 steps")), "{:?}", t.texts);
    assert!(t.texts.iter().any(|x| x == "power (W)"));
    assert_eq!(t.long_polylines, 1);

    let k = parse(&d.path().join("kernels.svg"));
    assert!(k.texts.iter().any(|x| x == "conv2d_forward") && k.texts.iter().any(|x| x == "gemm"));
    // The longest run (ties: the first in the study's order), bs128 lr 1e-4: 8 steps of 30 J, x 0.6 and x 0.3.
    assert!(k.texts[0].contains("bs128_lr0.0001_s0"), "{:?}", k.texts);
    assert!(k.texts.iter().any(|x| x == "144") && k.texts.iter().any(|x| x == "72"), "{:?}", k.texts);

    // The HTML is self-contained: every plot inline, no XML declarations, no external images.
    let html = std::fs::read_to_string(&r.html).unwrap();
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(!html.contains("<?xml") && !html.contains("<img"));
    assert!(html.contains("<table>") && html.contains("bs128_lr0.001_s0"));
    let md = std::fs::read_to_string(&r.md).unwrap();
    assert!(md.contains("![") && md.contains("(heatmap.svg)"));
    assert!(md.contains("**Finding: worst / best energy to target") && md.contains("arXiv:2401.01851"), "{md}");
    assert!(!md.contains("ESTIMATE"));
}

#[test]
fn estimate_is_marked_and_none_plots_time() {
    let d = tempfile::tempdir().unwrap();
    sweep(d.path(), "estimate");
    let r = write_report(&[d.path().to_path_buf()], None).unwrap();
    for (f, _) in &r.plots {
        let s = parse(&d.path().join(f));
        assert!(s.texts[0].contains("[estimate (no sensor)]"), "{f}: {:?}", s.texts);
    }
    let html = std::fs::read_to_string(&r.html).unwrap();
    assert!(html.contains("<p class=\"warn\">Energy here is an ESTIMATE (no sensor)"), "{html}");

    let d = tempfile::tempdir().unwrap();
    sweep(d.path(), "none");
    let r = write_report(&[d.path().to_path_buf()], None).unwrap();
    let files: Vec<&str> = r.plots.iter().map(|p| p.0.as_str()).collect();
    assert!(!files.contains(&"power_timeline.svg"));
    let h = parse(&d.path().join("heatmap.svg"));
    assert!(h.texts.iter().any(|t| t.contains("Time to target") && t.contains("(s;")), "{:?}", h.texts);
    let a = parse(&d.path().join("acc_vs_energy.svg"));
    assert!(a.texts.iter().any(|t| t == "cumulative time (s)"));
    let md = std::fs::read_to_string(&r.md).unwrap();
    assert!(md.contains("time shown instead of energy"));
    // Per-kernel GPU time (kernels.csv's gpu_time_s) stands in for energy: both kernels have a bar.
    let k = parse(&d.path().join("kernels.svg"));
    assert!(k.texts.iter().any(|x| x == "conv2d_forward") && k.texts.iter().any(|x| x == "gemm"), "{:?}", k.texts);
    assert!(k.texts.iter().any(|x| x.contains("time (s)")), "{:?}", k.texts);
    assert!(k.texts.iter().filter(|x| x.parse::<f64>().is_ok_and(|v| v > 0.0)).count() >= 2, "{:?}", k.texts);

    // A malformed kernels.csv: the report says which file and line, and draws no per-kernel plot with holes.
    for run in std::fs::read_dir(d.path().join("runs")).unwrap().filter_map(|e| e.ok()) {
        let p = run.path().join("kernels.csv");
        if let Ok(t) = std::fs::read_to_string(&p) {
            std::fs::write(&p, t.replacen("\nconv2d_forward,", "\nconv2d_forward,many", 1)).unwrap();
        }
    }
    let out = d.path().join("report2");
    let r = write_report(&[d.path().to_path_buf()], Some(&out)).unwrap();
    assert!(!r.plots.iter().any(|p| p.0 == "kernels.svg"), "{:?}", r.plots);
    let w = r.warnings.iter().find(|w| w.contains("kernels.csv")).unwrap_or_else(|| panic!("{:?}", r.warnings));
    assert!(w.contains("line 2") && w.contains("per-kernel plot"), "{w}");
    assert!(std::fs::read_to_string(&r.md).unwrap().contains(w.as_str()));
}

fn fake_splits(_data: &Path, study: &Path) -> anyhow::Result<Vec<TargetSplit>> {
    Ok(vec![TargetSplit {
        subject: 105,
        train: study.join("s105_train.safetensors"),
        val: study.join("s105_val.safetensors"),
        classes_train: vec![0, 1],
        classes_val: vec![0, 1],
    }])
}

#[test]
fn break_even_and_multitask_plots() {
    let d = tempfile::tempdir().unwrap();
    let pre = d.path().join("pre");
    let a = PretrainOptions {
        model: "pamap2".into(),
        data: "/data/pamap2".into(),
        seeds: 1,
        batch_size: 32,
        lr: 1e-3,
        epochs: 4,
        target_acc: Some(0.8),
        device: "cpu".into(),
        energy: "auto".into(),
        watts: None,
        extras: Default::default(),
        quick: false,
        out: pre.clone(),
    };
    powertrain::study::pretrain_study_with(&a, &study_fake::fake_train, &fake_splits).unwrap();
    let mt = d.path().join("mt");
    let m = MultitaskOptions {
        model: "celeba".into(),
        data: "/data/celeba".into(),
        tasks: Some("Smiling,Male".into()),
        batch_size: 64,
        lr: 1e-3,
        epochs: 3,
        target_acc: None,
        seeds: 1,
        device: "cpu".into(),
        energy: "auto".into(),
        watts: None,
        extras: Default::default(),
        quick: false,
        out: mt.clone(),
    };
    powertrain::study::multitask_study_with(&m, &study_fake::fake_train).unwrap();
    let out = d.path().join("report");
    let r = write_report(&[pre.clone(), mt.clone()], Some(&out)).unwrap();
    let b = parse(&out.join("break_even.svg"));
    // Scratch, fine-tune and frozen: straight lines over 0..=n reuses.
    assert_eq!(b.long_polylines, 3);
    for s in ["scratch", "pretrain + fine-tune", "pretrain + frozen encoder"] {
        assert!(b.texts.iter().any(|t| t == s), "{s}: {:?}", b.texts);
    }
    assert!(b.texts.iter().any(|t| t == "reuses (downstream trainings)"));
    let m = parse(&out.join("multitask.svg"));
    for s in ["multi-task (2 outputs)", "single-task total", "single Smiling", "single Male"] {
        assert!(m.texts.iter().any(|t| t == s), "{s}: {:?}", m.texts);
    }
    // Multi: 100 J/epoch x 1 epoch; singles 80 x 2 + 80 x 1 = 240.
    assert!(m.texts.iter().any(|t| t == "100") && m.texts.iter().any(|t| t == "240"), "{:?}", m.texts);
    let md = std::fs::read_to_string(&r.md).unwrap();
    assert!(md.contains("## Pretraining study") && md.contains("## Multi-task study"));
}

#[test]
fn plain_run_dirs_and_machines_are_grouped() {
    let d = tempfile::tempdir().unwrap();
    let mut runs: Vec<PathBuf> = Vec::new();
    for (i, host) in ["nodeA", "nodeB"].iter().enumerate() {
        let dir = d.path().join(format!("run{i}"));
        let mut t = TrainConfig::new("pamap2", Path::new("/data/pamap2"));
        t.epochs = 3;
        t.target_acc = Some(0.6);
        t.out = Some(dir.clone());
        study_fake::fake_train(&t).unwrap();
        let p = dir.join("summary.json");
        let s = std::fs::read_to_string(&p).unwrap().replace("fakehost", host);
        std::fs::write(&p, s).unwrap();
        runs.push(dir);
    }
    // One run directory alone.
    let r = write_report(&runs[..1], None).unwrap();
    assert!(r.html.starts_with(&runs[0]));
    let files: Vec<&str> = r.plots.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(files, vec!["acc_vs_energy.svg", "power_timeline.svg", "kernels.svg"]);
    // Two runs from different hosts: a warning and one table per machine.
    let out = d.path().join("rep");
    let r = write_report(&runs, Some(&out)).unwrap();
    assert!(r.warnings.iter().any(|w| w.contains("2 different machines")), "{:?}", r.warnings);
    let md = std::fs::read_to_string(&r.md).unwrap();
    assert!(md.contains("### nodeA / Fake GPU (GPU-fake-0), driver 580.00"), "{md}");
    assert!(md.contains("### nodeB"));

    let e = write_report(&[d.path().join("nothing")], None).unwrap_err();
    assert!(format!("{e:#}").contains("not a study or run directory"));
}

#[test]
fn energy_accounting_table_shows_split_closure_and_power_check() {
    // A real CPU run (estimate), then its summary edited as a counter run would write it.
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pamap2_data.safetensors");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["train", "--model", "pamap2", "--data", fx.to_str().unwrap(), "--device", "cpu", "--epochs", "1"])
        .args(["--batch-size", "16", "--energy", "estimate", "--watts", "30", "--out", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = run.join("summary.json");
    let mut s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    s["energy_source"] = "nvml-counter".into();
    s["total_energy_j"] = 1000.0.into();
    s["idle_power_w"] = 70.0.into();
    s["idle_j"] = 700.0.into();
    s["active_j"] = 300.0.into();
    s["energy_context"]["closure"] = 0.9981.into();
    s["energy_context"]["update_period_s"] = 0.1.into();
    s["energy_context"]["power_check"] = serde_json::json!({ "readings": [
        { "reading": "field NVML_FI_DEV_POWER_INSTANT (186), polled every 50 ms", "gap_rel": -0.042 },
        { "reading": "nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)", "gap_rel": 0.013 },
    ]});
    std::fs::write(&p, serde_json::to_string(&s).unwrap()).unwrap();
    let r = write_report(std::slice::from_ref(&run), Some(&d.path().join("rep"))).unwrap();
    let md = std::fs::read_to_string(&r.md).unwrap();
    let row = md.lines().find(|l| l.starts_with("| run | nvml-counter |")).unwrap_or_else(|| panic!("{md}"));
    for want in
        ["| 1000.0 |", "| 70.0 |", "| 700.0 |", "| 300.0 |", "| 99.81 |", "instant -4.2 %, samples +1.3 %", "| 100 |"]
    {
        assert!(row.contains(want), "{want} missing in {row}");
    }
    assert!(std::fs::read_to_string(&r.html).unwrap().contains("Energy accounting"));
}

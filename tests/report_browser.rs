//! Each report kind opened in headless Chromium (tests/browser): a sweep, pretraining + multi-task, a
//! single run with kernels (and its "where the joules go" page), a kernel benchmark (`bench kernels --json`).
//! Every plot renders something, its texts stay inside it and the viewport, nothing overlaps, no legend covers
//! data, and the page fetches nothing (works offline). With POWERTRAIN_SCREENSHOTS=DIR the first screen of each
//! is kept there as a PNG, beside a copy of the page.
mod browser;
mod study_fake;

use powertrain::report::write_report;
use powertrain::study::pretrain::TargetSplit;
use powertrain::study::{MultitaskOptions, PretrainOptions, SweepOptions};
use powertrain::train::TrainConfig;
use std::path::{Path, PathBuf};

fn check(html: &Path, name: &str) {
    let shot = std::env::var("POWERTRAIN_SCREENSHOTS").ok().map(|d| PathBuf::from(d).join(format!("{name}.png")));
    if let Some(png) = &shot {
        // The page itself too (self-contained), for a full-length screenshot.
        std::fs::copy(html, png.with_extension("html")).unwrap();
    }
    let page = browser::check_page(html, shot.as_deref()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!page.plots.is_empty(), "{name}: no plot");
    let d = page.defects();
    assert!(d.is_empty(), "{name}: {d:#?}");
}

fn sweep(out: &Path) {
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
        energy: "auto".into(),
        watts: None,
        extras: Default::default(),
        quick: false,
        prune: false,
        emit_slurm: None,
        only: None,
        out: out.to_path_buf(),
    };
    powertrain::study::sweep_with(&a, &study_fake::fake_train).unwrap();
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
fn every_report_kind_renders_cleanly_offline() {
    if !browser::available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let sw = d.path().join("sweep");
    sweep(&sw);
    let r = write_report(std::slice::from_ref(&sw), None).unwrap();
    check(&r.html, "sweep");
    check(&r.pages[0], "joules");

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
    let r = write_report(&[pre.clone()], Some(&d.path().join("rep_pre"))).unwrap();
    check(&r.html, "pretraining");
    let r = write_report(&[mt.clone()], Some(&d.path().join("rep_mt"))).unwrap();
    check(&r.html, "multitask");

    let run = d.path().join("run");
    let mut t = TrainConfig::new("pamap2", Path::new("/data/pamap2"));
    t.epochs = 3;
    t.target_acc = Some(0.6);
    t.out = Some(run.clone());
    study_fake::fake_train(&t).unwrap();
    let r = write_report(std::slice::from_ref(&run), None).unwrap();
    check(&r.html, "run");

    // A kernel benchmark (`bench kernels --json`, a few CPU cases with the labelled estimate).
    let bench = d.path().join("bench");
    std::fs::create_dir_all(&bench).unwrap();
    let file = bench.join("kernels.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["bench", "kernels", "--device", "cpu", "--model", "pamap2", "--batch-size", "16"])
        .args(["--kernel", "relu_forward,gemm", "--iters", "3", "--energy", "--energy-source", "estimate"])
        .args(["--watts", "40", "--windows", "3", "--window-s", "0.05", "--json", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = write_report(std::slice::from_ref(&file), None).unwrap();
    assert_eq!(r.plots.len(), 2, "roofline and J/launch");
    check(&r.html, "bench");
}

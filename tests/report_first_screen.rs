//! The report's first screen: a study's finding (ours beside the paper's, with its interval or bound) is the main
//! result; a single run says what was measured, how and its result; carbon is shown per run and summed over a
//! study only when every run carries it.
mod study_fake;

use powertrain::report::write_report;
use powertrain::study::SweepOptions;
use powertrain::train::TrainConfig;
use std::path::{Path, PathBuf};

fn sweep(out: &Path) {
    let a = SweepOptions {
        model: "pamap2".into(),
        data: "/data/pamap2".into(),
        batch_sizes: Some("32,64".into()),
        lrs: Some("1e-3,1e-2".into()),
        seeds: 2,
        target_acc: Some(0.6),
        epochs: 4,
        optimizer: "adam".into(),
        tasks: None,
        device: "cpu".into(),
        energy: "estimate".into(),
        watts: Some(40.0),
        quick: false,
        prune: false,
        emit_slurm: None,
        only: None,
        extras: Default::default(),
        out: out.to_path_buf(),
    };
    powertrain::study::sweep_with(&a, &study_fake::fake_train).unwrap();
}

/// Add the carbon block training writes with --carbon-intensity 300 --pue 1.2 to a run's summary.json.
fn add_carbon(run: &Path) -> f64 {
    let p = run.join("summary.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let j = v["total_energy_j"].as_f64();
    let mut c = powertrain::energy::carbon_block(j, Some(300.0), Some(1.2)).unwrap();
    c["energy_source"] = v["energy_source"].clone();
    let g = c["co2e_g"].as_f64().unwrap();
    v["carbon"] = c;
    std::fs::write(&p, v.to_string()).unwrap();
    g
}

fn first_screen(md: &str) -> &str {
    &md[..md.find("## Machines").unwrap()]
}

#[test]
fn a_study_report_opens_with_its_finding_beside_the_paper() {
    let d = tempfile::tempdir().unwrap();
    sweep(d.path());
    let r = write_report(&[d.path().to_path_buf()], None).unwrap();
    let md = std::fs::read_to_string(&r.md).unwrap();
    let head = first_screen(&md);
    let sweep_md = std::fs::read_to_string(d.path().join("sweep.md")).unwrap();
    // The fake sweep: 6400/batch + 10 J per epoch; lr 1e-3 reaches at epoch 2, 1e-2 at epoch 3. Best: batch 64
    // lr 1e-3 = 2 x 110 = 220 J; worst: batch 32 lr 1e-2 = 3 x 210 = 630 J; the ratio 630/220 = 2.86x, the
    // same on both seeds (no spread).
    assert!(head.contains("**Main result** (each study's finding, ours beside the paper's"), "{head}");
    assert!(
        head.contains("- **sweep**: energy to the target accuracy, worst vs best batch size x learning rate: ours worst/best energy to target: 2.86x"),
        "{head}"
    );
    assert!(head.contains("the paper: up to 5x the energy of the best setting (about 80 % saving)."), "{head}");
    // The same words as the study's own table: the report does not recompute the finding.
    let ours = head.split(": ours ").nth(1).unwrap().split("; the paper").next().unwrap();
    assert!(sweep_md.contains(ours), "{ours} not in sweep.md");
    assert!(
        head.contains("Cheapest single run: the cheapest run to the target accuracy 0.6 is `bs64_lr0.001_s"),
        "{head}"
    );
    assert!(!head.contains("**Carbon:**"), "no run carries carbon: {head}");
}

#[test]
fn a_single_run_says_what_how_and_its_carbon() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let mut t = TrainConfig::new("pamap2", Path::new("/data/pamap2"));
    t.epochs = 3;
    t.target_acc = Some(0.6);
    t.energy = "estimate".into();
    t.out = Some(run.clone());
    study_fake::fake_train(&t).unwrap();
    let g = add_carbon(&run);
    let r = write_report(std::slice::from_ref(&run), None).unwrap();
    let md = std::fs::read_to_string(&r.md).unwrap();
    let head = first_screen(&md);
    assert!(head.contains("**What was measured:** 1 training run(s) of pamap2"), "{head}");
    assert!(head.contains("energy: estimate (no sensor)."), "{head}");
    assert!(head.contains("**Main result:** the cheapest run to the target accuracy 0.6 is `run`"), "{head}");
    // co2e = the run's total energy in kWh x PUE x intensity.
    let total = powertrain::rundir::RunSummary::read(&run).unwrap().total_energy_j.unwrap();
    assert!((g - total / 3.6e6 * 1.2 * 300.0).abs() < 1e-12, "{g}");
    let gs = powertrain::report::svg::fmt(g);
    let want = format!("**Carbon:** {gs} g CO2e (300 gCO2e/kWh, PUE 1.2; from energy: estimate (no sensor))");
    assert!(head.contains(&want), "{want} in {head}");
    let table = &md[md.find("## Carbon").expect("a carbon table")..];
    assert!(table.contains("| run | "), "{table}");
    let row = table.lines().filter(|l| l.starts_with("| run |")).nth(1).unwrap();
    assert!(row.ends_with("| estimate (no sensor) |"), "{row}");
    assert!(!table.split("##").nth(1).unwrap().contains("measured ("), "an estimate is never called measured");
}

#[test]
fn a_study_sums_carbon_only_when_every_run_has_it() {
    let d = tempfile::tempdir().unwrap();
    sweep(d.path());
    let runs: Vec<PathBuf> = std::fs::read_dir(d.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("summary.json").exists())
        .collect();
    assert_eq!(runs.len(), 8);
    let total: f64 = runs.iter().map(|r| add_carbon(r)).sum();
    let r = write_report(&[d.path().to_path_buf()], Some(&d.path().join("all"))).unwrap();
    let md = std::fs::read_to_string(&r.md).unwrap();
    let want = format!("**Carbon:** {} g CO2e over all 8 run(s)", powertrain::report::svg::fmt(total));
    assert!(first_screen(&md).contains(&want), "{want} in {}", first_screen(&md));
    // One run without carbon: not summed, and the first screen says why.
    let p = runs[0].join("summary.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["carbon"] = serde_json::Value::Null;
    std::fs::write(&p, v.to_string()).unwrap();
    let r = write_report(&[d.path().to_path_buf()], Some(&d.path().join("some"))).unwrap();
    let md = std::fs::read_to_string(&r.md).unwrap();
    assert!(first_screen(&md).contains("**Carbon:** not summed: only 7 of 8 run(s) carry a CO2e figure"), "{md}");
}

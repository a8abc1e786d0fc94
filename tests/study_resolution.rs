//! Resolution guards in the studies (issue 18 item 4): a cost whose run is below the counter's resolution is
//! marked; a comparison with such a side is "energy comparison not resolved" (the time ratio still shown), never
//! a ratio of unresolved numbers. The fake trainer's runs carry a `resolution` block for a twin counter of a
//! given update period (the default 100 ms one: resolved; a 10 s one: not); the real binary is checked with
//! `--energy sim --sim-sensor continuous:period=5` on a tiny dataset.
mod study_fake;

use powertrain::energy::resolution::{for_run, from_sensor_model};
use powertrain::energy::twin::SensorModel;
use powertrain::rundir::RunSummary;
use powertrain::study::finding::{BreakEven, Ratio};
use powertrain::study::pretrain::TargetSplit;
use powertrain::study::{multitask_study_with, pretrain_study_with, sweep_with};
use powertrain::study::{MultitaskOptions, PretrainOptions, SweepOptions};
use powertrain::train::TrainConfig;
use std::path::Path;

/// The fake trainer, its summary.json given the `resolution` block a run on the twin counter `spec` gets.
fn trainer_on(spec: &'static str) -> impl Fn(&TrainConfig) -> anyhow::Result<RunSummary> {
    move |a: &TrainConfig| {
        let mut s = study_fake::fake_train(a)?;
        let sensor = from_sensor_model(&SensorModel::parse(spec)?, "test");
        s.resolution = for_run(&s.energy_source, Some(sensor), s.wall_s, s.wall_s / s.steps.max(1) as f64);
        let path = a.out.as_ref().unwrap().join("summary.json");
        std::fs::write(&path, serde_json::to_string_pretty(&s)?)?;
        Ok(s)
    }
}

fn sweep_args(out: &Path) -> SweepOptions {
    SweepOptions {
        model: "pamap2".into(),
        data: "/nonexistent/pamap2".into(),
        batch_sizes: Some("32,128".into()),
        lrs: Some("1e-3,1e-2".into()),
        seeds: 2,
        target_acc: Some(0.6),
        epochs: 5,
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
    }
}

#[test]
fn a_sweep_on_a_fast_counter_ranks_by_energy_and_on_a_slow_one_says_not_resolved() {
    let d = tempfile::tempdir().unwrap();
    // Fake runs: 120-630 J to target at 100 W, i.e. 1.2-6.3 s: 12-63 updates of a 100 ms counter.
    let r = sweep_with(&sweep_args(&d.path().join("fast")), &trainer_on("continuous")).unwrap();
    assert_eq!(r.findings.unresolved, 0);
    let Ratio::Value { x, .. } = r.findings.worst_best_all else { panic!("{:?}", r.findings.worst_best_all) };
    assert!((x - 630.0 / 120.0).abs() < 1e-9, "{x}");
    assert!(r.findings.worst_best_time.is_none());
    assert!(!r.table.contains("not resolved (below"), "{}", r.table);
    assert!(r.findings.ranking.iter().all(|(_, m, _)| !m.contains("below resolution")));

    // The same runs on a counter that updates every 10 s: fewer than 10 updates each.
    let r = sweep_with(&sweep_args(&d.path().join("slow")), &trainer_on("continuous:period=10")).unwrap();
    assert_eq!(r.findings.unresolved, 4);
    assert_eq!(r.findings.worst_best_all, Ratio::NotResolved);
    assert_eq!(r.findings.worst_best_reached, Ratio::NotResolved);
    assert_eq!(r.findings.median_best, Ratio::NotResolved);
    assert_eq!(r.ratio, None, "no headline number");
    // The time ratio is still shown: the fake's wall time is energy / 100 W, so the same 5.25x.
    let Some(Ratio::Value { x, .. }) = r.findings.worst_best_time else { panic!("{:?}", r.findings.worst_best_time) };
    assert!((x - 630.0 / 120.0).abs() < 1e-9, "{x}");
    assert!(r.table.contains("energy comparison not resolved"), "{}", r.table);
    assert!(r.table.contains("Worst / best in time: 5.25x"), "{}", r.table);
    assert!(!r.table.contains("5.25x (95 % CI") || r.table.contains("in time: 5.25x"));
    for (_, mean, vs) in &r.findings.ranking {
        assert!(mean.ends_with("(below resolution)"), "{mean}");
        assert!(vs == "cheapest" || vs.contains("energy not resolved"), "{vs}");
    }
    // Each cost is marked.
    assert!(r.configs.iter().all(|c| c.costs.iter().all(|k| k.unresolved)));
}

fn splits(_data: &Path, study: &Path) -> anyhow::Result<Vec<TargetSplit>> {
    Ok(vec![TargetSplit {
        subject: 105,
        train: study.join("splits/s105_train.safetensors"),
        val: study.join("splits/s105_val.safetensors"),
        classes_train: vec![0, 1],
        classes_val: vec![0, 1],
    }])
}

#[test]
fn pretraining_break_even_and_multitask_ratio_are_not_formed_below_resolution() {
    let d = tempfile::tempdir().unwrap();
    let p = |out: &str| PretrainOptions {
        model: "pamap2".into(),
        data: "/data/pamap2".into(),
        seeds: 2,
        batch_size: 32,
        lr: 1e-3,
        epochs: 4,
        target_acc: Some(0.8),
        device: "cpu".into(),
        energy: "auto".into(),
        watts: None,
        extras: Default::default(),
        quick: false,
        out: d.path().join(out),
    };
    // Downstream runs: 100 J per epoch at 100 W (frozen 50 J): 0.5-3 s, 25-150 updates of a 20 ms counter.
    let fast = pretrain_study_with(&p("pf"), &trainer_on("continuous:period=0.02"), &splits).unwrap();
    assert!(fast.break_even.iter().all(|(_, _, b)| matches!(b, BreakEven::Reuses { .. })), "{:?}", fast.break_even);
    let slow = pretrain_study_with(&p("ps"), &trainer_on("continuous:period=10"), &splits).unwrap();
    assert!(slow.break_even.iter().all(|(_, _, b)| *b == BreakEven::NotResolved), "{:?}", slow.break_even);
    assert!(slow.table.contains("energy comparison not resolved"), "{}", slow.table);
    // The time comparison instead: pretraining 4 and 5 s, scratch 3 s, fine-tune 1 s, frozen 0.5 s (fake: 100 W).
    assert!(
        slow.table.contains("in wall time, break-even reuses over all target subjects: finetune 2.25"),
        "{}",
        slow.table
    );
    assert!(slow.table.contains("frozen 1.80"), "{}", slow.table);
    assert!(!fast.table.contains("in wall time, break-even"), "{}", fast.table);

    let m = |out: &str| MultitaskOptions {
        model: "celeba".into(),
        data: "/data/celeba".into(),
        tasks: Some("Smiling,Male".into()),
        batch_size: 32,
        lr: 1e-3,
        epochs: 3,
        target_acc: Some(0.8),
        seeds: 2,
        device: "cpu".into(),
        energy: "auto".into(),
        watts: None,
        extras: Default::default(),
        quick: false,
        out: d.path().join(out),
    };
    let fast = multitask_study_with(&m("mf"), &trainer_on("continuous:period=0.02")).unwrap();
    assert!(matches!(fast.ratio, Ratio::Value { .. }), "{:?}", fast.ratio);
    let slow = multitask_study_with(&m("ms"), &trainer_on("continuous:period=10")).unwrap();
    assert_eq!(slow.ratio, Ratio::NotResolved);
    assert!(slow.table.contains("energy comparison not resolved"), "{}", slow.table);
    assert!(slow.table.contains("the time ratio (resolved by the clock): "), "{}", slow.table);
}

#[test]
fn a_real_quick_sim_sweep_on_a_slow_counter_says_its_energy_is_not_resolved() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let ds = root.join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    for (name, n) in [("train", 64usize), ("val", 16), ("test", 16)] {
        let x: Vec<u8> =
            (0..n * 27 * 256).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).flat_map(|v| v.to_le_bytes()).collect();
        let y: Vec<u8> = (0..n as i64).flat_map(|v| (v % 12).to_le_bytes()).collect();
        let views = vec![
            (
                "x".to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, 27, 1, 256], &x).unwrap(),
            ),
            ("y".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![n], &y).unwrap()),
        ];
        std::fs::write(ds.join(format!("{name}.safetensors")), safetensors::serialize(views, None).unwrap()).unwrap();
    }
    std::fs::write(ds.join("dataset.json"), "{\"protocol\": 1, \"dataset\": \"pamap2\"}\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_powertrain"))
        .args(["sweep", "--model", "pamap2", "--data", "ds", "--device", "cpu", "--batch-sizes", "16,32"])
        .args(["--lrs", "1e-3", "--epochs", "1", "--seeds", "1", "--target-acc", "0.01", "--energy", "sim"])
        .args(["--sim-sensor", "continuous:period=5", "--out", "S"])
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let md = std::fs::read_to_string(root.join("S/sweep.md")).unwrap();
    assert!(md.contains("energy comparison not resolved"), "{md}");
    assert!(md.contains("Worst / best in time:"), "{md}");
    for e in std::fs::read_dir(root.join("S/runs")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        let s: RunSummary = serde_json::from_str(&std::fs::read_to_string(p.join("summary.json")).unwrap()).unwrap();
        let run = s.resolution.as_ref().and_then(|r| r.run.as_ref()).expect("a sim run states its resolution");
        assert!(!run.resolved, "a sub-second run on a 5 s counter: {run:?}");
    }
}

//! `powertrain pretrain-study`: break-even as the ratio of mean costs (bounds, "never"), the runs the study
//! asks for, and the 70/30-per-activity split files read back through crate::data.
mod study_fake;

use powertrain::rundir::RunSummary;
use powertrain::study::pretrain::{segment_split, write_target_splits, write_xy, TargetSplit};
use powertrain::study::PretrainOptions;
use powertrain::study::{pretrain_study_with, BreakEven};
use powertrain::train::TrainConfig;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

#[test]
fn segment_split_keeps_every_activity_on_both_sides() {
    // Three activity segments of 10, 4 and 2 windows.
    let y: Vec<i32> = [vec![3; 10], vec![7; 4], vec![1; 2]].concat();
    let (train, val) = segment_split(&y, "x").unwrap();
    // 10 -> 7 train, 1 guard, 2 val; 4 -> 2 train (3 rounds down to keep a guard and a val row), 1 val; 2 -> train.
    assert_eq!(train, vec![0, 1, 2, 3, 4, 5, 6, 10, 11, 14, 15]);
    assert_eq!(val, vec![8, 9, 13]);
    // No overlap, every val class is in train.
    assert!(val.iter().all(|v| !train.contains(v)));
    assert!(segment_split(&[1, 1], "subject105").unwrap_err().to_string().contains("subject105"));
}

fn args(data: &Path, out: &Path) -> PretrainOptions {
    PretrainOptions {
        model: "pamap2".into(),
        data: data.to_path_buf(),
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
        out: out.to_path_buf(),
    }
}

/// A split writer that only names files (the fake trainer does not read them).
fn fake_splits(_data: &Path, study: &Path) -> anyhow::Result<Vec<TargetSplit>> {
    Ok([105, 106]
        .iter()
        .map(|&s| TargetSplit {
            subject: s,
            train: study.join(format!("splits/s{s}_train.safetensors")),
            val: study.join(format!("splits/s{s}_val.safetensors")),
            classes_train: vec![0, 1],
            classes_val: vec![0, 1],
        })
        .collect())
}

#[test]
fn pretrain_study_runs_and_break_even_counts() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("study");
    let calls = RefCell::new(Vec::<TrainConfig>::new());
    let t = |a: &TrainConfig| -> anyhow::Result<RunSummary> {
        calls.borrow_mut().push(a.clone());
        study_fake::fake_train(a)
    };
    let r = pretrain_study_with(&args(Path::new("/data/pamap2"), &out), &t, &fake_splits).unwrap();
    let calls = calls.borrow();
    assert_eq!(calls.len(), 2 * (1 + 2 * 3));
    // Pretraining: the whole dataset, no target, weights saved.
    let pre = &calls[0];
    assert_eq!(pre.data, Path::new("/data/pamap2"));
    assert_eq!(pre.target_acc, None);
    assert_eq!(pre.save.as_deref(), Some(out.join("weights/pretrain_s0.safetensors").as_path()));
    // Downstream: the subject's split files, the three ways.
    let ft = calls.iter().find(|a| a.init.is_some() && !a.freeze_encoder && a.seed == 1).unwrap();
    assert_eq!(ft.init.as_deref(), Some(out.join("weights/pretrain_s1.safetensors").as_path()));
    assert_eq!(ft.data, out.join("splits/s105_train.safetensors"));
    assert_eq!(ft.val.as_deref(), Some(out.join("splits/s105_val.safetensors").as_path()));
    assert_eq!(ft.target_acc, Some(0.8));
    assert_eq!(calls.iter().filter(|a| a.freeze_encoder).count(), 4);
    assert!(calls.iter().filter(|a| a.freeze_encoder).all(|a| a.init.is_some()));
    assert_eq!(calls.iter().filter(|a| a.val.is_some() && a.init.is_none()).count(), 4);

    // Fake energies: pretrain 4 epochs x (100 + 25 seed) = 400 / 500 J; scratch 3 x 100 = 300; fine-tune
    // 1 x 100 = 100; frozen 1 x 50 = 50. Break-even fine-tune 400/200 = 2, 500/200 = 2.5; frozen 400/250 =
    // 1.6, 500/250 = 2.
    assert_eq!(r.seeds[0].pretrain, Some(400.0));
    assert_eq!(r.seeds[1].pretrain, Some(500.0));
    let get = |subj: &str, way: &str| r.break_even.iter().find(|(s, w, _)| s == subj && w == way).unwrap().2;
    // The ratio of means: 450 / (300 - 100) = 2.25 for fine-tuning, 450 / (300 - 50) = 1.8 frozen. Its interval:
    // the pretraining costs 400 and 500 give 450 ± t(1) x 50 = 450 ± 635 (clamped at 0), the saving is exactly
    // 200, so 0 .. 1085 / 200.
    let BreakEven::Reuses { x, lo: Some(lo), hi: Some(hi) } = get("105", "finetune") else { panic!() };
    let t1 = powertrain::stats::t_quantile(1.0, 0.95);
    assert!((x - 2.25).abs() < 1e-12 && lo == 0.0 && (hi - (450.0 + t1 * 50.0) / 200.0).abs() < 1e-9, "{x} {lo} {hi}");
    let BreakEven::Reuses { x, .. } = get("all", "frozen") else { panic!() };
    assert!((x - 1.8).abs() < 1e-12);
    assert_eq!(r.mean_pretrain, Some(450.0));
    assert_eq!(r.mean_reuse["scratch"], Some(300.0));
    assert_eq!(r.mean_reuse["frozen"], Some(50.0));
    // The table's number is the plot's crossing: E_pre / (scratch - reuse) from the same means.
    let crossing = r.mean_pretrain.unwrap() / (r.mean_reuse["scratch"].unwrap() - r.mean_reuse["frozen"].unwrap());
    assert_eq!(get("all", "frozen").crossing(), Some(crossing));
    assert!(r.table.contains("| 105 | finetune | 2.25 (95 % CI 0-5.43) |"), "{}", r.table);
    assert!(r.table.contains("**Finding: break-even reuses: fine-tuning 2.25"), "{}", r.table);
    assert!(r.table.contains("the scratch baseline reached the target 0.8 in 4 of 4 runs"), "{}", r.table);
    assert!(r.table.contains("about 10-13 reuses") && r.table.contains("arXiv:2401.01851"), "{}", r.table);
    assert!(out.join("pretrain.md").exists() && out.join("pretrain.json").exists());

    // Resumed: nothing retrains.
    let again = |_: &TrainConfig| -> anyhow::Result<RunSummary> { panic!("all runs are done") };
    let r2 = pretrain_study_with(&args(Path::new("/data/pamap2"), &out), &again, &fake_splits).unwrap();
    assert_eq!(r2.table, r.table);
}

#[test]
fn a_reuse_that_saves_nothing_is_never() {
    let d = tempfile::tempdir().unwrap();
    // Fine-tuning is made as costly as training from scratch.
    let t = |a: &TrainConfig| -> anyhow::Result<RunSummary> {
        let mut b = a.clone();
        if a.init.is_some() && !a.freeze_encoder {
            b.init = None;
        }
        study_fake::fake_train(&b)
    };
    let r = pretrain_study_with(&args(Path::new("/data/pamap2"), d.path()), &t, &fake_splits).unwrap();
    let ft = &r.break_even.iter().find(|(s, w, _)| s == "all" && w == "finetune").unwrap().2;
    assert_eq!(*ft, BreakEven::Never);
    assert!(r.table.contains("| all | finetune | never (the reuse saves no energy) |"), "{}", r.table);
}

#[test]
fn target_split_files_hold_every_class_on_both_sides() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("pamap2");
    std::fs::create_dir_all(&data).unwrap();
    // val (subject 105): two activities of 10 windows each; test (106): three of 5. x [n, 2, 1, 3], x value =
    // 100 * row + element. Split 70/30 over the whole recording, activity 9 of subject 105 would be
    // validation only; per activity it is on both sides.
    for (name, n, seg) in [("val", 20usize, 10usize), ("test", 15, 5)] {
        let x: Vec<f32> = (0..n * 6).map(|i| (100 * (i / 6) + i % 6) as f32).collect();
        let y: Vec<i32> = (0..n).map(|i| if i / seg == 0 { 2 } else { 7 + (i / seg) as i32 }).collect();
        let meta = HashMap::from([
            ("protocol".to_string(), "1".to_string()),
            ("num_classes".to_string(), "12".to_string()),
            ("synthetic".to_string(), "true".to_string()),
        ]);
        write_xy(&data.join(format!("{name}.safetensors")), &x, &[n, 2, 1, 3], &y, safetensors::Dtype::I64, meta)
            .unwrap();
    }
    let study = d.path().join("study");
    let splits = write_target_splits(&data, &study).unwrap();
    assert_eq!(splits.iter().map(|s| s.subject).collect::<Vec<_>>(), vec![105, 106]);
    let read = |p: &Path| {
        let s = powertrain::data::Split::open(p).unwrap();
        let idx: Vec<usize> = (0..s.n).collect();
        let mut x = vec![0f32; s.n * s.row_len()];
        let mut y = vec![0i32; s.n];
        s.gather(&idx, &[], &mut x, &mut y, &mut []).unwrap();
        assert_eq!(s.row_shape, vec![2, 1, 3]);
        assert_eq!(s.metadata.get("num_classes").map(|s| s.as_str()), Some("12"));
        assert!(s.synthetic(), "the synthetic mark is carried into the split files");
        (x, y)
    };
    let (x, y) = read(&splits[0].train);
    assert_eq!(y, [vec![2; 7], vec![8; 7]].concat());
    assert_eq!((x[6], x[6 * 7]), (100.0, 1000.0), "rows 0-6 then 10-16");
    let (x, y) = read(&splits[0].val);
    assert_eq!(y, vec![2, 2, 8, 8]);
    assert_eq!(x[0], 800.0, "row 7 is the guard between the parts");
    for sp in &splits {
        assert!(sp.missing_in_train().is_empty(), "{sp:?}");
        assert_eq!(sp.classes_train, sp.classes_val);
    }
    let (_, y) = read(&splits[1].val);
    assert_eq!(y, vec![2, 8, 9]);
}

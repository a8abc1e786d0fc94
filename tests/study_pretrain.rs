//! `powertrain pretrain-study`: break-even arithmetic ("never", spread), the runs the study asks for, and
//! the 70/30 split files read back through crate::data.
mod study_fake;

use powertrain::rundir::RunSummary;
use powertrain::study::pretrain::{split_70_30, write_target_splits, write_xy, TargetSplit};
use powertrain::study::PretrainOptions;
use powertrain::study::{break_even, pretrain_study_with, BreakEven, Spread};
use powertrain::train::TrainConfig;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

#[test]
fn break_even_arithmetic_and_never() {
    assert_eq!(break_even(400.0, 300.0, 100.0), BreakEven::Reuses(2.0));
    assert_eq!(break_even(1000.0, 300.0, 220.0), BreakEven::Reuses(12.5));
    assert_eq!(break_even(400.0, 300.0, 300.0), BreakEven::Never);
    assert_eq!(break_even(400.0, 300.0, 350.0), BreakEven::Never);
    let s = Spread::of(&[BreakEven::Reuses(10.0), BreakEven::Reuses(13.0), BreakEven::Never]);
    assert_eq!((s.n, s.never), (3, 1));
    assert_eq!(s.mean, Some(11.5));
    assert!((s.std.unwrap() - 4.5f64.sqrt()).abs() < 1e-12);
    assert_eq!((s.min, s.max), (Some(10.0), Some(13.0)));
    assert_eq!(s.text(), "11.5 ± 2.12 (10.0-13.0); never in 1 of 3 seeds");
    let all_never = Spread::of(&[BreakEven::Never, BreakEven::Never]);
    assert_eq!(all_never.mean, None);
    assert_eq!(all_never.text(), "never");
    assert_eq!(Spread::of(&[BreakEven::Reuses(4.0)]).std, Some(0.0));
}

#[test]
fn seventy_thirty_split() {
    assert_eq!(split_70_30(10, "x").unwrap(), 7);
    assert_eq!(split_70_30(3, "x").unwrap(), 2);
    assert!(split_70_30(1, "subject105").unwrap_err().to_string().contains("subject105"));
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
    let get = |subj: &str, way: &str| r.break_even.iter().find(|(s, w, _)| s == subj && w == way).unwrap().2.clone();
    let ft105 = get("105", "finetune");
    assert_eq!((ft105.n, ft105.never, ft105.mean, ft105.min, ft105.max), (2, 0, Some(2.25), Some(2.0), Some(2.5)));
    assert!((ft105.std.unwrap() - 0.125f64.sqrt()).abs() < 1e-12);
    let fr_all = get("all", "frozen");
    assert_eq!(fr_all.n, 4);
    assert!((fr_all.mean.unwrap() - 1.8).abs() < 1e-12);
    assert_eq!(r.mean_pretrain, Some(450.0));
    assert_eq!(r.mean_reuse["scratch"], Some(300.0));
    assert_eq!(r.mean_reuse["frozen"], Some(50.0));
    assert!(r.table.contains("| 105 | finetune | 2.25 ± 0.354 (2.00-2.50) | 2 |"), "{}", r.table);
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
    assert_eq!((ft.never, ft.mean), (4, None));
    assert!(r.table.contains("| all | finetune | never | 4 |"), "{}", r.table);
}

#[test]
fn target_split_files_are_the_first_70_percent_by_time() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("pamap2");
    std::fs::create_dir_all(&data).unwrap();
    // val (subject 105): 10 windows, test (106): 5; x [n, 2, 1, 3], x value = 100 * row + element.
    for (name, n) in [("val", 10usize), ("test", 5)] {
        let x: Vec<f32> = (0..n * 6).map(|i| (100 * (i / 6) + i % 6) as f32).collect();
        let y: Vec<i32> = (0..n as i32).map(|i| i % 12).collect();
        let meta =
            HashMap::from([("protocol".to_string(), "1".to_string()), ("num_classes".to_string(), "12".to_string())]);
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
        (x, y)
    };
    let (x, y) = read(&splits[0].train);
    assert_eq!(y, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(x[6], 100.0);
    assert_eq!(x[6 * 7 - 1], 605.0);
    let (x, y) = read(&splits[0].val);
    assert_eq!(y, vec![7, 8, 9]);
    assert_eq!(x[0], 700.0);
    let (_, y) = read(&splits[1].train);
    assert_eq!(y, vec![0, 1, 2]);
    let (_, y) = read(&splits[1].val);
    assert_eq!(y, vec![3, 4]);
}

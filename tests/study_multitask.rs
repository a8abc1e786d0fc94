//! `powertrain multitask-study`: one K-output network vs K single-output networks (fake trainer).
mod study_fake;

use powertrain::rundir::RunSummary;
use powertrain::study::{multitask_study_with, MultitaskOptions};
use powertrain::train::TrainConfig;
use std::cell::RefCell;
use std::path::Path;

fn args(out: &Path) -> MultitaskOptions {
    MultitaskOptions {
        model: "celeba".into(),
        data: "/data/celeba".into(),
        tasks: Some("Smiling,Male,Young".into()),
        batch_size: 64,
        lr: 1e-3,
        epochs: 5,
        target_acc: None,
        seeds: 1,
        device: "cpu".into(),
        energy: "auto".into(),
        watts: None,
        extras: Default::default(),
        quick: false,
        out: out.to_path_buf(),
    }
}

#[test]
fn multitask_vs_single_task_energy_time_epochs_accuracy() {
    let d = tempfile::tempdir().unwrap();
    let calls = RefCell::new(Vec::<TrainConfig>::new());
    let t = |a: &TrainConfig| -> anyhow::Result<RunSummary> {
        calls.borrow_mut().push(a.clone());
        study_fake::fake_train(a)
    };
    let r = multitask_study_with(&args(d.path()), &t).unwrap();
    let tasks: Vec<Option<String>> = calls.borrow().iter().map(|a| a.tasks.clone()).collect();
    assert_eq!(
        tasks,
        vec![
            Some("Smiling,Male,Young".to_string()),
            Some("Smiling".to_string()),
            Some("Male".to_string()),
            Some("Young".to_string())
        ]
    );
    assert!(calls.borrow().iter().all(|a| a.target_acc == Some(0.85)));
    // Fake: the 3-output network costs 120 J per epoch and all attributes reach the target by epoch 2
    // (Young), though it runs to the limit of 5 epochs: 240 J counted, not 600. Single networks cost 80 J
    // per epoch and need 2, 1 and 3 epochs: 160 + 80 + 240 = 480 J.
    let s = &r.seeds[0];
    let m = s.multi.as_ref().unwrap();
    assert!(m.all_reached);
    assert_eq!((m.epochs, m.cost), (2, Some(240.0)));
    assert!((m.time_s.unwrap() - 2.4).abs() < 1e-9);
    let singles: Vec<(usize, Option<f64>)> = s
        .singles
        .iter()
        .map(|n| {
            let n = n.as_ref().unwrap();
            (n.epochs, n.cost)
        })
        .collect();
    assert_eq!(singles, vec![(2, Some(160.0)), (1, Some(80.0)), (3, Some(240.0))]);
    let (c, ti, ep) = s.singles_total();
    assert_eq!((c, ep), (Some(480.0), Some(6)));
    assert!((ti.unwrap() - 4.8).abs() < 1e-9);
    assert_eq!((r.mean_multi, r.mean_singles), (Some(240.0), Some(480.0)));
    assert!((m.acc["Young"] - 0.9).abs() < 1e-12);
    assert!((s.singles[2].as_ref().unwrap().acc["Young"] - 0.9).abs() < 1e-12);
    assert!(
        r.table.contains("| 0 | multi-task (3 outputs) | 240 | 2.40 | 2 | yes | 0.900 | 0.900 | 0.900 |"),
        "{}",
        r.table
    );
    assert!(r.table.contains("| 0 | 3 single-task total | 480 | 4.80 | 6 | yes |"), "{}", r.table);
    assert_eq!(r.ratio, powertrain::study::Ratio::Value { x: 2.0, lo: None, hi: None });
    assert!(r.table.contains("single-task total / multi-task: 2.00x (one seed: no interval)"), "{}", r.table);
    assert!(r.table.contains("arXiv:2401.01851"), "the paper is cited");
}

#[test]
fn an_attribute_that_never_reaches_the_target_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.epochs = 1;
    let r = multitask_study_with(&a, &study_fake::fake_train).unwrap();
    // With one epoch, Smiling (alone: 2 epochs) and Young never reach the target: whole cost, "no".
    let s = &r.seeds[0];
    let young = s.singles[2].as_ref().unwrap();
    assert!(!young.all_reached);
    assert_eq!((young.epochs, young.cost), (1, Some(80.0)));
    assert!(!s.multi.as_ref().unwrap().all_reached);
    assert!(r.table.contains("| no |"));
    // Neither side reached every target: no ratio is headlined, only "not determined".
    assert_eq!(r.ratio, powertrain::study::Ratio::Undetermined);
    assert!(
        r.table.contains("**Finding: single-task total / multi-task energy to targets: not determined"),
        "{}",
        r.table
    );
    assert!(!r.table.contains("2.00x"));
}

#[test]
fn multitask_needs_two_tasks_and_celeba() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.tasks = Some("Smiling".into());
    assert!(multitask_study_with(&a, &study_fake::fake_train).unwrap_err().to_string().contains("--tasks"));
    let mut a = args(d.path());
    a.model = "pamap2".into();
    assert!(multitask_study_with(&a, &study_fake::fake_train).unwrap_err().to_string().contains("--model pamap2"));
}

//! `powertrain sweep` against the fake trainer (tests/study_fake): table, best/worst ratio, GPU utilisation,
//! resume after an interruption, retry-once-then-failed, refusal of a mismatched study directory, Slurm.
mod study_fake;

use powertrain::rundir::RunSummary;
use powertrain::study::{sweep_with, SweepOptions, Trainer};
use powertrain::train::TrainConfig;
use std::cell::RefCell;
use std::path::Path;
use study_fake::fake_train;

fn args(out: &Path) -> SweepOptions {
    SweepOptions {
        model: "pamap2".into(),
        data: "/nonexistent/pamap2".into(),
        batch_sizes: Some("32,128".into()),
        lrs: Some("1e-3,1e-2".into()),
        seeds: 1,
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

/// The ids the trainer was called for, from the staging directory names.
fn run_id(a: &TrainConfig) -> String {
    format!("bs{}_lr{}_s{}", a.batch_size, a.lr, a.seed)
}

fn jsonl_ids(study: &Path) -> Vec<String> {
    std::fs::read_to_string(study.join("runs.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sweep_table_best_worst_ratio_and_gpu_utilisation() {
    let d = tempfile::tempdir().unwrap();
    let r = sweep_with(&args(d.path()), &fake_train).unwrap();
    assert_eq!(r.rows.len(), 4);
    assert!(r.rows.iter().all(|x| x.status == "ok" && x.target_reached));
    // Energy to target = (6400/bs + 10) * epochs: bs32 lr1e-3 = 210*2 = 420, bs128 lr1e-3 = 60*2 = 120,
    // bs32 lr1e-2 = 630, bs128 lr1e-2 = 180.
    let e: Vec<f64> = r.rows.iter().map(|x| x.energy_to_target_j.unwrap()).collect();
    assert_eq!(e, vec![420.0, 630.0, 120.0, 180.0]);
    let best = r.best.as_ref().unwrap();
    let worst = r.worst.as_ref().unwrap();
    assert_eq!((best.batch_size, best.lr), (128, 1e-3));
    assert_eq!((worst.batch_size, worst.lr), (32, 1e-2));
    assert!((r.ratio.unwrap() - 630.0 / 120.0).abs() < 1e-9);
    // Busy fraction of the fake = bs / (bs + 64).
    assert_eq!(r.gpu_util.len(), 2);
    assert!((r.gpu_util[0].1.unwrap() - 32.0 / 96.0).abs() < 1e-6, "{:?}", r.gpu_util);
    assert!((r.gpu_util[1].1.unwrap() - 128.0 / 192.0).abs() < 1e-6);
    assert!(r.table.contains("| bs128_lr0.001_s0 | 128 | 0.001 | 0 | 60.0 | 2 | 1.20 | 120 |"), "{}", r.table);
    assert!(
        r.table.contains("**Finding: worst / best energy to target 5.25x (one seed: no interval).**"),
        "{}",
        r.table
    );
    assert!(r.table.contains("arXiv:2401.01851") && r.table.contains("up to 5x"), "the paper side by side");
    assert!(!r.table.contains("ESTIMATE"));
    for name in ["study.json", "sweep.md", "sweep.json", "runs.jsonl", "runs/bs32_lr0.01_s0/summary.json"] {
        assert!(d.path().join(name).exists(), "{name}");
    }
    // Every run records its machine.
    let line = std::fs::read_to_string(d.path().join("runs.jsonl")).unwrap();
    assert!(line.contains("GPU-fake-0") && line.contains("580.00") && line.contains("fakehost"), "{line}");
}

#[test]
fn not_reached_estimate_and_none_are_marked() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.lrs = Some("1e-4,1e-3".into());
    a.energy = "estimate".into();
    a.watts = Some(40.0); // --energy estimate needs --watts
    let r = sweep_with(&a, &fake_train).unwrap();
    assert!(r.table.contains("ESTIMATE (not measured)"));
    let nr = r.rows.iter().find(|x| x.id == "bs32_lr0.0001_s0").unwrap();
    assert!(!nr.target_reached);
    // The configurations that never reach the target count with their whole cost as a lower bound: the
    // worst one (bs32 lr1e-4: 210 J x 5 epochs) makes worst/best a bound, never a plain ratio.
    use powertrain::study::Ratio;
    assert_eq!(r.findings.unreached, 2);
    assert_eq!(r.findings.worst_best_all, Ratio::AtLeast(1050.0 / 120.0));
    assert_eq!(r.ratio, None, "no plain ratio with an unreached side");
    assert_eq!(r.findings.worst_best_reached, Ratio::Value { x: 3.5, lo: None, hi: None });
    assert!(r.table.contains("**Finding: worst / best energy to target ≥ 8.75x"), "{}", r.table);
    assert!(
        r.table.contains("| bs32_lr0.0001_s0 | 32 | 0.0001 | 0 | 210 | 5 | not reached | not reached |"),
        "{}",
        r.table
    );
    // With source none the study ranks by time (energy / 100 W in the fake).
    let d2 = tempfile::tempdir().unwrap();
    let mut a2 = args(d2.path());
    a2.energy = "none".into();
    let r2 = sweep_with(&a2, &fake_train).unwrap();
    assert_eq!(r2.best.as_ref().unwrap().to_target, Some(1.2));
    assert!(r2.table.contains("time shown instead of energy"), "{}", r2.table);
    assert!(r2.rows.iter().all(|x| x.energy_to_target_j.is_none()));
}

#[test]
fn resume_after_an_interrupted_sweep_gives_the_same_table_without_duplicates() {
    let full = tempfile::tempdir().unwrap();
    let reference = sweep_with(&args(full.path()), &fake_train).unwrap();

    let d = tempfile::tempdir().unwrap();
    // The first two configurations finished, then the process was killed during the third: it left a
    // staging directory behind.
    for i in 0..2 {
        let mut a = args(d.path());
        a.only = Some(i);
        sweep_with(&a, &fake_train).unwrap();
    }
    let staging = d.path().join("runs/.staging-bs128_lr0.001_s0-999-1");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("steps.jsonl"), "{\"step\":1}\n").unwrap();

    let calls = RefCell::new(Vec::new());
    let t = |a: &TrainConfig| -> anyhow::Result<RunSummary> {
        calls.borrow_mut().push(run_id(a));
        fake_train(a)
    };
    let r = sweep_with(&args(d.path()), &t).unwrap();
    assert_eq!(*calls.borrow(), vec!["bs128_lr0.001_s0", "bs128_lr0.01_s0"]);
    assert_eq!(r.table, reference.table);
    // The killed attempt's files were kept, not deleted; no run is recorded twice.
    let partial: Vec<_> = std::fs::read_dir(d.path().join("partial")).unwrap().collect();
    assert_eq!(partial.len(), 1);
    let mut ids = jsonl_ids(d.path());
    assert_eq!(ids.len(), 4);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    // A third invocation trains nothing.
    calls.borrow_mut().clear();
    let r3 = sweep_with(&args(d.path()), &t).unwrap();
    assert!(calls.borrow().is_empty());
    assert_eq!(r3.table, reference.table);
    assert_eq!(jsonl_ids(d.path()).len(), 4);
}

#[test]
fn an_error_is_retried_once_then_recorded_as_failed() {
    let d = tempfile::tempdir().unwrap();
    let calls = RefCell::new(Vec::new());
    let t = |a: &TrainConfig| -> anyhow::Result<RunSummary> {
        let id = run_id(a);
        let n = calls.borrow().iter().filter(|c| **c == id).count();
        calls.borrow_mut().push(id.clone());
        match id.as_str() {
            // Fails once (after writing part of its run directory), then succeeds.
            "bs32_lr0.001_s0" if n == 0 => {
                std::fs::create_dir_all(a.out.as_ref().unwrap()).unwrap();
                std::fs::write(a.out.as_ref().unwrap().join("steps.jsonl"), "{}\n").unwrap();
                anyhow::bail!("CUDA_ERROR_LAUNCH_FAILED (transient)")
            }
            // Always panics.
            "bs128_lr0.01_s0" => panic!("out of memory at batch 128"),
            _ => fake_train(a),
        }
    };
    let r = sweep_with(&args(d.path()), &t).unwrap();
    let count = |id: &str| calls.borrow().iter().filter(|c| *c == id).count();
    assert_eq!(count("bs32_lr0.001_s0"), 2);
    assert_eq!(count("bs128_lr0.01_s0"), 2);
    assert_eq!(count("bs32_lr0.01_s0"), 1);
    let ok = r.rows.iter().find(|x| x.id == "bs32_lr0.001_s0").unwrap();
    assert_eq!(ok.status, "ok");
    assert_eq!(ok.energy_to_target_j, Some(420.0));
    let failed = r.rows.iter().find(|x| x.id == "bs128_lr0.01_s0").unwrap();
    assert_eq!(failed.status, "failed");
    let fj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("runs/bs128_lr0.01_s0/failed.json")).unwrap())
            .unwrap();
    assert_eq!(fj["attempts"], 2);
    assert_eq!(fj["errors"].as_array().unwrap().len(), 2);
    assert!(fj["errors"][0].as_str().unwrap().contains("out of memory at batch 128"));
    assert!(
        r.table.contains("FAILED bs128_lr0.01_s0: the trainer panicked: out of memory at batch 128"),
        "{}",
        r.table
    );
    // The failed attempt's partial files are kept.
    assert_eq!(std::fs::read_dir(d.path().join("partial")).unwrap().count(), 1);
    // The configuration still counts for the best/worst of the ones that finished.
    assert_eq!(r.worst.as_ref().unwrap().to_target, Some(630.0));
    // Re-running skips the failed run (and everything else): nothing trains, nothing is lost.
    calls.borrow_mut().clear();
    let r2 = sweep_with(&args(d.path()), &t).unwrap();
    assert!(calls.borrow().is_empty());
    assert_eq!(r2.table, r.table);
}

#[test]
fn a_mismatched_study_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    sweep_with(&args(d.path()), &fake_train).unwrap();
    let never = |_: &TrainConfig| -> anyhow::Result<RunSummary> { panic!("must not train") };
    let t: Trainer = &never;

    let mut a = args(d.path());
    a.model = "celeba".into();
    a.target_acc = Some(0.6);
    let e = format!("{:#}", sweep_with(&a, t).unwrap_err());
    assert!(e.contains("--model pamap2, not celeba") && e.contains("use a new --out"), "{e}");

    let mut a = args(d.path());
    a.data = "/elsewhere/data".into();
    let e = format!("{:#}", sweep_with(&a, t).unwrap_err());
    assert!(e.contains("--data"), "{e}");

    let mut a = args(d.path());
    a.lrs = Some("1e-3".into());
    let e = format!("{:#}", sweep_with(&a, t).unwrap_err());
    assert!(e.contains("another grid") && e.contains("lrs"), "{e}");

    let p = d.path().join("study.json");
    let text = std::fs::read_to_string(&p).unwrap().replace("\"protocol\": 1", "\"protocol\": 0");
    std::fs::write(&p, text).unwrap();
    let e = format!("{:#}", sweep_with(&args(d.path()), t).unwrap_err());
    assert!(e.contains("protocol 0, not 1"), "{e}");
}

#[test]
fn bad_flags_are_errors_naming_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.lrs = Some("1e-3,fast".into());
    assert!(format!("{:#}", sweep_with(&a, &fake_train).unwrap_err()).contains("--lrs: cannot read 'fast'"));
    let mut a = args(d.path());
    a.only = Some(4);
    assert!(format!("{:#}", sweep_with(&a, &fake_train).unwrap_err()).contains("--only 4: the grid has 4"));
}

#[test]
fn quick_grid_is_small() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.quick = true;
    a.batch_sizes = None;
    a.lrs = None;
    a.target_acc = None;
    a.epochs = 20;
    let g = powertrain::study::sweep::resolve(&a).unwrap();
    assert_eq!(g.batch_sizes, vec![32, 512]);
    assert_eq!(g.lrs, vec![1e-4, 1e-2]);
    assert_eq!((g.epochs, g.target_acc), (4, 0.6));
    let r = sweep_with(&a, &fake_train).unwrap();
    assert_eq!(r.rows.len(), 4);
}

#[test]
fn slurm_script_runs_one_configuration_per_array_task() {
    let d = tempfile::tempdir().unwrap();
    let script = d.path().join("sweep.sbatch");
    let mut a = args(&d.path().join("study"));
    a.seeds = 2;
    a.emit_slurm = Some(script.clone());
    let never = |_: &TrainConfig| -> anyhow::Result<RunSummary> { panic!("--emit-slurm must not train") };
    sweep_with(&a, &never).unwrap();
    let text = std::fs::read_to_string(&script).unwrap();
    let study = std::fs::canonicalize(d.path().join("study")).unwrap();
    assert!(text.starts_with("#!/bin/bash\n"));
    assert!(text.contains("#SBATCH --array=0-7\n"), "{text}");
    // A GPU is requested for --device cuda only: this grid runs on the CPU (a cluster without GPUs refuses
    // `--gres=gpu:1` outright).
    assert!(!text.contains("--gres"), "{text}");
    let gpu_script = d.path().join("gpu.sbatch");
    let mut g = args(&d.path().join("gpu_study"));
    g.device = "cuda".into();
    g.emit_slurm = Some(gpu_script.clone());
    sweep_with(&g, &never).unwrap();
    assert!(std::fs::read_to_string(&gpu_script).unwrap().contains("#SBATCH --gres=gpu:1\n"));
    assert!(text.contains(&format!("#SBATCH --output={}/slurm/slurm-%A_%a.out", study.display())));
    assert!(study.join("slurm").is_dir());
    let cmd = text.lines().last().unwrap();
    assert!(cmd.contains(" sweep --model pamap2 --data /nonexistent/pamap2 --batch-sizes 32,128 --lrs 0.001,0.01 --seeds 2 --target-acc 0.6 --epochs 5"), "{cmd}");
    assert!(cmd.contains(&format!("--only \"$SLURM_ARRAY_TASK_ID\" --out {}", study.display())), "{cmd}");

    // What the array tasks do: each runs one index into the shared directory; the merged table equals a
    // sweep run in one go.
    for i in (0..8).rev() {
        let mut t = args(&study);
        t.seeds = 2;
        t.only = Some(i);
        sweep_with(&t, &fake_train).unwrap();
    }
    let merged = sweep_with(
        &{
            let mut t = args(&study);
            t.seeds = 2;
            t
        },
        &|_: &TrainConfig| -> anyhow::Result<RunSummary> { panic!("all done") },
    )
    .unwrap();
    let one_go = tempfile::tempdir().unwrap();
    let mut t = args(one_go.path());
    t.seeds = 2;
    assert_eq!(merged.table, sweep_with(&t, &fake_train).unwrap().table);

    let have = |b: &str| std::process::Command::new("which").arg(b).output().is_ok_and(|o| o.status.success());
    if have("sbatch") && have("slurmctld") && have("slurmd") {
        eprintln!("slurm: sbatch/slurmctld/slurmd found, but no cluster is configured for tests; live part skipped");
    } else {
        eprintln!("slurm: slurmctld/slurmd not installed; the live Slurm part is skipped");
    }
}

#[test]
fn a_sweep_whose_runs_all_fail_is_an_error_and_a_corrected_command_retries_them() {
    use powertrain::energy::EnergySource;
    use powertrain::train::UsedEnergy;
    let d = tempfile::tempdir().unwrap();
    let calls = RefCell::new(0);
    // Every run fails part way, after using 5 J (the error says so, as the real trainer's does).
    let failing = |_: &TrainConfig| -> anyhow::Result<RunSummary> {
        *calls.borrow_mut() += 1;
        Err(anyhow::anyhow!("no sensor answered").context(UsedEnergy { joules: 5.0, source: EnergySource::Estimate }))
    };
    let e = format!("{:#}", sweep_with(&args(d.path()), &failing).unwrap_err());
    assert!(e.contains("every run of this invocation failed (4 of 4)") && e.contains("sweep.md"), "{e}");
    assert_eq!(*calls.borrow(), 8, "each run is tried twice");
    let table = std::fs::read_to_string(d.path().join("sweep.md")).unwrap();
    assert!(
        table.contains("FAILED bs32_lr0.001_s0:") && table.contains("(the failed attempts used 10.0 J)"),
        "{table}"
    );
    let fj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("runs/bs32_lr0.001_s0/failed.json")).unwrap())
            .unwrap();
    assert_eq!(fj["used_energy_j"], 10.0);
    // The same command again trains nothing and is still an error (nothing is lost either).
    *calls.borrow_mut() = 0;
    assert!(sweep_with(&args(d.path()), &failing).is_err());
    assert_eq!(*calls.borrow(), 0);
    // A corrected command (another energy source) is accepted: the failed runs move to partial/ and run again.
    let mut fixed = args(d.path());
    fixed.energy = "estimate".into();
    fixed.watts = Some(40.0);
    let r = sweep_with(&fixed, &fake_train).unwrap();
    assert!(r.rows.iter().all(|x| x.status == "ok"), "{}", r.table);
    assert_eq!(std::fs::read_dir(d.path().join("partial")).unwrap().count(), 4);
    let manifest = std::fs::read_to_string(d.path().join("study.json")).unwrap();
    assert!(manifest.contains("\"energy\": \"estimate\""), "{manifest}");
    // Now that runs finished, a different grid is refused again.
    let e = format!("{:#}", sweep_with(&args(d.path()), &fake_train).unwrap_err());
    assert!(e.contains("another grid"), "{e}");
}

#[test]
fn duplicate_grid_entries_and_absurd_sizes_are_refused_before_the_study_directory_exists() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("S");
    let never = |_: &TrainConfig| -> anyhow::Result<RunSummary> { panic!("must not train") };
    let err = |f: &dyn Fn(&mut SweepOptions)| {
        let mut a = args(&out);
        f(&mut a);
        let e = format!("{:#}", sweep_with(&a, &never).unwrap_err());
        assert!(!out.exists(), "refused before the study directory is made: {e}");
        e
    };
    assert!(err(&|a| a.batch_sizes = Some("32,64,32".into())).contains("--batch-sizes: 32 is listed twice"));
    assert!(err(&|a| a.lrs = Some("1e-3,0.001".into())).contains("--lrs: 0.001 is listed twice"));
    assert!(err(&|a| a.seeds = u64::MAX).contains("at most"));
    assert!(err(&|a| a.batch_sizes = Some("16777216".into())).contains("--batch-sizes"));
    assert!(err(&|a| a.energy = "estimate".into()).contains("--energy estimate needs --watts"));
    assert!(err(&|a| a.energy = "magic".into()).contains("--energy 'magic'"));
    assert!(err(&|a| a.target_acc = Some(f64::NAN)).contains("--target-acc NaN"));
    assert!(err(&|a| a.tasks = Some("Smiling".into())).contains("--tasks applies to the celeba model"));
}

#[test]
fn seeds_give_intervals_and_the_ranking_says_what_is_resolved() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.seeds = 3;
    let r = sweep_with(&a, &fake_train).unwrap();
    assert_eq!(r.rows.len(), 12);
    let best = r.best.as_ref().unwrap();
    let m = best.mean.unwrap();
    assert_eq!((m.interval.n, m.interval.mean, m.lower_bound), (3, 120.0, false));
    // The fake's costs do not depend on the seed: zero-width intervals, every neighbour resolved.
    assert_eq!(m.interval.half_width, Some(0.0));
    assert_eq!(r.findings.ranking.len(), 4);
    assert_eq!(r.findings.ranking[0].2, "cheapest");
    assert!(r.findings.ranking[1..].iter().all(|x| x.2.starts_with("resolved")), "{:?}", r.findings.ranking);
    // Seed-paired bootstrap of identical seeds: the interval is the point.
    match r.findings.worst_best_all {
        powertrain::study::Ratio::Value { x, lo: Some(lo), hi: Some(hi) } => {
            assert!((x - 5.25).abs() < 1e-9 && (lo - 5.25).abs() < 1e-9 && (hi - 5.25).abs() < 1e-9)
        }
        other => panic!("{other:?}"),
    }
    assert!(r.table.contains("| batch 128 lr 0.001 | 120 ± 0 | cheapest |"), "{}", r.table);
    // The median configuration (sorted 120, 180, 420, 630: the second) over the best: 1.5x, a 33 % saving.
    assert_eq!(r.findings.median_best.saving_text(), "33 % (95 % CI 33 %-33 %)");
}

#[test]
fn quick_marks_the_lowered_target() {
    let d = tempfile::tempdir().unwrap();
    let mut a = args(d.path());
    a.quick = true;
    a.target_acc = None;
    let r = sweep_with(&a, &fake_train).unwrap();
    assert!(r.table.contains("0.6 (lowered by --quick from the protocol's 0.8"), "{}", r.table);
}

#[test]
fn prune_finds_the_full_grids_best_for_less_energy() {
    // bs 32/128 x lr 1e-4 (never reaches), 1e-3, 1e-2, 3 seeds, 5 epochs. Full grid per seed: 1050 + 420 + 630
    // + 300 + 120 + 180 = 2700 J, 8100 J in all. --prune: seed 0 of each in grid order capped at 1.25x the best
    // so far (2700 J: the caps only bite after the epochs they end), then seeds 1-2 of bs128 lr1e-3 only
    // (the only one within 25 % of its 120 J): 2940 J, a 64 % saving.
    let (full_dir, pruned_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let grid = |out: &Path, prune: bool| {
        let mut a = args(out);
        a.lrs = Some("1e-4,1e-3,1e-2".into());
        a.seeds = 3;
        a.epochs = 5;
        a.prune = prune;
        a
    };
    let full = sweep_with(&grid(full_dir.path(), false), &fake_train).unwrap();
    let pruned = sweep_with(&grid(pruned_dir.path(), true), &fake_train).unwrap();
    let key = |r: &powertrain::study::SweepResult| r.best.as_ref().map(|b| (b.batch_size, b.lr));
    assert_eq!(key(&full), Some((128, 1e-3)));
    assert_eq!(key(&pruned), key(&full), "the same best configuration");
    assert_eq!(full.findings.sweep_cost, Some(8100.0));
    assert_eq!(pruned.findings.sweep_cost, Some(2940.0));
    assert!(pruned.findings.sweep_cost.unwrap() <= 0.5 * full.findings.sweep_cost.unwrap());
    assert_eq!(pruned.findings.pruned.len(), 5, "{:?}", pruned.findings.pruned);
    assert_eq!(pruned.rows.iter().filter(|r| r.status == "pruned").count(), 10);
    // bs32 lr1e-2 was capped at 525 J after its third epoch (630 J), where it also reached the target.
    assert!(pruned.table.contains("This sweep used 2940 J in total"), "{}", pruned.table);
    assert!(pruned.table.contains("adaptive capping"), "{}", pruned.table);
    // A pruned sweep does not headline a worst/best it never measured: its finding is the best and its cost.
    assert!(
        pruned.table.contains(", found by --prune for 2940 J of sweep; worst / best is not a finding"),
        "{}",
        pruned.table
    );
    assert!(!pruned.table.contains("**Finding: worst / best"), "{}", pruned.table);
    assert!(full.table.contains("**Finding: worst / best energy to target"), "{}", full.table);
    // --prune with --only is refused before anything runs.
    let mut bad = grid(tempfile::tempdir().unwrap().path(), true);
    bad.only = Some(0);
    assert!(sweep_with(&bad, &fake_train).unwrap_err().to_string().contains("--prune"));
}

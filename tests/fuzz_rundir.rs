//! Fuzzing of every run-directory reader `powertrain report` uses (steps.jsonl, epochs.csv, kernels.csv,
//! summary.json, config.json, study.json, failed.json) and of `report` itself, on stable Rust (`arbtest`).
//!
//! Properties: never a panic, an abort or a hang; a reader either fails with an error naming the file (and the
//! line, where the format has lines), or returns records that round-trip: written back by their writer and
//! read again, they are the same (the writer's output is a fixed point). `write_report` over generated run and
//! study directories (extreme, non-finite, damaged values) finishes within a deadline, without a panic.
//!
//! Each property runs for a time budget: 600 ms by default (a few seconds for the file in CI). Fuzz longer
//! with `POWERTRAIN_FUZZ_MS=600000 cargo test --release --test fuzz_rundir` (milliseconds per property);
//! a failure prints its seed, which `ARBTEST_SEED=0x... cargo test --release --test fuzz_rundir NAME` replays.
//!
//! What it found: `report` looped for ever on an epochs.csv whose cumulative energies were near f64::MAX (the
//! padded axis range became infinite and the plotting library's tick search never ended; also ranges narrower
//! than the float spacing of their ends); and a diverged run's steps.jsonl (its NaN loss written as `null`)
//! could not be read back, so its report dropped the power plot.

use arbitrary::{Result as ArbResult, Unstructured};
use powertrain::energy::{EnergySource, KernelEnergy, StepEnergy};
use powertrain::rundir::{Config, EpochRow, KernelRow, KernelsCsv, RunDir, RunSummary, StepRecord};
use powertrain::study::StudyManifest;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The budget of one property (ms): `POWERTRAIN_FUZZ_MS`, else `default`.
fn budget(default: u64) -> u64 {
    std::env::var("POWERTRAIN_FUZZ_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fuzz(default_ms: u64, mut prop: impl FnMut(&mut Unstructured<'_>) -> ArbResult<()>) {
    arbtest::arbtest(|u| prop(u)).budget_ms(budget(default_ms)).size_max(1 << 16).run();
}

// ---- generators --------------------------------------------------------------------------------------------

/// A number a file might hold: ordinary, extreme, subnormal, non-finite, or any bit pattern.
fn num(u: &mut Unstructured<'_>) -> ArbResult<f64> {
    const SPECIAL: [f64; 16] = [
        0.0,
        -0.0,
        1.0,
        0.5,
        1e308,
        1.79e308,
        f64::MAX,
        -f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        1e16,
        1e16 + 2.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        123.456,
    ];
    Ok(match u.int_in_range(0..=3)? {
        0 => SPECIAL[u.choose_index(SPECIAL.len())?],
        1 => f64::from_bits(u.arbitrary()?),
        2 => u.int_in_range(0..=1000)? as f64 / 8.0,
        _ => u.arbitrary::<f32>()? as f64,
    })
}

fn finite(u: &mut Unstructured<'_>) -> ArbResult<f64> {
    let x = num(u)?;
    Ok(if x.is_finite() { x } else { 1.5 })
}

fn opt(u: &mut Unstructured<'_>) -> ArbResult<Option<f64>> {
    Ok(if u.arbitrary()? { Some(num(u)?) } else { None })
}

/// A short name: letters, digits and a few others (run ids, kernel and task names).
/// (No white space at either end: the CSV readers trim cells, and no writer writes such names.)
fn name(u: &mut Unstructured<'_>) -> ArbResult<String> {
    const ALPHA: &[u8] = b"abcdefgxyz_019-. ()<>&\"',%";
    let n = u.int_in_range(1..=12)?;
    let s: String = (0..n).map(|_| Ok(ALPHA[u.choose_index(ALPHA.len())?] as char)).collect::<ArbResult<_>>()?;
    Ok(match s.trim() {
        "" => "k".into(),
        t => t.to_string(),
    })
}

/// Text near `valid`: it, or it mutated (bytes replaced, inserted, removed, lines duplicated, truncated), or
/// arbitrary bytes.
fn near(u: &mut Unstructured<'_>, valid: &str) -> ArbResult<Vec<u8>> {
    let mut b = valid.as_bytes().to_vec();
    match u.int_in_range(0..=5)? {
        0 => return Ok(b),
        1 => return u.arbitrary::<Vec<u8>>(),
        _ => {}
    }
    const PIECES: [&str; 14] =
        [",", "\n", "\"", "NaN", "inf", "-", "1e400", "null", "{", "}", "\r\n", "0", "\u{feff}", "\u{0}"];
    for _ in 0..u.int_in_range(1..=6)? {
        let at = if b.is_empty() { 0 } else { u.choose_index(b.len() + 1)? };
        match u.int_in_range(0..=4)? {
            0 if at < b.len() => b[at] = u.arbitrary()?,
            1 => b.splice(at..at, PIECES[u.choose_index(PIECES.len())?].bytes()).for_each(drop),
            2 if at < b.len() => {
                let end = (at + u.int_in_range(1..=20)?).min(b.len());
                b.drain(at..end);
            }
            3 => b.truncate(at),
            _ => {
                let copy = b.clone();
                b.extend_from_slice(&copy);
            }
        }
    }
    Ok(b)
}

fn step(u: &mut Unstructured<'_>) -> ArbResult<StepRecord> {
    let kernels: Option<Vec<KernelEnergy>> = if u.arbitrary()? {
        let n = u.int_in_range(0..=3)?;
        Some(
            (0..n)
                .map(|_| {
                    Ok(KernelEnergy {
                        name: name(u)?,
                        launches: u.arbitrary()?,
                        time_s: finite(u)?,
                        energy_j: opt(u)?,
                        uncertainty_j: opt(u)?,
                        true_energy_j: None,
                    })
                })
                .collect::<ArbResult<_>>()?,
        )
    } else {
        None
    };
    let se = StepEnergy {
        energy_j: opt(u)?,
        window_s: finite(u)?,
        gap_s: finite(u)?,
        gap_energy_j: opt(u)?,
        uncertainty_j: opt(u)?,
        method: name(u)?,
        kernels_timed: kernels.as_ref().map(|_| true),
        kernels: kernels.unwrap_or_default(),
        ..Default::default()
    };
    let source = [EnergySource::Estimate, EnergySource::None][u.choose_index(2)?];
    Ok(StepRecord::new(
        u.arbitrary()?,
        u.arbitrary::<u32>()? as usize,
        num(u)? as f32,
        u.arbitrary::<u32>()? as usize,
        (finite(u)?, finite(u)?),
        source,
        &se,
    ))
}

fn epoch_row(u: &mut Unstructured<'_>) -> ArbResult<EpochRow> {
    Ok(EpochRow {
        epoch: u.arbitrary::<u32>()? as usize,
        steps: u.arbitrary()?,
        train_loss: num(u)?,
        val_loss: opt(u)?,
        val_acc: opt(u)?,
        epoch_wall_s: num(u)?,
        epoch_energy_j: opt(u)?,
        eval_energy_j: opt(u)?,
        cum_energy_j: opt(u)?,
        cum_wall_s: num(u)?,
        partial: u.arbitrary()?,
    })
}

fn kernel_row(u: &mut Unstructured<'_>) -> ArbResult<KernelRow> {
    Ok(KernelRow {
        name: name(u)?,
        launches: if u.arbitrary()? { Some(u.arbitrary()?) } else { None },
        gpu_time_s: opt(u)?,
        energy_j: opt(u)?,
        j_per_launch: opt(u)?,
        j_per_gflop: opt(u)?,
        energy_uncertainty_j: opt(u)?,
        timed_launches: if u.arbitrary()? { Some(u.arbitrary()?) } else { None },
        true_energy_j: None,
        method: None,
    })
}

fn summary(u: &mut Unstructured<'_>, source: &str) -> ArbResult<RunSummary> {
    let reached: bool = u.arbitrary()?;
    Ok(RunSummary {
        protocol: 1,
        model: ["pamap2", "celeba"][u.choose_index(2)?].into(),
        device: "cpu".into(),
        device_name: name(u)?,
        optimizer: "adam".into(),
        lr: [1e-3, 1e-2, 3e-4, f32::MAX, f32::MIN_POSITIVE][u.choose_index(5)?],
        batch_size: [16, 32, 0, usize::MAX][u.choose_index(4)?],
        seed: u.arbitrary()?,
        stop_reason: name(u)?,
        epochs: u.int_in_range(0..=5)?,
        steps: u.arbitrary()?,
        final_train_loss: opt(u)?,
        final_val_acc: opt(u)?,
        best_val_acc: opt(u)?,
        target_acc: opt(u)?,
        target_reached: reached,
        epochs_to_target: if reached { Some(u.int_in_range(0..=5)?) } else { None },
        energy_to_target_j: opt(u)?,
        time_to_target_s: opt(u)?,
        total_energy_j: opt(u)?,
        energy_per_epoch_j: opt(u)?,
        wall_s: finite(u)?,
        mean_step_s: finite(u)?,
        energy_source: source.into(),
        host: name(u)?,
        ..Default::default()
    })
}

// ---- helpers ---------------------------------------------------------------------------------------------------

/// The error names `path`.
fn names_file(e: &anyhow::Error, path: &Path) {
    let msg = format!("{e:#}");
    assert!(msg.contains(&path.display().to_string()), "the error does not name {}: {msg}", path.display());
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---- the readers ---------------------------------------------------------------------------------------------

#[test]
fn steps_jsonl_reads_or_names_file_and_line() {
    let d = dir();
    let path = d.path().join("steps.jsonl");
    fuzz(600, |u| {
        let recs: Vec<StepRecord> = (0..u.int_in_range(0..=4)?).map(|_| step(u)).collect::<ArbResult<_>>()?;
        let mut valid = Vec::new();
        for r in &recs {
            r.write_line(&mut valid).unwrap();
        }
        let valid = String::from_utf8(valid).unwrap();
        // What the writer wrote reads back as what it was given (a NaN or infinite loss reads as NaN, an
        // absent or non-finite optional number as absent: JSON has no non-finite numbers).
        if !valid.is_empty() {
            std::fs::write(&path, &valid).unwrap();
            let back = RunDir::new(d.path()).steps().unwrap().unwrap();
            assert_eq!(back.len(), recs.len());
            for (a, b) in recs.iter().zip(&back) {
                assert_eq!((a.step, a.epoch, a.batch_size), (b.step, b.epoch, b.batch_size));
                assert!(a.loss == b.loss || (!a.loss.is_finite() && b.loss.is_nan()), "{} vs {}", a.loss, b.loss);
                let fin = |x: Option<f64>| x.filter(|v| v.is_finite());
                assert_eq!(fin(a.energy_j), b.energy_j);
                assert_eq!((a.wall_s, a.window_s), (b.wall_s, b.window_s));
                assert_eq!(a.kernels.as_ref().map(|k| k.len()), b.kernels.as_ref().map(|k| k.len()));
            }
        }
        // Anything near it: an error naming the file and the line, or records that are a fixed point.
        let text = near(u, &valid)?;
        std::fs::write(&path, &text).unwrap();
        match RunDir::new(d.path()).steps() {
            Err(e) => {
                names_file(&e, &path);
                let msg = format!("{e:#}");
                assert!(msg.contains(" line ") || msg.contains("cannot read"), "{msg}");
            }
            Ok(recs) => {
                let recs = recs.unwrap();
                let mut out = Vec::new();
                for r in &recs {
                    r.write_line(&mut out).unwrap();
                }
                std::fs::write(&path, &out).unwrap();
                let again = RunDir::new(d.path()).steps().unwrap().unwrap();
                let mut out2 = Vec::new();
                for r in &again {
                    r.write_line(&mut out2).unwrap();
                }
                assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&out2));
            }
        }
        Ok(())
    });
}

#[test]
fn epochs_csv_reads_or_names_file_and_line() {
    let path = PathBuf::from("run/epochs.csv");
    fuzz(600, |u| {
        let rows: Vec<EpochRow> = (0..u.int_in_range(0..=4)?).map(|_| epoch_row(u)).collect::<ArbResult<_>>()?;
        let valid = EpochRow::render(&rows);
        let back = EpochRow::parse(&valid, &path).unwrap();
        assert_eq!(back.len(), rows.len());
        for (a, b) in rows.iter().zip(&back) {
            // Every number round-trips exactly (NaN as NaN, infinities as inf).
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        let text = String::from_utf8_lossy(&near(u, &valid)?).to_string();
        match EpochRow::parse(&text, &path) {
            Err(e) => names_file(&e, &path),
            Ok(rows) => {
                let once = EpochRow::render(&rows);
                let twice = EpochRow::render(&EpochRow::parse(&once, &path).unwrap());
                assert_eq!(once, twice);
            }
        }
        Ok(())
    });
}

#[test]
fn kernels_csv_reads_or_names_file_and_line() {
    let path = PathBuf::from("run/kernels.csv");
    fuzz(600, |u| {
        let rows: Vec<KernelRow> = (0..u.int_in_range(0..=4)?).map(|_| kernel_row(u)).collect::<ArbResult<_>>()?;
        let valid = KernelsCsv::render(&rows);
        let back = KernelsCsv::parse(&valid, &path).unwrap();
        assert_eq!(back.rows.len(), rows.len());
        for (a, b) in rows.iter().zip(&back.rows) {
            assert_eq!((&a.name, a.launches, a.timed_launches), (&b.name, b.launches, b.timed_launches));
        }
        let text = String::from_utf8_lossy(&near(u, &valid)?).to_string();
        match KernelsCsv::parse(&text, &path) {
            Err(e) => names_file(&e, &path),
            Ok(k) => {
                // The writer's fixed decimals are a fixed point after one pass.
                let once = KernelsCsv::render(&k.rows);
                let twice = KernelsCsv::render(&KernelsCsv::parse(&once, &path).unwrap().rows);
                assert_eq!(once, twice);
            }
        }
        Ok(())
    });
}

#[test]
fn json_files_read_or_name_the_file() {
    let d = dir();
    fuzz(600, |u| {
        let s = summary(u, "estimate")?;
        let mut valid = serde_json::to_string_pretty(&s).unwrap();
        // summary.json: read back equal to what was written (non-finite optional numbers become absent).
        std::fs::write(d.path().join("summary.json"), &valid).unwrap();
        let back = RunSummary::read(d.path()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&s).unwrap());
        if u.arbitrary()? {
            valid = serde_json::to_string_pretty(&serde_json::json!({"model": name(u)?, "batch_size": 4})).unwrap();
        }
        let text = near(u, &valid)?;
        for file in ["summary.json", "config.json", "study.json", "failed.json"] {
            let p = d.path().join(file);
            std::fs::write(&p, &text).unwrap();
            let r: Result<serde_json::Value, anyhow::Error> = match file {
                "summary.json" => RunSummary::read(d.path()).map(|x| serde_json::to_value(x).unwrap()),
                "config.json" => Config::read(d.path()).map(|x| serde_json::to_value(x).unwrap()),
                "study.json" => StudyManifest::read(d.path()).map(|x| serde_json::to_value(x).unwrap()),
                _ => powertrain::study::load_record(d.path(), "x").map(|r| serde_json::json!(r.map(|r| r.id))),
            };
            match r {
                Err(e) => names_file(&e, &p),
                Ok(v) if file != "failed.json" => {
                    // Written back and read again: the same.
                    let again = serde_json::to_string(&v).unwrap();
                    std::fs::write(&p, &again).unwrap();
                    let v2 = match file {
                        "summary.json" => serde_json::to_value(RunSummary::read(d.path()).unwrap()).unwrap(),
                        "config.json" => serde_json::to_value(Config::read(d.path()).unwrap()).unwrap(),
                        _ => serde_json::to_value(StudyManifest::read(d.path()).unwrap()).unwrap(),
                    };
                    assert_eq!(v, v2, "{file}");
                }
                Ok(_) => {}
            }
            std::fs::remove_file(&p).unwrap();
        }
        Ok(())
    });
}

// ---- report over generated directories ---------------------------------------------------------------------------

/// Write one run directory with generated files (some of them damaged).
fn write_run(u: &mut Unstructured<'_>, dir: &Path, source: &str) -> ArbResult<()> {
    std::fs::create_dir_all(dir).unwrap();
    let s = summary(u, source)?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&s).unwrap()).unwrap();
    if u.arbitrary()? {
        let rows: Vec<EpochRow> = (0..u.int_in_range(0..=5)?).map(|_| epoch_row(u)).collect::<ArbResult<_>>()?;
        let text = EpochRow::render(&rows);
        let text = if u.ratio(1, 4)? { near(u, &text)? } else { text.into_bytes() };
        std::fs::write(dir.join("epochs.csv"), text).unwrap();
    }
    if u.arbitrary()? {
        let mut text = Vec::new();
        for _ in 0..u.int_in_range(0..=6)? {
            step(u)?.write_line(&mut text).unwrap();
        }
        let text = if u.ratio(1, 4)? { near(u, &String::from_utf8(text).unwrap())? } else { text };
        std::fs::write(dir.join("steps.jsonl"), text).unwrap();
    }
    if u.arbitrary()? {
        let rows: Vec<KernelRow> = (0..u.int_in_range(0..=5)?).map(|_| kernel_row(u)).collect::<ArbResult<_>>()?;
        let text = KernelsCsv::render(&rows);
        let text = if u.ratio(1, 4)? { near(u, &text)? } else { text.into_bytes() };
        std::fs::write(dir.join("kernels.csv"), text).unwrap();
    }
    Ok(())
}

fn json_num(u: &mut Unstructured<'_>) -> ArbResult<serde_json::Value> {
    Ok(if u.ratio(1, 5)? { serde_json::Value::Null } else { serde_json::json!(finite(u)?) })
}

/// A study directory: study.json, runs, and maybe a pretraining or multi-task result with generated numbers.
fn write_study(u: &mut Unstructured<'_>, dir: &Path) -> ArbResult<()> {
    let kind = ["sweep", "pretrain", "multitask"][u.choose_index(3)?];
    let m = serde_json::json!({"protocol": 1, "kind": kind, "model": "pamap2", "data": "/d", "grid": {}});
    std::fs::create_dir_all(dir.join("runs")).unwrap();
    std::fs::write(dir.join("study.json"), m.to_string()).unwrap();
    let source = ["estimate", "none", "nvml-counter"][u.choose_index(3)?];
    for i in 0..u.int_in_range(0..=4)? {
        let id = format!("bs{}_{}", 16 << i, name(u)?.replace(['/', '.'], "_"));
        if u.ratio(1, 5)? {
            std::fs::create_dir_all(dir.join("runs").join(&id)).unwrap();
            let failed = serde_json::json!({"id": id, "status": "failed", "attempts": 2, "errors": [name(u)?],
                "summary": null, "machine": {"host": "h", "gpu_name": "", "gpu_uuid": "", "driver": ""},
                "args": null, "finished_unix": 0, "used_energy_j": json_num(u)?});
            std::fs::write(dir.join("runs").join(&id).join("failed.json"), failed.to_string()).unwrap();
        } else {
            write_run(u, &dir.join("runs").join(&id), source)?;
        }
    }
    let metric =
        [serde_json::json!({"Energy": {"estimate": false}}), serde_json::json!("Time")][u.choose_index(2)?].clone();
    if kind == "pretrain" {
        let p = serde_json::json!({"metric": metric, "target_acc": json_num(u)?, "seeds": [], "break_even": [],
            "mean_pretrain": json_num(u)?, "mean_reuse": {"scratch": json_num(u)?, "finetune": json_num(u)?,
            "frozen": json_num(u)?}, "warnings": [], "table": name(u)?});
        std::fs::write(dir.join("pretrain.json"), p.to_string()).unwrap();
    }
    if kind == "multitask" {
        let tasks = vec![name(u)?, name(u)?];
        let net = |u: &mut Unstructured<'_>| -> ArbResult<serde_json::Value> {
            Ok(serde_json::json!({"id": "n", "tasks": [], "all_reached": true, "epochs": 1, "cost": json_num(u)?,
                "time_s": json_num(u)?, "acc": {}}))
        };
        let mt = serde_json::json!({"metric": metric, "tasks": tasks, "target_acc": 0.8,
            "seeds": [{"seed": 0, "multi": net(u)?, "singles": [net(u)?, serde_json::Value::Null]}],
            "mean_multi": json_num(u)?, "mean_singles": json_num(u)?, "warnings": [], "table": "| a |\n"});
        std::fs::write(dir.join("multitask.json"), mt.to_string()).unwrap();
    }
    Ok(())
}

/// Copy a failing input out of the temporary folder (into the target directory), for the report.
fn keep(root: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dst = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy(&p, &dst);
            } else {
                let _ = std::fs::copy(&p, &dst);
            }
        }
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let to = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-failures/report-{stamp}"));
    copy(root, &to);
    to
}

#[test]
fn report_finishes_on_any_run_or_study_directory() {
    let d = dir();
    let mut case = 0u64;
    fuzz(3000, |u| {
        case += 1;
        let root = d.path().join(format!("case{case}"));
        let mut dirs = Vec::new();
        for i in 0..u.int_in_range(1..=3)? {
            let p = root.join(format!("in{i}"));
            if u.arbitrary()? {
                write_study(u, &p)?;
            } else {
                let source = ["estimate", "none", "rapl"][u.choose_index(3)?];
                write_run(u, &p, source)?;
            }
            dirs.push(p);
        }
        // On a thread with a deadline: a hang is a failure that names the input (kept on disk).
        let (tx, rx) = std::sync::mpsc::channel();
        let dirs2 = dirs.clone();
        let worker = std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| powertrain::report::write_report(&dirs2, None).map(|_| ()));
            let _ = tx.send(r.map_err(|_| ()));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => assert!(!format!("{e:#}").is_empty()),
            Ok(Err(())) => panic!("report panicked on {dirs:?} (the input is kept in {})", keep(&root).display()),
            Err(_) => {
                std::mem::forget(worker);
                panic!("report ran past 30 s on {dirs:?}: a hang (the input is kept in {})", keep(&root).display());
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
        Ok(())
    });
}

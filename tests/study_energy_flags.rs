//! The studies' energy flags (`--sim-model`, `--sim-sensor`, `--carbon-intensity`, `--pue`) through the real
//! binary: each bad combination is refused before any work with the same message `train` gives; a quick sweep
//! with them carries the twin's sensor and a carbon block into every run and states the study's carbon (the sum
//! over its runs, labelled SIM, never measured); `--emit-slurm` passes them to every array task; the
//! pretraining and multi-task studies hand them to every run they train.
mod study_fake;

use powertrain::rundir::RunSummary;
use powertrain::study::{multitask_study_with, pretrain_study_with, MultitaskOptions, PretrainOptions, RunExtras};
use powertrain::train::TrainConfig;
use safetensors::{tensor::TensorView, Dtype};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_powertrain");

/// A pamap2 dataset directory: train 64 rows, val and test 16 (labels 0..11 in turn).
fn pamap2_dataset(dir: &Path) -> PathBuf {
    let ds = dir.join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    for (name, n, seed) in [("train", 64usize, 0usize), ("val", 16, 1), ("test", 16, 2)] {
        let x: Vec<u8> = (0..n * 27 * 256)
            .map(|i| (((i * 31 + seed * 7) % 97) as f32 - 48.0) / 50.0)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let y: Vec<u8> = (0..n as i64).flat_map(|v| (v % 12).to_le_bytes()).collect();
        let views = vec![
            ("x".to_string(), TensorView::new(Dtype::F32, vec![n, 27, 1, 256], &x).unwrap()),
            ("y".to_string(), TensorView::new(Dtype::I64, vec![n], &y).unwrap()),
        ];
        std::fs::write(ds.join(format!("{name}.safetensors")), safetensors::serialize(views, None).unwrap()).unwrap();
    }
    std::fs::write(ds.join("dataset.json"), "{\"protocol\": 1, \"dataset\": \"pamap2\"}\n").unwrap();
    ds
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run_in(cwd: &Path, args: &[&str]) -> Out {
    let o = Command::new(EXE).args(args).current_dir(cwd).output().unwrap();
    let out = Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    };
    assert!(!out.stderr.contains("panicked"), "powertrain {args:?} panicked: {}", out.stderr);
    out
}

fn error_line(o: &Out) -> String {
    o.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("").to_string()
}

/// Every path under `dir` (a refusal must leave it as it was).
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            v.push(p);
        }
    }
    v.sort();
    v
}

const STUDY: [&str; 12] =
    ["--model", "pamap2", "--data", "ds", "--device", "cpu", "--lrs", "1e-3", "--epochs", "1", "--seeds", "1"];

#[test]
fn bad_energy_flag_combinations_are_refused_by_every_study_as_train_refuses_them() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    std::fs::write(root.join("bad_model.json"), "{ not json").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--energy", "none", "--sim-sensor", "continuous"], "--sim-sensor applies to --energy sim only"),
        (vec!["--energy", "none", "--sim-model", "bad_model.json"], "--sim-model applies to --energy sim only"),
        (vec!["--energy", "sim", "--sim-sensor", "sideways"], "sideways"),
        (vec!["--energy", "sim", "--sim-model", "missing.json"], "missing.json"),
        (vec!["--energy", "sim", "--sim-model", "bad_model.json"], "bad_model.json"),
        (vec!["--energy", "none", "--carbon-intensity", "400"], "--carbon-intensity needs --pue"),
        (vec!["--energy", "none", "--pue", "1.2"], "--pue needs --carbon-intensity"),
        (vec!["--energy", "none", "--carbon-intensity", "400", "--pue", "0.5"], "--pue 0.5"),
        (vec!["--energy", "none", "--carbon-intensity", "-3", "--pue", "1.2"], "--carbon-intensity -3"),
        (vec!["--energy", "none", "--carbon-intensity", "NaN", "--pue", "1.2"], "--carbon-intensity NaN"),
    ];
    let before = listing(root);
    for (flags, needle) in &cases {
        let train: Vec<&str> =
            [&["train", "--model", "pamap2", "--data", "ds", "--device", "cpu"][..], &flags[..]].concat();
        let t = run_in(root, &train);
        assert!(!t.ok, "train {flags:?} should be refused");
        let want = error_line(&t);
        assert!(want.contains(needle), "train {flags:?}: {want}");
        let studies: Vec<Vec<&str>> = vec![
            [&["sweep"][..], &STUDY[..], &flags[..], &["--out", "S"][..]].concat(),
            [&["sweep", "--batch-sizes", "32"][..], &STUDY[..], &flags[..], &["--emit-slurm", "job.sh", "--out", "S"]]
                .concat(),
            [&["pretrain-study", "--model", "pamap2", "--data", "ds", "--device", "cpu", "--out", "P"][..], &flags]
                .concat(),
        ];
        for args in studies {
            let o = run_in(root, &args);
            assert!(!o.ok, "{args:?} should be refused: {}", o.stdout);
            assert_eq!(error_line(&o), want, "{args:?}: the same message as train");
        }
        assert_eq!(listing(root), before, "{flags:?}: a refusal wrote files");
    }
}

#[test]
fn a_quick_sim_sweep_with_carbon_writes_carbon_per_run_and_the_studys_sum() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let args: Vec<&str> = [
        &["sweep"][..],
        &STUDY[..],
        &["--batch-sizes", "16,32", "--energy", "sim", "--sim-sensor", "continuous:period=0.05"],
        &["--carbon-intensity", "400", "--pue", "1.25", "--out", "S"],
    ]
    .concat();
    let o = run_in(root, &args);
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    let mut total_g = 0.0;
    let mut runs = 0;
    for e in std::fs::read_dir(root.join("S/runs")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        let s: RunSummary = serde_json::from_str(&std::fs::read_to_string(p.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s.energy_source, "sim");
        let j = s.total_energy_j.expect("a sim run has energy");
        assert!(j > 0.0);
        let g = s.carbon["co2e_g"].as_f64().expect("a carbon block in every run");
        assert!((g - j / 3.6e6 * 1.25 * 400.0).abs() <= 1e-9 * g.max(1e-12), "{g} vs {j} J");
        assert_eq!(s.carbon["pue"].as_f64(), Some(1.25));
        let cfg: TrainConfig =
            serde_json::from_str(&std::fs::read_to_string(p.join("config.json")).unwrap_or_else(|_| "{}".into()))
                .unwrap_or_default();
        if !cfg.model.is_empty() {
            assert_eq!(cfg.sim_sensor.as_deref(), Some("continuous:period=0.05"));
        }
        total_g += g;
        runs += 1;
    }
    assert_eq!(runs, 2);
    let md = std::fs::read_to_string(root.join("S/sweep.md")).unwrap();
    let line = md.lines().find(|l| l.starts_with("Carbon:")).unwrap_or_else(|| panic!("no carbon line: {md}"));
    assert!(line.contains("over 2 run(s)"), "{line}");
    assert!(line.contains("400 gCO2e/kWh at PUE 1.25"), "{line}");
    assert!(line.contains("SIM"), "{line}");
    assert!(!line.contains("measured ("), "sim is never called measured: {line}");
    let shown = line.trim_start_matches("Carbon: ").split(' ').next().unwrap().parse::<f64>().unwrap();
    assert!((shown - total_g).abs() <= 0.006 * total_g, "{shown} vs {total_g}");
    let manifest = std::fs::read_to_string(root.join("S/study.json")).unwrap();
    assert!(manifest.contains("\"sim_sensor\": \"continuous:period=0.05\""), "{manifest}");
    // The same command again is the same study (resumes, nothing re-run); another sensor is another study.
    assert!(run_in(root, &args).ok);
    let other: Vec<&str> = args.iter().map(|a| if *a == "continuous:period=0.05" { "part-time" } else { *a }).collect();
    let o = run_in(root, &other);
    assert!(!o.ok, "another sensor into the same study directory is refused: {}", o.stdout);
}

#[test]
fn emit_slurm_passes_the_energy_flags_to_every_task() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    std::fs::write(root.join("twin.json"), serde_json::to_string(&serde_json::json!({"idle_w": 50.0})).unwrap())
        .unwrap();
    let args: Vec<&str> = [
        &["sweep", "--batch-sizes", "32"][..],
        &STUDY[..],
        &["--energy", "sim", "--sim-model", "twin.json", "--sim-sensor", "part-time:period=0.1,window=0.025"],
        &["--carbon-intensity", "350", "--pue", "1.1", "--emit-slurm", "job.sh", "--out", "S"],
    ]
    .concat();
    let o = run_in(root, &args);
    if !o.ok {
        // The twin's table may need more fields than idle_w: then the refusal names the file, before any work.
        assert!(error_line(&o).contains("twin.json"), "{}", o.stderr);
        assert!(!root.join("job.sh").exists());
        return;
    }
    let job = std::fs::read_to_string(root.join("job.sh")).unwrap();
    let twin = std::fs::canonicalize(root.join("twin.json")).unwrap();
    assert!(job.contains(&format!("--sim-model {}", twin.display())), "{job}");
    assert!(job.contains("--sim-sensor part-time:period=0.1,window=0.025"), "{job}");
    assert!(job.contains("--carbon-intensity 350 --pue 1.1"), "{job}");
}

fn extras() -> RunExtras {
    RunExtras {
        sim_model: Some(PathBuf::from("/m/twin.json")),
        sim_sensor: Some("part-time".into()),
        carbon_intensity: Some(300.0),
        pue: Some(1.5),
    }
}

#[test]
fn pretraining_and_multitask_studies_hand_the_energy_flags_to_every_run() {
    let d = tempfile::tempdir().unwrap();
    let calls = RefCell::new(Vec::<TrainConfig>::new());
    let t = |a: &TrainConfig| -> anyhow::Result<RunSummary> {
        calls.borrow_mut().push(a.clone());
        study_fake::fake_train(a)
    };
    let splits = |_: &Path, study: &Path| -> anyhow::Result<Vec<powertrain::study::pretrain::TargetSplit>> {
        Ok(vec![powertrain::study::pretrain::TargetSplit {
            subject: 105,
            train: study.join("splits/s105_train.safetensors"),
            val: study.join("splits/s105_val.safetensors"),
            classes_train: vec![0, 1],
            classes_val: vec![0, 1],
        }])
    };
    let p = PretrainOptions {
        model: "pamap2".into(),
        data: "/data/pamap2".into(),
        seeds: 1,
        batch_size: 32,
        lr: 1e-3,
        epochs: 4,
        target_acc: Some(0.8),
        device: "cpu".into(),
        energy: "sim".into(),
        watts: None,
        extras: extras(),
        quick: false,
        out: d.path().join("P"),
    };
    pretrain_study_with(&p, &t, &splits).unwrap();
    let m = MultitaskOptions {
        model: "celeba".into(),
        data: "/data/celeba".into(),
        tasks: Some("Smiling,Male".into()),
        batch_size: 32,
        lr: 1e-3,
        epochs: 3,
        target_acc: Some(0.8),
        seeds: 1,
        device: "cpu".into(),
        energy: "sim".into(),
        watts: None,
        extras: extras(),
        quick: false,
        out: d.path().join("M"),
    };
    multitask_study_with(&m, &t).unwrap();
    let calls = calls.borrow();
    assert_eq!(calls.len(), (1 + 3) + (1 + 2));
    for c in calls.iter() {
        assert_eq!(c.sim_model.as_deref(), Some(Path::new("/m/twin.json")));
        assert_eq!((c.sim_sensor.as_deref(), c.carbon_intensity, c.pue), (Some("part-time"), Some(300.0), Some(1.5)));
    }
    // The sim sensor and carbon are part of each study's grid (another setting is another study).
    let json = std::fs::read_to_string(d.path().join("P/study.json")).unwrap();
    assert!(json.contains("\"pue\": 1.5") && json.contains("\"sim_model\": \"/m/twin.json\""), "{json}");
}

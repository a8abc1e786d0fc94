//! Hostile and careless use through the real binary (issue 13): every refusal comes before any work, exits
//! non-zero, names the flag or file and says what to do, and leaves every pre-existing file as it was (the
//! whole tree is hashed before and after). Also: two writers of one directory (the second is refused with the
//! first one's pid and the first one's run survives), a diverged run's records, the umask-respecting modes of
//! output files, and inputs that once hung or panicked (`report`, `bench step --iters 0`).
//!
//! Every child runs under a deadline: a hang is a failure, never a stuck test.

use safetensors::{tensor::TensorView, Dtype};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_powertrain");

// ---- fixtures ------------------------------------------------------------------------------------------

fn write_st(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], meta: Option<(&str, &str)>) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let meta = meta.map(|(k, v)| std::collections::HashMap::from([(k.to_string(), v.to_string())]));
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

fn f32s(v: impl Iterator<Item = f32>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

/// A pamap2 split of `n` rows (labels 0..11 in turn).
fn pamap2_split(path: &Path, n: usize, seed: usize) {
    let x = f32s((0..n * 27 * 256).map(|i| (((i * 31 + seed * 7) % 97) as f32 - 48.0) / 50.0));
    let y: Vec<u8> = (0..n as i64).flat_map(|v| (v % 12).to_le_bytes()).collect();
    write_st(path, &[("x", Dtype::F32, vec![n, 27, 1, 256], x), ("y", Dtype::I64, vec![n], y)], None);
}

/// A pamap2 dataset directory: train 64 rows, val and test 16.
fn pamap2_dataset(dir: &Path) -> PathBuf {
    let ds = dir.join("ds");
    std::fs::create_dir_all(&ds).unwrap();
    pamap2_split(&ds.join("train.safetensors"), 64, 0);
    pamap2_split(&ds.join("val.safetensors"), 16, 1);
    pamap2_split(&ds.join("test.safetensors"), 16, 2);
    std::fs::write(ds.join("dataset.json"), "{\"protocol\": 1, \"dataset\": \"pamap2\"}\n").unwrap();
    ds
}

/// A celeba dataset directory with the attributes Smiling and Male (8 rows per split).
fn celeba_dataset(dir: &Path) -> PathBuf {
    let ds = dir.join("celeba");
    std::fs::create_dir_all(&ds).unwrap();
    for name in ["train", "val", "test"] {
        let n = 8;
        let x = f32s((0..n * 3 * 64 * 64).map(|i| ((i % 13) as f32 - 6.0) / 6.0));
        let y: Vec<u8> = (0..n * 2).map(|i| (i % 3 == 0) as u8).collect();
        write_st(
            &ds.join(format!("{name}.safetensors")),
            &[("x", Dtype::F32, vec![n, 3, 64, 64], x), ("y", Dtype::U8, vec![n, 2], y)],
            Some(("names", "[\"Smiling\",\"Male\"]")),
        );
    }
    std::fs::write(ds.join("dataset.json"), "{\"protocol\": 1, \"dataset\": \"celeba\"}\n").unwrap();
    ds
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

// ---- running the binary ----------------------------------------------------------------------------------

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The `error:` line.
    fn error(&self) -> &str {
        self.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("")
    }
}

/// Run the binary in `cwd` with a deadline (a hang fails the test); never a panic.
fn run_in(cwd: &Path, args: &[&str], limit_s: u64) -> Out {
    let mut child =
        Command::new(EXE).args(args).current_dir(cwd).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(limit_s) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("powertrain {args:?} ran past {limit_s} s: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let out = Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    };
    assert!(!out.stderr.contains("panicked"), "powertrain {args:?} panicked: {}", out.stderr);
    out
}

/// Every file and folder under `dir`: kind, mode and content hash (symbolic links by target).
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let v = if md.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                stack.push(p.clone());
                format!("dir {mode:o}")
            } else if md.is_file() {
                format!("file {mode:o} {:x}", Sha256::digest(std::fs::read(&p).unwrap()))
            } else {
                format!("special {mode:o}")
            };
            m.insert(rel, v);
        }
    }
    m
}

/// The command is refused: non-zero exit, an error line holding every needle, and nothing under `root`
/// changed, added or removed.
fn refused(root: &Path, args: &[&str], needles: &[&str]) -> String {
    let before = tree(root);
    let o = run_in(root, args, 60);
    assert!(!o.ok, "expected a refusal of {args:?}; stdout {} stderr {}", o.stdout, o.stderr);
    let line = o.error().to_string();
    for n in needles {
        assert!(line.contains(n), "the error of {args:?} should mention {n:?}: {line:?}");
    }
    let after = tree(root);
    assert_eq!(before, after, "{args:?} changed the files under {}", root.display());
    line
}

/// `train` on the pamap2 fixture (`--device cpu --energy none` unless `extra` gives them).
fn train<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["train", "--model", "pamap2", "--data", "ds"];
    for (flag, default) in [("--device", "cpu"), ("--energy", "none")] {
        if !extra.contains(&flag) {
            v.extend_from_slice(&[flag, default]);
        }
    }
    v.extend_from_slice(extra);
    v
}

fn sweep<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "sweep",
        "--model",
        "pamap2",
        "--data",
        "ds",
        "--device",
        "cpu",
        "--batch-sizes",
        "16,32",
        "--lrs",
        "1e-3",
        "--epochs",
        "1",
    ];
    if !extra.contains(&"--seeds") {
        v.extend_from_slice(&["--seeds", "1"]); // the default is 3
    }
    v.extend_from_slice(extra);
    v
}

// ---- flags, paths and combinations: refused before any work ------------------------------------------------

#[test]
fn train_flags_are_checked_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    celeba_dataset(root);
    std::fs::create_dir(root.join("adir")).unwrap();
    std::fs::write(root.join("afile"), b"x").unwrap();
    mkfifo(&root.join("fifo"));
    std::fs::create_dir(root.join("full")).unwrap();
    std::fs::write(root.join("full/keep.txt"), b"mine").unwrap();
    let o = ["--out", "RUN"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--carbon-intensity", "300"], vec!["--carbon-intensity", "--pue"]),
        (vec!["--carbon-intensity", "300", "--pue", "0.5"], vec!["--pue 0.5", "between 1.0"]),
        (vec!["--pue", "1.2"], vec!["--pue needs --carbon-intensity"]),
        (vec!["--carbon-intensity", "NaN", "--pue", "1.2"], vec!["--carbon-intensity NaN"]),
        (vec!["--optimizer", "sgd", "--momentum", "NaN"], vec!["--momentum NaN"]),
        (vec!["--optimizer", "sgd", "--momentum", "1.5"], vec!["--momentum 1.5", "[0, 1)"]),
        (vec!["--weight-decay", "-0.1"], vec!["--weight-decay -0.1", "non-negative"]),
        (vec!["--lr", "NaN"], vec!["--lr", "positive"]),
        (vec!["--lr", "-1"], vec!["--lr", "positive"]),
        (vec!["--target-acc", "2"], vec!["--target-acc 2", "(0, 1]"]),
        (vec!["--target-acc", "NaN"], vec!["--target-acc NaN"]),
        (vec!["--target-acc", "-1"], vec!["--target-acc -1"]),
        (vec!["--target-acc", "0"], vec!["--target-acc 0"]),
        (vec!["--batch-size", "16777216"], vec!["--batch-size 16777216", "at most"]),
        (vec!["--batch-size", "0"], vec!["--batch-size"]),
        (vec!["--epochs", "0"], vec!["--epochs"]),
        (vec!["--epochs", "1000000000"], vec!["--epochs 1000000000", "at most"]),
        (vec!["--max-steps", "0"], vec!["--max-steps 0"]),
        (vec!["--energy", "magic"], vec!["--energy 'magic'", "estimate"]),
        (vec!["--energy", "estimate"], vec!["--energy estimate needs --watts"]),
        (vec!["--energy", "estimate", "--watts", "-5"], vec!["--watts -5"]),
        (vec!["--energy", "estimate", "--watts", "NaN"], vec!["--watts NaN"]),
        (vec!["--energy", "estimate", "--watts", "1e12"], vec!["--watts 1000000000000"]),
        (vec!["--watts", "40"], vec!["--watts applies to --energy estimate"]),
        (vec!["--device", "tpu"], vec!["--device 'tpu'"]),
        (vec!["--tasks", "Smiling"], vec!["--tasks applies to the celeba model"]),
        (vec!["--save", "adir"], vec!["--save adir", "is a directory"]),
        (vec!["--save", "nowhere/w.safetensors"], vec!["--save nowhere/w.safetensors", "does not exist"]),
        (vec!["--save", "afile/w.safetensors"], vec!["--save afile/w.safetensors"]),
        (vec!["--save", "fifo"], vec!["--save fifo", "not a regular file"]),
        (vec!["--save", "ds/train.safetensors"], vec!["--save ds/train.safetensors", "training data"]),
        (vec!["--init", "fifo"], vec!["--init fifo", "not a regular file"]),
        (vec!["--init", "adir"], vec!["--init adir", "directory"]),
        (vec!["--init", "missing.safetensors"], vec!["--init missing.safetensors"]),
        (vec!["--kernel-sample", "4"], vec!["--kernel-sample", "--per-kernel"]),
    ];
    for (extra, needles) in &cases {
        refused(root, &train(&[&o[..], extra].concat()), needles);
    }
    // Into an existing folder or file: refused, and what is there is untouched (the tree check).
    refused(root, &train(&["--out", "full"]), &["full already exists"]);
    refused(root, &train(&["--out", "afile"]), &["afile already exists"]);
    // A GPU that is not there is refused before any work, naming the flag.
    if !powertrain::ops::cuda::cuda_available() {
        refused(root, &train(&["--device", "cuda", "--out", "RUN"]), &["--device cuda", "--device cpu"]);
    }
    // Celeba: a task named twice, a task the data lacks.
    let celeba = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["train", "--model", "celeba", "--data", "celeba", "--device", "cpu", "--energy", "none"];
        v.extend_from_slice(extra);
        v
    };
    refused(root, &celeba(&["--tasks", "Smiling,Smiling", "--out", "RUN"]), &["--tasks", "Smiling is listed twice"]);
    refused(root, &celeba(&["--tasks", "Smiling,Bald", "--out", "RUN"]), &["no attribute 'Bald'", "Smiling, Male"]);
}

#[test]
fn bench_step_with_zero_iterations_is_refused_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    refused(d.path(), &["bench", "step", "--device", "cpu", "--iters", "0"], &["--iters 0"]);
    refused(
        d.path(),
        &["bench", "step", "--device", "cpu", "--iters", "18446744073709551615"],
        &["--iters", "at most"],
    );
    refused(d.path(), &["bench", "step", "--device", "cpu", "--batch-size", "16777216"], &["--batch-size", "at most"]);
}

// ---- studies: the whole configuration is checked once, up front --------------------------------------------

#[test]
fn studies_that_cannot_run_exit_non_zero_before_their_first_run() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    celeba_dataset(root);
    let s = |extra: &[&'static str]| sweep(&[extra, &["--out", "S"]].concat());
    refused(root, &s(&["--energy", "estimate"]), &["--energy estimate needs --watts"]);
    refused(root, &s(&["--energy", "magic"]), &["--energy 'magic'"]);
    refused(root, &s(&["--energy", "auto", "--watts", "40"]), &["--watts applies to --energy estimate"]);
    refused(root, &s(&["--seeds", "18446744073709551615"]), &["--seeds 18446744073709551615", "at most"]);
    refused(root, &s(&["--target-acc", "NaN"]), &["--target-acc NaN"]);
    refused(root, &s(&["--target-acc", "-1"]), &["--target-acc -1"]);
    refused(root, &s(&["--optimizer", "rmsprop"]), &["--optimizer 'rmsprop'"]);
    // Duplicate grid entries are refused (the same run twice, and --only numbering would shift).
    let mut dup = sweep(&["--out", "S"]);
    let i = dup.iter().position(|a| *a == "16,32").unwrap();
    dup[i] = "32,32";
    refused(root, &dup, &["--batch-sizes: 32 is listed twice"]);
    let i = dup.iter().position(|a| *a == "1e-3").unwrap();
    dup[i] = "1e-3,0.001";
    dup[i - 2] = "16,32";
    refused(root, &dup, &["--lrs: 0.001 is listed twice"]);
    if !powertrain::ops::cuda::cuda_available() {
        let gpu: Vec<&str> = s(&[]).into_iter().map(|a| if a == "cpu" { "cuda" } else { a }).collect();
        refused(root, &gpu, &["--device cuda", "--device cpu"]);
    }
    // Multi-task with an attribute the data lacks, or named twice; pretraining with no seeds.
    let mt = |tasks: &'static str| -> Vec<&'static str> {
        vec![
            "multitask-study",
            "--seeds",
            "1",
            "--model",
            "celeba",
            "--data",
            "celeba",
            "--device",
            "cpu",
            "--energy",
            "none",
            "--tasks",
            tasks,
            "--epochs",
            "1",
            "--out",
            "M",
        ]
    };
    refused(root, &mt("Smiling,Bogus"), &["no attribute 'Bogus'"]);
    refused(root, &mt("Smiling,Smiling"), &["listed twice"]);
    let pre = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["pretrain-study", "--model", "pamap2", "--data", "ds", "--device", "cpu"];
        if !extra.contains(&"--energy") {
            v.extend_from_slice(&["--energy", "none"]);
        }
        v.extend_from_slice(extra);
        v.extend_from_slice(&["--out", "P"]);
        v
    };
    refused(root, &pre(&["--seeds", "0"]), &["--seeds"]);
    refused(root, &pre(&["--energy", "estimate"]), &["--watts"]);
    refused(root, &pre(&["--target-acc", "2"]), &["--target-acc 2"]);
}

#[test]
fn a_sweep_into_a_run_directory_or_a_foreign_folder_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let o = run_in(root, &train(&["--epochs", "1", "--max-steps", "2", "--out", "RUN"]), 120);
    assert!(o.ok, "{}", o.stderr);
    refused(root, &sweep(&["--out", "RUN"]), &["--out RUN", "is a run directory", "new --out"]);
    // A folder with someone's files and no study.json.
    std::fs::create_dir(root.join("home")).unwrap();
    std::fs::write(root.join("home/notes.txt"), b"mine").unwrap();
    refused(root, &sweep(&["--out", "home"]), &["--out home", "not a study directory", "notes.txt"]);
    // A train into a study directory: refused (not empty).
    std::fs::create_dir_all(root.join("study/runs")).unwrap();
    std::fs::write(root.join("study/study.json"), b"{}").unwrap();
    refused(root, &train(&["--out", "study"]), &["already exists"]);
}

// ---- two writers of one directory ----------------------------------------------------------------------------

/// Start `args` in the background and wait until the lock file `lock` appears (the child holds the lock).
fn start_holding(root: &Path, args: &[&str], lock: &Path) -> std::process::Child {
    let child =
        Command::new(EXE).args(args).current_dir(root).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while !lock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "{} never appeared", lock.display());
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn finish(child: std::process::Child, limit_s: u64) -> Out {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let o = rx
        .recv_timeout(Duration::from_secs(limit_s))
        .unwrap_or_else(|_| panic!("the first writer (pid {pid}) ran past {limit_s} s"))
        .unwrap();
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

#[test]
fn a_second_train_into_the_same_out_is_refused_and_the_first_run_survives() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let long = train(&["--batch-size", "8", "--epochs", "100", "--max-steps", "400", "--out", "runs/x"]);
    let first = start_holding(root, &long, &root.join("runs/.x.lock"));
    let pid = first.id();
    let o = run_in(root, &train(&["--epochs", "1", "--out", "runs/x"]), 60);
    assert!(!o.ok);
    let line = o.error();
    assert!(line.contains("runs/x is in use by pid") && line.contains(&pid.to_string()), "{line}");
    assert!(line.contains("choose another --out"), "{line}");
    // A sweep into the same folder is refused too (one lock for runs and studies).
    let o = run_in(root, &sweep(&["--out", "runs/x"]), 60);
    assert!(!o.ok && o.error().contains("in use by pid"), "{}", o.stderr);
    let f = finish(first, 300);
    assert!(f.ok, "the first run failed: {}", f.stderr);
    for file in ["config.json", "steps.jsonl", "epochs.csv", "summary.json"] {
        assert!(root.join("runs/x").join(file).is_file(), "{file} of the first run");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("runs/x/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 400, "the first run is the one in runs/x");
    // Nothing is left behind: no lock file, no staging folder.
    let left: Vec<String> = std::fs::read_dir(root.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(left, vec!["x".to_string()]);
}

#[test]
fn a_second_sweep_into_the_same_study_is_refused_and_the_first_finishes() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let mut long = sweep(&["--energy", "none", "--target-acc", "1", "--out", "S"]);
    let e = long.iter().position(|a| *a == "--epochs").unwrap();
    long[e + 1] = "40";
    let first = start_holding(root, &long, &root.join(".S.lock"));
    let pid = first.id();
    let o = run_in(root, &sweep(&["--energy", "none", "--target-acc", "1", "--out", "S"]), 60);
    assert!(!o.ok);
    assert!(o.error().contains("S is in use by pid") && o.error().contains(&pid.to_string()), "{}", o.stderr);
    // An array task of it is refused as well (the whole sweep holds the folder alone).
    let o = run_in(root, &sweep(&["--energy", "none", "--target-acc", "1", "--only", "0", "--out", "S"]), 60);
    assert!(!o.ok && o.error().contains("in use by pid"), "{}", o.stderr);
    let f = finish(first, 600);
    assert!(f.ok, "{}", f.stderr);
    for id in ["bs16_lr0.001_s0", "bs32_lr0.001_s0"] {
        assert!(root.join("S/runs").join(id).join("summary.json").is_file(), "{id}");
    }
    let lines = std::fs::read_to_string(root.join("S/runs.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(!root.join(".S.lock").exists());
}

// ---- Slurm job scripts -----------------------------------------------------------------------------------------

#[test]
fn emit_slurm_quotes_every_path_and_refuses_names_slurm_cannot_take() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    // A dataset folder whose name needs quoting for the shell.
    let ds = pamap2_dataset(root);
    let odd = root.join("my data's $(touch pwned)");
    std::fs::rename(&ds, &odd).unwrap();
    let odd_s = odd.to_str().unwrap();
    let emit = |out: &str, device: &'static str| -> Vec<String> {
        [
            "sweep",
            "--seeds",
            "1",
            "--model",
            "pamap2",
            "--data",
            odd_s,
            "--device",
            device,
            "--energy",
            "estimate",
            "--watts",
            "40",
            "--batch-sizes",
            "16,32",
            "--lrs",
            "1e-3",
            "--epochs",
            "1",
            "--emit-slurm",
            "job.sbatch",
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = emit("S", "cpu");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_in(root, &argv, 60);
    assert!(o.ok, "{}", o.stderr);
    let text = std::fs::read_to_string(root.join("job.sbatch")).unwrap();
    assert!(!text.contains("--gres"), "a CPU sweep requests no GPU: {text}");
    // The command line splits back (as the shell does) into exactly the arguments: the odd path intact.
    let cmd = text.lines().last().unwrap();
    let words = shlex::split(cmd).unwrap();
    let at = words.iter().position(|w| w == "--data").unwrap();
    assert_eq!(words[at + 1], std::fs::canonicalize(&odd).unwrap().to_str().unwrap(), "{cmd}");
    assert!(!root.join("pwned").exists());
    let bash = Command::new("bash").args(["-n", root.join("job.sbatch").to_str().unwrap()]).status().unwrap();
    assert!(bash.success(), "the script parses: {text}");
    // A GPU sweep asks for one GPU per task.
    let args = emit("G", "cuda");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_in(root, &argv, 60);
    assert!(o.ok, "{}", o.stderr);
    assert!(std::fs::read_to_string(root.join("job.sbatch")).unwrap().contains("#SBATCH --gres=gpu:1\n"));
    // Names Slurm's #SBATCH parser cannot take: refused, nothing written.
    for (out, what) in
        [("S\nrm -rf ~", "control character"), ("with space", "' '"), ("pct%A", "'%'"), ("q\"uote", "'\"'")]
    {
        let args = emit(out, "cpu");
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(root, &argv, &["--out", what, "#SBATCH"]);
    }
}

// ---- honest records ----------------------------------------------------------------------------------------------

#[test]
fn a_diverged_run_keeps_its_partial_epoch_and_the_energy_it_used() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let o = run_in(
        root,
        &[
            "train",
            "--model",
            "pamap2",
            "--data",
            "ds",
            "--device",
            "cpu",
            "--energy",
            "estimate",
            "--watts",
            "40",
            "--optimizer",
            "sgd",
            "--lr",
            "1e6",
            "--batch-size",
            "8",
            "--epochs",
            "3",
            "--out",
            "D",
        ],
        120,
    );
    assert!(o.ok, "{}", o.stderr);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("D/summary.json")).unwrap()).unwrap();
    assert_eq!(s["stop_reason"], "diverged", "{s}");
    let total = s["total_energy_j"].as_f64().unwrap();
    let per_epoch = s["energy_per_epoch_j"].as_f64().unwrap();
    assert!(total > 0.0 && per_epoch > 0.0, "a diverged run keeps its joules: {s}");
    let csv = std::fs::read_to_string(root.join("D/epochs.csv")).unwrap();
    let last = csv.lines().last().unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",partial") && last.ends_with(",true"), "{csv}");
    let epoch_energy: f64 = last.split(',').nth(6).unwrap().parse().unwrap();
    assert!(epoch_energy > 0.0, "{csv}");
    // Its steps.jsonl (the diverged loss is written as null) reads back: the report has no warning.
    let o = run_in(root, &["report", "D"], 60);
    assert!(o.ok, "{}", o.stderr);
    let md = std::fs::read_to_string(root.join("D/report.md")).unwrap();
    assert!(!md.contains("WARNING"), "{md}");
}

#[test]
fn output_files_respect_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let status = Command::new("sh")
        .current_dir(root)
        .args([
            "-c",
            &format!(
                "umask 022 && {EXE} train --model pamap2 --data ds --device cpu --energy estimate --watts 40 \
                 --epochs 1 --max-steps 2 --save w.safetensors --out R >/dev/null 2>&1 && {EXE} report R >/dev/null"
            ),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("R"), 0o755);
    for f in ["R/config.json", "R/steps.jsonl", "R/epochs.csv", "R/summary.json", "R/report.md", "w.safetensors"] {
        assert_eq!(mode(f), 0o644, "{f}");
    }
}

// ---- report: inputs that once hung or that cannot be read ------------------------------------------------------

#[test]
fn report_never_hangs_on_a_fifo_or_on_huge_numbers() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let args = ["--energy", "estimate", "--watts", "40", "--epochs", "1", "--max-steps", "2", "--out", "R"];
    let o =
        run_in(root, &[&["train", "--model", "pamap2", "--data", "ds", "--device", "cpu"][..], &args].concat(), 120);
    assert!(o.ok, "{}", o.stderr);
    // The known hang: cumulative energies near f64::MAX made the padded axis infinite, and the plotting
    // library's tick search never ended. Now the plot is left out and the report is written.
    std::fs::write(
        root.join("R/epochs.csv"),
        "epoch,steps,train_loss,val_loss,val_acc,epoch_wall_s,epoch_energy_j,eval_energy_j,cum_energy_j,cum_wall_s\n\
         1,5,2.3,2.5,0.14,0.24,9.5,3.3,1e308,0.32\n2,5,2.3,2.5,0.2,0.24,9.5,3.3,1.79e308,0.64\n",
    )
    .unwrap();
    let o = run_in(root, &["report", "R"], 60);
    assert!(o.ok, "{}", o.stderr);
    // A FIFO where a run file belongs is refused, never waited on.
    std::fs::remove_file(root.join("R/steps.jsonl")).unwrap();
    mkfifo(&root.join("R/steps.jsonl"));
    let o = run_in(root, &["report", "R"], 60);
    assert!(o.ok, "{}", o.stderr);
    let md = std::fs::read_to_string(root.join("R/report.md")).unwrap();
    assert!(md.contains("steps.jsonl is a FIFO (named pipe), not a regular file"), "{md}");
    std::fs::remove_file(root.join("R/summary.json")).unwrap();
    mkfifo(&root.join("R/summary.json"));
    let line = refused(root, &["report", "R"], &["summary.json", "not a regular file"]);
    assert!(line.contains("R/summary.json"), "{line}");
}

#[test]
fn a_save_that_fails_after_training_keeps_the_run_records() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    std::fs::create_dir(root.join("weights")).unwrap();
    // --save is checked before the first step; its folder disappears while the run trains.
    let long = train(&[
        "--batch-size",
        "8",
        "--epochs",
        "100",
        "--max-steps",
        "400",
        "--save",
        "weights/w.safetensors",
        "--out",
        "R",
    ]);
    let first = start_holding(root, &long, &root.join(".R.lock"));
    std::fs::remove_dir(root.join("weights")).unwrap();
    let o = finish(first, 300);
    assert!(!o.ok, "the checkpoint cannot be written: {}", o.stderr);
    let line = o.error();
    assert!(line.contains("weights/w.safetensors") && line.contains("kept in R"), "{line}");
    for f in ["config.json", "steps.jsonl", "epochs.csv", "summary.json"] {
        assert!(root.join("R").join(f).is_file(), "the finished run's {f} is kept");
    }
}

#[test]
fn array_tasks_running_at_once_share_the_study_and_log_every_run_once() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    pamap2_dataset(root);
    let base = ["--batch-sizes", "8,16", "--lrs", "1e-3,1e-2", "--energy", "estimate", "--watts", "40"];
    let task = |i: &'static str| -> Vec<&'static str> {
        let mut v: Vec<&str> =
            vec!["sweep", "--model", "pamap2", "--data", "ds", "--device", "cpu", "--epochs", "2", "--seeds", "1"];
        v.extend_from_slice(&base);
        v.extend_from_slice(&["--target-acc", "1", "--only", i, "--out", "S"]);
        v
    };
    // The four array tasks of a job, all at once (as Slurm starts them), into one study directory.
    let children: Vec<std::process::Child> = ["0", "1", "2", "3"]
        .iter()
        .map(|i| {
            Command::new(EXE)
                .args(task(i))
                .current_dir(root)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = finish(c, 300);
        assert!(o.ok, "{}", o.stderr);
    }
    let log = std::fs::read_to_string(root.join("S/runs.jsonl")).unwrap();
    let mut ids: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["bs16_lr0.001_s0", "bs16_lr0.01_s0", "bs8_lr0.001_s0", "bs8_lr0.01_s0"], "{log}");
    // The table the last task wrote holds every run (each task builds it under the study's file lock).
    let table = std::fs::read_to_string(root.join("S/sweep.md")).unwrap();
    assert!(!table.contains("pending") && !table.contains("runs done"), "{table}");
    // A task for a finished index trains nothing.
    let o = run_in(root, &task("2"), 60);
    assert!(o.ok && o.stderr.contains("already done"), "{}", o.stderr);
    // Two tasks for the same index at once (a resubmitted array): the second is refused with the first's pid.
    let mut long = task("0");
    long[8] = "60";
    *long.last_mut().unwrap() = "T";
    let first = start_holding(root, &long, &root.join("T/runs/.bs8_lr0.001_s0.lock"));
    let pid = first.id().to_string();
    let o = run_in(root, &long, 60);
    assert!(
        !o.ok && o.error().contains("runs/bs8_lr0.001_s0 is in use by pid") && o.error().contains(&pid),
        "{}",
        o.stderr
    );
    let f = finish(first, 300);
    assert!(f.ok, "{}", f.stderr);
    assert!(root.join("T/runs/bs8_lr0.001_s0/summary.json").is_file());
    let left: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "lock files left: {left:?}");
}

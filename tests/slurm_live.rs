//! The job array `powertrain sweep --emit-slurm` writes, submitted to a real Slurm cluster: a one-node cluster
//! from Debian's slurm-wlm and munge (`scripts/slurm-local.sh`, started here when `sinfo` does not answer and
//! stopped again at the end). Each array task trains one configuration of a tiny CPU sweep into the shared
//! study directory (locks, runs.jsonl, the table); `powertrain report` then merges them, and the report lists
//! every configuration.
//!
//! Skipped (with a note) when slurmctld is not installed, or when the daemons cannot be started (not root);
//! with `POWERTRAIN_REQUIRE_SLURM=1` (as in `.ci/run`) a skip is a failure.

use safetensors::{tensor::TensorView, Dtype};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_powertrain");

fn required() -> bool {
    std::env::var("POWERTRAIN_REQUIRE_SLURM").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    assert!(!required(), "POWERTRAIN_REQUIRE_SLURM=1 but the live Slurm test cannot run: {why}");
    eprintln!("slurm_live: skipped: {why}");
}

fn have(bin: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().is_ok_and(|o| o.status.success())
}

fn sinfo_answers() -> bool {
    Command::new("sinfo").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `scripts/slurm-local.sh CMD`, as root (directly, or through `sudo -n`).
fn slurm_local(cmd: &str) -> std::io::Result<std::process::Output> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local.sh");
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut c = if root {
        Command::new("bash")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "bash"]);
        c
    };
    c.arg(script).arg(cmd).output()
}

/// Stops the daemons this test started, even when it fails.
struct Cluster {
    started: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            match slurm_local("stop") {
                Ok(o) if o.status.success() => eprintln!("slurm_live: stopped the daemons it started"),
                r => eprintln!("slurm_live: stopping the daemons failed: {r:?}"),
            }
        }
    }
}

fn pamap2_split(path: &Path, n: usize, seed: usize) {
    let x: Vec<u8> = (0..n * 27 * 256)
        .map(|i| (((i * 31 + seed * 7) % 97) as f32 - 48.0) / 50.0)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let y: Vec<u8> = (0..n as i64).flat_map(|v| (v % 12).to_le_bytes()).collect();
    let views = vec![
        ("x".to_string(), TensorView::new(Dtype::F32, vec![n, 27, 1, 256], &x).unwrap()),
        ("y".to_string(), TensorView::new(Dtype::I64, vec![n], &y).unwrap()),
    ];
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Run `cmd` in `cwd` with a deadline.
fn run(mut cmd: Command, cwd: &Path, limit: Duration) -> std::process::Output {
    let what = format!("{cmd:?}");
    let child = cmd.current_dir(cwd).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{what} ran past {} s", limit.as_secs());
        }
    }
}

#[test]
fn an_emitted_job_array_runs_on_slurm_and_the_report_lists_every_configuration() {
    if !have("slurmctld") || !have("sbatch") || !have("munged") {
        return skip("slurmctld, sbatch or munged is not installed (apt-get install -y slurm-wlm munge)");
    }
    let t0 = Instant::now();
    let mut cluster = Cluster { started: false };
    if !sinfo_answers() {
        match slurm_local("start") {
            Ok(o) if o.status.success() => cluster.started = true,
            Ok(o) => {
                return skip(&format!(
                    "scripts/slurm-local.sh start failed (it needs root): {}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
            Err(e) => return skip(&format!("scripts/slurm-local.sh start: {e}")),
        }
    }
    let t_up = t0.elapsed();

    // A tiny dataset and a 2x2 CPU sweep with an estimated energy (no sensor needed on the node).
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let ds = root.join("ds");
    std::fs::create_dir(&ds).unwrap();
    pamap2_split(&ds.join("train.safetensors"), 64, 0);
    pamap2_split(&ds.join("val.safetensors"), 16, 1);
    pamap2_split(&ds.join("test.safetensors"), 16, 2);
    std::fs::write(ds.join("dataset.json"), "{\"protocol\": 1, \"dataset\": \"pamap2\"}\n").unwrap();
    let mut emit = Command::new(EXE);
    emit.args([
        "sweep",
        "--seeds",
        "1",
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
        "--batch-sizes",
        "16,32",
        "--lrs",
        "1e-3,1e-2",
        "--epochs",
        "1",
        "--target-acc",
        "0.5",
        "--emit-slurm",
        "sweep.sbatch",
        "--out",
        "study",
    ]);
    let o = run(emit, root, Duration::from_secs(60));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = std::fs::read_to_string(root.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3\n") && !script.contains("--gres"), "{script}");

    // Submitted for real; --wait returns when every array task ended (non-zero when one failed).
    let mut sbatch = Command::new("sbatch");
    sbatch.args(["--wait", "sweep.sbatch"]);
    let o = run(sbatch, root, Duration::from_secs(150));
    let logs: String = std::fs::read_dir(root.join("study/slurm"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    format!("== {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        o.status.success(),
        "sbatch --wait: {}{}\n{logs}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let t_jobs = t0.elapsed();

    // Every task logged its run once; the merged report lists every configuration.
    let runs = std::fs::read_to_string(root.join("study/runs.jsonl")).unwrap();
    assert_eq!(runs.lines().count(), 4, "{runs}");
    let mut report = Command::new(EXE);
    report.args(["report", "study"]);
    let o = run(report, root, Duration::from_secs(60));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(root.join("study/report.md")).unwrap();
    assert!(md.contains("Runs: 4 finished, 0 failed"), "{md}");
    for id in ["bs16_lr0.001_s0", "bs16_lr0.01_s0", "bs32_lr0.001_s0", "bs32_lr0.01_s0"] {
        assert!(md.contains(&format!("| {id} |")), "the report lists {id}: {md}");
        assert!(root.join("study/runs").join(id).join("summary.json").is_file(), "{id}");
    }
    assert!(md.contains("ESTIMATE (not measured)"), "{md}");
    let slurm_logs = std::fs::read_dir(root.join("study/slurm")).unwrap().count();
    assert_eq!(slurm_logs, 4, "{logs}");
    eprintln!(
        "slurm_live: cluster up after {:.1} s, 4 array tasks done after {:.1} s, report after {:.1} s",
        t_up.as_secs_f64(),
        t_jobs.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

//! The study: sweep, pretraining reuse, multi-task (`../shared/docs/protocol.md`, "Study grids").
//!
//! A study directory holds:
//! - `study.json`: protocol version, study kind, model, data and the resolved grid. Re-running a command with
//!   a different model, data, protocol or grid into the same directory is refused.
//! - `runs/<id>/`: one run directory per configuration (the trainer's format, see `crate::train`). A run is
//!   trained into `runs/.staging-<id>-<pid>-<attempt>` and renamed to `runs/<id>` only once it finished, so a
//!   killed study leaves no half run under a final name; re-running the command skips every `runs/<id>` that
//!   holds `summary.json` (done) or `failed.json` (failed twice: the first error is retried once).
//! - `runs.jsonl`: one line per finished or failed run (append-only log with host, GPU UUID and driver).
//! - `partial/`: what killed or failed attempts left behind (never deleted: nothing measured is lost).
//! - the study's own tables (`sweep.md`/`.json`, `pretrain.md`/`.json`, `multitask.md`/`.json`).
//!
//! Every study takes the trainer as a parameter (`Trainer`), so tests inject a fake one; the public `run_*`
//! functions pass `crate::train::run_train`.

pub mod multitask;
pub mod pretrain;
pub mod sweep;

pub use multitask::{multitask_study_with, MultitaskResult};
pub use pretrain::{break_even, pretrain_study_with, BreakEven, Spread};
pub use sweep::{slurm_script, sweep_with, SweepResult};

use crate::cli::{MultitaskStudyArgs, PretrainStudyArgs, SweepArgs, TrainArgs};
use crate::train::RunSummary;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The trainer a study calls: `crate::train::run_train` in production, a fake in tests.
pub type Trainer<'a> = &'a dyn Fn(&TrainArgs) -> Result<RunSummary>;

pub fn run_sweep(a: &SweepArgs) -> Result<()> {
    sweep_with(a, &crate::train::run_train).map(|_| ())
}
pub fn run_pretrain_study(a: &PretrainStudyArgs) -> Result<()> {
    pretrain_study_with(a, &crate::train::run_train, &pretrain::write_target_splits).map(|_| ())
}
pub fn run_multitask_study(a: &MultitaskStudyArgs) -> Result<()> {
    multitask_study_with(a, &crate::train::run_train).map(|_| ())
}

// ---- study.json ---------------------------------------------------------------------------------------

/// `study.json`: what a study directory was made for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StudyManifest {
    pub protocol: u32,
    /// "sweep", "pretrain" or "multitask".
    pub kind: String,
    pub model: String,
    /// The dataset path as given (canonical when it exists).
    pub data: String,
    /// The resolved grid (every setting that changes results).
    pub grid: serde_json::Value,
}

/// An opened study directory.
pub struct Study {
    pub dir: PathBuf,
    pub manifest: StudyManifest,
}

/// The dataset path as recorded in study.json: canonical when it exists, else as given.
pub fn data_key(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

impl Study {
    /// Create `dir` with `study.json`, or open it and refuse when its manifest differs from `m`.
    pub fn open_or_create(dir: &Path, m: StudyManifest) -> Result<Study> {
        std::fs::create_dir_all(dir.join("runs"))
            .with_context(|| format!("{}: cannot create the study directory (check --out)", dir.display()))?;
        let path = dir.join("study.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let old: StudyManifest = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a study manifest; use a new --out directory", path.display()))?;
            check_same(&path, &old, &m)?;
        } else {
            crate::util::write_atomic(&path, serde_json::to_string_pretty(&m)?.as_bytes())?;
        }
        Ok(Study { dir: dir.to_path_buf(), manifest: m })
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.dir.join("runs").join(id)
    }

    /// Train run `id` with `args` unless it already finished (or failed twice) in an earlier invocation.
    /// An error or panic is retried once; the second one is recorded in `runs/<id>/failed.json`.
    pub fn run(&self, id: &str, args: &TrainArgs, trainer: Trainer) -> Result<RunRecord> {
        let fin = self.run_dir(id);
        if let Some(rec) = load_record(&fin, id)? {
            return Ok(RunRecord { resumed: true, ..rec });
        }
        if fin.exists() {
            // A directory under the final name without summary.json or failed.json: not ours to trust.
            self.keep_partial(&fin, id, 0)?;
        }
        // Leftovers of a killed attempt of this run.
        let runs = self.dir.join("runs");
        let prefix = format!(".staging-{id}-");
        for e in std::fs::read_dir(&runs).with_context(|| format!("{}: cannot list", runs.display()))? {
            let e = e?;
            // Ours (`.staging-<id>-..`) and the trainer's own staging inside it (`..staging-<id>-...partial-..`).
            if e.file_name().to_string_lossy().trim_start_matches('.').starts_with(&prefix[1..]) {
                self.keep_partial(&e.path(), id, 0)?;
            }
        }
        let mut errors = Vec::new();
        for attempt in 1..=2u32 {
            let staging = runs.join(format!("{prefix}{}-{attempt}", std::process::id()));
            let mut a = args.clone();
            a.out = Some(staging.clone());
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| trainer(&a)))
                .unwrap_or_else(|p| Err(anyhow!("the trainer panicked: {}", panic_text(&*p))));
            match res {
                Ok(summary) => {
                    std::fs::create_dir_all(&staging)?;
                    let sp = staging.join("summary.json");
                    if !sp.exists() {
                        crate::util::write_atomic(&sp, serde_json::to_string_pretty(&summary)?.as_bytes())?;
                    }
                    std::fs::rename(&staging, &fin)
                        .with_context(|| format!("cannot rename {} to {}", staging.display(), fin.display()))?;
                    let rec = RunRecord::ok(id, attempt, summary, &fin);
                    self.log(&rec)?;
                    return Ok(rec);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    eprintln!("study: run {id} attempt {attempt} failed: {msg}");
                    errors.push(msg);
                    if staging.exists() {
                        self.keep_partial(&staging, id, attempt)?;
                    }
                }
            }
        }
        let rec = RunRecord::failed(id, errors, args);
        std::fs::create_dir_all(&fin)?;
        crate::util::write_atomic(&fin.join("failed.json"), serde_json::to_string_pretty(&rec)?.as_bytes())?;
        self.log(&rec)?;
        Ok(rec)
    }

    fn keep_partial(&self, p: &Path, id: &str, attempt: u32) -> Result<()> {
        let dst_dir = self.dir.join("partial");
        std::fs::create_dir_all(&dst_dir)?;
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dst = dst_dir.join(format!("{id}-a{attempt}-{stamp}"));
        std::fs::rename(p, &dst).with_context(|| format!("cannot move {} to {}", p.display(), dst.display()))
    }

    /// Append one line to runs.jsonl (a single write: concurrent Slurm tasks do not interleave lines).
    fn log(&self, rec: &RunRecord) -> Result<()> {
        let path = self.dir.join("runs.jsonl");
        let mut line = serde_json::to_string(rec)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot append", path.display()))?;
        f.write_all(line.as_bytes()).with_context(|| format!("{}: cannot append", path.display()))
    }

    /// Write a study output file (table, JSON) atomically.
    pub fn write(&self, name: &str, text: &str) -> Result<()> {
        crate::util::write_atomic(&self.dir.join(name), text.as_bytes())
    }
}

fn check_same(path: &Path, old: &StudyManifest, new: &StudyManifest) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new(".")).display().to_string();
    let refuse = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| -> Result<()> {
        bail!(
            "{}: this study directory was made with {what} {a}, not {b}; use a new --out directory, \
             or re-run with the settings recorded in {}",
            dir,
            path.display()
        )
    };
    if old.protocol != new.protocol {
        refuse("protocol", &old.protocol, &new.protocol)?;
    }
    if old.kind != new.kind {
        refuse("the study", &old.kind, &new.kind)?;
    }
    if old.model != new.model {
        refuse("--model", &old.model, &new.model)?;
    }
    if old.data != new.data {
        refuse("--data", &old.data, &new.data)?;
    }
    if old.grid != new.grid {
        let (a, b) = (old.grid.as_object(), new.grid.as_object());
        let mut diff = Vec::new();
        if let (Some(a), Some(b)) = (a, b) {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                if a.get(k) != b.get(k) {
                    diff.push(format!(
                        "{k}: {} vs {}",
                        a.get(k).unwrap_or(&serde_json::Value::Null),
                        b.get(k).unwrap_or(&serde_json::Value::Null)
                    ));
                }
            }
        }
        bail!(
            "{dir}: this study directory was made with another grid ({}); use a new --out directory, or re-run \
             with the settings recorded in {}",
            diff.join("; "),
            path.display()
        );
    }
    Ok(())
}

// ---- run records --------------------------------------------------------------------------------------

/// Where a run was measured: results from different machines are never silently mixed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Machine {
    pub host: String,
    pub gpu_name: String,
    pub gpu_uuid: String,
    pub driver: String,
}

impl Machine {
    /// From a run's summary and (when present) its config.json.
    pub fn of(summary: &RunSummary, run_dir: &Path) -> Machine {
        let cfg: serde_json::Value = std::fs::read_to_string(run_dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let find = |keys: &[&str]| -> String {
            for v in [&summary.energy_context, &cfg] {
                for k in keys {
                    if let Some(s) = lookup(v, k) {
                        return s;
                    }
                }
            }
            String::new()
        };
        let host = if summary.host.is_empty() { find(&["host", "hostname"]) } else { summary.host.clone() };
        let gpu_name = if summary.device_name.is_empty() {
            find(&["gpu_name", "device_name", "name"])
        } else {
            summary.device_name.clone()
        };
        Machine { host, gpu_name, gpu_uuid: find(&["gpu_uuid", "uuid"]), driver: find(&["driver", "driver_version"]) }
    }
    pub fn label(&self) -> String {
        let mut s = if self.host.is_empty() { "unknown host".to_string() } else { self.host.clone() };
        if !self.gpu_name.is_empty() {
            s += &format!(" / {}", self.gpu_name);
        }
        if !self.gpu_uuid.is_empty() {
            s += &format!(" ({})", self.gpu_uuid);
        }
        if !self.driver.is_empty() {
            s += &format!(", driver {}", self.driver);
        }
        s
    }
}

/// A string value under `key` at the top level or one level down (e.g. config.json's `device.uuid`).
fn lookup(v: &serde_json::Value, key: &str) -> Option<String> {
    let obj = v.as_object()?;
    let as_s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(s) = obj.get(key).and_then(as_s) {
        return Some(s);
    }
    obj.values().filter_map(|v| v.as_object()).find_map(|o| o.get(key).and_then(as_s))
}

/// One line of runs.jsonl; also the content of `failed.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    /// "ok" or "failed".
    pub status: String,
    pub attempts: u32,
    /// The error of each failed attempt.
    pub errors: Vec<String>,
    pub summary: Option<RunSummary>,
    pub machine: Machine,
    /// The trainer's arguments of a failed run (to reproduce it by hand).
    pub args: Option<serde_json::Value>,
    pub finished_unix: u64,
    /// Found finished in the study directory (not trained by this invocation).
    #[serde(skip)]
    pub resumed: bool,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl RunRecord {
    fn ok(id: &str, attempts: u32, summary: RunSummary, dir: &Path) -> RunRecord {
        RunRecord {
            id: id.to_string(),
            status: "ok".into(),
            attempts,
            errors: vec![],
            machine: Machine::of(&summary, dir),
            summary: Some(summary),
            args: None,
            finished_unix: now_unix(),
            resumed: false,
        }
    }
    fn failed(id: &str, errors: Vec<String>, args: &TrainArgs) -> RunRecord {
        RunRecord {
            id: id.to_string(),
            status: "failed".into(),
            attempts: errors.len() as u32,
            errors,
            summary: None,
            machine: Machine { host: crate::util::hostname(), ..Default::default() },
            args: Some(train_args_json(args)),
            finished_unix: now_unix(),
            resumed: false,
        }
    }
    pub fn is_ok(&self) -> bool {
        self.summary.is_some()
    }
}

/// The finished (summary.json) or failed (failed.json) record of run directory `dir`, if any.
pub fn load_record(dir: &Path, id: &str) -> Result<Option<RunRecord>> {
    let sp = dir.join("summary.json");
    if sp.exists() {
        let text = std::fs::read_to_string(&sp).with_context(|| format!("{}: cannot read", sp.display()))?;
        let summary: RunSummary = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a run summary; move the run directory away to re-run it", sp.display())
        })?;
        return Ok(Some(RunRecord::ok(id, 1, summary, dir)));
    }
    let fp = dir.join("failed.json");
    if fp.exists() {
        let text = std::fs::read_to_string(&fp).with_context(|| format!("{}: cannot read", fp.display()))?;
        let rec: RunRecord = serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable; delete it to retry the run", fp.display()))?;
        return Ok(Some(rec));
    }
    Ok(None)
}

fn train_args_json(a: &TrainArgs) -> serde_json::Value {
    serde_json::json!({
        "model": a.model, "data": a.data, "val": a.val, "tasks": a.tasks, "device": a.device,
        "optimizer": a.optimizer, "lr": a.lr, "batch_size": a.batch_size, "epochs": a.epochs,
        "target_acc": a.target_acc, "seed": a.seed, "init": a.init, "save": a.save,
        "freeze_encoder": a.freeze_encoder, "energy": a.energy, "watts": a.watts,
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

// ---- shared helpers -----------------------------------------------------------------------------------

/// Trainer arguments with the protocol's defaults (the same as `powertrain train`'s).
pub fn train_args(model: &str, data: &Path) -> TrainArgs {
    TrainArgs {
        model: model.to_string(),
        data: data.to_path_buf(),
        val: None,
        tasks: None,
        device: "auto".into(),
        optimizer: "adam".into(),
        lr: 1e-3,
        momentum: 0.0,
        weight_decay: 0.0,
        batch_size: 64,
        epochs: 10,
        max_steps: None,
        target_acc: None,
        no_shuffle: false,
        seed: 0,
        init: None,
        save: None,
        freeze_encoder: false,
        energy: "auto".into(),
        watts: None,
        per_kernel: false,
        kernel_sample: 1,
        kernel_timing: crate::ops::KernelClock::Events,
        carbon_intensity: None,
        pue: None,
        out: None,
    }
}

/// What a study compares: joules, or seconds when no run has an energy reading.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// Joules; `estimate` when any run's energy source is `estimate` (never presented as measured).
    Energy { estimate: bool },
    /// Seconds of wall time (energy source `none`).
    Time,
}

impl Metric {
    /// Energy when every summary has an energy reading, else time.
    pub fn of<'a>(summaries: impl IntoIterator<Item = &'a RunSummary>) -> Metric {
        let mut estimate = false;
        let mut any = false;
        for s in summaries {
            any = true;
            if s.energy_source == "none" || s.total_energy_j.is_none() {
                return Metric::Time;
            }
            estimate |= s.energy_source == "estimate";
        }
        if any {
            Metric::Energy { estimate }
        } else {
            Metric::Time
        }
    }
    pub fn unit(&self) -> &'static str {
        match self {
            Metric::Energy { .. } => "J",
            Metric::Time => "s",
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Energy { .. } => "energy",
            Metric::Time => "time",
        }
    }
    /// A visible note for tables and plots ("" for measured energy).
    pub fn note(&self) -> &'static str {
        match self {
            Metric::Energy { estimate: true } => "ESTIMATE (not measured)",
            Metric::Energy { estimate: false } => "",
            Metric::Time => "no energy readings (source none): time shown instead of energy",
        }
    }
    /// Cost to the target (None when the target was not reached).
    pub fn to_target(&self, s: &RunSummary) -> Option<f64> {
        if !s.target_reached {
            return None;
        }
        match self {
            Metric::Energy { .. } => s.energy_to_target_j,
            Metric::Time => s.time_to_target_s,
        }
    }
    /// Cost of the whole run.
    pub fn total(&self, s: &RunSummary) -> Option<f64> {
        match self {
            Metric::Energy { .. } => s.total_energy_j,
            Metric::Time => Some(s.wall_s),
        }
    }
    /// Cost per epoch (training only for energy).
    pub fn per_epoch(&self, s: &RunSummary) -> Option<f64> {
        match self {
            Metric::Energy { .. } => s.energy_per_epoch_j,
            Metric::Time => (s.epochs > 0).then(|| s.wall_s / s.epochs as f64),
        }
    }
}

/// The energy sources of `summaries` when they differ (a warning for tables), else None.
pub fn mixed_sources<'a>(summaries: impl IntoIterator<Item = &'a RunSummary>) -> Option<String> {
    let mut set: Vec<String> = summaries.into_iter().map(|s| s.energy_source.clone()).collect();
    set.sort();
    set.dedup();
    (set.len() > 1).then(|| format!("WARNING: runs use different energy sources ({})", set.join(", ")))
}

/// A warning line when the records come from more than one machine, else None.
pub fn mixed_machines<'a>(recs: impl IntoIterator<Item = &'a RunRecord>) -> Option<String> {
    let mut ms: Vec<Machine> = recs.into_iter().filter(|r| r.is_ok()).map(|r| r.machine.clone()).collect();
    ms.sort();
    ms.dedup();
    (ms.len() > 1).then(|| {
        format!(
            "WARNING: runs were measured on {} different machines ({}); compare them with care",
            ms.len(),
            ms.iter().map(|m| m.label()).collect::<Vec<_>>().join("; ")
        )
    })
}

/// A number for a table: 3 significant digits, or "n/a".
pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if !x.is_finite() => "n/a".into(),
        Some(x) if x == 0.0 => "0".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) => {
            let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
            format!("{x:.digits$}")
        }
    }
}

/// A markdown table.
pub fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s =
        format!("| {} |\n|{}|\n", header.join(" | "), header.iter().map(|_| " --- ").collect::<Vec<_>>().join("|"));
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

/// Parse a comma-separated list for `flag`.
pub fn parse_list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>> {
    let v: Vec<T> = s
        .split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<T>()
                .map_err(|_| anyhow!("{flag}: cannot read '{t}' (expected a comma-separated list of numbers)"))
        })
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("{flag}: the list is empty; give at least one value");
    }
    Ok(v)
}

/// Check `--model`.
pub fn check_model(m: &str, allowed: &[&str]) -> Result<()> {
    if !allowed.contains(&m) {
        bail!("--model {m}: this study takes --model {}", allowed.join(" or "));
    }
    Ok(())
}

/// One row of a run's `epochs.csv`: column name -> value (None for an empty cell).
pub type EpochRow = std::collections::BTreeMap<String, Option<f64>>;

/// Read `epochs.csv` of a run directory (header names columns; empty cells are None).
pub fn read_epochs_csv(run_dir: &Path) -> Result<Vec<EpochRow>> {
    let path = run_dir.join("epochs.csv");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = match lines.next() {
        Some(h) => h.split(',').map(|c| c.trim().to_string()).collect(),
        None => return Ok(vec![]),
    };
    Ok(lines
        .map(|l| header.iter().zip(l.split(',')).map(|(h, v)| (h.clone(), v.trim().parse::<f64>().ok())).collect())
        .collect())
}

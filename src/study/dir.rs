//! The study directory: one typed owner per file.
//!
//! - `study.json` ([`StudyManifest`]): protocol version, study kind, model, data and the resolved grid.
//!   Re-running a command with a different model, data, protocol or grid into the same directory is refused.
//! - `runs/<id>/`: one run directory per configuration (`crate::rundir`). A run is trained into
//!   `runs/.staging-<id>-<pid>-<attempt>` and renamed to `runs/<id>` only once it finished, so a killed study
//!   leaves no half run under a final name; re-running the command skips every `runs/<id>` that holds
//!   `summary.json` (done) or `failed.json` ([`RunRecord`]; failed twice: the first error is retried once).
//!   A corrected command (other settings) is accepted while no run finished: the failed runs are retried.
//! - `runs.jsonl` ([`RunRecord`], one per line): every finished or failed run (append-only log with host, GPU
//!   UUID and driver).
//! - `partial/`: what killed or failed attempts left behind (never deleted: nothing measured is lost).
//! - the study's own tables ([`TABLES`]: `sweep.md`/`.json`, `pretrain.md`/`.json`, `multitask.md`/`.json`).
//!
//! Locks ([`crate::util::DirLock`]): a study holds its directory for its whole invocation, exclusively, or
//! shared by the array tasks of one Slurm sweep (`--only`), which exclude each other per run (`runs/.<id>.lock`);
//! study.json, runs.jsonl and the tables are written under a short exclusive lock (`.study-files.lock`), as
//! O_APPEND alone is not atomic on NFS. A second invocation that would write the same files is refused with
//! the holder's pid before any work.
use super::multitask::MultitaskResult;
use super::pretrain::PretrainResult;
use super::Trainer;
use crate::rundir::{as_json_value, Config, RunDir, RunSummary};
use crate::train::TrainConfig;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "study.json";
pub const RUNS_LOG: &str = "runs.jsonl";
pub const FAILED: &str = "failed.json";
/// Each study kind's table (markdown) and result (JSON).
pub const TABLES: [(&str, &str, &str); 3] = [
    ("sweep", "sweep.md", "sweep.json"),
    ("pretrain", "pretrain.md", "pretrain.json"),
    ("multitask", "multitask.md", "multitask.json"),
];

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

impl StudyManifest {
    /// A manifest of `kind` for `model` on `data` with the resolved `grid`.
    pub fn new(kind: &str, model: &str, data: &Path, grid: &impl Serialize) -> Result<StudyManifest> {
        Ok(StudyManifest {
            protocol: crate::PROTOCOL_VERSION,
            kind: kind.into(),
            model: model.into(),
            data: data_key(data),
            grid: serde_json::to_value(grid)?,
        })
    }

    /// `dir/study.json`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<StudyManifest>> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let text = crate::util::read_text_file(&path)?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a study manifest; use a new --out directory", path.display()))
            .map(Some)
    }
}

/// The dataset path as recorded in study.json: canonical when it exists, else as given.
pub fn data_key(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// How an invocation holds its study directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The only writer (a whole study).
    Exclusive,
    /// One of the array tasks of a Slurm sweep (`--only`), or `--emit-slurm`.
    Shared,
}

/// Names a study directory holds (anything else, without study.json, is not a study directory).
const STUDY_NAMES: [&str; 13] = [
    MANIFEST,
    RUNS_LOG,
    "runs",
    "partial",
    "slurm",
    "splits",
    "weights",
    "sweep.md",
    "sweep.json",
    "pretrain.md",
    "pretrain.json",
    "multitask.md",
    "multitask.json",
];

/// The short lock around study.json, runs.jsonl and the tables.
const FILES_LOCK: &str = ".study-files.lock";

/// An opened study directory.
pub struct Study {
    pub dir: PathBuf,
    pub manifest: StudyManifest,
    _lock: crate::util::DirLock,
}

impl Study {
    /// Lock `dir` (`access`), then create it with `study.json`, or open it and refuse when its manifest
    /// differs from `m`. A study whose runs so far all failed (none finished) accepts a corrected command:
    /// study.json records the new settings and the failed runs move to `partial/`, so that they are retried.
    /// A run directory, or a non-empty folder that is not a study, is refused.
    pub fn open_or_create(dir: &Path, m: StudyManifest, access: Access) -> Result<Study> {
        let lock = match access {
            Access::Exclusive => crate::util::DirLock::exclusive(dir)?,
            Access::Shared => crate::util::DirLock::shared(dir)?,
        };
        refuse_foreign(dir)?;
        std::fs::create_dir_all(dir.join("runs"))
            .with_context(|| format!("{}: cannot create the study directory (check --out)", dir.display()))?;
        let study = Study { dir: dir.to_path_buf(), manifest: m, _lock: lock };
        study.locked(|| {
            let m = &study.manifest;
            match StudyManifest::read(dir)? {
                Some(old) if &old == m => {}
                Some(old) => {
                    let same = check_same(&dir.join(MANIFEST), &old, m);
                    match (same, study.all_failed()?) {
                        (Ok(()), _) => {}
                        (Err(e), failed) if failed.is_empty() || old.kind != m.kind || old.protocol != m.protocol => {
                            return Err(e)
                        }
                        (Err(e), failed) => {
                            eprintln!(
                                "note: {}: every run so far failed and none finished, so this corrected command is \
                                 accepted ({e:#}); study.json now records it and the {} failed runs move to \
                                 partial/ and are retried",
                                dir.display(),
                                failed.len()
                            );
                            for id in failed {
                                study.keep_partial(&study.run_dir(&id), &id, 0)?;
                            }
                            crate::util::write_atomic(
                                &dir.join(MANIFEST),
                                serde_json::to_string_pretty(m)?.as_bytes(),
                            )?;
                        }
                    }
                }
                None => crate::util::write_atomic(&dir.join(MANIFEST), serde_json::to_string_pretty(m)?.as_bytes())?,
            }
            Ok(())
        })?;
        Ok(study)
    }

    /// The ids of the failed runs when no run finished (else none): a study that only failed so far.
    fn all_failed(&self) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        let runs = self.dir.join("runs");
        for e in std::fs::read_dir(&runs).with_context(|| format!("{}: cannot list", runs.display()))? {
            let e = e?;
            let id = e.file_name().to_string_lossy().to_string();
            if id.starts_with('.') || !e.path().is_dir() {
                continue;
            }
            if RunDir::new(&e.path()).is_finished() {
                return Ok(Vec::new());
            }
            if e.path().join(FAILED).exists() {
                failed.push(id);
            }
        }
        Ok(failed)
    }

    /// Run `f` holding the study's file lock (study.json, runs.jsonl, the tables): other invocations sharing
    /// the directory wait for it (at most two minutes, then an error naming the lock file). Not re-entrant.
    pub fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.dir.join(FILES_LOCK);
        let file = crate::util::open_lock_file(&path)
            .with_context(|| format!("cannot create the lock file {}", path.display()))?;
        let t0 = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if t0.elapsed().as_secs() < 120 => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(std::fs::TryLockError::WouldBlock) => bail!(
                    "{}: the study's files have been locked by another powertrain for two minutes ({}); is it \
                     stopped?",
                    self.dir.display(),
                    path.display()
                ),
                Err(std::fs::TryLockError::Error(e)) => {
                    bail!("cannot lock {} ({e}): the file system must support file locks", path.display())
                }
            }
        }
        let r = f();
        let _ = file.unlock();
        r
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.dir.join("runs").join(id)
    }

    /// Train run `id` with `cfg` unless it already finished (or failed twice) in an earlier invocation.
    /// An error or panic is retried once; the second one is recorded in `runs/<id>/failed.json`.
    pub fn run(&self, id: &str, cfg: &TrainConfig, trainer: Trainer) -> Result<RunRecord> {
        let fin = self.run_dir(id);
        // One writer per run (array tasks share the study directory, never a run).
        let _run_lock = crate::util::DirLock::exclusive(&fin)?;
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
        let mut used: Option<f64> = None;
        for attempt in 1..=2u32 {
            let staging = runs.join(format!("{prefix}{}-{attempt}", std::process::id()));
            let cfg = TrainConfig { out: Some(staging.clone()), ..cfg.clone() };
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| trainer(&cfg)))
                .unwrap_or_else(|p| Err(anyhow!("the trainer panicked: {}", panic_text(&*p))));
            match res {
                Ok(summary) => {
                    std::fs::create_dir_all(&staging)?;
                    if !RunDir::new(&staging).is_finished() {
                        summary.write(&staging)?;
                    }
                    std::fs::rename(&staging, &fin)
                        .with_context(|| format!("cannot rename {} to {}", staging.display(), fin.display()))?;
                    let rec = RunRecord::ok(id, attempt, summary, &fin);
                    self.log(&rec)?;
                    return Ok(rec);
                }
                Err(e) => {
                    if let Some(u) = e.downcast_ref::<crate::train::UsedEnergy>() {
                        *used.get_or_insert(0.0) += u.joules;
                    }
                    let msg = format!("{e:#}");
                    eprintln!("study: run {id} attempt {attempt} failed: {msg}");
                    errors.push(msg);
                    if staging.exists() {
                        self.keep_partial(&staging, id, attempt)?;
                    }
                }
            }
        }
        let rec = RunRecord { used_energy_j: used, ..RunRecord::failed(id, errors, cfg) };
        std::fs::create_dir_all(&fin)?;
        crate::util::write_atomic(&fin.join(FAILED), serde_json::to_string_pretty(&rec)?.as_bytes())?;
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

    /// Append one line to runs.jsonl, holding the study's file lock (concurrent Slurm tasks never interleave
    /// lines, on NFS too).
    fn log(&self, rec: &RunRecord) -> Result<()> {
        let path = self.dir.join(RUNS_LOG);
        let mut line = serde_json::to_string(rec)?;
        line.push('\n');
        self.locked(|| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("{}: cannot append", path.display()))?;
            f.write_all(line.as_bytes()).with_context(|| format!("{}: cannot append", path.display()))?;
            f.sync_data().with_context(|| format!("{}: cannot append", path.display()))
        })
    }

    /// Write the study's table (`kind` from [`TABLES`]): the markdown and the result as JSON, atomically.
    /// (A sweep shared by array tasks builds and writes its table inside [`Study::locked`].)
    pub fn write_table(&self, kind: &str, table: &str, result: &impl Serialize) -> Result<()> {
        let (_, md, json) =
            TABLES.iter().find(|t| t.0 == kind).with_context(|| format!("no table for a study of kind {kind}"))?;
        crate::util::write_atomic(&self.dir.join(md), table.as_bytes())?;
        crate::util::write_atomic(&self.dir.join(json), serde_json::to_string_pretty(result)?.as_bytes())
    }
}

/// Refuse a `--out` that is something else: a file, a run directory, or a non-empty folder without study.json.
fn refuse_foreign(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!("--out {}: exists and is not a directory; choose a new --out", dir.display());
    }
    if dir.join(MANIFEST).exists() {
        return Ok(());
    }
    if [crate::rundir::SUMMARY, crate::rundir::CONFIG, crate::rundir::STEPS].iter().any(|f| dir.join(f).exists()) {
        bail!(
            "--out {}: is a run directory (written by `powertrain train`), not a study; choose a new --out",
            dir.display()
        );
    }
    let foreign: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.') && !STUDY_NAMES.contains(&n.as_str()))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "--out {}: is not empty and is not a study directory (no study.json; it holds {}); choose a new --out",
            dir.display(),
            foreign.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
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
    /// From a run's summary (its energy context holds the GPU's UUID and driver) and, for what the summary
    /// lacks, the run's config.json.
    pub fn of(summary: &RunSummary, run_dir: &Path) -> Machine {
        let ctx = summary.energy_context.to_json();
        let cfg = Config::read(run_dir).ok();
        let find = |keys: &[&str], from_config: Option<&String>| -> String {
            keys.iter()
                .find_map(|k| lookup(&ctx, k))
                .or_else(|| from_config.filter(|s| !s.is_empty()).cloned())
                .unwrap_or_default()
        };
        let host = if summary.host.is_empty() {
            find(&["host", "hostname"], cfg.as_ref().map(|c| &c.host))
        } else {
            summary.host.clone()
        };
        let gpu_name = if summary.device_name.is_empty() {
            find(&["gpu_name", "device_name", "name"], cfg.as_ref().map(|c| &c.device_name))
        } else {
            summary.device_name.clone()
        };
        Machine {
            host,
            gpu_name,
            gpu_uuid: find(&["gpu_uuid", "uuid"], None),
            driver: find(&["driver", "driver_version"], None),
        }
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

/// A string value under `key` at the top level or one level down.
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
    /// The trainer's settings of a failed run (to reproduce it by hand).
    #[serde(serialize_with = "as_json_value")]
    pub args: Option<TrainConfig>,
    pub finished_unix: u64,
    /// The energy the failed attempts used before they failed (when the trainer could say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_energy_j: Option<f64>,
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
            used_energy_j: None,
            resumed: false,
        }
    }
    fn failed(id: &str, errors: Vec<String>, cfg: &TrainConfig) -> RunRecord {
        RunRecord {
            id: id.to_string(),
            status: "failed".into(),
            attempts: errors.len() as u32,
            errors,
            summary: None,
            machine: Machine { host: crate::util::hostname(), ..Default::default() },
            args: Some(TrainConfig { out: None, ..cfg.clone() }),
            finished_unix: now_unix(),
            used_energy_j: None,
            resumed: false,
        }
    }
    pub fn is_ok(&self) -> bool {
        self.summary.is_some()
    }
}

/// The finished (summary.json) or failed (failed.json) record of run directory `dir`, if any.
pub fn load_record(dir: &Path, id: &str) -> Result<Option<RunRecord>> {
    let run = RunDir::new(dir);
    if run.is_finished() {
        return Ok(Some(RunRecord::ok(id, 1, run.summary()?, dir)));
    }
    let fp = dir.join(FAILED);
    if fp.exists() {
        let text = crate::util::read_text_file(&fp)?;
        let rec: RunRecord = serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable; delete it to retry the run", fp.display()))?;
        return Ok(Some(rec));
    }
    Ok(None)
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

// ---- reading a study directory (report) ----------------------------------------------------------------

/// A study directory's own files, as a report reads them.
#[derive(Clone, Debug)]
pub struct StudyFiles {
    pub dir: PathBuf,
    pub manifest: Option<StudyManifest>,
    pub pretrain: Option<PretrainResult>,
    pub multitask: Option<MultitaskResult>,
    /// The study's tables (sweep.md, pretrain.md, multitask.md), as written.
    pub tables: Vec<String>,
}

impl StudyFiles {
    /// True when `dir` looks like a study directory (study.json or runs/).
    pub fn is_study(dir: &Path) -> bool {
        dir.join(MANIFEST).exists() || dir.join("runs").is_dir()
    }

    pub fn read(dir: &Path) -> Result<StudyFiles> {
        let mut tables = Vec::new();
        for (_, md, _) in TABLES {
            if let Ok(s) = crate::util::read_text_file(&dir.join(md)) {
                tables.push(s);
            }
        }
        Ok(StudyFiles {
            dir: dir.to_path_buf(),
            manifest: StudyManifest::read(dir)?,
            pretrain: read_result(&dir.join(TABLES[1].2))?,
            multitask: read_result(&dir.join(TABLES[2].2))?,
            tables,
        })
    }

    /// The ids of the run directories under runs/, sorted (staging directories left out).
    pub fn run_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut names: Vec<PathBuf> = match std::fs::read_dir(self.dir.join("runs")) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => vec![],
        };
        names.sort();
        names
            .into_iter()
            .filter(|p| p.is_dir())
            .map(|p| (p.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(), p))
            .filter(|(id, _)| !id.starts_with('.'))
            .collect()
    }
}

fn read_result<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Option<T>> {
    if !p.exists() {
        return Ok(None);
    }
    let t = crate::util::read_text_file(p)?;
    Ok(Some(
        serde_json::from_str(&t)
            .with_context(|| format!("{}: not a study result written by powertrain", p.display()))?,
    ))
}

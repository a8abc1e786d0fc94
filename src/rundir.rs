//! The run directory: one typed owner per file, and the only code that reads or writes one.
//!
//! A run directory (`powertrain train --out`, or `runs/<id>/` in a study) holds:
//! - `config.json` ([`Config`]): every setting of the run ([`crate::train::TrainConfig`]) and what it resolved
//!   to (device, energy source, task names, row counts, host);
//! - `steps.jsonl` ([`StepRecord`], one object per optimiser step): `step` (1-based), `epoch` (1-based),
//!   `loss`, `batch_size`, `wall_s` (this step's duration), `t_s` (since the run started), `energy_j` (null
//!   with source none), `energy_source`, `energy_method`, `energy_uncertainty_j`, `window_s`, `gap_s`,
//!   `gap_energy_j`, and with `--per-kernel` `kernels`: [{name, launches, time_s, energy_j, uncertainty_j}] and
//!   `kernels_timed` (false: the kernel times are the latest timed step's, `--kernel-sample`);
//! - `epochs.csv` ([`EpochRow`]): `EpochRow::COLUMNS` (val columns empty when there is no validation split);
//! - `summary.json` ([`RunSummary`]);
//! - `kernels.csv` ([`KernelsCsv`]) with `--per-kernel`; the checkpoint with `--save`.
//!
//! [`RunWriter`] writes a run directory (staged beside its final name, renamed into place by `commit`);
//! [`RunDir`] reads one back. Every reader says which file (and line) is wrong and what to do. The JSON files
//! keep the bytes earlier versions wrote with `json!`: keys sorted, `f32` values widened to `f64`
//! ([`as_json_value`]).

use crate::energy::{EnergyContext, EnergySource, KernelEnergy, StepEnergy};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG: &str = "config.json";
pub const STEPS: &str = "steps.jsonl";
pub const EPOCHS: &str = "epochs.csv";
pub const SUMMARY: &str = "summary.json";
pub const KERNELS: &str = "kernels.csv";

/// Serialize `v` through `serde_json::Value`: object keys sorted and `f32` widened to `f64`, exactly as the
/// `json!` records of earlier versions were written (for `#[serde(serialize_with)]` and the JSON files here).
pub fn as_json_value<T: Serialize, S: Serializer>(v: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    serde_json::to_value(v).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// A run file's text (a regular file only: a FIFO or device in its place is refused, never waited on).
fn read_text(path: &Path) -> Result<String> {
    crate::util::read_text_file(path)
}

/// A number that may be written as `null` (serde_json writes a NaN so; a diverged run's loss): NaN then.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f32, D::Error> {
    Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
}

// ---- config.json --------------------------------------------------------------------------------------

/// `config.json`: the run's settings (the flags of `powertrain train`, as [`crate::train::TrainConfig`]) and
/// what they resolved to. Read back, only `model` and `batch_size` are required (older runs lack later keys).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    #[serde(default)]
    pub protocol: u32,
    #[serde(default)]
    pub powertrain_version: String,
    pub model: String,
    /// Outputs of the network (12 for pamap2, K attributes for celeba).
    #[serde(default)]
    pub outputs: usize,
    /// The resolved task names ("class" for the class task; attribute names or "y[j]").
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub data: PathBuf,
    #[serde(default)]
    pub val: Option<PathBuf>,
    #[serde(default)]
    pub train_rows: usize,
    #[serde(default)]
    pub val_rows: Option<usize>,
    /// The resolved device: "cpu" or "cuda".
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub host: String,
    #[serde(default = "default_optimizer")]
    pub optimizer: String,
    #[serde(default)]
    pub lr: f32,
    #[serde(default)]
    pub momentum: f32,
    #[serde(default)]
    pub weight_decay: f32,
    pub batch_size: usize,
    #[serde(default)]
    pub epochs: usize,
    #[serde(default)]
    pub max_steps: Option<usize>,
    #[serde(default)]
    pub target_acc: Option<f64>,
    #[serde(default)]
    pub shuffle: bool,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub init: Option<PathBuf>,
    #[serde(default)]
    pub save: Option<PathBuf>,
    #[serde(default)]
    pub freeze_encoder: bool,
    /// `--energy` as given (auto, nvml, ...).
    #[serde(default)]
    pub energy: String,
    /// What it resolved to (`EnergySource::as_str`).
    #[serde(default = "default_energy_source")]
    pub energy_source: String,
    #[serde(default)]
    pub watts: Option<f64>,
    #[serde(default)]
    pub per_kernel: bool,
    #[serde(default)]
    pub kernel_sample: u64,
    /// The kernel clock with `--per-kernel` (null without).
    #[serde(default)]
    pub kernel_timing: Option<String>,
    #[serde(default)]
    pub carbon_intensity: Option<f64>,
    #[serde(default)]
    pub pue: Option<f64>,
    /// Trainable values of the network.
    #[serde(default)]
    pub parameters: usize,
}

fn default_optimizer() -> String {
    "adam".into()
}
fn default_energy_source() -> String {
    EnergySource::None.as_str().into()
}

impl Config {
    /// `dir/config.json`; the error names the file and says what a run directory is.
    pub fn read(dir: &Path) -> Result<Config> {
        let path = dir.join(CONFIG);
        let text = crate::util::read_text_file(&path)
            .map_err(|e| anyhow!("{e:#} (give a run directory written by `powertrain train --out`)"))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a run's config.json (give a run directory written by `powertrain train --out`)",
                path.display()
            )
        })
    }
}

// ---- steps.jsonl --------------------------------------------------------------------------------------

/// One line of `steps.jsonl`: a step (number, epoch, loss, batch size, its duration and its end since the run
/// started) and its energy; with --per-kernel (`kernels_timed` set) also its kernel rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub step: u64,
    pub epoch: usize,
    /// The step's loss (NaN, written as null, on the step where a run diverged).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f32,
    pub batch_size: usize,
    /// The step's own duration (s).
    pub wall_s: f64,
    /// The step's end, seconds since the run started (absent in hand-written records).
    #[serde(default)]
    pub t_s: Option<f64>,
    #[serde(default)]
    pub energy_j: Option<f64>,
    #[serde(default)]
    pub energy_source: String,
    #[serde(default)]
    pub energy_method: String,
    #[serde(default)]
    pub energy_uncertainty_j: Option<f64>,
    /// The metered window (s): the step and the host gap before it (absent in runs written before windows
    /// were contiguous: `wall_s` is the window there, see [`StepRecord::covered_s`]).
    #[serde(default)]
    pub window_s: Option<f64>,
    #[serde(default)]
    pub gap_s: f64,
    #[serde(default)]
    pub gap_energy_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<KernelEnergy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels_timed: Option<bool>,
    /// The statistical and systematic parts of `energy_uncertainty_j` (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_stat_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_sys_j: Option<f64>,
    /// `--energy sim` only: the twin's true energy of the window (never present for a real sensor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_energy_j: Option<f64>,
}

impl StepRecord {
    /// The record of step `step` of `epoch` (`(wall_s, t_s)`: its duration and its end since the run started)
    /// with the meter's `se`; the kernel rows come along when the meter split the step (`kernels_timed` set).
    pub fn new(
        step: u64,
        epoch: usize,
        loss: f32,
        batch_size: usize,
        (wall_s, t_s): (f64, f64),
        source: EnergySource,
        se: &StepEnergy,
    ) -> StepRecord {
        StepRecord {
            step,
            epoch,
            loss,
            batch_size,
            wall_s,
            t_s: Some(t_s),
            energy_j: se.energy_j,
            energy_source: source.as_str().into(),
            energy_method: se.method.clone(),
            energy_uncertainty_j: se.uncertainty_j,
            window_s: Some(se.window_s),
            gap_s: se.gap_s,
            gap_energy_j: se.gap_energy_j,
            kernels: se.kernels_timed.map(|_| se.kernels.clone()),
            kernels_timed: se.kernels_timed,
            energy_uncertainty_stat_j: se.uncertainty_stat_j,
            energy_uncertainty_sys_j: se.uncertainty_sys_j,
            true_energy_j: se.true_energy_j,
        }
    }

    /// The seconds this record's energy covers: its metered window, or `wall_s` in older runs.
    pub fn covered_s(&self) -> f64 {
        covered_s(self.window_s, Some(self.wall_s))
    }

    /// Write the record as one line (the bytes `json!` wrote: keys sorted).
    pub fn write_line(&self, w: &mut impl Write) -> Result<()> {
        let v = serde_json::to_value(self)?;
        serde_json::to_writer(&mut *w, &v)?;
        w.write_all(b"\n")?;
        Ok(())
    }

    /// Every record of `dir/steps.jsonl`, in order; None when the file does not exist. A line that is not a
    /// step record is an error naming the file and the line.
    pub fn read_all(dir: &Path) -> Result<Option<Vec<StepRecord>>> {
        let path = dir.join(STEPS);
        if !path.exists() {
            return Ok(None);
        }
        let text = read_text(&path)?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let rec = serde_json::from_str(line)
                .map_err(|e| anyhow!("{} line {}: not a step record ({e})", path.display(), i + 1))?;
            out.push(rec);
        }
        Ok(Some(out))
    }
}

/// The seconds a steps.jsonl record's energy covers: its metered window (`window_s`: the step plus the host
/// gap before it); runs written before windows were contiguous have only `wall_s`, which is then the window.
fn covered_s(window_s: Option<f64>, wall_s: Option<f64>) -> f64 {
    window_s.or(wall_s).unwrap_or(0.0)
}

/// [`StepRecord::covered_s`] of a record given as JSON (any object with `window_s` or `wall_s`).
pub fn window_s(step: &serde_json::Value) -> f64 {
    let f = |k: &str| step.get(k).and_then(|x| x.as_f64());
    covered_s(f("window_s"), f("wall_s"))
}

// ---- epochs.csv ---------------------------------------------------------------------------------------

/// One row of `epochs.csv`: an epoch's training and its evaluation. Numbers are written as Rust prints them
/// (shortest round-trip), unknown values as empty cells.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub steps: u64,
    /// Mean training loss of the epoch's steps.
    pub train_loss: f64,
    #[serde(default)]
    pub val_loss: Option<f64>,
    #[serde(default)]
    pub val_acc: Option<f64>,
    pub epoch_wall_s: f64,
    /// Training energy of the epoch (its steps' windows; evaluation excluded).
    #[serde(default)]
    pub epoch_energy_j: Option<f64>,
    /// The evaluation's window.
    #[serde(default)]
    pub eval_energy_j: Option<f64>,
    /// Every joule so far, this epoch's evaluation included.
    #[serde(default)]
    pub cum_energy_j: Option<f64>,
    pub cum_wall_s: f64,
    /// The epoch stopped part way (the loss diverged): its steps' figures, no evaluation. The `partial` column
    /// is written only when some row is partial (the files of complete runs keep their columns).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub partial: bool,
}

/// A CSV cell for a flag: true/false (also 1/0, yes/no), empty for false.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => Ok(false),
        "true" | "1" | "yes" => Ok(true),
        other => Err(serde::de::Error::custom(format!("'{other}' is not true or false"))),
    }
}

impl EpochRow {
    pub const COLUMNS: [&'static str; 10] = [
        "epoch",
        "steps",
        "train_loss",
        "val_loss",
        "val_acc",
        "epoch_wall_s",
        "epoch_energy_j",
        "eval_energy_j",
        "cum_energy_j",
        "cum_wall_s",
    ];

    /// The column a partial epoch's row adds (see [`EpochRow::partial`]).
    pub const PARTIAL: &'static str = "partial";

    fn cells(&self) -> [String; 10] {
        let f = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
        [
            self.epoch.to_string(),
            self.steps.to_string(),
            format!("{}", self.train_loss),
            f(self.val_loss),
            f(self.val_acc),
            format!("{}", self.epoch_wall_s),
            f(self.epoch_energy_j),
            f(self.eval_energy_j),
            f(self.cum_energy_j),
            format!("{}", self.cum_wall_s),
        ]
    }

    /// epochs.csv's text for `rows` (header first; the `partial` column only when a row is partial).
    pub fn render(rows: &[EpochRow]) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let io = "epochs.csv is written to memory";
        let partial = rows.iter().any(|r| r.partial);
        let extra: &[&str] = if partial { &[Self::PARTIAL] } else { &[] };
        w.write_record(Self::COLUMNS.iter().chain(extra)).expect(io);
        for r in rows {
            let flag = if r.partial { "true" } else { "false" };
            w.write_record(r.cells().iter().map(String::as_str).chain(partial.then_some(flag))).expect(io);
        }
        String::from_utf8(w.into_inner().expect(io)).expect("epochs.csv is UTF-8")
    }

    /// Parse epochs.csv text by its header's column names (`path` names it in errors): a cell that is not a
    /// number where one belongs is an error naming the file and the line, never a silently missing value.
    pub fn parse(text: &str, path: &Path) -> Result<Vec<EpochRow>> {
        let mut r = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        r.headers().map_err(|e| anyhow!("{}: not a CSV file ({e})", path.display()))?;
        r.deserialize()
            .map(|row| {
                row.map_err(|e| {
                    let line = e.position().map(|p| format!(" line {}", p.line())).unwrap_or_default();
                    anyhow!("{}{line}: malformed row ({e}); columns are {}", path.display(), Self::COLUMNS.join(","))
                })
            })
            .collect()
    }

    /// The rows of `dir/epochs.csv`; None when the file does not exist.
    pub fn read_all(dir: &Path) -> Result<Option<Vec<EpochRow>>> {
        let path = dir.join(EPOCHS);
        if !path.exists() {
            return Ok(None);
        }
        Self::parse(&read_text(&path)?, &path).map(Some)
    }
}

// ---- summary.json -------------------------------------------------------------------------------------

/// `summary.json` of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub protocol: u32,
    pub model: String,
    pub device: String,
    pub device_name: String,
    pub optimizer: String,
    pub lr: f32,
    pub batch_size: usize,
    pub seed: u64,
    /// "target_reached", "epoch_limit", "max_steps", "diverged"
    pub stop_reason: String,
    pub epochs: usize,
    pub steps: u64,
    pub final_train_loss: Option<f64>,
    pub final_val_acc: Option<f64>,
    pub best_val_acc: Option<f64>,
    /// Validation accuracy per task (CelebA attributes; the single class task is "class").
    pub final_val_acc_per_task: BTreeMap<String, f64>,
    /// First epoch at which each task reached the target (multi-task study).
    pub task_epoch_reached: BTreeMap<String, usize>,
    pub target_acc: Option<f64>,
    pub target_reached: bool,
    pub epochs_to_target: Option<usize>,
    /// Every joule up to and including the evaluation of the epoch that reached the target.
    pub energy_to_target_j: Option<f64>,
    pub time_to_target_s: Option<f64>,
    pub total_energy_j: Option<f64>,
    /// Mean training energy per epoch (evaluation excluded).
    pub energy_per_epoch_j: Option<f64>,
    pub wall_s: f64,
    pub mean_step_s: f64,
    pub energy_source: String,
    pub idle_j: Option<f64>,
    pub active_j: Option<f64>,
    pub idle_power_w: Option<f64>,
    /// Sensor and device context (GPU name, UUID, driver, power limit, update period, the run's accounting,
    /// kernel timing, ...), keys sorted as earlier versions wrote it.
    #[serde(serialize_with = "as_json_value")]
    pub energy_context: EnergyContext,
    /// Energy/time prediction made after the first epochs, and how it compared with the outcome.
    pub prediction: serde_json::Value,
    pub host: String,
    /// Carbon, only with --carbon-intensity (and --pue).
    pub carbon: serde_json::Value,
    /// What the counter can resolve of this run (`energy::resolution`): the sensor's character, the run's and
    /// a typical step's number of updates, labelled resolved or below resolution. Absent without a sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<crate::energy::resolution::RunResolution>,
    /// `--energy sim` only: the meter's attribution against the twin's ground truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution_error: Option<crate::energy::truth::AttributionError>,
    /// With --per-kernel: how the per-kernel split was made (calibrated or time-proportional) and the
    /// additivity check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_split: Option<crate::energy::powercal::SplitReport>,
}

impl RunSummary {
    /// `dir/summary.json`; the error names the file.
    pub fn read(dir: &Path) -> Result<RunSummary> {
        let path = dir.join(SUMMARY);
        serde_json::from_str(&read_text(&path)?)
            .with_context(|| format!("{}: not a run summary; move the run directory away to re-run it", path.display()))
    }

    /// Write `dir/summary.json` (pretty, atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::util::write_json(&dir.join(SUMMARY), self)
    }
}

// ---- kernels.csv --------------------------------------------------------------------------------------

/// One row of kernels.csv (empty cells are `None`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct KernelRow {
    #[serde(alias = "kernel")]
    pub name: String,
    #[serde(default)]
    pub launches: Option<u64>,
    /// `time_s` in files written by hand.
    #[serde(alias = "time_s", default)]
    pub gpu_time_s: Option<f64>,
    #[serde(default)]
    pub energy_j: Option<f64>,
    #[serde(default)]
    pub j_per_launch: Option<f64>,
    #[serde(default)]
    pub j_per_gflop: Option<f64>,
    /// Absent in runs written before uncertainties.
    #[serde(default)]
    pub energy_uncertainty_j: Option<f64>,
    /// Absent in runs written before `--kernel-sample`.
    #[serde(default)]
    pub timed_launches: Option<u64>,
    /// `--energy sim` only: the twin's true energy (an optional column).
    #[serde(default)]
    pub true_energy_j: Option<f64>,
    /// How the split was made: calibrated or time-proportional (an optional column).
    #[serde(default)]
    pub method: Option<String>,
}

impl KernelRow {
    /// The row's cells as kernels.csv writes them (energies in J with 6 decimals, per-launch and per-GFLOP
    /// figures in scientific notation, empty when unknown).
    fn cells(&self) -> Vec<String> {
        let fixed = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let sci = |v: Option<f64>| v.map(|x| format!("{x:.6e}")).unwrap_or_default();
        let int = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        [
            self.name.clone(),
            int(self.launches),
            fixed(self.gpu_time_s),
            fixed(self.energy_j),
            sci(self.j_per_launch),
            sci(self.j_per_gflop),
            fixed(self.energy_uncertainty_j),
            int(self.timed_launches),
        ]
        .into_iter()
        .collect()
    }
}

/// A run's kernels.csv, read by header names (older runs lack the later columns). A row that is not a number
/// where one belongs is an error naming the file and the line, never a silently missing bar or comparison.
#[derive(Clone, Debug)]
pub struct KernelsCsv {
    pub path: PathBuf,
    /// The header's column names, as written.
    pub columns: Vec<String>,
    pub rows: Vec<KernelRow>,
}

impl KernelsCsv {
    pub const COLUMNS: [&'static str; 8] = [
        "name",
        "launches",
        "gpu_time_s",
        "energy_j",
        "j_per_launch",
        "j_per_gflop",
        "energy_uncertainty_j",
        "timed_launches",
    ];

    /// kernels.csv's text for `rows`, in the given order (header first); the optional columns `method` and
    /// `true_energy_j` (sim) follow when some row has them.
    pub fn render(rows: &[KernelRow]) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let io = "kernels.csv is written to memory";
        let method = rows.iter().any(|r| r.method.is_some());
        let truth = rows.iter().any(|r| r.true_energy_j.is_some());
        let mut header: Vec<&str> = Self::COLUMNS.to_vec();
        header.extend(method.then_some("method"));
        header.extend(truth.then_some("true_energy_j"));
        w.write_record(&header).expect(io);
        for r in rows {
            let mut cells = r.cells();
            if method {
                cells.push(r.method.clone().unwrap_or_default());
            }
            if truth {
                cells.push(r.true_energy_j.map(|x| format!("{x:.6}")).unwrap_or_default());
            }
            w.write_record(cells).expect(io);
        }
        String::from_utf8(w.into_inner().expect(io)).expect("kernels.csv is UTF-8")
    }

    /// Read `path`; errors name the file (and the line) and say what is wrong.
    pub fn read(path: &Path) -> Result<KernelsCsv> {
        Self::parse(&read_text(path)?, path)
    }

    /// Parse kernels.csv text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<KernelsCsv> {
        let mut r = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let columns: Vec<String> = r
            .headers()
            .map_err(|e| anyhow!("{}: not a CSV file ({e})", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        if !columns.iter().any(|c| c == "name" || c == "kernel") {
            bail!(
                "{}: not a kernels.csv (its header has no `name` column: {}); give the kernels.csv a \
                 `powertrain train --per-kernel` run wrote",
                path.display(),
                columns.join(",")
            );
        }
        let rows = r
            .deserialize()
            .map(|row| {
                row.map_err(|e| {
                    let line = e.position().map(|p| format!(" line {}", p.line())).unwrap_or_default();
                    anyhow!("{}{line}: malformed row ({e})", path.display())
                })
            })
            .collect::<Result<Vec<KernelRow>>>()?;
        Ok(KernelsCsv { path: path.to_path_buf(), columns, rows })
    }

    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}

// ---- reading a run directory --------------------------------------------------------------------------

/// A run directory to read: each file through its typed owner above.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: &Path) -> RunDir {
        RunDir { path: path.to_path_buf() }
    }
    /// The run's name: its directory's name (a study's configuration id).
    pub fn id(&self) -> String {
        self.path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| self.path.display().to_string())
    }
    /// True once the run finished (summary.json exists).
    pub fn is_finished(&self) -> bool {
        self.path.join(SUMMARY).exists()
    }
    pub fn config(&self) -> Result<Config> {
        Config::read(&self.path)
    }
    pub fn summary(&self) -> Result<RunSummary> {
        RunSummary::read(&self.path)
    }
    /// steps.jsonl's records (None: no such file).
    pub fn steps(&self) -> Result<Option<Vec<StepRecord>>> {
        StepRecord::read_all(&self.path)
    }
    /// epochs.csv's rows (None: no such file).
    pub fn epochs(&self) -> Result<Option<Vec<EpochRow>>> {
        EpochRow::read_all(&self.path)
    }
    /// kernels.csv (None: the run was trained without --per-kernel).
    pub fn kernels(&self) -> Result<Option<KernelsCsv>> {
        let path = self.path.join(KERNELS);
        if !path.exists() {
            return Ok(None);
        }
        KernelsCsv::read(&path).map(Some)
    }
}

// ---- writing a run directory --------------------------------------------------------------------------

/// Writes one run directory: config.json at the start, a steps.jsonl line per step, the epochs as they end,
/// then epochs.csv, kernels.csv and summary.json at the end. Everything goes into a staging directory beside
/// `--out` that `commit` renames into place, so a failed run leaves nothing that looks like a result. Without
/// `--out` ([`RunWriter::none`]) nothing is written.
///
/// `create` locks `--out` ([`crate::util::DirLock`], through the staging directory) before any work: a second
/// writer of the same `--out` is refused with the first one's pid.
pub struct RunWriter {
    staging: Option<crate::util::StagingDir>,
    steps: Option<std::io::BufWriter<std::fs::File>>,
    epochs: Vec<EpochRow>,
    finished: bool,
}

impl RunWriter {
    /// A writer for `out` (refused when `out` exists and is not empty), or [`RunWriter::none`] for None.
    pub fn create(out: Option<&Path>) -> Result<RunWriter> {
        let staging = match out {
            Some(out) => Some(crate::util::StagingDir::new(out, false)?),
            None => None,
        };
        Ok(RunWriter { staging, steps: None, epochs: Vec::new(), finished: false })
    }

    /// A writer that keeps nothing (a run without `--out`).
    pub fn none() -> RunWriter {
        RunWriter { staging: None, steps: None, epochs: Vec::new(), finished: false }
    }

    /// The directory being written (the staging directory until `commit`).
    pub fn dir(&self) -> Option<&Path> {
        self.staging.as_ref().map(|s| s.path())
    }

    /// Write config.json and open steps.jsonl.
    pub fn config(&mut self, c: &Config) -> Result<()> {
        let Some(dir) = self.dir().map(Path::to_path_buf) else { return Ok(()) };
        crate::util::write_json(&dir.join(CONFIG), &serde_json::to_value(c)?)?;
        let f = std::fs::File::create(dir.join(STEPS)).with_context(|| format!("cannot write in {}", dir.display()))?;
        self.steps = Some(std::io::BufWriter::new(f));
        Ok(())
    }

    /// Append one steps.jsonl line.
    pub fn step(&mut self, r: &StepRecord) -> Result<()> {
        match self.steps.as_mut() {
            Some(w) => r.write_line(w),
            None => Ok(()),
        }
    }

    /// An epoch ended: keep its row (epochs.csv is written at the end) and flush the steps so far.
    pub fn epoch(&mut self, row: EpochRow) -> Result<()> {
        self.epochs.push(row);
        if let Some(w) = self.steps.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// The run ended: write epochs.csv, kernels.csv (with --per-kernel) and summary.json.
    pub fn finish(&mut self, summary: &RunSummary, kernels: Option<&[KernelRow]>) -> Result<()> {
        if let Some(mut w) = self.steps.take() {
            w.flush()?;
        }
        let Some(dir) = self.dir().map(Path::to_path_buf) else { return Ok(()) };
        crate::util::write_atomic(&dir.join(EPOCHS), EpochRow::render(&self.epochs).as_bytes())?;
        if let Some(rows) = kernels {
            crate::util::write_atomic(&dir.join(KERNELS), KernelsCsv::render(rows).as_bytes())?;
        }
        summary.write(&dir)?;
        self.finished = true;
        Ok(())
    }

    /// True once `finish` wrote every file: the run's records are complete (whatever fails later, they are
    /// committed, never thrown away).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Rename the finished run directory into place; returns where it is (None without `--out`).
    pub fn commit(self) -> Result<Option<PathBuf>> {
        self.staging.map(|s| s.commit()).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_csv_round_trips_and_a_bad_cell_names_file_and_line() {
        let rows = vec![
            EpochRow {
                epoch: 1,
                steps: 55,
                train_loss: 1.9492625550790266,
                val_loss: Some(1.25),
                val_acc: Some(0.5941558441558441),
                epoch_wall_s: 2.25,
                epoch_energy_j: None,
                eval_energy_j: None,
                cum_energy_j: None,
                cum_wall_s: 2.5,
                partial: false,
            },
            EpochRow { epoch: 2, steps: 3, train_loss: f64::NAN, cum_energy_j: Some(0.0), ..Default::default() },
        ];
        let text = EpochRow::render(&rows);
        assert_eq!(
            text,
            "epoch,steps,train_loss,val_loss,val_acc,epoch_wall_s,epoch_energy_j,eval_energy_j,cum_energy_j,cum_wall_s\n\
             1,55,1.9492625550790266,1.25,0.5941558441558441,2.25,,,,2.5\n2,3,NaN,,,0,,,0,0\n"
        );
        let back = EpochRow::parse(&text, Path::new("run/epochs.csv")).unwrap();
        assert_eq!(back[0], rows[0]);
        assert!(back[1].train_loss.is_nan() && back[1].cum_energy_j == Some(0.0));
        let bad = text.replace("1.25,", "1.2.5,");
        let e = format!("{:#}", EpochRow::parse(&bad, Path::new("run/epochs.csv")).unwrap_err());
        assert!(e.contains("run/epochs.csv line 2:"), "{e}");
    }

    #[test]
    fn step_records_keep_the_json_bytes_and_a_bad_line_names_file_and_line() {
        let se = StepEnergy {
            energy_j: Some(1.5),
            window_s: 0.25,
            method: "watts-x-time (estimate)".into(),
            ..Default::default()
        };
        let rec = StepRecord::new(3, 1, 0.1, 16, (0.2, 1.0), EnergySource::Estimate, &se);
        let mut line = Vec::new();
        rec.write_line(&mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        // Keys sorted, the f32 loss widened, no kernel keys without --per-kernel.
        assert_eq!(
            line,
            "{\"batch_size\":16,\"energy_j\":1.5,\"energy_method\":\"watts-x-time (estimate)\",\"energy_source\":\
             \"estimate\",\"energy_uncertainty_j\":null,\"epoch\":1,\"gap_energy_j\":null,\"gap_s\":0.0,\
             \"loss\":0.10000000149011612,\"step\":3,\"t_s\":1.0,\"wall_s\":0.2,\"window_s\":0.25}\n"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STEPS), format!("{line}{{\"step\": \"x\"}}\n")).unwrap();
        let e = format!("{:#}", RunDir::new(d.path()).steps().unwrap_err());
        assert!(e.contains("steps.jsonl line 2:"), "{e}");
        std::fs::write(d.path().join(STEPS), &line).unwrap();
        assert_eq!(RunDir::new(d.path()).steps().unwrap().unwrap(), vec![rec]);
    }

    #[test]
    fn run_writer_stages_commits_and_every_file_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let cfg: Config = serde_json::from_str(r#"{"model": "pamap2", "batch_size": 16, "lr": 0.01}"#).unwrap();
        let se = StepEnergy { energy_j: Some(2.0), window_s: 0.5, ..Default::default() };
        let step = StepRecord::new(1, 1, 0.75, 16, (0.4, 0.5), EnergySource::Estimate, &se);
        let epoch = EpochRow { epoch: 1, steps: 1, train_loss: 0.75, cum_energy_j: Some(2.0), ..Default::default() };
        let summary = RunSummary { model: "pamap2".into(), steps: 1, total_energy_j: Some(2.0), ..Default::default() };
        let kernel = KernelRow {
            name: "gemm".into(),
            launches: Some(6),
            gpu_time_s: Some(0.25),
            energy_j: Some(1.5),
            j_per_launch: Some(0.25),
            j_per_gflop: None,
            energy_uncertainty_j: None,
            timed_launches: Some(6),
            true_energy_j: None,
            method: None,
        };
        let mut w = RunWriter::create(Some(&out)).unwrap();
        w.config(&cfg).unwrap();
        w.step(&step).unwrap();
        w.epoch(epoch.clone()).unwrap();
        assert!(!out.exists(), "nothing under the final name before commit");
        w.finish(&summary, Some(std::slice::from_ref(&kernel))).unwrap();
        assert_eq!(w.commit().unwrap().as_deref(), Some(out.as_path()));
        let run = RunDir::new(&out);
        assert_eq!(run.config().unwrap(), cfg);
        // config.json keeps the f32 widened as json! wrote it.
        assert!(std::fs::read_to_string(out.join(CONFIG)).unwrap().contains("\"lr\": 0.009999999776482582"));
        assert_eq!(run.steps().unwrap().unwrap(), vec![step]);
        assert_eq!(run.epochs().unwrap().unwrap(), vec![epoch]);
        assert_eq!((run.summary().unwrap().steps, run.summary().unwrap().total_energy_j), (1, Some(2.0)));
        let k = run.kernels().unwrap().unwrap();
        assert_eq!(k.rows, vec![kernel]);
        assert_eq!(
            std::fs::read_to_string(out.join(KERNELS)).unwrap().lines().nth(1),
            Some("gemm,6,0.250000,1.500000,2.500000e-1,,,6")
        );
        // A run that fails before commit leaves nothing that looks like a result.
        let failed = d.path().join("failed");
        let mut w = RunWriter::create(Some(&failed)).unwrap();
        w.config(&cfg).unwrap();
        drop(w);
        assert!(!failed.exists() && std::fs::read_dir(d.path()).unwrap().count() == 1);
        // Without --out nothing is written.
        let mut w = RunWriter::none();
        w.config(&cfg).unwrap();
        w.finish(&summary, None).unwrap();
        assert_eq!(w.commit().unwrap(), None);
    }
}

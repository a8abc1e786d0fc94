//! What a training run is asked to do ([`TrainConfig`], the one source of the protocol's defaults) and what
//! it is prepared from before any device work ([`Setup`]: dataset, task columns, initial weights, optimiser).
use crate::data::{open_dataset, Dataset, Split, TargetKind};
use crate::model::{checkpoint, Arch, Layout, Optimizer};
use crate::ops::KernelClock;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings of one training run: the library's configuration (`powertrain train`'s flags map onto it
/// one to one; the studies start from [`TrainConfig::new`]). `Default` holds the protocol's defaults, the
/// only place they are written (`cli.rs` takes its flag defaults from here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// pamap2 or celeba
    pub model: String,
    /// A dataset directory or a .safetensors file with x and y.
    pub data: PathBuf,
    /// Validation .safetensors file (with a single-file `data`).
    pub val: Option<PathBuf>,
    /// Comma-separated CelebA attribute names (None: Smiling).
    pub tasks: Option<String>,
    /// auto, cpu or cuda
    pub device: String,
    /// sgd or adam
    pub optimizer: String,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub batch_size: usize,
    /// Maximum number of epochs.
    pub epochs: usize,
    pub max_steps: Option<usize>,
    /// Stop at the first epoch whose validation accuracy reaches this (every task).
    pub target_acc: Option<f64>,
    pub no_shuffle: bool,
    pub seed: u64,
    /// Initial weights (.safetensors, PyTorch names).
    pub init: Option<PathBuf>,
    /// Where to write the final weights.
    pub save: Option<PathBuf>,
    pub freeze_encoder: bool,
    /// auto, nvml, rapl, sim, estimate or none
    pub energy: String,
    /// With energy sim: the twin's power table (JSON, `energy::twin::PowerModel`); None: the built-in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_model: Option<PathBuf>,
    /// With energy sim: the twin's counter, `continuous|part-time[:key=value,...]`; None: continuous.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_sensor: Option<String>,
    /// With per_kernel: a calibration file, or "none" (time-proportional split); None: the cache's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    pub watts: Option<f64>,
    pub per_kernel: bool,
    /// With per_kernel: time the launches of every Nth step (1: all).
    pub kernel_sample: u64,
    #[serde(with = "clock_name")]
    pub kernel_timing: KernelClock,
    pub carbon_intensity: Option<f64>,
    pub pue: Option<f64>,
    /// Stop once the run has used more than this (`sweep --prune`'s adaptive cap: a run that costs more than
    /// the best so far cannot beat it). Joules when the run has energy readings, else seconds of wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<f64>,
    /// The run directory (None: nothing is written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
}

impl Default for TrainConfig {
    /// The protocol's defaults (`../shared/docs/protocol.md`); `model` and `data` are empty.
    fn default() -> TrainConfig {
        TrainConfig {
            model: String::new(),
            data: PathBuf::new(),
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
            cap: None,
            energy: "auto".into(),
            sim_model: None,
            sim_sensor: None,
            calibration: None,
            watts: None,
            per_kernel: false,
            kernel_sample: 1,
            kernel_timing: KernelClock::Events,
            carbon_intensity: None,
            pue: None,
            out: None,
        }
    }
}

/// `kernel_timing` as its flag value ("events", "stamps").
mod clock_name {
    use crate::ops::KernelClock;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(c: &KernelClock, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.name())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KernelClock, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl TrainConfig {
    /// The defaults for `model` on `data`.
    pub fn new(model: &str, data: &Path) -> TrainConfig {
        TrainConfig { model: model.to_string(), data: data.to_path_buf(), ..TrainConfig::default() }
    }

    /// Check every setting that needs no file and no device, each against its meaning and a sane bound (the
    /// error names the flag and says what to give); returns the optimiser they describe. Called by
    /// `powertrain train` and, for every run of a grid before the first one starts, by the studies.
    pub fn validate(&self) -> Result<Optimizer> {
        if !matches!(self.model.as_str(), "pamap2" | "celeba") {
            bail!("unknown --model '{}': use pamap2 or celeba", self.model);
        }
        if let Some(t) = &self.tasks {
            if self.model != "celeba" {
                bail!("--tasks applies to the celeba model only");
            }
            task_names(t)?;
        }
        if !matches!(self.device.as_str(), "auto" | "cpu" | "cuda") {
            bail!("unknown --device '{}': use auto, cpu or cuda", self.device);
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            bail!("--momentum {}: give a number in [0, 1) (0: plain SGD)", self.momentum);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay {}: give a non-negative number (0: none)", self.weight_decay);
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.batch_size > MAX_BATCH {
            bail!("--batch-size {}: at most {MAX_BATCH} rows per step", self.batch_size);
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.epochs > MAX_EPOCHS {
            bail!("--epochs {}: at most {MAX_EPOCHS} (use --max-steps or --target-acc to stop earlier)", self.epochs);
        }
        if self.max_steps == Some(0) {
            bail!("--max-steps 0: give at least 1 step (or leave it out)");
        }
        if let Some(t) = self.target_acc {
            check_target_acc(t)?;
        }
        if !matches!(self.energy.as_str(), "auto" | "nvml" | "rapl" | "sim" | "estimate" | "none") {
            bail!("unknown --energy '{}': use auto, nvml, rapl, sim, estimate or none", self.energy);
        }
        self.validate_sim()?;
        match (self.energy.as_str(), self.watts) {
            ("estimate", None) => bail!("--energy estimate needs --watts W (the power to assume while busy)"),
            ("estimate", Some(w)) => check_watts(w)?,
            (_, Some(_)) => bail!("--watts applies to --energy estimate only"),
            _ => {}
        }
        if self.kernel_sample == 0 {
            bail!("--kernel-sample must be at least 1 (1: time every step's launches)");
        }
        if self.kernel_sample > 1 && !self.per_kernel {
            bail!("--kernel-sample applies to per-kernel attribution: add --per-kernel");
        }
        if self.kernel_timing != KernelClock::Events && !self.per_kernel {
            bail!("--kernel-timing applies to per-kernel attribution: add --per-kernel");
        }
        match (self.carbon_intensity, self.pue) {
            (None, None) => {}
            (Some(_), None) => {
                bail!("--carbon-intensity needs --pue (the site's power usage effectiveness, e.g. 1.2)")
            }
            (None, Some(_)) => bail!("--pue needs --carbon-intensity (gCO2e/kWh of the electricity used)"),
            (Some(ci), Some(pue)) => {
                if !(ci.is_finite() && (0.0..=MAX_CARBON_INTENSITY).contains(&ci)) {
                    bail!("--carbon-intensity {ci}: give gCO2e/kWh between 0 and {MAX_CARBON_INTENSITY}");
                }
                if !(pue.is_finite() && (1.0..=MAX_PUE).contains(&pue)) {
                    bail!("--pue {pue}: give the facility/IT energy ratio, between 1.0 and {MAX_PUE}");
                }
            }
        }
        Optimizer::parse(&self.optimizer, self.lr, self.momentum, self.weight_decay)
    }

    /// `--sim-model`, `--sim-sensor` (with `--energy sim` only; the spec parsed) and `--calibration` (with
    /// `--per-kernel` only).
    fn validate_sim(&self) -> Result<()> {
        if self.energy != "sim" {
            if self.sim_model.is_some() {
                bail!("--sim-model applies to --energy sim only (the sensor twin's power table)");
            }
            if self.sim_sensor.is_some() {
                bail!("--sim-sensor applies to --energy sim only (the sensor twin's counter)");
            }
        }
        if let Some(s) = &self.sim_sensor {
            crate::energy::twin::SensorModel::parse(s)?;
        }
        if self.calibration.is_some() && !self.per_kernel {
            bail!("--calibration applies to per-kernel attribution: add --per-kernel");
        }
        if self.calibration.as_deref() == Some("") {
            bail!("--calibration is empty: give a calibration file, or none (split by time)");
        }
        Ok(())
    }

    /// What the meter needs beyond `MeterConfig` (the twin's models, the calibration, the step's shape);
    /// reads `--sim-model` and checks a `--calibration` file.
    pub fn energy_options(&self) -> Result<crate::energy::EnergyOptions> {
        use crate::energy::{powercal, twin};
        let sim_model = match &self.sim_model {
            Some(p) => Some(twin::PowerModel::from_file(p)?),
            None => None,
        };
        let sim_sensor = self.sim_sensor.as_deref().map(twin::SensorModel::parse).transpose()?;
        let calibration = powercal::CalibrationChoice::parse(self.calibration.as_deref());
        if let powercal::CalibrationChoice::File(p) = &calibration {
            powercal::PowerCalibration::read(p, "--calibration")?;
        }
        Ok(crate::energy::EnergyOptions {
            sim_model,
            sim_sensor,
            calibration,
            shape: powercal::shape_key(&self.model, self.batch_size),
            verbose: true,
        })
    }

    /// Check the files the settings name before any work: `--init` must be a regular file; `--save` must not
    /// be a directory or a special file, its folder must exist and be writable, and it must not be one of the
    /// training data's files.
    pub fn check_paths(&self) -> Result<()> {
        self.energy_options()?;
        if let Some(p) = &self.init {
            crate::util::check_regular_file(p).with_context(|| format!("--init {}", p.display()))?;
        }
        if let Some(p) = &self.save {
            check_save_path(p, self)?;
        }
        Ok(())
    }
}

/// The largest batch (rows per step) accepted.
pub const MAX_BATCH: usize = 1 << 16;
/// The largest epoch limit accepted.
pub const MAX_EPOCHS: usize = 100_000;
/// The largest `--watts` accepted (a whole node of GPUs).
pub const MAX_WATTS: f64 = 100_000.0;
/// The largest carbon intensity accepted (gCO2e/kWh; coal is about 1000).
pub const MAX_CARBON_INTENSITY: f64 = 5_000.0;
/// The largest PUE accepted.
pub const MAX_PUE: f64 = 10.0;

/// `--target-acc`: an accuracy in (0, 1].
pub fn check_target_acc(t: f64) -> Result<()> {
    if !(t.is_finite() && t > 0.0 && t <= 1.0) {
        bail!("--target-acc {t}: give a validation accuracy in (0, 1], e.g. 0.8");
    }
    Ok(())
}

/// `--watts`: a positive number of watts, at most [`MAX_WATTS`].
pub fn check_watts(w: f64) -> Result<()> {
    if !(w.is_finite() && w > 0.0 && w <= MAX_WATTS) {
        bail!("--watts {w}: give the power to assume while busy, in watts (0 < W <= {MAX_WATTS})");
    }
    Ok(())
}

/// The attribute names of `--tasks` (comma-separated): none empty, none twice.
pub fn task_names(tasks: &str) -> Result<Vec<String>> {
    let names: Vec<String> = tasks.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if names.is_empty() {
        bail!("--tasks is empty: give comma-separated attribute names, e.g. Smiling,Male");
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            bail!("--tasks: {n} is listed twice; give each attribute once");
        }
    }
    Ok(names)
}

fn check_save_path(p: &Path, cfg: &TrainConfig) -> Result<()> {
    let flag = format!("--save {}", p.display());
    if p.is_dir() {
        bail!("{flag}: is a directory; give a file name, e.g. {}", p.join("weights.safetensors").display());
    }
    if let Ok(md) = std::fs::metadata(p) {
        if !md.is_file() {
            bail!("{flag}: not a regular file (a FIFO, socket or device); give a new file name");
        }
    }
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if parent.exists() && !parent.is_dir() {
        bail!("{flag}: {} is not a folder; give a path in a folder", parent.display());
    }
    if !parent.is_dir() {
        bail!("{flag}: the folder {} does not exist; create it first or give another path", parent.display());
    }
    tempfile::Builder::new()
        .prefix(".powertrain-save-check")
        .tempfile_in(parent)
        .with_context(|| format!("{flag}: cannot write in {} (check its permissions)", parent.display()))?;
    // Never over the training data.
    let canon = |q: &Path| std::fs::canonicalize(q).ok();
    if let Some(target) = canon(p) {
        let mut data_files = vec![cfg.data.clone()];
        data_files.extend(cfg.val.clone());
        if cfg.data.is_dir() {
            for f in ["train.safetensors", "val.safetensors", "test.safetensors", "dataset.json"] {
                data_files.push(cfg.data.join(f));
            }
        }
        if data_files.iter().any(|d| canon(d).as_ref() == Some(&target)) {
            bail!("{flag}: that is a file of the training data; give another path");
        }
    }
    Ok(())
}

/// How the dataset's targets map onto the model: the architecture and the target columns to gather.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub arch: Arch,
    /// Columns of y to use (binary targets).
    pub cols: Vec<usize>,
    /// Task names ("class" for the class task; attribute names or "y[j]" for binary targets).
    pub names: Vec<String>,
}

/// Check that `split` fits `model` and pick the target columns (`--tasks`).
pub fn task_spec(model: &str, split: &Split, tasks: Option<&str>) -> Result<TaskSpec> {
    let file = split.path.display();
    match (model, &split.target) {
        ("pamap2", TargetKind::Classes { k }) => {
            if tasks.is_some() {
                bail!("--tasks applies to the celeba model only");
            }
            if *k > 12 {
                bail!("{file}: labels go up to {}, the pamap2 model has 12 classes", k - 1);
            }
            check_row_shape(split, Arch::Pamap2)?;
            Ok(TaskSpec { arch: Arch::Pamap2, cols: vec![], names: vec!["class".into()] })
        }
        ("celeba", TargetKind::Binary { k, names }) => {
            let (cols, task_names) = match tasks {
                Some(t) => attribute_columns(&file.to_string(), names, t)?,
                None if names.iter().any(|n| n == "Smiling") && *k > 1 => {
                    (vec![names.iter().position(|n| n == "Smiling").unwrap_or(0)], vec!["Smiling".to_string()])
                }
                None => {
                    let task_names =
                        (0..*k).map(|j| names.get(j).cloned().unwrap_or_else(|| format!("y[{j}]"))).collect();
                    ((0..*k).collect(), task_names)
                }
            };
            let arch = Arch::Celeba { k: cols.len() };
            check_row_shape(split, arch)?;
            Ok(TaskSpec { arch, cols, names: task_names })
        }
        ("pamap2", TargetKind::Binary { .. }) => {
            bail!("{file}: y holds binary targets [N, K]; the pamap2 model needs class ids [N]")
        }
        ("celeba", TargetKind::Classes { .. }) => {
            bail!("{file}: y holds class ids [N]; the celeba model needs binary targets [N, K]")
        }
        (other, _) => bail!("unknown --model '{other}': use pamap2 or celeba"),
    }
}

/// The columns of the attributes `tasks` (comma-separated) names, and those names.
fn attribute_columns(file: &str, names: &[String], tasks: &str) -> Result<(Vec<usize>, Vec<String>)> {
    let mut cols = vec![];
    let mut out = vec![];
    for name in task_names(tasks)? {
        let name = name.as_str();
        let j = names.iter().position(|n| n == name).with_context(|| {
            if names.is_empty() {
                format!("{file}: --tasks names attributes, but y has no attribute names")
            } else {
                format!("{file}: no attribute '{name}' (known: {})", names.join(", "))
            }
        })?;
        cols.push(j);
        out.push(name.to_string());
    }
    if cols.is_empty() {
        bail!("--tasks is empty");
    }
    Ok((cols, out))
}

fn check_row_shape(split: &Split, arch: Arch) -> Result<()> {
    if split.row_shape != arch.input_shape() {
        bail!(
            "{}: x rows have shape {:?}, the {} model needs {:?}",
            split.path.display(),
            split.row_shape,
            arch.name(),
            arch.input_shape()
        );
    }
    Ok(())
}

/// A run prepared before any device work: the settings checked, the dataset opened and matched to the model,
/// the initial weights loaded.
pub struct Setup {
    pub cfg: TrainConfig,
    pub optimizer: Optimizer,
    pub ds: Dataset,
    pub spec: TaskSpec,
    pub layout: Layout,
    pub init: Vec<f32>,
}

impl Setup {
    pub fn new(cfg: &TrainConfig) -> Result<Setup> {
        let optimizer = cfg.validate()?;
        cfg.check_paths()?;
        let ds = open_dataset(&cfg.data, cfg.val.as_deref())?;
        let spec = task_spec(&cfg.model, &ds.train, cfg.tasks.as_deref())?;
        if let Some(v) = &ds.val {
            let vs = task_spec(&cfg.model, v, cfg.tasks.as_deref())?;
            if vs.cols != spec.cols || vs.arch != spec.arch {
                bail!("{}: validation targets do not match the training targets", v.path.display());
            }
        }
        let layout = Layout::new(spec.arch);
        let init = match &cfg.init {
            Some(p) => checkpoint::load(p, &layout)?,
            None => layout.init(cfg.seed),
        };
        if cfg.freeze_encoder && cfg.init.is_none() {
            eprintln!("note: --freeze-encoder without --init trains the head on a randomly initialised encoder");
        }
        Ok(Setup { cfg: cfg.clone(), optimizer, ds, spec, layout, init })
    }
}

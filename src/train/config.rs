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
    /// auto, nvml, rapl, estimate or none
    pub energy: String,
    pub watts: Option<f64>,
    pub per_kernel: bool,
    /// With per_kernel: time the launches of every Nth step (1: all).
    pub kernel_sample: u64,
    #[serde(with = "clock_name")]
    pub kernel_timing: KernelClock,
    pub carbon_intensity: Option<f64>,
    pub pue: Option<f64>,
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
            energy: "auto".into(),
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

    /// Check the settings that need no file and no device; returns the optimiser they describe.
    /// (Issue 13 extends this to every flag, path and combination, all checked before the first step.)
    pub fn validate(&self) -> Result<Optimizer> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
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
        Optimizer::parse(&self.optimizer, self.lr, self.momentum, self.weight_decay)
    }
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
    for name in tasks.split(',').map(str::trim).filter(|s| !s.is_empty()) {
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

//! `powertrain pretrain-study`: does pretraining pay off in energy?
//!
//! Per seed: pretrain the whole pamap2 network on the source subjects (the dataset's train split) for the
//! epoch limit (no target: the validation split is subject 105, a target subject, so it must not choose
//! when pretraining stops; its per-epoch evaluation energy is counted in the pretraining energy). Then
//! each "reuse" is a downstream training on a held-out target subject (105 = the val split, 106 = the test
//! split), on its own split 70/30 by time (the first 70% of its windows in file order train, the rest
//! validate), done three ways: from scratch, fine-tuning every layer from the pretrained weights (`--init`),
//! and with the encoder frozen (`--init --freeze-encoder`), each until the target accuracy or the epoch limit.
//! Break-even reuses = E_pretrain / (E_scratch - E_reuse); "never" when E_scratch - E_reuse <= 0.
use super::dir::Access;
use super::{
    check_model, fmt_num, md_table, mixed_machines, mixed_sources, Metric, RunRecord, Study, StudyManifest, Trainer,
};
use crate::rundir::RunSummary;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What `powertrain pretrain-study` was asked for (its flags; `resolve` applies the defaults).
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    /// pamap2
    pub model: String,
    /// The PAMAP2 dataset directory.
    pub data: PathBuf,
    /// Seeds (3 is the default, which `quick` lowers).
    pub seeds: u64,
    pub batch_size: usize,
    pub lr: f32,
    /// Epoch limit per run (20 is the default, which `quick` lowers).
    pub epochs: usize,
    /// Downstream validation accuracy target (None: 0.80).
    pub target_acc: Option<f64>,
    pub device: String,
    pub energy: String,
    pub watts: Option<f64>,
    /// Reduced settings for 2 CPU cores.
    pub quick: bool,
    /// The study directory.
    pub out: PathBuf,
}

/// The downstream files of one target subject.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetSplit {
    pub subject: u32,
    pub train: PathBuf,
    pub val: PathBuf,
}

/// Writes the target subjects' split files into a study directory: (dataset dir, study dir) -> splits.
pub type Splitter<'a> = &'a dyn Fn(&Path, &Path) -> Result<Vec<TargetSplit>>;

/// The ways a pretrained network is reused (and the baseline).
pub const WAYS: [&str; 3] = ["scratch", "finetune", "frozen"];

/// Rows [0, n_train) train, [n_train, n) validate: 70/30 by time. Errors when either part would be empty.
pub fn split_70_30(n: usize, what: &str) -> Result<usize> {
    let n_train = n * 7 / 10;
    if n_train == 0 || n_train == n {
        bail!("{what}: {n} windows are too few for a 70/30 split; the target subject needs at least 2");
    }
    Ok(n_train)
}

/// Write `STUDY/splits/s105_{train,val}.safetensors` and `s106_...` from the dataset directory's val and test
/// splits (through `crate::data`, so `x` is normalised f32 as training sees it; `y` keeps the source dtype).
/// Existing files are kept (a resumed study reuses them).
pub fn write_target_splits(data: &Path, study_dir: &Path) -> Result<Vec<TargetSplit>> {
    let dir = study_dir.join("splits");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut out = Vec::new();
    for (subject, split) in [(105u32, "val"), (106, "test")] {
        let ts = TargetSplit {
            subject,
            train: dir.join(format!("s{subject}_train.safetensors")),
            val: dir.join(format!("s{subject}_val.safetensors")),
        };
        if ts.train.exists() && ts.val.exists() {
            out.push(ts);
            continue;
        }
        let src = data.join(format!("{split}.safetensors"));
        let sp = crate::data::Split::open(&src).with_context(|| {
            format!("--data {}: the pretraining study needs a PAMAP2 dataset directory", data.display())
        })?;
        if !matches!(sp.target, crate::data::TargetKind::Classes { .. }) {
            bail!("{}: y is not class ids; the pretraining study takes the pamap2 dataset", src.display());
        }
        let y_dtype = source_y_dtype(&src)?;
        let n_train = split_70_30(sp.n, &src.display().to_string())?;
        for (path, lo, hi) in [(&ts.train, 0, n_train), (&ts.val, n_train, sp.n)] {
            let idx: Vec<usize> = (lo..hi).collect();
            let mut x = vec![0f32; idx.len() * sp.row_len()];
            let mut y = vec![0i32; idx.len()];
            sp.gather(&idx, &[], &mut x, &mut y, &mut [])?;
            let mut shape = vec![idx.len()];
            shape.extend(&sp.row_shape);
            let mut meta: HashMap<String, String> = ["num_classes", "names"]
                .iter()
                .filter_map(|k| Some((k.to_string(), sp.metadata.get(*k)?.clone())))
                .collect();
            meta.extend([
                ("protocol".to_string(), crate::PROTOCOL_VERSION.to_string()),
                ("source".to_string(), src.display().to_string()),
                ("subject".to_string(), subject.to_string()),
                ("rows".to_string(), format!("{lo}..{hi} of {} (70/30 by time)", sp.n)),
                ("x".to_string(), "normalised f32, used as given".to_string()),
            ]);
            write_xy(path, &x, &shape, &y, y_dtype, meta)?;
        }
        out.push(ts);
    }
    Ok(out)
}

fn source_y_dtype(path: &Path) -> Result<safetensors::Dtype> {
    let f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: the file is only read, and the map lives until the end of this function.
    let map = unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("{}: cannot map", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", path.display()))?;
    let info = meta.info("y").with_context(|| format!("{}: no tensor named y", path.display()))?;
    Ok(info.dtype)
}

/// Write `x` f32 [shape] and `y` class ids [n] (as `y_dtype`) to `path` atomically.
pub fn write_xy(
    path: &Path,
    x: &[f32],
    shape: &[usize],
    y: &[i32],
    y_dtype: safetensors::Dtype,
    meta: HashMap<String, String>,
) -> Result<()> {
    use safetensors::{tensor::TensorView, Dtype};
    let n = y.len();
    let y_bytes: Vec<u8> = match y_dtype {
        Dtype::I64 => y.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
        Dtype::I32 => y.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        Dtype::I16 => y.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect(),
        Dtype::U8 => y.iter().map(|&v| v as u8).collect(),
        Dtype::U16 => y.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
        Dtype::U32 => y.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
        Dtype::I8 => y.iter().map(|&v| v as i8 as u8).collect(),
        other => bail!("{}: class ids of dtype {other:?} are not supported", path.display()),
    };
    let x_bytes: &[u8] = bytemuck::cast_slice(x);
    let err = |e: safetensors::SafeTensorError| anyhow::anyhow!("{}: cannot write ({e})", path.display());
    let xv = TensorView::new(Dtype::F32, shape.to_vec(), x_bytes).map_err(err)?;
    let yv = TensorView::new(y_dtype, vec![n], &y_bytes).map_err(err)?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file([("x", xv), ("y", yv)], Some(meta), &tmp).map_err(err)?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

/// The resolved settings (written into study.json).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PretrainGrid {
    pub seeds: u64,
    pub batch_size: usize,
    pub lr: f32,
    pub epochs: usize,
    pub target_acc: f64,
    pub device: String,
    pub energy: String,
    pub watts: Option<f64>,
}

pub fn resolve(a: &PretrainOptions) -> Result<PretrainGrid> {
    check_model(&a.model, &["pamap2"])?;
    let (seeds, epochs, target) = if a.quick {
        (if a.seeds == 3 { 2 } else { a.seeds }, if a.epochs == 20 { 2 } else { a.epochs }, 0.6)
    } else {
        (a.seeds, a.epochs, 0.80)
    };
    if seeds == 0 || epochs == 0 || a.batch_size == 0 {
        bail!("--seeds, --epochs and --batch-size must be at least 1");
    }
    super::sweep::check_seeds(seeds)?;
    if let Some(t) = a.target_acc {
        crate::train::check_target_acc(t)?;
    }
    Ok(PretrainGrid {
        seeds,
        batch_size: a.batch_size,
        lr: a.lr,
        epochs,
        target_acc: a.target_acc.unwrap_or(target),
        device: a.device.clone(),
        energy: a.energy.clone(),
        watts: a.watts,
    })
}

/// Break-even reuse count of one reuse way.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum BreakEven {
    Reuses(f64),
    /// The reuse does not save energy (E_scratch - E_reuse <= 0).
    Never,
}

/// E_pretrain / (E_scratch - E_reuse), or Never when the saving is not positive.
pub fn break_even(e_pretrain: f64, e_scratch: f64, e_reuse: f64) -> BreakEven {
    let saving = e_scratch - e_reuse;
    if saving > 0.0 && saving.is_finite() {
        BreakEven::Reuses(e_pretrain / saving)
    } else {
        BreakEven::Never
    }
}

/// The spread of break-even counts over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub n: usize,
    /// Seeds where the reuse saved nothing.
    pub never: usize,
    /// Over the seeds with a finite count (None when all are "never").
    pub mean: Option<f64>,
    /// Sample standard deviation (0 with one value).
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Spread {
    pub fn of(v: &[BreakEven]) -> Spread {
        let f: Vec<f64> = v
            .iter()
            .filter_map(|b| match b {
                BreakEven::Reuses(x) => Some(*x),
                BreakEven::Never => None,
            })
            .collect();
        let k = f.len();
        let mean = (k > 0).then(|| f.iter().sum::<f64>() / k as f64);
        let std = mean.map(|m| {
            if k < 2 {
                0.0
            } else {
                (f.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt()
            }
        });
        Spread {
            n: v.len(),
            never: v.len() - k,
            mean,
            std,
            min: f.iter().copied().reduce(f64::min),
            max: f.iter().copied().reduce(f64::max),
        }
    }
    /// "12.3 ± 1.2 (10.9-13.5)", "never", or "12.3 ± ... ; never in 1 of 3 seeds".
    pub fn text(&self) -> String {
        match self.mean {
            None => "never".into(),
            Some(m) => {
                let mut s = format!(
                    "{} ± {} ({}-{})",
                    fmt_num(Some(m)),
                    fmt_num(self.std),
                    fmt_num(self.min),
                    fmt_num(self.max)
                );
                if self.never > 0 {
                    s += &format!("; never in {} of {} seeds", self.never, self.n);
                }
                s
            }
        }
    }
}

/// One downstream run's cost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cost {
    /// Cost to the target, or the whole run's cost when the target was not reached.
    pub value: Option<f64>,
    pub reached: bool,
    pub epochs: usize,
    pub final_val_acc: Option<f64>,
}

impl Cost {
    fn of(m: Metric, s: &RunSummary) -> Cost {
        Cost {
            value: m.to_target(s).or_else(|| m.total(s)),
            reached: s.target_reached,
            epochs: s.epochs,
            final_val_acc: s.final_val_acc,
        }
    }
    fn text(&self) -> String {
        let v = fmt_num(self.value);
        if self.reached || self.value.is_none() {
            v
        } else {
            format!("{v} (not reached)")
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub pretrain: Option<f64>,
    /// subject -> way -> cost (None: failed or not run).
    pub downstream: std::collections::BTreeMap<u32, std::collections::BTreeMap<String, Option<Cost>>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PretrainResult {
    pub metric: Metric,
    pub target_acc: f64,
    pub seeds: Vec<SeedResult>,
    /// (subject or "all", way, spread) for finetune and frozen.
    pub break_even: Vec<(String, String, Spread)>,
    /// Means over seeds for the break-even curves: pretraining cost, and per way the mean reuse cost over
    /// subjects and seeds.
    pub mean_pretrain: Option<f64>,
    pub mean_reuse: std::collections::BTreeMap<String, Option<f64>>,
    pub warnings: Vec<String>,
    pub table: String,
}

/// A seed's downstream runs: (target subject, way, record; None: skipped).
type Downstream<'a> = Vec<(u32, &'a str, Option<RunRecord>)>;

/// The pretraining study with an injected trainer and split writer.
/// The settings of the pretraining run of `seed` on `data` (downstream runs start from the same).
pub fn base_config(a: &PretrainOptions, g: &PretrainGrid, data: &Path, seed: u64) -> TrainConfig {
    TrainConfig {
        batch_size: g.batch_size,
        lr: g.lr,
        epochs: g.epochs,
        seed,
        device: g.device.clone(),
        energy: g.energy.clone(),
        watts: g.watts,
        ..TrainConfig::new(&a.model, data)
    }
}

/// Every setting is checked before the study directory is touched; a study whose runs all failed is an
/// error (after its table is written).
pub fn pretrain_study_with(a: &PretrainOptions, trainer: Trainer, splitter: Splitter) -> Result<PretrainResult> {
    let g = resolve(a)?;
    let base = |data: &Path, seed: u64| base_config(a, &g, data, seed);
    TrainConfig { target_acc: Some(g.target_acc), ..base(&a.data, 0) }.validate()?;
    let study =
        Study::open_or_create(&a.out, StudyManifest::new("pretrain", &a.model, &a.data, &g)?, Access::Exclusive)?;
    let splits = splitter(&a.data, &a.out)?;
    let weights_dir = a.out.join("weights");
    std::fs::create_dir_all(&weights_dir).with_context(|| format!("{}: cannot create", weights_dir.display()))?;
    let mut recs: Vec<(u64, Option<RunRecord>, Downstream)> = Vec::new();
    for seed in 0..g.seeds {
        let weights = weights_dir.join(format!("pretrain_s{seed}.safetensors"));
        let mut t = base(&a.data, seed);
        t.save = Some(weights.clone());
        let pre = study.run(&format!("pretrain_s{seed}"), &t, trainer)?;
        let have_weights = pre.is_ok() && weights.exists();
        if pre.is_ok() && !weights.exists() {
            eprintln!(
                "pretrain-study: {} is missing although runs/pretrain_s{seed} finished; fine-tune and frozen \
                 runs of seed {seed} are skipped (delete runs/pretrain_s{seed} to pretrain again)",
                weights.display()
            );
        }
        let mut down = Vec::new();
        for sp in &splits {
            for way in WAYS {
                if way != "scratch" && !have_weights {
                    down.push((sp.subject, way, None));
                    continue;
                }
                let mut t = base(&sp.train, seed);
                t.val = Some(sp.val.clone());
                t.target_acc = Some(g.target_acc);
                if way != "scratch" {
                    t.init = Some(weights.clone());
                }
                t.freeze_encoder = way == "frozen";
                let rec = study.run(&format!("s{}_{way}_s{seed}", sp.subject), &t, trainer)?;
                down.push((sp.subject, way, Some(rec)));
            }
        }
        recs.push((seed, Some(pre), down));
    }

    let all_recs: Vec<&RunRecord> =
        recs.iter().flat_map(|(_, p, d)| p.iter().chain(d.iter().filter_map(|(_, _, r)| r.as_ref()))).collect();
    let summaries: Vec<&RunSummary> = all_recs.iter().filter_map(|r| r.summary.as_ref()).collect();
    let metric = Metric::of(summaries.iter().copied());
    let mut warnings: Vec<String> = Vec::new();
    warnings.extend(mixed_sources(summaries.iter().copied()));
    warnings.extend(mixed_machines(all_recs.iter().copied()));

    let mut seeds = Vec::new();
    for (seed, pre, down) in &recs {
        let pretrain = pre.as_ref().and_then(|r| r.summary.as_ref()).and_then(|s| metric.total(s));
        let mut ds: std::collections::BTreeMap<u32, std::collections::BTreeMap<String, Option<Cost>>> =
            Default::default();
        for (subj, way, r) in down {
            let c = r.as_ref().and_then(|r| r.summary.as_ref()).map(|s| Cost::of(metric, s));
            ds.entry(*subj).or_default().insert(way.to_string(), c);
        }
        seeds.push(SeedResult { seed: *seed, pretrain, downstream: ds });
    }
    let mut r = summarise(metric, g.target_acc, seeds, warnings, a);
    let failed: Vec<&&RunRecord> = all_recs.iter().filter(|r| !r.is_ok()).collect();
    r.table += &super::failed_lines(failed.iter().map(|r| **r));
    study.write_table("pretrain", &r.table, &r)?;
    println!("{}", r.table);
    if !all_recs.is_empty() && failed.len() == all_recs.len() {
        bail!(
            "{}: every run of the study failed ({}); the errors are in {}: fix the settings and run the command \
             again",
            a.out.display(),
            failed.len(),
            a.out.join("pretrain.md").display()
        );
    }
    Ok(r)
}

/// Break-even spreads, means and the table from per-seed costs.
pub fn summarise(
    metric: Metric,
    target_acc: f64,
    seeds: Vec<SeedResult>,
    warnings: Vec<String>,
    a: &PretrainOptions,
) -> PretrainResult {
    let subjects: Vec<u32> = {
        let mut v: Vec<u32> = seeds.iter().flat_map(|s| s.downstream.keys().copied()).collect();
        v.sort();
        v.dedup();
        v
    };
    // Break-even per (subject, way) over seeds, and over all subjects and seeds.
    let be_of = |s: &SeedResult, subj: u32, way: &str| -> Option<BreakEven> {
        let d = s.downstream.get(&subj)?;
        let scratch = d.get("scratch")?.as_ref()?.value?;
        let reuse = d.get(way)?.as_ref()?.value?;
        Some(break_even(s.pretrain?, scratch, reuse))
    };
    let mut break_even_rows = Vec::new();
    for way in ["finetune", "frozen"] {
        let mut all = Vec::new();
        for &subj in &subjects {
            let v: Vec<BreakEven> = seeds.iter().filter_map(|s| be_of(s, subj, way)).collect();
            all.extend(v.iter().copied());
            break_even_rows.push((subj.to_string(), way.to_string(), Spread::of(&v)));
        }
        break_even_rows.push(("all".to_string(), way.to_string(), Spread::of(&all)));
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mean_pretrain = mean(seeds.iter().filter_map(|s| s.pretrain).collect());
    let mut mean_reuse = std::collections::BTreeMap::new();
    for way in WAYS {
        let v: Vec<f64> =
            seeds.iter().flat_map(|s| s.downstream.values()).filter_map(|d| d.get(way)?.as_ref()?.value).collect();
        mean_reuse.insert(way.to_string(), mean(v));
    }

    let u = metric.unit();
    let mut t = format!(
        "# Pretraining study: {} on {}\n\nDownstream target validation accuracy {target_acc}. Costs in {} ({u}); \
         a downstream run that did not reach the target shows its whole cost, marked.\n\n",
        a.model,
        a.data.display(),
        metric.name()
    );
    if !metric.note().is_empty() {
        t += &format!("**{}**\n\n", metric.note());
    }
    for w in &warnings {
        t += &format!("**{w}**\n\n");
    }
    let mut header = vec!["seed".to_string(), format!("pretrain ({u})")];
    for &subj in &subjects {
        for way in WAYS {
            header.push(format!("{subj} {way} ({u})"));
        }
    }
    let rows: Vec<Vec<String>> = seeds
        .iter()
        .map(|s| {
            let mut r = vec![s.seed.to_string(), fmt_num(s.pretrain)];
            for subj in &subjects {
                for way in WAYS {
                    let c = s.downstream.get(subj).and_then(|d| d.get(way)).and_then(|c| c.as_ref());
                    r.push(c.map(|c| c.text()).unwrap_or_else(|| "failed/skipped".into()));
                }
            }
            r
        })
        .collect();
    let hdr: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    t += &md_table(&hdr, &rows);
    t += "\nBreak-even reuses = E_pretrain / (E_scratch - E_reuse): mean ± std (min-max) over seeds; \
          \"never\" when a reuse saves nothing.\n\n";
    let be_rows: Vec<Vec<String>> = break_even_rows
        .iter()
        .map(|(subj, way, sp)| vec![subj.clone(), way.clone(), sp.text(), sp.n.to_string()])
        .collect();
    t += &md_table(&["target subject", "reuse", "break-even reuses", "seeds"], &be_rows);
    PretrainResult {
        metric,
        target_acc,
        seeds,
        break_even: break_even_rows,
        mean_pretrain,
        mean_reuse,
        warnings,
        table: t,
    }
}

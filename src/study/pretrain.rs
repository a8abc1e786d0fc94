//! `powertrain pretrain-study`: does pretraining pay off in energy?
//!
//! Per seed: pretrain the whole pamap2 network on the source subjects (the dataset's train split) for the
//! epoch limit (no target: the validation split is subject 105, a target subject, so it must not choose
//! when pretraining stops; its per-epoch evaluation energy is counted in the pretraining energy). Then
//! each "reuse" is a downstream training on a held-out target subject (105 = the val split, 106 = the test
//! split), on its own split 70/30 by time *within each activity segment* ([`segment_split`]: the first 70 % of
//! every run of one activity trains, the rest validates, one window between them left out because neighbouring
//! windows overlap), so that every activity the subject performed is in both parts; done three ways: from scratch, fine-tuning every layer from the pretrained weights (`--init`),
//! and with the encoder frozen (`--init --freeze-encoder`), each until the target accuracy or the epoch limit.
//! Break-even reuses = mean E_pretrain / (mean E_scratch - mean E_reuse) over seeds (`finding.rs`: the ratio of
//! mean costs with a 95 % interval, a bound when a side did not reach its target; the number the
//! report's plot crosses at); "never" when the mean saving is not positive.
use super::dir::Access;
use super::finding::{BreakEven, Cost as Bound};
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
    /// Seeds (3 by default).
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
    /// `--sim-model`, `--sim-sensor`, `--carbon-intensity`, `--pue` for every run.
    pub extras: super::RunExtras,
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
    /// The class ids in each part (checked: every validation class is in the training part).
    #[serde(default)]
    pub classes_train: Vec<i32>,
    #[serde(default)]
    pub classes_val: Vec<i32>,
}

impl TargetSplit {
    /// Validation classes the training part lacks (a model cannot learn them: the target may be unreachable).
    pub fn missing_in_train(&self) -> Vec<i32> {
        self.classes_val.iter().copied().filter(|c| !self.classes_train.contains(c)).collect()
    }
}

/// Writes the target subjects' split files into a study directory: (dataset dir, study dir) -> splits.
pub type Splitter<'a> = &'a dyn Fn(&Path, &Path) -> Result<Vec<TargetSplit>>;

/// The ways a pretrained network is reused (and the baseline).
pub const WAYS: [&str; 3] = ["scratch", "finetune", "frozen"];

/// Split windows in file order 70/30 by time within each activity segment (a maximal run of equal labels):
/// the first 70 % of a segment's windows train, the window after them is left out (windows overlap by half,
/// so it shares samples with both sides), the rest validate. A segment of fewer than 3 windows trains only.
/// Returns (train rows, val rows); an error when either is empty.
pub fn segment_split(y: &[i32], what: &str) -> Result<(Vec<usize>, Vec<usize>)> {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let mut lo = 0;
    while lo < y.len() {
        let hi = lo + y[lo..].iter().take_while(|&&c| c == y[lo]).count();
        let n = hi - lo;
        if n < 3 {
            train.extend(lo..hi);
        } else {
            let n_train = ((n * 7 + 5) / 10).clamp(1, n - 2);
            train.extend(lo..lo + n_train);
            val.extend(lo + n_train + 1..hi);
        }
        lo = hi;
    }
    if train.is_empty() || val.is_empty() {
        bail!(
            "{what}: {} windows in no activity segment of 3 or more windows: too few for a 70/30 split per \
             activity; the target subject needs longer recordings",
            y.len()
        );
    }
    Ok((train, val))
}

/// The sorted distinct class ids at `rows`.
fn classes_at(y: &[i32], rows: &[usize]) -> Vec<i32> {
    let mut c: Vec<i32> = rows.iter().map(|&i| y[i]).collect();
    c.sort();
    c.dedup();
    c
}

/// Write `STUDY/splits/s105_{train,val}.safetensors` and `s106_...` from the dataset directory's val and test
/// splits (through `crate::data`, so `x` is normalised f32 as training sees it; `y` keeps the source dtype).
/// Existing files are kept (a resumed study reuses them).
pub fn write_target_splits(data: &Path, study_dir: &Path) -> Result<Vec<TargetSplit>> {
    let dir = study_dir.join("splits");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut out = Vec::new();
    for (subject, split) in [(105u32, "val"), (106, "test")] {
        let mut ts = TargetSplit {
            subject,
            train: dir.join(format!("s{subject}_train.safetensors")),
            val: dir.join(format!("s{subject}_val.safetensors")),
            classes_train: vec![],
            classes_val: vec![],
        };
        let src = data.join(format!("{split}.safetensors"));
        let sp = crate::data::Split::open(&src).with_context(|| {
            format!("--data {}: the pretraining study needs a PAMAP2 dataset directory", data.display())
        })?;
        if !matches!(sp.target, crate::data::TargetKind::Classes { .. }) {
            bail!("{}: y is not class ids; the pretraining study takes the pamap2 dataset", src.display());
        }
        let all: Vec<usize> = (0..sp.n).collect();
        let mut x_all = vec![0f32; sp.n * sp.row_len()];
        let mut y_all = vec![0i32; sp.n];
        sp.gather(&all, &[], &mut x_all, &mut y_all, &mut [])?;
        let (train_rows, val_rows) = segment_split(&y_all, &src.display().to_string())?;
        ts.classes_train = classes_at(&y_all, &train_rows);
        ts.classes_val = classes_at(&y_all, &val_rows);
        if !(ts.train.exists() && ts.val.exists()) {
            for (path, rows) in [(&ts.train, &train_rows), (&ts.val, &val_rows)] {
                write_part(&sp, &src, subject, path, rows, (&x_all, &y_all))?;
            }
        }
        out.push(ts);
    }
    Ok(out)
}

/// Write the rows `idx` of `sp` (the split file `src` of `subject`) to `path`.
fn write_part(
    sp: &crate::data::Split,
    src: &Path,
    subject: u32,
    path: &Path,
    idx: &[usize],
    (x_all, y_all): (&[f32], &[i32]),
) -> Result<()> {
    let y_dtype = source_y_dtype(src)?;
    let rl = sp.row_len();
    let x: Vec<f32> = idx.iter().flat_map(|&i| x_all[i * rl..(i + 1) * rl].iter().copied()).collect();
    let y: Vec<i32> = idx.iter().map(|&i| y_all[i]).collect();
    let mut shape = vec![idx.len()];
    shape.extend(&sp.row_shape);
    let mut meta: HashMap<String, String> = ["num_classes", "names", "synthetic"]
        .iter()
        .filter_map(|k| Some((k.to_string(), sp.metadata.get(*k)?.clone())))
        .collect();
    meta.extend([
        ("protocol".to_string(), crate::PROTOCOL_VERSION.to_string()),
        ("source".to_string(), src.display().to_string()),
        ("subject".to_string(), subject.to_string()),
        ("rows".to_string(), format!("{} of {} (70/30 by time within each activity segment)", idx.len(), sp.n)),
        ("x".to_string(), "normalised f32, used as given".to_string()),
    ]);
    write_xy(path, &x, &shape, &y, y_dtype, meta)
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
    /// The runs' sim and carbon settings (absent from study.json when none is given).
    #[serde(flatten)]
    pub extras: super::RunExtras,
}

pub fn resolve(a: &PretrainOptions) -> Result<PretrainGrid> {
    check_model(&a.model, &["pamap2"])?;
    let (seeds, epochs, target) =
        if a.quick { (a.seeds, if a.epochs == 20 { 5 } else { a.epochs }, 0.6) } else { (a.seeds, a.epochs, 0.80) };
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
        extras: a.extras.clone(),
    })
}

/// One downstream run's cost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cost {
    /// Cost to the target, or the whole run's cost when the target was not reached.
    pub value: Option<f64>,
    pub reached: bool,
    pub epochs: usize,
    pub final_val_acc: Option<f64>,
    /// Its energy is below the counter's resolution (`finding.rs`): no break-even is formed with it.
    #[serde(default)]
    pub unresolved: bool,
    /// Wall time to the target (the whole run's when not reached): the comparison shown when the energy is not
    /// resolved.
    #[serde(default)]
    pub time_s: Option<f64>,
}

impl Cost {
    fn of(m: Metric, s: &RunSummary) -> Cost {
        Cost {
            value: m.to_target(s).or_else(|| m.total(s)),
            reached: s.target_reached,
            epochs: s.epochs,
            final_val_acc: s.final_val_acc,
            unresolved: m.below_resolution(s, None),
            time_s: Metric::Time.to_target(s).or(Some(s.wall_s)),
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
    /// The pretraining run's energy is below the counter's resolution.
    #[serde(default)]
    pub pretrain_unresolved: bool,
    /// The pretraining run's wall time.
    #[serde(default)]
    pub pretrain_time_s: Option<f64>,
    /// subject -> way -> cost (None: failed or not run).
    pub downstream: std::collections::BTreeMap<u32, std::collections::BTreeMap<String, Option<Cost>>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PretrainResult {
    pub metric: Metric,
    pub target_acc: f64,
    pub seeds: Vec<SeedResult>,
    /// (subject or "all", way, break-even) for finetune and frozen (`finding.rs`: ratio of mean costs over
    /// seeds, or a bound).
    pub break_even: Vec<(String, String, BreakEven)>,
    /// What the study checked about its own setup (split classes, scratch baseline reaching the target).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Means over seeds for the break-even curves: pretraining cost, and per way the mean reuse cost over
    /// subjects and seeds.
    pub mean_pretrain: Option<f64>,
    pub mean_reuse: std::collections::BTreeMap<String, Option<f64>>,
    pub warnings: Vec<String>,
    /// The study's carbon (`super::carbon_text`), with the energy method behind it; None without carbon flags.
    #[serde(default)]
    pub carbon: Option<String>,
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
        ..g.extras.apply(TrainConfig::new(&a.model, data))
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
        let pre_summary = pre.as_ref().and_then(|r| r.summary.as_ref());
        let pretrain = pre_summary.and_then(|s| metric.total(s));
        let pretrain_unresolved = pre_summary.is_some_and(|s| metric.below_resolution(s, Some(s.wall_s)));
        let mut ds: std::collections::BTreeMap<u32, std::collections::BTreeMap<String, Option<Cost>>> =
            Default::default();
        for (subj, way, r) in down {
            let c = r.as_ref().and_then(|r| r.summary.as_ref()).map(|s| Cost::of(metric, s));
            ds.entry(*subj).or_default().insert(way.to_string(), c);
        }
        let pretrain_time_s = pre_summary.map(|s| s.wall_s);
        seeds.push(SeedResult { seed: *seed, pretrain, pretrain_unresolved, pretrain_time_s, downstream: ds });
    }
    let mut r = summarise(metric, g.target_acc, seeds, warnings, a, &splits);
    r.carbon = super::carbon_text(summaries.iter().copied());
    if let Some(c) = &r.carbon {
        r.table += &format!("\n{c}");
    }
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
    splits: &[TargetSplit],
) -> PretrainResult {
    let subjects: Vec<u32> = {
        let mut v: Vec<u32> = seeds.iter().flat_map(|s| s.downstream.keys().copied()).collect();
        v.sort();
        v.dedup();
        v
    };
    // Per seed, the costs of `way` for `subj` (None: all subjects, averaged per seed).
    let seed_cost = |s: &SeedResult, subj: Option<u32>, way: &str| -> Option<Bound> {
        let costs: Option<Vec<Bound>> = s
            .downstream
            .iter()
            .filter(|(k, _)| subj.is_none_or(|x| **k == x))
            .map(|(_, d)| {
                let c = d.get(way)?.as_ref()?;
                Some(Bound { value: c.value?, reached: c.reached, unresolved: c.unresolved })
            })
            .collect();
        let costs = costs.filter(|c| !c.is_empty())?;
        Some(Bound {
            value: costs.iter().map(|c| c.value).sum::<f64>() / costs.len() as f64,
            reached: costs.iter().all(|c| c.reached),
            unresolved: costs.iter().any(|c| c.unresolved),
        })
    };
    let mut break_even_rows = Vec::new();
    let mut scopes: Vec<Option<u32>> = subjects.iter().map(|s| Some(*s)).collect();
    scopes.push(None);
    for way in ["finetune", "frozen"] {
        for &scope in &scopes {
            // Seeds where pretraining and both arms exist (paired by seed).
            let (mut pre, mut sc, mut re) = (Vec::new(), Vec::new(), Vec::new());
            let mut pre_unresolved = false;
            for s in &seeds {
                if let (Some(p), Some(a), Some(b)) =
                    (s.pretrain, seed_cost(s, scope, "scratch"), seed_cost(s, scope, way))
                {
                    pre.push(p);
                    pre_unresolved |= s.pretrain_unresolved;
                    sc.push(a);
                    re.push(b);
                }
            }
            let label = scope.map(|s| s.to_string()).unwrap_or_else(|| "all".into());
            break_even_rows.push((
                label,
                way.to_string(),
                BreakEven::of(&pre, &sc, &re).unless_unresolved(pre_unresolved),
            ));
        }
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mean_pretrain = mean(seeds.iter().filter_map(|s| s.pretrain).collect());
    // The plot's curves: the same per-seed means the "all" rows use, so its crossings are the table's numbers.
    let mut mean_reuse = std::collections::BTreeMap::new();
    for way in WAYS {
        mean_reuse
            .insert(way.to_string(), mean(seeds.iter().filter_map(|s| Some(seed_cost(s, None, way)?.value)).collect()));
    }
    let checks = setup_checks(splits, &seeds, target_acc);

    let mut r = PretrainResult {
        metric,
        target_acc,
        seeds,
        break_even: break_even_rows,
        checks,
        mean_pretrain,
        mean_reuse,
        warnings,
        carbon: None,
        table: String::new(),
    };
    r.table = render(&r, &subjects, a);
    if r.break_even.iter().any(|(_, _, b)| *b == BreakEven::NotResolved) {
        r.table += &time_break_even(&r.seeds);
    }
    r
}

/// Break-even in wall time over all target subjects (the comparison still shown when the energy is below the
/// counter's resolution): mean pretraining time / (mean scratch time - mean reuse time), the same rules.
fn time_break_even(seeds: &[SeedResult]) -> String {
    let arm = |s: &SeedResult, way: &str| -> Option<Bound> {
        let c: Option<Vec<&Cost>> = s.downstream.values().map(|d| d.get(way)?.as_ref()).collect();
        let c = c.filter(|c| !c.is_empty())?;
        let t: Option<Vec<f64>> = c.iter().map(|c| c.time_s).collect();
        let t = t?;
        Some(Bound {
            value: t.iter().sum::<f64>() / t.len() as f64,
            reached: c.iter().all(|c| c.reached),
            unresolved: false,
        })
    };
    let mut s = String::from(
        "\nThe energy comparison is not resolved (a run is below the sensor's resolution); in wall time, \
         break-even reuses over all target subjects:",
    );
    for way in ["finetune", "frozen"] {
        let (mut pre, mut sc, mut re) = (Vec::new(), Vec::new(), Vec::new());
        for x in seeds {
            if let (Some(p), Some(a), Some(b)) = (x.pretrain_time_s, arm(x, "scratch"), arm(x, way)) {
                pre.push(p);
                sc.push(a);
                re.push(b);
            }
        }
        s += &format!(" {way} {};", BreakEven::of(&pre, &sc, &re).text());
    }
    s.pop();
    s + ".\n"
}

/// The study's preconditions, checked and stated: each target's validation classes are in its training part,
/// and the scratch baseline reaches the target in most seeds (else break-even compares capped costs).
fn setup_checks(splits: &[TargetSplit], seeds: &[SeedResult], target: f64) -> Vec<String> {
    let mut v = Vec::new();
    for sp in splits.iter().filter(|s| !s.classes_val.is_empty()) {
        let missing = sp.missing_in_train();
        v.push(if missing.is_empty() {
            format!(
                "Subject {}: every validation class ({}) is in its training part (split 70/30 within each activity).",
                sp.subject,
                sp.classes_val.len()
            )
        } else {
            format!(
                "WARNING: subject {}: validation classes {missing:?} are not in its training part: the target may be \
                 unreachable.",
                sp.subject
            )
        });
    }
    let scratch: Vec<bool> = seeds
        .iter()
        .flat_map(|s| s.downstream.values())
        .filter_map(|d| Some(d.get("scratch")?.as_ref()?.reached))
        .collect();
    let k = scratch.iter().filter(|r| **r).count();
    if !scratch.is_empty() {
        let ok = 2 * k > scratch.len();
        v.push(format!(
            "{}the scratch baseline reached the target {target} in {k} of {} runs{}.",
            if ok { "" } else { "WARNING: " },
            scratch.len(),
            if ok { "" } else { ": break-even compares capped costs and is shown as bounds" }
        ));
    }
    v
}

/// The markdown of the pretraining study.
fn render(r: &PretrainResult, subjects: &[u32], a: &PretrainOptions) -> String {
    let (metric, u) = (r.metric, r.metric.unit());
    let all = |w: &str| {
        r.break_even.iter().find(|(s, way, _)| s == "all" && way == w).map(|b| b.2.text()).unwrap_or_default()
    };
    let finding = format!("break-even reuses: fine-tuning {}, frozen encoder {}", all("finetune"), all("frozen"));
    let mut t = format!(
        "# Pretraining study: {} on {}\n\n**Finding: {finding}.**\n\nDownstream target validation accuracy {}{}. \
         Costs in {} ({u}); a downstream run that did not reach the target shows its whole cost, marked (a lower \
         bound).\n\n",
        a.model,
        a.data.display(),
        r.target_acc,
        if a.quick && a.target_acc.is_none() {
            " (lowered by --quick from the protocol's 0.8: a quick run's findings are not the protocol's)"
        } else {
            ""
        },
        metric.name()
    );
    if !metric.note().is_empty() {
        t += &format!("**{}**\n\n", metric.note());
    }
    for w in r.warnings.iter().chain(&r.checks) {
        t += &format!("- {w}\n");
    }
    t += "\n";
    let mut header = vec!["seed".to_string(), format!("pretrain ({u})")];
    for &subj in subjects {
        for way in WAYS {
            header.push(format!("{subj} {way} ({u})"));
        }
    }
    let rows: Vec<Vec<String>> = r
        .seeds
        .iter()
        .map(|s| {
            let mut row = vec![s.seed.to_string(), fmt_num(s.pretrain)];
            for subj in subjects {
                for way in WAYS {
                    let c = s.downstream.get(subj).and_then(|d| d.get(way)).and_then(|c| c.as_ref());
                    row.push(c.map(|c| c.text()).unwrap_or_else(|| "failed/skipped".into()));
                }
            }
            row
        })
        .collect();
    let hdr: Vec<&str> = header.iter().map(|s| s.as_str()).collect();
    t += &md_table(&hdr, &rows);
    t += "\nBreak-even reuses = mean E_pretrain / (mean E_scratch - mean E_reuse) over seeds, with a 95 % interval \
          (from the t-intervals of the pretraining cost and of the saving); a bound when runs did not reach the \
          target; \"never\" when the mean saving is not positive. The break-even plot's curves use the same means, \
          so they cross at the \"all\" rows' numbers.\n\n";
    let be_rows: Vec<Vec<String>> =
        r.break_even.iter().map(|(subj, way, b)| vec![subj.clone(), way.clone(), b.text()]).collect();
    t += &md_table(&["target subject", "reuse", "break-even reuses"], &be_rows);
    let notes = vec![format!(
        "Frozen vs fine-tuning: {}.",
        match (all_be(r, "frozen"), all_be(r, "finetune")) {
            (Some((f, fr)), Some((ft, ftr))) => {
                // Overlapping intervals: the order is not shown (the two share the pretraining cost).
                let overlap = match (fr, ftr) {
                    (Some((fl, fh)), Some((tl, th))) => fl <= th && tl <= fh,
                    _ => true,
                };
                match (f < ft, overlap) {
                    (true, false) => "the frozen encoder breaks even sooner, as in the paper",
                    (true, true) => {
                        "the frozen encoder breaks even sooner on average, as in the paper; the intervals overlap, \
                         so the order is not resolved"
                    }
                    (false, false) => "the frozen encoder does not break even sooner here",
                    (false, true) => {
                        "the frozen encoder does not break even sooner on average here; the intervals overlap, so \
                         the order is not resolved"
                    }
                }
            }
            _ => "not determined",
        }
    )];
    t += &super::paper::section(&super::paper::PRETRAIN, &finding, &notes);
    t
}

/// The "all" row's break-even of `way` and its 95 % interval (None with one seed or an unbounded end).
fn all_be(r: &PretrainResult, way: &str) -> Option<(f64, Option<(f64, f64)>)> {
    r.break_even.iter().find(|(s, w, _)| s == "all" && w == way).and_then(|b| match b.2 {
        BreakEven::Reuses { x, lo: Some(l), hi: Some(h) } if h.is_finite() => Some((x, Some((l, h)))),
        BreakEven::Reuses { x, .. } => Some((x, None)),
        _ => None,
    })
}

//! `powertrain sweep`: batch size x learning rate (x seed) grid; energy per epoch, energy and time to the
//! target, the best and worst configurations that reach it, GPU utilisation per batch size; `--only` and
//! `--emit-slurm` for Slurm job arrays writing into one shared study directory.
use super::dir::Access;
use super::finding::{Cost, Mean, Ratio};
use super::{
    check_model, fmt_num, md_table, mixed_machines, mixed_sources, parse_list, Metric, RunRecord, Study, StudyManifest,
    Trainer,
};
use crate::rundir::RunDir;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `powertrain sweep` was asked for (its flags; `resolve` applies the defaults).
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// pamap2 or celeba
    pub model: String,
    /// The dataset directory.
    pub data: PathBuf,
    /// Comma-separated batch sizes (None: the protocol's).
    pub batch_sizes: Option<String>,
    /// Comma-separated learning rates (None: the protocol's).
    pub lrs: Option<String>,
    /// Repeats with seeds 0..N.
    pub seeds: u64,
    /// Validation accuracy target (None: pamap2 0.80, celeba 0.88).
    pub target_acc: Option<f64>,
    /// Epoch limit per run (20 is the default, which `quick` lowers).
    pub epochs: usize,
    pub optimizer: String,
    pub tasks: Option<String>,
    pub device: String,
    pub energy: String,
    pub watts: Option<f64>,
    /// `--sim-model`, `--sim-sensor`, `--carbon-intensity`, `--pue` for every run.
    pub extras: super::RunExtras,
    /// A reduced grid that finishes in minutes on 2 CPU cores.
    pub quick: bool,
    /// Energy-aware sweep (adaptive capping of seed 0, further seeds only near the best).
    pub prune: bool,
    /// Write a Slurm job-array script here instead of running.
    pub emit_slurm: Option<PathBuf>,
    /// Run only this configuration index (Slurm array tasks).
    pub only: Option<usize>,
    /// The study directory.
    pub out: PathBuf,
}

/// The resolved grid (written into study.json).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepGrid {
    pub batch_sizes: Vec<usize>,
    pub lrs: Vec<f32>,
    pub seeds: u64,
    pub target_acc: f64,
    pub epochs: usize,
    pub optimizer: String,
    pub tasks: Option<String>,
    pub device: String,
    pub energy: String,
    pub watts: Option<f64>,
    /// The runs' sim and carbon settings (absent from study.json when none is given).
    #[serde(flatten)]
    pub extras: super::RunExtras,
    /// `--prune`: a pruned study and a full one are different studies (a capped run is not a full run).
    #[serde(default)]
    pub prune: bool,
}

/// One configuration of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub batch_size: usize,
    pub lr: f32,
    pub seed: u64,
}

impl Config {
    /// The run directory name, e.g. `bs64_lr0.001_s0`.
    pub fn id(&self) -> String {
        format!("bs{}_lr{}_s{}", self.batch_size, self.lr, self.seed)
    }
}

/// The grid's defaults (protocol.md), `--quick` reductions, then the explicit flags.
pub fn resolve(a: &SweepOptions) -> Result<SweepGrid> {
    check_model(&a.model, &["pamap2", "celeba"])?;
    let (bs_default, lr_default, target_default, epochs) = if a.quick {
        // 2 CPU cores, synthetic small data: 4 runs of at most 4 epochs, a good and a bad end of each axis so
        // that the paper's effect can show (data/README.md: batch 32 lr 1e-2 reaches 0.6 in 1-2 epochs, batch
        // 512 lr 1e-4 makes 4 steps an epoch and does not reach it in 4).
        let t = if a.model == "pamap2" { 0.6 } else { 0.7 };
        ("32,512", "1e-4,1e-2", t, if a.epochs == 20 { 4 } else { a.epochs })
    } else {
        let t = if a.model == "pamap2" { 0.80 } else { 0.88 };
        ("16,32,64,128,256,512,1024", "1e-4,3e-4,1e-3,3e-3,1e-2", t, a.epochs)
    };
    let batch_sizes: Vec<usize> = parse_list("--batch-sizes", a.batch_sizes.as_deref().unwrap_or(bs_default))?;
    let lrs: Vec<f32> = parse_list("--lrs", a.lrs.as_deref().unwrap_or(lr_default))?;
    if batch_sizes.contains(&0) {
        bail!("--batch-sizes: a batch size must be at least 1");
    }
    if let Some(b) = batch_sizes.iter().find(|b| **b > crate::train::MAX_BATCH) {
        bail!("--batch-sizes: {b} is larger than {} rows per step", crate::train::MAX_BATCH);
    }
    if lrs.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        bail!("--lrs: learning rates must be positive numbers");
    }
    // A value twice would be the same run twice (same id, same --only index numbering): refused.
    refuse_duplicates("--batch-sizes", &batch_sizes)?;
    refuse_duplicates("--lrs", &lrs)?;
    if a.seeds == 0 {
        bail!("--seeds 0: give at least one seed");
    }
    check_seeds(a.seeds)?;
    if epochs == 0 {
        bail!("--epochs 0: give at least one epoch");
    }
    let runs = (batch_sizes.len() as u64).saturating_mul(lrs.len() as u64).saturating_mul(a.seeds);
    if runs > MAX_RUNS {
        bail!("the grid has {runs} runs (batch sizes x lrs x seeds), more than {MAX_RUNS}: give fewer values");
    }
    let target_acc = a.target_acc.unwrap_or(target_default);
    crate::train::check_target_acc(target_acc)?;
    Ok(SweepGrid {
        batch_sizes,
        lrs,
        seeds: a.seeds,
        target_acc,
        epochs,
        optimizer: a.optimizer.clone(),
        tasks: a.tasks.clone(),
        device: a.device.clone(),
        energy: a.energy.clone(),
        watts: a.watts,
        extras: a.extras.clone(),
        prune: a.prune,
    })
}

/// The most runs a study grid may hold.
pub const MAX_RUNS: u64 = 10_000;
/// The most seeds a study may repeat.
pub const MAX_SEEDS: u64 = 1_000;

/// `--seeds`: at most [`MAX_SEEDS`].
pub fn check_seeds(n: u64) -> Result<()> {
    if n > MAX_SEEDS {
        bail!("--seeds {n}: at most {MAX_SEEDS} repeats");
    }
    Ok(())
}

/// Refuse a list that holds a value twice (`1e-3,0.001` too: the same number).
fn refuse_duplicates<T: PartialEq + std::fmt::Display>(flag: &str, v: &[T]) -> Result<()> {
    for (i, x) in v.iter().enumerate() {
        if v[..i].contains(x) {
            bail!("{flag}: {x} is listed twice; give each value once");
        }
    }
    Ok(())
}

/// Configurations in index order (the `--only` / `$SLURM_ARRAY_TASK_ID` numbering): batch size, then
/// learning rate, then seed.
pub fn configs(g: &SweepGrid) -> Vec<Config> {
    let mut v = Vec::new();
    for &batch_size in &g.batch_sizes {
        for &lr in &g.lrs {
            for seed in 0..g.seeds {
                v.push(Config { batch_size, lr, seed });
            }
        }
    }
    v
}

/// One row of the sweep table.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub id: String,
    pub batch_size: usize,
    pub lr: f32,
    pub seed: u64,
    /// "ok", "failed" or "pending" (not run yet: an interrupted or `--only` study).
    pub status: String,
    pub per_epoch: Option<f64>,
    pub epochs: Option<usize>,
    pub time_to_target_s: Option<f64>,
    pub energy_to_target_j: Option<f64>,
    pub target_reached: bool,
    pub final_val_acc: Option<f64>,
    pub error: Option<String>,
    /// The energy a failed run used before it failed (when known).
    pub used_energy_j: Option<f64>,
}

/// A configuration (batch size, lr) averaged over its seeds.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigCost {
    pub batch_size: usize,
    pub lr: f32,
    /// Mean cost to the target over seeds (in the metric's unit); None unless every seed reached it.
    pub to_target: Option<f64>,
    /// Per seed: the cost to the target, or the whole run's cost as a lower bound when it did not reach it;
    /// empty unless every seed finished.
    pub costs: Vec<Cost>,
    /// The mean over seeds with its 95 % interval (a lower bound when a seed did not reach the target).
    pub mean: Option<Mean>,
    /// Per seed: the wall time to the target (a lower bound when not reached): the comparison still shown when
    /// the energy is below the counter's resolution.
    pub time_costs: Vec<Cost>,
}

impl ConfigCost {
    fn label(&self) -> String {
        format!("batch {} lr {}", self.batch_size, self.lr)
    }
}

/// What the sweep finds (definitions in `finding.rs`).
#[derive(Clone, Debug, Serialize)]
pub struct SweepFindings {
    /// Worst / best among the configurations that reached the target on every seed.
    pub worst_best_reached: Ratio,
    /// Worst / best over every finished configuration, those that did not reach the target counted with
    /// their whole cost as a lower bound (the costly settings the paper counts).
    pub worst_best_all: Ratio,
    /// Median configuration / best, with the same bound rules.
    pub median_best: Ratio,
    /// Configurations that finished but did not reach the target on every seed.
    pub unreached: usize,
    /// The ranking: configuration label, mean text, whether it is resolved from the next cheaper one.
    pub ranking: Vec<(String, String, String)>,
    /// `--prune`: the configurations that got no further seeds, with their seed 0's cost.
    pub pruned: Vec<String>,
    /// What the sweep itself used: every run's whole cost (failed runs' used energy included), in the metric's
    /// unit.
    pub sweep_cost: Option<f64>,
    /// Configurations with a seed whose energy is below the counter's resolution (`finding.rs`).
    pub unresolved: usize,
    /// Worst / best in wall time, shown when the energy comparison is not resolved.
    pub worst_best_time: Option<Ratio>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepResult {
    pub metric: Metric,
    pub target_acc: f64,
    pub rows: Vec<RunRow>,
    pub configs: Vec<ConfigCost>,
    pub best: Option<ConfigCost>,
    pub worst: Option<ConfigCost>,
    /// worst / best cost to the target, only when it is a finding (every configuration reached the target).
    pub ratio: Option<f64>,
    pub findings: SweepFindings,
    /// (batch size, GPU busy time / wall time) when kernel timings exist.
    pub gpu_util: Vec<(usize, Option<f64>)>,
    pub warnings: Vec<String>,
    /// The study's carbon (`super::carbon_text`), with the energy method behind it; None without carbon flags.
    pub carbon: Option<String>,
    /// The markdown written to sweep.md.
    pub table: String,
}

/// The sweep with an injected trainer (`powertrain sweep` passes `crate::cmd::train::train_run`).
/// Every setting is checked before the study directory is touched: the grid (`resolve`) and each run's
/// settings (`TrainConfig::validate`); a whole sweep holds its directory exclusively, an array task
/// (`--only`) or `--emit-slurm` shares it with the other tasks. An invocation whose runs all failed is an
/// error (after the table is written).
pub fn sweep_with(a: &SweepOptions, trainer: Trainer) -> Result<SweepResult> {
    let grid = resolve(a)?;
    let note = quick_note(a.quick, &a.model, a.target_acc, grid.target_acc);
    if !note.is_empty() {
        eprintln!("sweep: target validation accuracy {}{note}", grid.target_acc);
    }
    let cfgs = configs(&grid);
    for c in &cfgs {
        train_config(a, &grid, c).validate()?;
    }
    if a.prune && (a.only.is_some() || a.emit_slurm.is_some()) {
        bail!(
            "--prune runs the configurations one after another (each is capped by the best so far): it cannot be \
               combined with --only or --emit-slurm; drop one of them"
        );
    }
    if let Some(i) = a.only {
        if i >= cfgs.len() {
            bail!("--only {i}: the grid has {} configurations (0..={})", cfgs.len(), cfgs.len() - 1)
        }
    }
    let text = match &a.emit_slurm {
        Some(_) => {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("powertrain"));
            Some(slurm_script(&exe, a, &grid, cfgs.len())?)
        }
        None => None,
    };
    let access = if a.only.is_some() || a.emit_slurm.is_some() { Access::Shared } else { Access::Exclusive };
    let study = Study::open_or_create(&a.out, StudyManifest::new("sweep", &a.model, &a.data, &grid)?, access)?;
    if let (Some(path), Some(text)) = (&a.emit_slurm, text) {
        // Slurm opens the --output files before the script runs: the folder must exist.
        std::fs::create_dir_all(a.out.join("slurm"))
            .with_context(|| format!("{}: cannot create", a.out.join("slurm").display()))?;
        crate::util::write_atomic(path, text.as_bytes())?;
        println!(
            "wrote {} ({} array tasks into {}); submit it with sbatch, then run `powertrain report {}`",
            path.display(),
            cfgs.len(),
            a.out.display(),
            a.out.display()
        );
        return study.locked(|| collect(&study, a, &grid, &cfgs));
    }
    let (todo, failed) = if grid.prune && a.only.is_none() {
        run_pruned(&study, a, &grid, &cfgs, trainer)?
    } else {
        let todo: Vec<usize> = match a.only {
            Some(i) => vec![i],
            None => (0..cfgs.len()).collect(),
        };
        let mut failed = 0;
        for (n, &i) in todo.iter().enumerate() {
            let c = &cfgs[i];
            let rec = study.run(&c.id(), &train_config(a, &grid, c), trainer)?;
            failed += usize::from(!rec.is_ok());
            report_run(n + 1, todo.len(), c, &rec);
        }
        (todo.len(), failed)
    };
    let r = study.locked(|| collect(&study, a, &grid, &cfgs))?;
    println!("{}", r.table);
    if failed > 0 && failed == todo {
        bail!(
            "{}: every run of this invocation failed ({failed} of {failed}); the errors are in {}: fix the \
             settings and run the command again (a corrected command retries them)",
            a.out.display(),
            a.out.join("sweep.md").display()
        );
    }
    Ok(r)
}

fn report_run(n: usize, of: usize, c: &Config, rec: &RunRecord) {
    let what = if rec.resumed { "already done" } else { &rec.status };
    eprintln!("sweep: [{n}/{of}] {} {what}", c.id());
}

/// How much costlier than the best so far a configuration's seed 0 may be and still get its other seeds.
pub const PRUNE_MARGIN: f64 = 0.25;

/// The cost of a finished run (to the target, or its whole cost when it did not reach it) and whether it
/// reached: joules when it has energy readings, else seconds.
fn run_cost(r: &RunRecord) -> Option<Cost> {
    let s = r.summary.as_ref()?;
    Metric::of([s]).cost(s)
}

/// `--prune` (adaptive capping + racing, see the module docs): seed 0 of every configuration in grid order,
/// each capped at (1 + [`PRUNE_MARGIN`]) x the best seed-0 cost so far; then the other seeds of the
/// configurations whose seed 0 reached the target within that margin of the best. Returns (runs, failed).
fn run_pruned(
    study: &Study,
    a: &SweepOptions,
    grid: &SweepGrid,
    cfgs: &[Config],
    trainer: Trainer,
) -> Result<(usize, usize)> {
    let (mut n, mut failed) = (0, 0);
    let mut best: Option<f64> = None;
    let firsts: Vec<&Config> = cfgs.iter().filter(|c| c.seed == 0).collect();
    for c in &firsts {
        let mut t = train_config(a, grid, c);
        t.cap = best.map(|b| b * (1.0 + PRUNE_MARGIN));
        let rec = study.run(&c.id(), &t, trainer)?;
        n += 1;
        failed += usize::from(!rec.is_ok());
        report_run(n, firsts.len(), c, &rec);
        if let Some(Cost { value, reached: true, .. }) = run_cost(&rec) {
            best = Some(best.map_or(value, |b: f64| b.min(value)));
        }
    }
    let keep = survivors(study, cfgs)?;
    let rest: Vec<&Config> =
        cfgs.iter().filter(|c| c.seed > 0 && keep.contains(&(c.batch_size, c.lr.to_bits()))).collect();
    for (i, c) in rest.iter().enumerate() {
        let rec = study.run(&c.id(), &train_config(a, grid, c), trainer)?;
        n += 1;
        failed += usize::from(!rec.is_ok());
        report_run(i + 1, rest.len(), c, &rec);
    }
    Ok((n, failed))
}

/// The configurations (batch size, lr bits) whose seed 0 reached the target within [`PRUNE_MARGIN`] of the
/// best seed 0: the ones `--prune` runs further seeds of.
fn survivors(study: &Study, cfgs: &[Config]) -> Result<Vec<(usize, u32)>> {
    let mut firsts = Vec::new();
    for c in cfgs.iter().filter(|c| c.seed == 0) {
        let rec = super::load_record(&study.run_dir(&c.id()), &c.id())?;
        firsts.push((c, rec.as_ref().and_then(run_cost)));
    }
    let best = firsts.iter().filter_map(|(_, k)| k.filter(|k| k.reached).map(|k| k.value)).reduce(f64::min);
    Ok(firsts
        .iter()
        .filter(|(_, k)| matches!((k, best), (Some(k), Some(b)) if k.reached && k.value <= b * (1.0 + PRUNE_MARGIN)))
        .map(|(c, _)| (c.batch_size, c.lr.to_bits()))
        .collect())
}

/// The settings of configuration `c`'s run (a study's runs start from the protocol's defaults).
pub fn train_config(a: &SweepOptions, grid: &SweepGrid, c: &Config) -> TrainConfig {
    TrainConfig {
        batch_size: c.batch_size,
        lr: c.lr,
        seed: c.seed,
        epochs: grid.epochs,
        target_acc: Some(grid.target_acc),
        optimizer: grid.optimizer.clone(),
        tasks: grid.tasks.clone(),
        device: grid.device.clone(),
        energy: grid.energy.clone(),
        watts: grid.watts,
        ..grid.extras.apply(TrainConfig::new(&a.model, &a.data))
    }
}

/// Build the table from what the study directory holds (finished, failed and pending runs).
fn collect(study: &Study, a: &SweepOptions, grid: &SweepGrid, cfgs: &[Config]) -> Result<SweepResult> {
    let mut recs: Vec<(Config, Option<RunRecord>)> = Vec::new();
    for c in cfgs {
        let rec = super::load_record(&study.run_dir(&c.id()), &c.id())?;
        recs.push((c.clone(), rec));
    }
    let summaries: Vec<_> = recs.iter().filter_map(|(_, r)| r.as_ref()?.summary.as_ref()).collect();
    let metric = Metric::of(summaries.iter().copied());
    let mut warnings: Vec<String> = Vec::new();
    warnings.extend(mixed_sources(summaries.iter().copied()));
    warnings.extend(mixed_machines(recs.iter().filter_map(|(_, r)| r.as_ref())));
    let mut rows: Vec<RunRow> = recs.iter().map(|(c, r)| RunRow::of(c, r.as_ref(), metric)).collect();
    let configs_cost = config_costs(grid, &recs, metric);
    let (best, worst, mut findings) = findings(&configs_cost);
    if grid.prune {
        let keep = survivors(study, cfgs)?;
        for (row, (c, _)) in rows.iter_mut().zip(&recs) {
            if row.status == "pending" && c.seed > 0 && !keep.contains(&(c.batch_size, c.lr.to_bits())) {
                row.status = "pruned".into();
            }
        }
        findings.pruned = recs
            .iter()
            .filter(|(c, _)| c.seed == 0 && !keep.contains(&(c.batch_size, c.lr.to_bits())))
            .map(|(c, r)| {
                let cost = r.as_ref().and_then(run_cost).map(|k| Mean::of(&[k]).map(|m| m.text()).unwrap_or_default());
                format!("batch {} lr {}: seed 0 {}", c.batch_size, c.lr, cost.unwrap_or_else(|| "failed".into()))
            })
            .collect();
    }
    findings.sweep_cost = sweep_cost(&recs, metric);
    let ratio = findings.worst_best_all.finding();
    let gpu_util = gpu_utilisation(study, grid, &rows, &mut warnings);
    let mut table = render(a, grid, metric, &rows, &best, &worst, &findings, &gpu_util, &warnings);
    let carbon = super::carbon_text(summaries.iter().copied());
    if let Some(c) = &carbon {
        table += &format!("\n{c}");
    }
    table += &paper_section(&findings, metric, grid.prune);
    let r = SweepResult {
        metric,
        target_acc: grid.target_acc,
        rows,
        configs: configs_cost,
        best,
        worst,
        ratio,
        findings,
        gpu_util,
        warnings,
        carbon,
        table,
    };
    study.write_table("sweep", &r.table, &r)?;
    Ok(r)
}

impl RunRow {
    /// The row of configuration `c`: pending without a record.
    fn of(c: &Config, r: Option<&RunRecord>, metric: Metric) -> RunRow {
        let mut row = RunRow {
            id: c.id(),
            batch_size: c.batch_size,
            lr: c.lr,
            seed: c.seed,
            status: "pending".into(),
            per_epoch: None,
            epochs: None,
            time_to_target_s: None,
            energy_to_target_j: None,
            target_reached: false,
            final_val_acc: None,
            error: None,
            used_energy_j: None,
        };
        if let Some(r) = r {
            row.status = r.status.clone();
            row.error = r.errors.last().cloned();
            row.used_energy_j = r.used_energy_j;
            if let Some(s) = &r.summary {
                row.per_epoch = metric.per_epoch(s);
                row.epochs = Some(s.epochs);
                row.target_reached = s.target_reached;
                row.time_to_target_s = if s.target_reached { s.time_to_target_s } else { None };
                row.energy_to_target_j = if s.target_reached { s.energy_to_target_j } else { None };
                row.final_val_acc = s.final_val_acc;
            }
        }
        row
    }
}

/// Per configuration: the seeds' costs (lower bounds where a seed did not reach the target) and their mean,
/// when every seed finished.
fn config_costs(grid: &SweepGrid, recs: &[(Config, Option<RunRecord>)], metric: Metric) -> Vec<ConfigCost> {
    let mut out = Vec::new();
    for &bs in &grid.batch_sizes {
        for &lr in &grid.lrs {
            let runs: Option<Vec<&crate::rundir::RunSummary>> = recs
                .iter()
                .filter(|(c, _)| c.batch_size == bs && c.lr == lr)
                .map(|(_, r)| r.as_ref()?.summary.as_ref())
                .collect();
            let runs = runs.unwrap_or_default();
            let costs: Option<Vec<Cost>> = runs.iter().map(|s| metric.cost(s)).collect();
            let costs = costs.unwrap_or_default();
            let time_costs: Vec<Cost> = runs.iter().filter_map(|s| Metric::Time.cost(s)).collect();
            let mean = Mean::of(&costs);
            let to_target = mean.filter(|m| !m.lower_bound).map(|m| m.value());
            out.push(ConfigCost { batch_size: bs, lr, to_target, costs, mean, time_costs });
        }
    }
    out
}

/// Best, worst (both among configurations that reached the target) and the findings over every configuration.
fn findings(cc: &[ConfigCost]) -> (Option<ConfigCost>, Option<ConfigCost>, SweepFindings) {
    let by_mean = |x: &&ConfigCost, y: &&ConfigCost| {
        let v = |c: &ConfigCost| c.mean.map(|m| m.value()).unwrap_or(f64::NAN);
        v(x).partial_cmp(&v(y)).unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut done: Vec<&ConfigCost> = cc.iter().filter(|c| c.mean.is_some()).collect();
    done.sort_by(by_mean);
    let reached: Vec<&ConfigCost> = done.iter().copied().filter(|c| c.to_target.is_some()).collect();
    let best = reached.first().map(|c| (*c).clone());
    let worst = reached.last().map(|c| (*c).clone());
    let unreached = done.len() - reached.len();
    let ratio_to_best_in = |c: Option<&ConfigCost>, bounds_below: bool, time: bool| match (c, &best) {
        (Some(c), Some(b)) => {
            match if time { Ratio::of(&c.time_costs, &b.time_costs) } else { Ratio::of(&c.costs, &b.costs) } {
                // An unreached configuration ranked at or below this one may truly cost more: a lower bound.
                Ratio::Value { x, .. } if bounds_below => Ratio::AtLeast(x),
                r => r,
            }
        }
        _ => Ratio::Undetermined,
    };
    let ratio_to_best = |c: Option<&ConfigCost>, bounds_below: bool| ratio_to_best_in(c, bounds_below, false);
    let worst_best_reached = ratio_to_best(worst.as_ref(), false);
    let worst_best_all = ratio_to_best(done.last().copied(), unreached > 0);
    let unresolved = done.iter().filter(|c| c.mean.is_some_and(|m| m.unresolved)).count();
    let worst_best_time = (unresolved > 0).then(|| ratio_to_best_in(done.last().copied(), unreached > 0, true));
    let mid = done.len().saturating_sub(1) / 2;
    let median_best = ratio_to_best(done.get(mid).copied(), done.iter().take(mid + 1).any(|c| c.to_target.is_none()));
    let ranking = done
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let m = c.mean.expect("done configurations have a mean");
            let vs_prev = match i.checked_sub(1).map(|j| done[j].mean.expect("mean")) {
                None => "cheapest".to_string(),
                Some(p) => resolved_text(&p, &m),
            };
            (c.label(), m.text(), vs_prev)
        })
        .collect();
    let f = SweepFindings {
        worst_best_reached,
        worst_best_all,
        median_best,
        unreached,
        ranking,
        pruned: vec![],
        sweep_cost: None,
        unresolved,
        worst_best_time,
    };
    (best, worst, f)
}

/// Every run's whole cost (failed runs: the energy they used), None when nothing ran.
fn sweep_cost(recs: &[(Config, Option<RunRecord>)], metric: Metric) -> Option<f64> {
    let mut total = None;
    for r in recs.iter().filter_map(|(_, r)| r.as_ref()) {
        let v = match (&r.summary, metric) {
            (Some(s), m) => m.total(s),
            (None, Metric::Energy { .. }) => r.used_energy_j,
            (None, Metric::Time) => None,
        };
        if let Some(v) = v {
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}

/// Whether `hi` (ranked after `lo`) is resolved from `lo`: their seed intervals do not overlap.
fn resolved_text(lo: &Mean, hi: &Mean) -> String {
    if lo.unresolved || hi.unresolved {
        return "energy not resolved (below the sensor's resolution)".into();
    }
    if hi.lower_bound {
        return "costlier or equal (not reached: a lower bound)".into();
    }
    match (lo.interval.hi(), hi.interval.lo()) {
        (Some(a), Some(b)) if b > a => "resolved (95 % intervals do not overlap)".into(),
        (Some(_), Some(_)) => "not resolved (intervals overlap)".into(),
        _ => "not resolvable (one seed: run --seeds 3 or more)".into(),
    }
}

/// The sweep's finding: worst / best over every configuration, or, for a pruned sweep (whose costly
/// configurations were stopped early, so that its worst is not measured), the best it found and what it cost.
fn headline(grid: &SweepGrid, metric: Metric, best: &Option<ConfigCost>, f: &SweepFindings) -> String {
    if !grid.prune {
        return format!("worst / best {} to target {}", metric.name(), f.worst_best_all.text());
    }
    let found = match best.as_ref().and_then(|b| Some((b, b.mean.as_ref()?))) {
        Some((b, m)) => {
            format!("best configuration batch {} lr {} ({} to target {})", b.batch_size, b.lr, metric.name(), m.text())
        }
        None => "no configuration reached the target".into(),
    };
    format!(
        "{found}, found by --prune for {} {} of sweep; worst / best is not a finding of a pruned sweep (its costly \
         configurations were stopped early: run without --prune to measure it)",
        fmt_num(f.sweep_cost),
        metric.unit()
    )
}

/// The paper side by side for the sweep.
fn paper_section(f: &SweepFindings, metric: Metric, prune: bool) -> String {
    let ours = if prune {
        "not measured: a pruned sweep stops the costly configurations early (run without --prune)".to_string()
    } else {
        format!(
            "worst/best {} to target: {}; saving of the best vs the worst: {}",
            metric.name(),
            f.worst_best_all.text(),
            f.worst_best_all.saving_text()
        )
    };
    let mut notes = vec![format!(
        "Among the configurations that reached the target on every seed: worst/best {}.",
        f.worst_best_reached.text()
    )];
    if f.unreached > 0 {
        notes.push(format!(
            "{} configuration(s) did not reach the target on every seed; their whole cost counts as a lower bound, \
             so the worst/best ratio over all configurations is a lower bound too.",
            f.unreached
        ));
    }
    if let Metric::Time = metric {
        notes.push("No energy readings: the comparison is of time, not energy.".into());
    }
    super::paper::section(&super::paper::SWEEP, &ours, &notes)
}

/// " (lowered by --quick from 0.8)" when `--quick` changed the target, else "".
pub fn quick_note(quick: bool, model: &str, asked: Option<f64>, used: f64) -> String {
    let full = if model == "celeba" { 0.88 } else { 0.80 };
    if quick && asked.is_none() && used != full {
        format!(" (lowered by --quick from the protocol's {full}: a quick run's findings are not the protocol's)")
    } else {
        String::new()
    }
}

/// Mean GPU busy fraction of the finished runs per batch size; a damaged steps.jsonl becomes a warning.
fn gpu_utilisation(
    study: &Study,
    grid: &SweepGrid,
    rows: &[RunRow],
    warnings: &mut Vec<String>,
) -> Vec<(usize, Option<f64>)> {
    let mut gpu_util = Vec::new();
    for &bs in &grid.batch_sizes {
        let mut utils: Vec<f64> = Vec::new();
        for r in rows.iter().filter(|r| r.batch_size == bs && r.status == "ok") {
            match gpu_busy_fraction(&study.run_dir(&r.id)) {
                Ok(u) => utils.extend(u),
                Err(e) => warnings.push(format!("WARNING: {e:#}; the GPU utilisation of run {} is left out", r.id)),
            }
        }
        gpu_util.push((bs, (!utils.is_empty()).then(|| utils.iter().sum::<f64>() / utils.len() as f64)));
    }
    gpu_util
}

/// The best, worst, ratios, the sweep's own cost, what --prune did and the ranking, as markdown.
fn findings_text(
    grid: &SweepGrid,
    metric: Metric,
    rows: &[RunRow],
    best: &Option<ConfigCost>,
    worst: &Option<ConfigCost>,
    f: &SweepFindings,
) -> String {
    let mut s = String::new();
    let unit = metric.unit();
    match (best, worst) {
        (Some(b), Some(w)) => {
            s += &format!(
                "Best configuration reaching the target: {} ({} {unit} {} to target).\n",
                b.label(),
                b.mean.map(|m| m.text()).unwrap_or_default(),
                metric.name()
            );
            s += &format!(
                "Worst configuration reaching the target: {} ({} {unit}).\n",
                w.label(),
                w.mean.map(|m| m.text()).unwrap_or_default()
            );
            s += &format!("Worst / best among those: {}.\n", f.worst_best_reached.text());
            s += &format!(
                "Worst / best over every configuration (unreached ones as lower bounds): {}; saving of the best vs \
                 the worst {}, vs the median configuration {} (median / best {}).\n",
                f.worst_best_all.text(),
                f.worst_best_all.saving_text(),
                f.median_best.saving_text(),
                f.median_best.text()
            );
        }
        _ => s += "No configuration reached the target on every seed: no ratio can be stated.\n",
    }
    if f.unresolved > 0 {
        s += &format!(
            "\n**Energy comparison not resolved for {} configuration(s)**: a seed's {} covers fewer than {} updates \
             of the energy counter (each run's summary.json `resolution`), so its joules are a resolution bound, \
             not a measurement, and no energy ratio is formed with it. Worst / best in time: {}. Repeat such runs to \
             a resolvable length (more epochs or data) or use a sensor with shorter updates.\n",
            f.unresolved,
            "cost to target",
            crate::energy::resolution::COMPARISON_MIN_UPDATES,
            f.worst_best_time.map(|r| r.text()).unwrap_or_default()
        );
    }
    s += &format!(
        "\nThis sweep used {} {unit} in total ({} of its runs finished or failed){}.\n",
        fmt_num(f.sweep_cost),
        rows.iter().filter(|r| r.status == "ok" || r.status == "failed").count(),
        if grid.prune { "; --prune: adaptive capping and racing (see below)" } else { "" }
    );
    if grid.prune {
        s += &format!(
            "\n--prune ran seed 0 of every configuration capped at 1.25x the best cost so far (adaptive capping, \
             Hutter et al., ParamILS, JAIR 2009), and further seeds only for configurations whose seed 0 reached \
             the target within 25 % of the best (racing, Maron & Moore 1997). It finds the best configuration, not \
             the worst: the ratios above cover only what was run to the end. Pruned after seed 0 ({}): {}.\n",
            f.pruned.len(),
            if f.pruned.is_empty() { "none".to_string() } else { f.pruned.join("; ") }
        );
    }
    if !f.ranking.is_empty() {
        s += &format!("\nRanking by mean {} to target ({unit}, 95 % interval over seeds):\n\n", metric.name());
        let rows: Vec<Vec<String>> = f.ranking.iter().map(|(c, m, r)| vec![c.clone(), m.clone(), r.clone()]).collect();
        s += &md_table(&["configuration", &format!("mean ({unit})"), "vs the next cheaper"], &rows);
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn render(
    a: &SweepOptions,
    grid: &SweepGrid,
    metric: Metric,
    rows: &[RunRow],
    best: &Option<ConfigCost>,
    worst: &Option<ConfigCost>,
    f: &SweepFindings,
    gpu_util: &[(usize, Option<f64>)],
    warnings: &[String],
) -> String {
    let mut s = format!(
        "# Sweep: {} on {}\n\n**Finding: {}.** (Definitions: cost to target counts \
         every joule up to the first evaluation that reaches the target; a configuration that never reaches it \
         counts its whole cost as a lower bound; means over seeds with 95 % intervals.)\n\n\
         Target validation accuracy {}{}, at most {} epochs, optimiser {}, {} seed(s).\n\n",
        a.model,
        a.data.display(),
        headline(grid, metric, best, f),
        grid.target_acc,
        quick_note(a.quick, &a.model, a.target_acc, grid.target_acc),
        grid.epochs,
        grid.optimizer,
        grid.seeds
    );
    if !metric.note().is_empty() {
        s += &format!("**{}**\n\n", metric.note());
    }
    for w in warnings {
        s += &format!("**{w}**\n\n");
    }
    let per_epoch_h = format!("{} per epoch ({})", metric.name(), metric.unit());
    let header = [
        "run",
        "batch",
        "lr",
        "seed",
        per_epoch_h.as_str(),
        "epochs",
        "time to target (s)",
        "energy to target (J)",
        "final val acc",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let tt = |v: Option<f64>| match (r.status.as_str(), r.target_reached) {
                ("ok", true) => fmt_num(v),
                ("ok", false) => "not reached".into(),
                (st, _) => st.to_string(),
            };
            vec![
                r.id.clone(),
                r.batch_size.to_string(),
                r.lr.to_string(),
                r.seed.to_string(),
                fmt_num(r.per_epoch),
                r.epochs.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                tt(r.time_to_target_s),
                tt(r.energy_to_target_j),
                fmt_num(r.final_val_acc),
            ]
        })
        .collect();
    s += &md_table(&header, &body);
    let done = rows.iter().filter(|r| r.status != "pending").count();
    if done < rows.len() {
        s += &format!("\n{done} of {} runs done; re-run the same command to finish the rest.\n", rows.len());
    }
    if rows.iter().any(|r| r.status == "failed") {
        s += "\nA failed run is not retried by the same command: move its runs/<id> away (or correct the settings \
              when every run failed) and run the command again.\n";
    }
    for r in rows.iter().filter(|r| r.status == "failed") {
        let used =
            r.used_energy_j.map(|j| format!(" (the failed attempts used {} J)", fmt_num(Some(j)))).unwrap_or_default();
        s += &format!("\nFAILED {}: {}{used}\n", r.id, r.error.as_deref().unwrap_or("(no message)"));
    }
    s += "\n";
    s += &findings_text(grid, metric, rows, best, worst, f);
    s += "\nGPU utilisation (kernel busy time / wall time) per batch size: ";
    s += &gpu_util
        .iter()
        .map(|(bs, u)| format!("{bs}: {}", u.map(|u| format!("{:.0}%", 100.0 * u)).unwrap_or_else(|| "n/a".into())))
        .collect::<Vec<_>>()
        .join(", ");
    s += "\n";
    s
}

/// GPU busy time / wall time of a run from steps.jsonl: the sum of its kernels' `time_s` (rows with launches;
/// the `(between kernels)` and `(between steps)` rows are idle or host time) over the sum of the steps' metered
/// windows (`window_s`, which holds the host time before each step; older runs: `wall_s`). None without kernel
/// timings (runs without `--per-kernel`) or without steps.jsonl; an error naming the line when it is damaged.
pub fn gpu_busy_fraction(run_dir: &Path) -> Result<Option<f64>> {
    let Some(steps) = RunDir::new(run_dir).steps()? else { return Ok(None) };
    let (mut busy, mut wall, mut any) = (0.0, 0.0, false);
    for s in &steps {
        wall += s.covered_s();
        for k in s.kernels.iter().flatten().filter(|k| k.launches > 0) {
            busy += k.time_s;
            any = true;
        }
    }
    Ok((any && wall > 0.0).then(|| busy / wall))
}

/// Quote `s` for a POSIX shell (the `shlex` crate); `what` names it in the error (a NUL byte cannot be quoted).
fn sh(what: &str, s: &str) -> Result<String> {
    refuse_control(what, s)?;
    shlex::try_quote(s).map(|q| q.into_owned()).map_err(|e| anyhow::anyhow!("{what} {s:?}: cannot be quoted ({e})"))
}

/// Refuse control characters (a newline would end a `#` comment or a `#SBATCH` line of the script).
fn refuse_control(what: &str, s: &str) -> Result<()> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        bail!("{what} {s:?}: holds the control character {c:?}, which a job script (its comments and #SBATCH lines) cannot \
               carry safely; rename it");
    }
    Ok(())
}

/// A path for an `#SBATCH` line: Slurm's own parser splits at white space and reads quotes, and `%` starts
/// its file-name patterns (`%A`, `%a`), so such names are refused rather than guessed at.
fn sbatch_path(what: &str, s: &str) -> Result<String> {
    refuse_control(what, s)?;
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || "\"'\\%#".contains(*c)) {
        bail!(
            "{what} {s:?}: holds {c:?}, which Slurm's #SBATCH parser cannot take safely; give a path of letters, \
             digits and -_./ (e.g. move or link the study directory)"
        );
    }
    Ok(s.to_string())
}

/// A Slurm job-array script: one array task per configuration, each running this sweep with
/// `--only $SLURM_ARRAY_TASK_ID` into the same study directory (the grid is written out in full, so every
/// task resolves the same grid and study.json accepts it). Every path and value is quoted for the shell
/// (`shlex`); names Slurm's `#SBATCH` parser cannot take are refused. A GPU is requested (`--gres=gpu:1`)
/// only for `--device cuda`.
pub fn slurm_script(exe: &Path, a: &SweepOptions, g: &SweepGrid, n: usize) -> Result<String> {
    if n == 0 {
        bail!("--emit-slurm: the grid is empty");
    }
    let abs = |p: &Path| -> Result<String> {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().context("cannot read the current directory")?.join(p)
        };
        let p = std::fs::canonicalize(&p).unwrap_or(p);
        let s = p.to_str().map(str::to_string);
        s.with_context(|| format!("{}: not valid UTF-8; a job script needs a readable path", p.display()))
    };
    let out = abs(&a.out)?;
    // The study directory is named in `#` comments and `#SBATCH --output`: it must suit Slurm's parser.
    let out_line = format!("{}/slurm/slurm-%A_%a.out", sbatch_path("--out", &out)?);
    let join = |v: Vec<String>| v.join(",");
    let mut cmd = vec![
        sh("the powertrain executable", &abs(exe)?)?,
        "sweep".into(),
        "--model".into(),
        sh("--model", &a.model)?,
        "--data".into(),
        sh("--data", &abs(&a.data)?)?,
        "--batch-sizes".into(),
        join(g.batch_sizes.iter().map(|b| b.to_string()).collect()),
        "--lrs".into(),
        join(g.lrs.iter().map(|l| l.to_string()).collect()),
        "--seeds".into(),
        g.seeds.to_string(),
        "--target-acc".into(),
        g.target_acc.to_string(),
        "--epochs".into(),
        g.epochs.to_string(),
        "--optimizer".into(),
        sh("--optimizer", &g.optimizer)?,
        "--device".into(),
        sh("--device", &g.device)?,
        "--energy".into(),
        sh("--energy", &g.energy)?,
    ];
    if let Some(t) = &g.tasks {
        cmd.extend(["--tasks".into(), sh("--tasks", t)?]);
    }
    if let Some(w) = g.watts {
        cmd.extend(["--watts".into(), w.to_string()]);
    }
    let x = &g.extras;
    if let Some(m) = &x.sim_model {
        cmd.extend(["--sim-model".into(), sh("--sim-model", &abs(m)?)?]);
    }
    if let Some(m) = &x.sim_sensor {
        cmd.extend(["--sim-sensor".into(), sh("--sim-sensor", m)?]);
    }
    if let (Some(ci), Some(pue)) = (x.carbon_intensity, x.pue) {
        cmd.extend(["--carbon-intensity".into(), ci.to_string(), "--pue".into(), pue.to_string()]);
    }
    cmd.extend(["--only".into(), "\"$SLURM_ARRAY_TASK_ID\"".into(), "--out".into(), sh("--out", &out)?]);
    let gpu = if g.device == "cuda" {
        "#SBATCH --gres=gpu:1\n"
    } else {
        "# No GPU requested: the runs use --device cpu or auto (give --device cuda to request one per task).\n"
    };
    Ok(format!(
        "#!/bin/bash\n\
         # Written by `powertrain sweep --emit-slurm`: {n} configurations of a {model} sweep, one array task each.\n\
         # Every task writes its run into the shared study directory {out}; merge with `powertrain report {out}`.\n\
         #SBATCH --job-name=powertrain-sweep\n\
         #SBATCH --array=0-{last}\n\
         {gpu}\
         #SBATCH --ntasks=1\n\
         #SBATCH --output={out_line}\n\
         set -euo pipefail\n\
         {cmd}\n",
        model = a.model,
        last = n - 1,
        cmd = cmd.join(" "),
    ))
}

//! `powertrain multitask-study`: one K-output network on K CelebA attributes vs K networks with one output
//! each. Every network trains until each attribute it carries reached its own target (the latest of
//! `RunSummary.task_epoch_reached`) or the epoch limit; its cost is read from epochs.csv at that epoch.
use super::dir::Access;
use super::finding::{Cost, Ratio};
use super::{
    check_model, fmt_num, md_table, mixed_machines, mixed_sources, Metric, RunRecord, Study, StudyManifest, Trainer,
};
use crate::rundir::{RunDir, RunSummary};
use crate::train::TrainConfig;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `powertrain multitask-study` was asked for (its flags; `resolve` applies the defaults).
#[derive(Clone, Debug)]
pub struct MultitaskOptions {
    /// celeba
    pub model: String,
    /// The CelebA dataset directory.
    pub data: PathBuf,
    /// Comma-separated attributes (None: Smiling,Male,Young,Attractive,Heavy_Makeup).
    pub tasks: Option<String>,
    pub batch_size: usize,
    pub lr: f32,
    /// Epoch limit per run (20 is the default, which `quick` lowers).
    pub epochs: usize,
    /// Per-attribute validation accuracy target (None: 0.85).
    pub target_acc: Option<f64>,
    pub seeds: u64,
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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MultitaskGrid {
    pub tasks: Vec<String>,
    pub batch_size: usize,
    pub lr: f32,
    pub epochs: usize,
    pub target_acc: f64,
    pub seeds: u64,
    pub device: String,
    pub energy: String,
    pub watts: Option<f64>,
    /// The runs' sim and carbon settings (absent from study.json when none is given).
    #[serde(flatten)]
    pub extras: super::RunExtras,
}

pub fn resolve(a: &MultitaskOptions) -> Result<MultitaskGrid> {
    check_model(&a.model, &["celeba"])?;
    let (tasks_default, epochs, target) = if a.quick {
        ("Smiling,Male", if a.epochs == 20 { 4 } else { a.epochs }, 0.7)
    } else {
        ("Smiling,Male,Young,Attractive,Heavy_Makeup", a.epochs, 0.85)
    };
    let tasks: Vec<String> = a
        .tasks
        .as_deref()
        .unwrap_or(tasks_default)
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tasks.len() < 2 {
        bail!("--tasks: give at least two comma-separated attributes (e.g. Smiling,Male) to compare");
    }
    let mut dedup = tasks.clone();
    dedup.sort();
    dedup.dedup();
    if dedup.len() != tasks.len() {
        bail!("--tasks: an attribute is listed twice");
    }
    if a.seeds == 0 || epochs == 0 || a.batch_size == 0 {
        bail!("--seeds, --epochs and --batch-size must be at least 1");
    }
    super::sweep::check_seeds(a.seeds)?;
    if let Some(t) = a.target_acc {
        crate::train::check_target_acc(t)?;
    }
    Ok(MultitaskGrid {
        tasks,
        batch_size: a.batch_size,
        lr: a.lr,
        epochs,
        target_acc: a.target_acc.unwrap_or(target),
        seeds: a.seeds,
        device: a.device.clone(),
        energy: a.energy.clone(),
        watts: a.watts,
        extras: a.extras.clone(),
    })
}

/// What one network cost until all its attributes reached the target (or until it stopped).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetCost {
    pub id: String,
    pub tasks: Vec<String>,
    pub all_reached: bool,
    /// The epoch at which the last of its attributes reached the target, else the epochs it ran.
    pub epochs: usize,
    pub cost: Option<f64>,
    pub time_s: Option<f64>,
    pub acc: BTreeMap<String, f64>,
    /// The energy cost is below the counter's resolution (`finding.rs`): no energy ratio with it.
    #[serde(default)]
    pub below_resolution: bool,
}

/// The epoch at which every task in `tasks` had reached the target (None if one never did).
pub fn all_reached_epoch(s: &RunSummary, tasks: &[String]) -> Option<usize> {
    tasks.iter().map(|t| s.task_epoch_reached.get(t).copied()).collect::<Option<Vec<_>>>()?.into_iter().max()
}

impl NetCost {
    /// The network's cost (metric `m`) until all of `tasks` reached the target: its epochs.csv's cumulative
    /// cost at that epoch, the summary's figures where the run has no such row. A damaged epochs.csv is an
    /// error naming the file and the line.
    pub fn of(m: Metric, id: &str, tasks: &[String], s: &RunSummary, run_dir: &Path) -> Result<NetCost> {
        let reached = all_reached_epoch(s, tasks);
        let epochs = reached.unwrap_or(s.epochs);
        // Cumulative cost at `epochs` from epochs.csv; the summary's totals when it ends there.
        let rows = RunDir::new(run_dir).epochs()?.unwrap_or_default();
        let row = rows.iter().find(|r| r.epoch == epochs);
        let at_end = epochs == s.epochs;
        let energy = row.and_then(|r| r.cum_energy_j).or_else(|| {
            if s.epochs_to_target == Some(epochs) {
                s.energy_to_target_j
            } else if at_end {
                s.total_energy_j
            } else {
                None
            }
        });
        let time_s = row.map(|r| r.cum_wall_s).or_else(|| {
            if s.epochs_to_target == Some(epochs) {
                s.time_to_target_s
            } else if at_end {
                Some(s.wall_s)
            } else {
                None
            }
        });
        let cost = match m {
            Metric::Energy { .. } => energy,
            Metric::Time => time_s,
        };
        let mut acc = s.final_val_acc_per_task.clone();
        if tasks.len() == 1 && !acc.contains_key(&tasks[0]) {
            if let Some(v) = s.final_val_acc {
                acc.insert(tasks[0].clone(), v);
            }
        }
        Ok(NetCost {
            id: id.to_string(),
            tasks: tasks.to_vec(),
            all_reached: reached.is_some(),
            epochs,
            cost,
            below_resolution: m.below_resolution(s, time_s),
            time_s,
            acc,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedCompare {
    pub seed: u64,
    pub multi: Option<NetCost>,
    /// One per task, in --tasks order (None: failed).
    pub singles: Vec<Option<NetCost>>,
}

impl SeedCompare {
    /// Sum over the single-task networks (None when one failed or has no cost).
    pub fn singles_total(&self) -> (Option<f64>, Option<f64>, Option<usize>) {
        let all: Option<Vec<&NetCost>> = self.singles.iter().map(|s| s.as_ref()).collect();
        match all {
            None => (None, None, None),
            Some(v) => (
                v.iter().map(|n| n.cost).sum::<Option<f64>>(),
                v.iter().map(|n| n.time_s).sum::<Option<f64>>(),
                Some(v.iter().map(|n| n.epochs).sum()),
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MultitaskResult {
    pub metric: Metric,
    pub tasks: Vec<String>,
    pub target_acc: f64,
    pub seeds: Vec<SeedCompare>,
    /// Mean over seeds: (multi cost, sum of single costs).
    pub mean_multi: Option<f64>,
    pub mean_singles: Option<f64>,
    /// Single-task total / multi-task, per seed paired; a bound when a side did not reach every target.
    pub ratio: Ratio,
    pub warnings: Vec<String>,
    /// The study's carbon (`super::carbon_text`), with the energy method behind it; None without carbon flags.
    #[serde(default)]
    pub carbon: Option<String>,
    pub table: String,
}

/// " (lowered by --quick ...)" when `--quick` changed the target.
fn quick_target(a: &MultitaskOptions, used: f64) -> String {
    if a.quick && a.target_acc.is_none() && used != 0.85 {
        " (lowered by --quick from the protocol's 0.85: a quick run's findings are not the protocol's)".into()
    } else {
        String::new()
    }
}

/// The settings of a network on `tasks` for `seed`.
pub fn run_config(a: &MultitaskOptions, g: &MultitaskGrid, tasks: &[String], seed: u64) -> TrainConfig {
    TrainConfig {
        tasks: Some(tasks.join(",")),
        batch_size: g.batch_size,
        lr: g.lr,
        epochs: g.epochs,
        target_acc: Some(g.target_acc),
        seed,
        device: g.device.clone(),
        energy: g.energy.clone(),
        watts: g.watts,
        ..g.extras.apply(TrainConfig::new(&a.model, &a.data))
    }
}

/// Every setting is checked before the study directory is touched; a study whose runs all failed is an
/// error (after its table is written).
pub fn multitask_study_with(a: &MultitaskOptions, trainer: Trainer) -> Result<MultitaskResult> {
    let g = resolve(a)?;
    let base = |tasks: &[String], seed: u64| run_config(a, &g, tasks, seed);
    base(&g.tasks, 0).validate()?;
    let study =
        Study::open_or_create(&a.out, StudyManifest::new("multitask", &a.model, &a.data, &g)?, Access::Exclusive)?;
    let mut recs: Vec<(u64, RunRecord, Vec<RunRecord>)> = Vec::new();
    for seed in 0..g.seeds {
        let multi = study.run(&format!("multi_s{seed}"), &base(&g.tasks, seed), trainer)?;
        let mut singles = Vec::new();
        for task in &g.tasks {
            singles.push(study.run(
                &format!("single_{task}_s{seed}"),
                &base(std::slice::from_ref(task), seed),
                trainer,
            )?);
        }
        recs.push((seed, multi, singles));
    }
    let all: Vec<&RunRecord> = recs.iter().flat_map(|(_, m, s)| std::iter::once(m).chain(s.iter())).collect();
    let summaries: Vec<&RunSummary> = all.iter().filter_map(|r| r.summary.as_ref()).collect();
    let metric = Metric::of(summaries.iter().copied());
    let mut warnings: Vec<String> = Vec::new();
    warnings.extend(mixed_sources(summaries.iter().copied()));
    warnings.extend(mixed_machines(all.iter().copied()));
    let net = |r: &RunRecord, tasks: &[String]| {
        r.summary.as_ref().map(|s| NetCost::of(metric, &r.id, tasks, s, &study.run_dir(&r.id))).transpose()
    };
    let seeds: Vec<SeedCompare> = recs
        .iter()
        .map(|(seed, m, s)| {
            Ok(SeedCompare {
                seed: *seed,
                multi: net(m, &g.tasks)?,
                singles: s.iter().zip(&g.tasks).map(|(r, t)| net(r, std::slice::from_ref(t))).collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    let mut r = summarise(metric, &g, seeds, warnings, a);
    r.carbon = super::carbon_text(summaries.iter().copied());
    if let Some(c) = &r.carbon {
        r.table += &format!("\n{c}");
    }
    let failed: Vec<&RunRecord> = all.iter().copied().filter(|r| !r.is_ok()).collect();
    r.table += &super::failed_lines(failed.iter().copied());
    study.write_table("multitask", &r.table, &r)?;
    println!("{}", r.table);
    if !all.is_empty() && failed.len() == all.len() {
        bail!(
            "{}: every run of the study failed ({}); the errors are in {}: fix the settings and run the command \
             again",
            a.out.display(),
            failed.len(),
            a.out.join("multitask.md").display()
        );
    }
    Ok(r)
}

fn summarise(
    metric: Metric,
    g: &MultitaskGrid,
    seeds: Vec<SeedCompare>,
    warnings: Vec<String>,
    a: &MultitaskOptions,
) -> MultitaskResult {
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mean_multi = mean(seeds.iter().filter_map(|s| s.multi.as_ref()?.cost).collect());
    let mean_singles = mean(seeds.iter().filter_map(|s| s.singles_total().0).collect());
    let u = metric.unit();
    let mut t = format!(
        "# Multi-task study: {} on {}\n\nAttributes {}; each network trains until every attribute it carries \
         reaches validation accuracy {}{} or {} epochs; {} seed(s).\n\n",
        a.model,
        a.data.display(),
        g.tasks.join(", "),
        g.target_acc,
        quick_target(a, g.target_acc),
        g.epochs,
        g.seeds
    );
    if !metric.note().is_empty() {
        t += &format!("**{}**\n\n", metric.note());
    }
    for w in &warnings {
        t += &format!("**{w}**\n\n");
    }
    let cost_h = format!("{} ({u})", metric.name());
    let mut header = vec!["seed", "network", cost_h.as_str(), "time (s)", "epochs", "all reached"];
    let acc_h: Vec<String> = g.tasks.iter().map(|t| format!("acc {t}")).collect();
    header.extend(acc_h.iter().map(|s| s.as_str()));
    let mut rows = Vec::new();
    let line = |seed: u64, name: &str, n: &Option<NetCost>| -> Vec<String> {
        match n {
            None => {
                let mut r = vec![seed.to_string(), name.to_string(), "failed".into()];
                r.extend(std::iter::repeat_n("-".to_string(), 3 + g.tasks.len()));
                r
            }
            Some(n) => {
                let mut r = vec![
                    seed.to_string(),
                    name.to_string(),
                    fmt_num(n.cost),
                    fmt_num(n.time_s),
                    n.epochs.to_string(),
                    if n.all_reached { "yes" } else { "no" }.into(),
                ];
                r.extend(g.tasks.iter().map(|t| n.acc.get(t).map(|v| fmt_num(Some(*v))).unwrap_or_else(|| "-".into())));
                r
            }
        }
    };
    for s in &seeds {
        rows.push(line(s.seed, &format!("multi-task ({} outputs)", g.tasks.len()), &s.multi));
        for (task, n) in g.tasks.iter().zip(&s.singles) {
            rows.push(line(s.seed, &format!("single {task}"), n));
        }
        let (c, ti, ep) = s.singles_total();
        let mut r = vec![
            s.seed.to_string(),
            format!("{} single-task total", g.tasks.len()),
            fmt_num(c),
            fmt_num(ti),
            ep.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
            if s.singles.iter().all(|n| n.as_ref().is_some_and(|n| n.all_reached)) { "yes" } else { "no" }.into(),
        ];
        r.extend(g.tasks.iter().map(|_| String::new()));
        rows.push(r);
    }
    t += &md_table(&header, &rows);
    let (ratio, finding) = compare(&seeds, metric);
    t = t.replacen("\n\n", &format!("\n\n**Finding: {finding}**\n\n"), 1);
    t += &format!(
        "\nMean over seeds: multi-task {} {u}, single-task total {} {u}; single-task total / multi-task: {}.\n",
        fmt_num(mean_multi),
        fmt_num(mean_singles),
        ratio.text()
    );
    let notes =
        vec!["A network's cost counts until every attribute it carries reached its target; one that never did counts \
         its whole cost as a lower bound, and a ratio with such a side is a bound."
            .to_string()];
    t += &super::paper::section(&super::paper::MULTITASK, &finding, &notes);
    MultitaskResult {
        metric,
        tasks: g.tasks.clone(),
        target_acc: g.target_acc,
        seeds,
        mean_multi,
        mean_singles,
        ratio,
        warnings,
        carbon: None,
        table: t,
    }
}

/// Single-task total / multi-task over seeds (paired), and the finding in words.
fn compare(seeds: &[SeedCompare], metric: Metric) -> (Ratio, String) {
    let cost = |n: &NetCost| n.cost.map(|v| Cost { value: v, reached: n.all_reached, unresolved: n.below_resolution });
    let mut multi = Vec::new();
    let mut singles = Vec::new();
    for s in seeds {
        let m = s.multi.as_ref().and_then(cost);
        let parts: Option<Vec<Cost>> = s.singles.iter().map(|n| n.as_ref().and_then(cost)).collect();
        if let (Some(m), Some(p)) = (m, parts) {
            multi.push(m);
            singles.push(Cost {
                value: p.iter().map(|c| c.value).sum(),
                reached: p.iter().all(|c| c.reached),
                unresolved: p.iter().any(|c| c.unresolved),
            });
        }
    }
    let r = Ratio::of(&singles, &multi);
    let time = match r {
        Ratio::NotResolved => {
            let t = |n: &NetCost| n.time_s.map(|v| Cost { value: v, reached: n.all_reached, unresolved: false });
            let (mut tm, mut ts) = (Vec::new(), Vec::new());
            for s in seeds {
                let m = s.multi.as_ref().and_then(t);
                let parts: Option<Vec<Cost>> = s.singles.iter().map(|n| n.as_ref().and_then(t)).collect();
                if let (Some(m), Some(p)) = (m, parts) {
                    tm.push(m);
                    ts.push(Cost {
                        value: p.iter().map(|c| c.value).sum(),
                        reached: p.iter().all(|c| c.reached),
                        unresolved: false,
                    });
                }
            }
            format!("; the time ratio (resolved by the clock): {}", Ratio::of(&ts, &tm).text())
        }
        _ => String::new(),
    };
    let what = match r {
        Ratio::Value { x, .. } if x > 1.0 && r.resolved_side() => "the multi-task network used less",
        Ratio::Value { x, .. } if x > 1.0 => "the multi-task network used less on average, not resolved over the seeds",
        Ratio::Value { .. } if r.resolved_side() => "the multi-task network did not use less",
        Ratio::Value { .. } => "the multi-task network did not use less on average, not resolved over the seeds",
        Ratio::AtLeast(x) if x > 1.0 => "the multi-task network used less (a bound)",
        Ratio::AtMost(x) if x < 1.0 => "the multi-task network did not use less (a bound)",
        Ratio::NotResolved => "the energy of a side is below the sensor's resolution",
        _ => "not resolved: a side did not reach every target",
    };
    (r, format!("single-task total / multi-task {} to targets: {}; {what}{time}", metric.name(), r.text()))
}

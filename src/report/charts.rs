//! The report's plots: which data each one draws, and its caption (with the unit and the method).
use super::load::{self, Inputs, Run};
use super::svg::{self, Bar, Lines, Series, VLine};
use super::{cap1, Block, Method};
use crate::study::multitask::MultitaskResult;
use crate::study::pretrain::PretrainResult;
use crate::study::Metric;
use std::collections::BTreeMap;

/// Every plot the inputs allow, in the report's order; a run file a plot cannot read becomes a warning.
pub(super) fn plot_blocks(inp: &Inputs, metric: Metric, method: &Method, warnings: &mut Vec<String>) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut add = |file: &str, caption: String, svg: Option<String>, about: &str| {
        if let Some(svg) = svg {
            blocks.push(Block::Plot { file: file.to_string(), caption, svg, about: about.to_string() });
        }
    };
    let sweep_runs: Vec<&Run> = inp.runs.iter().filter(|r| r.kind.as_deref().is_none_or(|k| k == "sweep")).collect();
    let (u, name, t) = (metric.unit(), metric.name(), method.suffix());
    if distinct(&sweep_runs, |r| (r.summary.batch_size, r.summary.lr.to_bits())) >= 2 {
        let (xl, yl, cells) = heatmap_cells(&sweep_runs, metric);
        let cap = format!("{} to target over batch size x learning rate ({u}; n/r = not reached){t}", cap1(name));
        let svg = svg::heatmap(&cap, ("batch size", "learning rate"), &xl, &yl, &cells, u);
        add("heatmap.svg", cap, svg, super::text::HEATMAP);
        let (series, at) = per_epoch_series(&sweep_runs, metric);
        let cap = format!("{} per epoch vs batch size ({u}, mean over seeds){t}", cap1(name));
        let y = format!("{name} per epoch ({u})");
        let svg = Lines {
            caption: &cap,
            x_desc: "batch size (log scale)",
            y_desc: &y,
            series: &series,
            log_x: true,
            x_at: Some(at),
            vlines: &[],
        }
        .svg();
        add("energy_per_epoch.svg", cap, svg, super::text::PER_EPOCH);
    }
    let acc = acc_series(&inp.runs, metric, warnings);
    let cap = format!("Validation accuracy vs cumulative {name} ({u}){t}");
    let x = format!("cumulative {name} ({u})");
    let svg = Lines {
        caption: &cap,
        x_desc: &x,
        y_desc: "validation accuracy",
        series: &acc,
        log_x: false,
        x_at: None,
        vlines: &[],
    }
    .svg();
    add("acc_vs_energy.svg", cap, svg, super::text::ACC);
    if let Some(run) = focus_run(&inp.runs) {
        if let Metric::Energy { .. } = metric {
            let cap =
                format!("Power per step, run {} ({} steps; energy_j / window_s, W){t}", run.id, run.summary.steps);
            match power_series(run) {
                Ok((s, marks)) => {
                    let svg = Lines {
                        caption: &cap,
                        x_desc: "time since start (s)",
                        y_desc: "power (W)",
                        series: &s,
                        log_x: false,
                        x_at: None,
                        vlines: &marks,
                    }
                    .svg();
                    add("power_timeline.svg", cap, svg, super::text::POWER)
                }
                Err(e) => warnings.push(format!("WARNING: {e:#}; the power timeline of run {} is left out", run.id)),
            }
        }
        match load::kernels(&run.dir) {
            Ok(rows) => {
                let (cap, svg) = kernels_plot(run, &rows, metric, method);
                add("kernels.svg", cap, svg, super::text::KERNELS);
            }
            Err(e) => warnings.push(format!("WARNING: {e:#}; the per-kernel plot of run {} is left out", run.id)),
        }
    }
    for s in &inp.studies {
        if let Some(p) = &s.pretrain {
            let (cap, svg) = break_even_plot(p, method);
            add("break_even.svg", cap, svg, super::text::BREAK_EVEN);
        }
        if let Some(m) = &s.multitask {
            let (cap, svg) = multitask_plot(m, method);
            add("multitask.svg", cap, svg, super::text::MULTITASK);
        }
    }
    blocks
}

fn distinct<K: Ord>(runs: &[&Run], f: impl Fn(&Run) -> K) -> usize {
    let mut v: Vec<K> = runs.iter().map(|r| f(r)).collect();
    v.sort();
    v.dedup();
    v.len()
}

/// Every kernel of `run` (energy, or GPU time without energy readings), largest first, at most 30, with
/// the uncertainty where kernels.csv has one.
pub(super) fn kernels_plot(
    run: &Run,
    rows: &[crate::energy::KernelRow],
    metric: Metric,
    method: &Method,
) -> (String, Option<String>) {
    let (u, name) = (metric.unit(), metric.name());
    let time = matches!(metric, Metric::Time);
    let mut bars: Vec<Bar> = rows
        .iter()
        .map(|r| Bar {
            label: r.name.clone(),
            value: if time { r.gpu_time_s } else { r.energy_j },
            err: if time { None } else { r.energy_uncertainty_j },
            missing: "no reading".into(),
        })
        .collect();
    bars.sort_by(|a, b| b.value.partial_cmp(&a.value).unwrap_or(std::cmp::Ordering::Equal));
    let more = bars.len().saturating_sub(30);
    bars.truncate(30);
    let extra = if more > 0 { format!(", {more} smaller kernels left out") } else { String::new() };
    let cap = format!("Per-kernel {name}, run {} ({u}{extra}){}", run.id, method.suffix());
    let svg = svg::hbars(&cap, &format!("{name} ({u})"), u, &bars);
    (cap, svg)
}

/// Heatmap cells: mean cost to target over seeds per (batch size, lr); None if any seed missed it.
fn heatmap_cells(runs: &[&Run], m: Metric) -> (Vec<String>, Vec<String>, Vec<Vec<Option<f64>>>) {
    let mut bss: Vec<usize> = runs.iter().map(|r| r.summary.batch_size).collect();
    bss.sort();
    bss.dedup();
    let mut lrs: Vec<f32> = runs.iter().map(|r| r.summary.lr).collect();
    lrs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    lrs.dedup();
    let cells = lrs
        .iter()
        .map(|&lr| {
            bss.iter()
                .map(|&bs| {
                    let v: Vec<Option<f64>> = runs
                        .iter()
                        .filter(|r| r.summary.batch_size == bs && r.summary.lr == lr)
                        .map(|r| m.to_target(&r.summary))
                        .collect();
                    if v.is_empty() || v.iter().any(|x| x.is_none()) {
                        None
                    } else {
                        Some(v.iter().flatten().sum::<f64>() / v.len() as f64)
                    }
                })
                .collect()
        })
        .collect();
    (bss.iter().map(|b| b.to_string()).collect(), lrs.iter().map(|l| l.to_string()).collect(), cells)
}

/// Cost per epoch vs batch size, one series per learning rate (mean over seeds), and the batch sizes.
fn per_epoch_series(runs: &[&Run], m: Metric) -> (Vec<Series>, Vec<f64>) {
    let mut by_lr: BTreeMap<u32, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for r in runs {
        if let Some(v) = m.per_epoch(&r.summary) {
            by_lr.entry(r.summary.lr.to_bits()).or_default().entry(r.summary.batch_size).or_default().push(v);
        }
    }
    let mut at: Vec<f64> = by_lr.values().flat_map(|p| p.keys().map(|b| *b as f64)).collect();
    at.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    at.dedup();
    let mut v: Vec<(f32, Series)> = by_lr
        .into_iter()
        .map(|(lr, pts)| {
            let lr = f32::from_bits(lr);
            let points = pts.into_iter().map(|(bs, v)| (bs as f64, v.iter().sum::<f64>() / v.len() as f64)).collect();
            (lr, Series { name: format!("lr {lr}"), points })
        })
        .collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    (v.into_iter().map(|x| x.1).collect(), at)
}

/// Validation accuracy vs cumulative cost per run, from epochs.csv (a damaged one becomes a warning).
fn acc_series(runs: &[Run], m: Metric, warnings: &mut Vec<String>) -> Vec<Series> {
    let mut out = Vec::new();
    for r in runs {
        let rows = match load::epochs(&r.dir) {
            Ok(rows) => rows,
            Err(e) => {
                warnings.push(format!("WARNING: {e:#}; run {} is left out of the accuracy plot", r.id));
                continue;
            }
        };
        let cost = |row: &crate::rundir::EpochRow| match m {
            Metric::Energy { .. } => row.cum_energy_j,
            Metric::Time => Some(row.cum_wall_s),
        };
        let points: Vec<(f64, f64)> = rows.iter().filter_map(|row| Some((cost(row)?, row.val_acc?))).collect();
        if !points.is_empty() {
            out.push(Series { name: r.id.clone(), points });
        }
    }
    out
}

/// The run the power timeline and the kernels are about: the longest (most steps; ties: the first).
pub(super) fn focus_run(runs: &[Run]) -> Option<&Run> {
    runs.iter().rev().max_by_key(|r| r.summary.steps)
}

/// Power per step (energy_j / window_s), averaged over bins so that at most 2000 points are drawn, and a
/// marker at each epoch's last step.
fn power_series(run: &Run) -> anyhow::Result<(Vec<Series>, Vec<VLine>)> {
    let st: Vec<(f64, f64, f64)> =
        load::steps(&run.dir)?.into_iter().filter_map(|(t, w, e)| Some((t, w, e?))).filter(|x| x.1 > 0.0).collect();
    let bin = st.len().div_ceil(2000).max(1);
    let points = st
        .chunks(bin)
        .map(|c| {
            let (w, e) = c.iter().fold((0.0, 0.0), |(w, e), x| (w + x.1, e + x.2));
            (c[c.len() - 1].0, e / w)
        })
        .collect();
    let marks = load::epochs(&run.dir)
        .unwrap_or_default()
        .iter()
        .map(|e| VLine { x: e.cum_wall_s, label: format!("end of epoch {}", e.epoch) })
        .collect();
    Ok((vec![Series { name: format!("{} ({})", run.id, run.summary.energy_source), points }], marks))
}

/// Cumulative cost vs number of reuses: scratch n*E_s, fine-tune and frozen E_pre + n*E_reuse.
fn break_even_plot(p: &PretrainResult, method: &Method) -> (String, Option<String>) {
    let m = p.metric;
    let (u, name) = (m.unit(), m.name());
    let cap = format!("Break-even: cumulative {name} vs number of reuses ({u}){}", method.suffix());
    let reuse = |w: &str| p.mean_reuse.get(w).copied().flatten();
    let (Some(pre), Some(sc)) = (p.mean_pretrain, reuse("scratch")) else { return (cap, None) };
    let mut n_max: f64 = 10.0;
    for w in ["finetune", "frozen"] {
        if let Some(r) = reuse(w) {
            if sc > r {
                n_max = n_max.max((2.0 * pre / (sc - r)).ceil());
            }
        }
    }
    let n_max = n_max.min(100.0) as usize;
    let mut series =
        vec![Series { name: "scratch".into(), points: (0..=n_max).map(|n| (n as f64, n as f64 * sc)).collect() }];
    for (w, label) in [("finetune", "pretrain + fine-tune"), ("frozen", "pretrain + frozen encoder")] {
        if let Some(r) = reuse(w) {
            series.push(Series {
                name: label.into(),
                points: (0..=n_max).map(|n| (n as f64, pre + n as f64 * r)).collect(),
            });
        }
    }
    let y = format!("cumulative {name} ({u})");
    let svg = Lines {
        caption: &cap,
        x_desc: "reuses (downstream trainings)",
        y_desc: &y,
        series: &series,
        log_x: false,
        x_at: None,
        vlines: &[],
    }
    .svg();
    (cap, svg)
}

/// Multi-task network vs the single-task networks (mean over seeds). A network that did not reach every target
/// on every seed is a lower bound: its bar says "not reached, ≥" and the caption names it; no cost at all shows
/// "not reached" in place of the bar.
fn multitask_plot(v: &MultitaskResult, method: &Method) -> (String, Option<String>) {
    let m = v.metric;
    let (u, name) = (m.unit(), m.name());
    let mean = |vals: Vec<f64>| (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
    let reached = |n: Option<&crate::study::multitask::NetCost>| n.is_some_and(|n| n.all_reached);
    let multi_ok = v.seeds.iter().all(|s| reached(s.multi.as_ref()));
    let single_ok = |i: usize| v.seeds.iter().all(|s| reached(s.singles.get(i).and_then(|n| n.as_ref())));
    let mut sides = vec![
        (format!("multi-task ({} outputs)", v.tasks.len()), v.mean_multi, multi_ok),
        ("single-task total".to_string(), v.mean_singles, (0..v.tasks.len()).all(single_ok)),
    ];
    for (i, task) in v.tasks.iter().enumerate() {
        let vals: Vec<f64> = v.seeds.iter().filter_map(|s| s.singles.get(i)?.as_ref()?.cost).collect();
        sides.push((format!("single {task}"), mean(vals), single_ok(i)));
    }
    // A side that did not reach is said in the caption too, not only on its bar.
    let unreached: Vec<&str> = sides.iter().filter(|s| !s.2 || s.1.is_none()).map(|s| s.0.as_str()).collect();
    let bars: Vec<Bar> = sides
        .iter()
        .map(|(label, value, ok)| Bar {
            label: if *ok || value.is_none() { label.clone() } else { format!("{label} (not reached, ≥)") },
            value: *value,
            err: None,
            missing: "not reached".into(),
        })
        .collect();
    let not_reached =
        if unreached.is_empty() { String::new() } else { format!("; not reached: {}", unreached.join(", ")) };
    let cap = format!(
        "Multi-task vs single-task networks: {name} until every attribute reaches its target ({u}){not_reached}{}",
        method.suffix()
    );
    let svg = svg::hbars(&cap, &format!("{name} ({u})"), u, &bars);
    (cap, svg)
}

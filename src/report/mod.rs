//! Reports: `report.html` (self-contained, SVGs inline) and `report.md` (+ the .svg files) for study and run
//! directories. Plots: energy-to-target heatmap over batch size x learning rate, energy per epoch vs batch
//! size, accuracy vs cumulative energy, a power timeline, per-kernel energy, break-even curves and
//! multi-task vs single-task bars. With an `estimate` energy source everything says "ESTIMATE (not
//! measured)"; with `none` time is plotted instead of energy, and the report says so. Runs measured on
//! different machines (host, GPU UUID, driver) are listed per machine and flagged.
pub mod load;
pub mod plots;

use crate::study::multitask::MultitaskResult;
use crate::study::pretrain::PretrainResult;
use crate::study::{fmt_num, md_table, mixed_sources, Machine, Metric};
use anyhow::{Context, Result};
use load::{Inputs, Run};
use plots::Series;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `write_report` wrote.
#[derive(Debug)]
pub struct ReportFiles {
    pub html: PathBuf,
    pub md: PathBuf,
    /// (file name, caption) of each SVG plot.
    pub plots: Vec<(String, String)>,
    /// Warnings shown at the top of the report.
    pub warnings: Vec<String>,
}

enum Block {
    Md(String),
    Plot { file: String, caption: String, svg: String },
}

/// The metric's suffix for captions and axis names.
fn tag(m: Metric) -> &'static str {
    match m {
        Metric::Energy { estimate: true } => " [ESTIMATE (not measured)]",
        Metric::Energy { estimate: false } => "",
        Metric::Time => " [time: no energy readings]",
    }
}

/// Write report.html, report.md and the SVGs into `out` (default: the first directory).
pub fn write_report(dirs: &[PathBuf], out: Option<&Path>) -> Result<ReportFiles> {
    let inp = load::load(dirs)?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dirs[0].clone());
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create the report folder (--out)", out.display()))?;
    let metric = Metric::of(inp.runs.iter().map(|r| &r.summary));
    let mut machines: BTreeMap<Machine, Vec<String>> = BTreeMap::new();
    for r in &inp.runs {
        machines.entry(r.machine.clone()).or_default().push(r.id.clone());
    }
    let protocols = protocols(&inp);
    let mut warnings = input_warnings(&inp, machines.len(), &protocols);
    // Plots first: a damaged file behind one is said at the top, not drawn with holes.
    let plots = plot_blocks(&inp, metric, &mut warnings)?;
    let mut blocks = vec![Block::Md(head(dirs, &inp, metric, &protocols, &warnings))];
    blocks.extend(table_blocks(&inp, metric, &machines));
    blocks.push(Block::Md("## Plots\n\n".into()));
    blocks.extend(plots);
    let (hp, mp) = (out.join("report.html"), out.join("report.md"));
    let r = render(&blocks, &out)?;
    crate::util::write_atomic(&hp, r.html.as_bytes())?;
    crate::util::write_atomic(&mp, r.md.as_bytes())?;
    Ok(ReportFiles { html: hp, md: mp, plots: r.plots, warnings })
}

/// The protocol versions of the runs and studies, sorted.
fn protocols(inp: &Inputs) -> Vec<u32> {
    let mut protocols: Vec<u32> = inp.runs.iter().map(|r| r.summary.protocol).collect();
    protocols.extend(inp.studies.iter().filter_map(|s| s.manifest.as_ref().map(|m| m.protocol)));
    protocols.sort();
    protocols.dedup();
    protocols
}

/// Mixed energy sources, machines or protocol versions.
fn input_warnings(inp: &Inputs, machines: usize, protocols: &[u32]) -> Vec<String> {
    let mut warnings: Vec<String> = Vec::new();
    warnings.extend(mixed_sources(inp.runs.iter().map(|r| &r.summary)));
    if machines > 1 {
        warnings.push(format!(
            "WARNING: these results come from {machines} different machines (host / GPU UUID / driver); they are \
             grouped by machine below; compare across machines with care"
        ));
    }
    if protocols.len() > 1 {
        warnings.push(format!("WARNING: results from different protocol versions ({protocols:?}) are mixed"));
    }
    warnings
}

/// The report's title, inputs, counts and warnings.
fn head(dirs: &[PathBuf], inp: &Inputs, metric: Metric, protocols: &[u32], warnings: &[String]) -> String {
    let mut head = String::from("# powertrain report\n\n");
    head +=
        &format!("Inputs: {}.\n\n", dirs.iter().map(|d| format!("`{}`", d.display())).collect::<Vec<_>>().join(", "));
    head += &format!(
        "Runs: {} finished, {} failed. Protocol version {:?}.\n\n",
        inp.runs.len(),
        inp.failed.len(),
        protocols
    );
    if !metric.note().is_empty() {
        head += &format!("**{}**\n\n", metric.note());
    }
    for w in warnings {
        head += &format!("**{w}**\n\n");
    }
    head
}

/// Machines, then the studies' own tables, then every run, the energy accounting and the failed runs.
fn table_blocks(inp: &Inputs, metric: Metric, machines: &BTreeMap<Machine, Vec<String>>) -> Vec<Block> {
    let mrows: Vec<Vec<String>> = machines
        .iter()
        .map(|(m, ids)| {
            vec![
                if m.host.is_empty() { "?".into() } else { m.host.clone() },
                m.gpu_name.clone(),
                m.gpu_uuid.clone(),
                m.driver.clone(),
                ids.len().to_string(),
            ]
        })
        .collect();
    let mut blocks = vec![Block::Md(format!(
        "## Machines\n\n{}\n",
        md_table(&["host", "device", "GPU UUID", "driver", "runs"], &mrows)
    ))];
    for s in &inp.studies {
        for t in &s.tables {
            let demoted: String =
                t.lines().map(|l| if l.starts_with('#') { format!("#{l}\n") } else { format!("{l}\n") }).collect();
            blocks.push(Block::Md(demoted + "\n"));
        }
    }
    blocks.push(Block::Md(runs_table(inp, metric, machines)));
    if let Some(t) = energy_table(&inp.runs) {
        blocks.push(Block::Md(t));
    }
    if !inp.failed.is_empty() {
        let mut s = String::from("## Failed runs\n\n");
        for (id, e) in &inp.failed {
            s += &format!("- {id}: {e}\n");
        }
        blocks.push(Block::Md(s + "\n"));
    }
    blocks
}

/// Every plot the inputs allow, in the report's order; a run file a plot cannot read becomes a warning.
fn plot_blocks(inp: &Inputs, metric: Metric, warnings: &mut Vec<String>) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut add = |file: &str, caption: String, svg: Option<String>| {
        if let Some(svg) = svg {
            blocks.push(Block::Plot { file: file.to_string(), caption, svg });
        }
    };
    let sweep_runs: Vec<&Run> = inp.runs.iter().filter(|r| r.kind.as_deref().is_none_or(|k| k == "sweep")).collect();
    let (u, name) = (metric.unit(), metric.name());
    let t = tag(metric);
    if distinct(&sweep_runs, |r| (r.summary.batch_size, r.summary.lr.to_bits())) >= 2 {
        let (xl, yl, cells) = heatmap_cells(&sweep_runs, metric);
        let cap = format!("{} to target over batch size x learning rate ({u}; n/r = not reached){t}", cap1(name));
        add("heatmap.svg", cap.clone(), plots::heatmap(&cap, "batch size", "learning rate", &xl, &yl, &cells)?);
        let series = per_epoch_series(&sweep_runs, metric);
        let cap = format!("{} per epoch vs batch size ({u}){t}", cap1(name));
        add(
            "energy_per_epoch.svg",
            cap.clone(),
            plots::lines(&cap, "batch size", &format!("{name} per epoch ({u})"), &series, true)?,
        );
    }
    let acc = acc_series(&inp.runs, metric, warnings);
    let cap = format!("Validation accuracy vs cumulative {name} ({u}){t}");
    add(
        "acc_vs_energy.svg",
        cap.clone(),
        plots::lines(&cap, &format!("cumulative {name} ({u})"), "validation accuracy", &acc, false)?,
    );
    // The run whose power and kernels are plotted.
    if let Some(run) = focus_run(&inp.runs, metric) {
        if let Metric::Energy { .. } = metric {
            let cap = format!("Power per step, run {} (energy_j / window_s, W){t}", run.id);
            match power_series(run) {
                Ok(s) => add(
                    "power_timeline.svg",
                    cap.clone(),
                    plots::lines(&cap, "time since start (s)", "power (W)", &s, false)?,
                ),
                Err(e) => warnings.push(format!("WARNING: {e:#}; the power timeline of run {} is left out", run.id)),
            }
        }
        match load::kernels(&run.dir) {
            Ok(rows) => {
                let (cap, svg) = kernels_plot(run, rows, metric)?;
                add("kernels.svg", cap, svg);
            }
            Err(e) => warnings.push(format!("WARNING: {e:#}; the per-kernel plot of run {} is left out", run.id)),
        }
    }
    for s in &inp.studies {
        if let Some(p) = &s.pretrain {
            let (cap, svg) = break_even_plot(p)?;
            add("break_even.svg", cap, svg);
        }
        if let Some(m) = &s.multitask {
            let (cap, svg) = multitask_plot(m)?;
            add("multitask.svg", cap, svg);
        }
    }
    Ok(blocks)
}

/// The largest kernels of `run` (energy, or GPU time without energy readings), at most 15.
fn kernels_plot(run: &Run, rows: Vec<crate::energy::KernelRow>, metric: Metric) -> Result<(String, Option<String>)> {
    let (u, name, t) = (metric.unit(), metric.name(), tag(metric));
    let mut ks: Vec<(String, Option<f64>)> = rows
        .into_iter()
        .map(|r| (r.name, if matches!(metric, Metric::Time) { r.gpu_time_s } else { r.energy_j }))
        .collect();
    ks.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    ks.truncate(15);
    let cap = format!("Per-kernel {name}, run {} ({u}){t}", run.id);
    let svg = plots::bars(&cap, "kernel", &format!("{name} ({u})"), &ks)?;
    Ok((cap, svg))
}

/// The report's texts and its plots' (file, caption).
struct Rendered {
    md: String,
    html: String,
    plots: Vec<(String, String)>,
}

/// report.md and report.html from the blocks; each plot's SVG is written beside them (and inlined in the
/// HTML).
fn render(blocks: &[Block], out: &Path) -> Result<Rendered> {
    let mut md = String::new();
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>powertrain report</title><style>\
         body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}\
         .warn{color:#a00;font-weight:bold}figure{margin:1.5em 0}figcaption{font-size:13px}</style></head><body>\n",
    );
    let mut plots_written = Vec::new();
    for b in blocks {
        match b {
            Block::Md(t) => {
                md += t;
                html += &md_to_html(t);
            }
            Block::Plot { file, caption, svg } => {
                crate::util::write_atomic(&out.join(file), svg.as_bytes())?;
                md += &format!("![{caption}]({file})\n\n{caption}\n\n");
                let inline = svg.find("<svg").map(|i| &svg[i..]).unwrap_or(svg);
                html += &format!("<figure>{inline}<figcaption>{}</figcaption></figure>\n", esc(caption));
                plots_written.push((file.clone(), caption.clone()));
            }
        }
    }
    html += "</body></html>\n";
    Ok(Rendered { md, html, plots: plots_written })
}

fn cap1(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn distinct<K: Ord>(runs: &[&Run], f: impl Fn(&Run) -> K) -> usize {
    let mut v: Vec<K> = runs.iter().map(|r| f(r)).collect();
    v.sort();
    v.dedup();
    v.len()
}

fn runs_table(inp: &Inputs, metric: Metric, machines: &BTreeMap<Machine, Vec<String>>) -> String {
    let mut s = String::from("## Runs\n\n");
    let u = metric.unit();
    let h_to = format!("{} to target ({u})", metric.name());
    let h_total = format!("total {} ({u})", metric.name());
    for m in machines.keys() {
        if machines.len() > 1 {
            s += &format!("### {}\n\n", m.label());
        }
        let rows: Vec<Vec<String>> = inp
            .runs
            .iter()
            .filter(|r| &r.machine == m)
            .map(|r| {
                let x = &r.summary;
                vec![
                    r.id.clone(),
                    x.model.clone(),
                    x.batch_size.to_string(),
                    x.lr.to_string(),
                    x.seed.to_string(),
                    x.epochs.to_string(),
                    x.stop_reason.clone(),
                    fmt_num(x.final_val_acc),
                    if x.target_acc.is_some() && !x.target_reached {
                        "not reached".into()
                    } else {
                        fmt_num(metric.to_target(x))
                    },
                    fmt_num(metric.total(x)),
                    x.energy_source.clone(),
                ]
            })
            .collect();
        s += &md_table(
            &[
                "run",
                "model",
                "batch",
                "lr",
                "seed",
                "epochs",
                "stop",
                "final val acc",
                &h_to,
                &h_total,
                "energy source",
            ],
            &rows,
        );
        s += "\n";
    }
    s
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

/// Cost per epoch vs batch size, one series per learning rate (mean over seeds).
fn per_epoch_series(runs: &[&Run], m: Metric) -> Vec<Series> {
    let mut by_lr: BTreeMap<u32, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for r in runs {
        if let Some(v) = m.per_epoch(&r.summary) {
            by_lr.entry(r.summary.lr.to_bits()).or_default().entry(r.summary.batch_size).or_default().push(v);
        }
    }
    let mut v: Vec<(f32, Series)> = by_lr
        .into_iter()
        .map(|(lr, pts)| {
            let lr = f32::from_bits(lr);
            let points = pts.into_iter().map(|(bs, v)| (bs as f64, v.iter().sum::<f64>() / v.len() as f64)).collect();
            (lr, Series { name: format!("lr {lr}"), points })
        })
        .collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    v.into_iter().map(|x| x.1).collect()
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

/// How each metered run's energy is accounted for: source, total, idle (static) and active split, how much of
/// the total the step and evaluation windows hold (closure), host time folded into them, the counter's gap to
/// integrated power, the sensor's update period, and the first prediction's error. None without such runs.
fn energy_table(runs: &[Run]) -> Option<String> {
    let f = crate::util::fmt_fixed;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r.summary.energy_source != "none")
        .map(|r| {
            let s = &r.summary;
            let c = s.energy_context.totals();
            let readings = c.and_then(|c| c.power_check.as_ref()).map(|p| p.readings.as_slice()).unwrap_or_default();
            let gaps: Vec<String> = readings
                .iter()
                .filter_map(|x| {
                    let g = x.gap_rel?;
                    let what = if x.reading.contains("186") { "instant" } else { "samples" };
                    Some(format!("{what} {:+.1} %", 100.0 * g))
                })
                .collect();
            let label = if s.energy_source == "estimate" { " (not measured)" } else { "" };
            vec![
                r.id.clone(),
                format!("{}{label}", s.energy_source),
                f(s.total_energy_j, 1),
                f(s.idle_power_w, 1),
                f(s.idle_j, 1),
                f(s.active_j, 1),
                f(c.and_then(|c| c.closure).map(|x| 100.0 * x), 2),
                f(c.map(|c| c.gap_s), 2),
                if gaps.is_empty() { "-".into() } else { gaps.join(", ") },
                f(c.and_then(|c| c.update_period_s).map(|x| 1e3 * x), 0),
                f(s.prediction["energy_error_pct"].as_f64(), 1),
            ]
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "## Energy accounting\n\nTotal = the sensor's run total (first step to last evaluation). Static = idle power \
         measured before the run x run time; active = total - static. Windows = the share of the total that the step \
         and evaluation windows hold (contiguous windows: 100 % up to the counter's last update); host gaps = host \
         time folded into those windows. Power check = integrated power readings vs the counter over the same \
         window. Prediction = the first prediction's energy error.\n\n{}\n",
        crate::study::md_table(
            &[
                "run",
                "source",
                "total (J)",
                "idle (W)",
                "static (J)",
                "active (J)",
                "windows (%)",
                "host gaps (s)",
                "power check",
                "update (ms)",
                "prediction err (%)",
            ],
            &rows
        )
    ))
}

/// The run whose power timeline and kernels are shown: the only run, else the cheapest to reach its
/// target, else the first.
fn focus_run(runs: &[Run], m: Metric) -> Option<&Run> {
    runs.iter()
        .filter(|r| m.to_target(&r.summary).is_some())
        .min_by(|a, b| {
            m.to_target(&a.summary).partial_cmp(&m.to_target(&b.summary)).unwrap_or(std::cmp::Ordering::Equal)
        })
        .or_else(|| runs.first())
}

/// Power per step (energy_j / window_s), averaged over bins so that at most 2000 points are drawn.
fn power_series(run: &Run) -> Result<Vec<Series>> {
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
    Ok(vec![Series { name: format!("{} ({})", run.id, run.summary.energy_source), points }])
}

/// Cumulative cost vs number of reuses: scratch n*E_s, fine-tune and frozen E_pre + n*E_reuse.
fn break_even_plot(p: &PretrainResult) -> Result<(String, Option<String>)> {
    let m = p.metric;
    let (u, name, t) = (m.unit(), m.name(), tag(m));
    let cap = format!("Break-even: cumulative {name} vs number of reuses ({u}){t}");
    let reuse = |w: &str| p.mean_reuse.get(w).copied().flatten();
    let (Some(pre), Some(sc)) = (p.mean_pretrain, reuse("scratch")) else { return Ok((cap, None)) };
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
    let svg = plots::lines(&cap, "reuses (downstream trainings)", &format!("cumulative {name} ({u})"), &series, false)?;
    Ok((cap, svg))
}

/// Multi-task network vs the single-task networks (mean over seeds).
fn multitask_plot(v: &MultitaskResult) -> Result<(String, Option<String>)> {
    let m = v.metric;
    let (u, name, t) = (m.unit(), m.name(), tag(m));
    let cap = format!("Multi-task vs single-task networks: {name} until every attribute reaches its target ({u}){t}");
    let mean = |vals: Vec<f64>| (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
    let mut bars = vec![
        (format!("multi-task ({} outputs)", v.tasks.len()), v.mean_multi),
        ("single-task total".to_string(), v.mean_singles),
    ];
    for (i, task) in v.tasks.iter().enumerate() {
        let vals: Vec<f64> = v.seeds.iter().filter_map(|s| s.singles.get(i)?.as_ref()?.cost).collect();
        bars.push((format!("single {task}"), mean(vals)));
    }
    let svg = plots::bars(&cap, "network", &format!("{name} ({u})"), &bars)?;
    Ok((cap, svg))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Inline markdown: `code` and **bold**.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split("**").enumerate() {
        if i % 2 == 1 {
            out += &format!("<b>{part}</b>");
        } else {
            for (j, p) in part.split('`').enumerate() {
                out += &if j % 2 == 1 { format!("<code>{p}</code>") } else { p.to_string() };
            }
        }
    }
    out
}

/// The small markdown subset this module writes: headings, tables, list items, paragraphs.
fn md_to_html(md: &str) -> String {
    let mut html = String::new();
    let mut lines = md.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(h) = t.strip_prefix('#') {
            let level = 1 + h.chars().take_while(|c| *c == '#').count();
            html += &format!("<h{level}>{}</h{level}>\n", inline(h.trim_start_matches('#').trim()));
        } else if t.starts_with('|') {
            let cells =
                |l: &str| -> Vec<String> { l.trim().trim_matches('|').split('|').map(|c| inline(c.trim())).collect() };
            html += "<table>\n<tr>";
            for c in cells(t) {
                html += &format!("<th>{c}</th>");
            }
            html += "</tr>\n";
            while let Some(n) = lines.peek() {
                if !n.trim().starts_with('|') {
                    break;
                }
                let n = lines.next().unwrap_or_default();
                if n.contains("---") {
                    continue;
                }
                html += "<tr>";
                for c in cells(n) {
                    html += &format!("<td>{c}</td>");
                }
                html += "</tr>\n";
            }
            html += "</table>\n";
        } else if let Some(item) = t.strip_prefix("- ") {
            html += &format!("<ul><li>{}</li></ul>\n", inline(item));
        } else if t.contains("ESTIMATE") || t.contains("WARNING") || t.contains("no energy readings") {
            html += &format!("<p class=\"warn\">{}</p>\n", inline(t));
        } else {
            html += &format!("<p>{}</p>\n", inline(t));
        }
    }
    html
}

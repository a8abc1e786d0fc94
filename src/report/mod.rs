//! Reports: `report.html` (self-contained, SVGs inline) and `report.md` (+ the .svg files) for study and run
//! directories. Plots (`charts.rs`, drawn by `svg.rs`): energy-to-target heatmap over batch size x learning
//! rate, energy per epoch vs batch size, accuracy vs cumulative energy, a power timeline, per-kernel energy,
//! break-even curves and multi-task vs single-task bars; with `--per-kernel` runs, "where the joules go"
//! (`teach.rs`). Every title says how its numbers were obtained (`Method`): measured (the sensor), estimate
//! (no sensor), sim, or time (energy source `none`). Markdown becomes HTML through pulldown-cmark. Runs
//! measured on different machines (host, GPU UUID, driver) are listed per machine and flagged.
pub mod bench;
pub mod charts;
pub mod findings;
pub mod load;
pub mod roofline;
pub mod svg;
mod tables;
pub mod teach;
pub mod text;
pub mod timeline;

use crate::study::{mixed_sources, Machine, Metric};
use anyhow::{Context, Result};
use load::Inputs;
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
    /// Pages written beside the report (one per `--per-kernel` run: "where the joules go").
    pub pages: Vec<PathBuf>,
}

pub(crate) enum Block {
    Md(String),
    /// A warning paragraph (markdown in report.md, `<p class="warn">` in the HTML).
    Warn(String),
    Plot {
        file: String,
        caption: String,
        svg: String,
        about: String,
    },
}

/// How the report's numbers were obtained, for every title and the first screen.
#[derive(Clone, Debug)]
pub struct Method {
    pub label: String,
}

/// An energy source as a reader should see it.
pub fn source_label(source: &str) -> String {
    match source {
        "estimate" => "estimate (no sensor)".into(),
        "sim" => "sim (simulated GPU counter)".into(),
        "none" => "none (time only)".into(),
        s => format!("measured ({s})"),
    }
}

impl Method {
    /// From the runs' energy sources: one label per distinct source, joined.
    pub fn of(inp: &Inputs, metric: Metric) -> Method {
        if matches!(metric, Metric::Time) {
            return Method { label: "time (no energy readings)".into() };
        }
        let mut labels: Vec<String> = inp.runs.iter().map(|r| source_label(&r.summary.energy_source)).collect();
        labels.sort();
        labels.dedup();
        let label = if labels.is_empty() { "no runs".into() } else { labels.join(" + ") };
        Method { label }
    }

    /// The part of a title after the caption.
    pub fn suffix(&self) -> String {
        format!(" [{}]", self.label)
    }
}

/// Write report.html, report.md and the SVGs into `out` (default: the first directory).
pub fn write_report(dirs: &[PathBuf], out: Option<&Path>) -> Result<ReportFiles> {
    let inp = load::load(dirs)?;
    // A bench JSON file given first: the report goes beside it.
    let first =
        if dirs[0].is_file() { dirs[0].parent().map(Path::to_path_buf).unwrap_or_default() } else { dirs[0].clone() };
    let out = out.map(Path::to_path_buf).unwrap_or(first);
    std::fs::create_dir_all(&out)
        .with_context(|| format!("{}: cannot create the report folder (--out)", out.display()))?;
    let metric = Metric::of(inp.runs.iter().map(|r| &r.summary));
    let method = Method::of(&inp, metric);
    let mut machines: BTreeMap<Machine, Vec<String>> = BTreeMap::new();
    for r in &inp.runs {
        machines.entry(r.machine.clone()).or_default().push(r.id.clone());
    }
    let protocols = protocols(&inp);
    let mut warnings = input_warnings(&inp, machines.len(), &protocols);
    // Plots first: a damaged file behind one is said at the top, not drawn with holes.
    let plots = charts::plot_blocks(&inp, metric, &method, &mut warnings);
    let mut blocks = head(dirs, &inp, metric, &method, &warnings);
    if !(inp.runs.is_empty() && inp.studies.is_empty() && inp.failed.is_empty()) {
        blocks.extend(tables::table_blocks(&inp, metric, &machines));
    }
    let pages = teach::pages(&inp, &out, &mut blocks)?;
    if !plots.is_empty() {
        blocks.push(Block::Md("## Plots\n\n".into()));
        blocks.extend(plots);
    }
    if !inp.benches.is_empty() {
        blocks.extend(bench::blocks(&inp.benches));
    }
    let (hp, mp) = (out.join("report.html"), out.join("report.md"));
    let r = render(&blocks, &out, "powertrain report")?;
    crate::util::write_atomic(&hp, r.html.as_bytes())?;
    crate::util::write_atomic(&mp, r.md.as_bytes())?;
    Ok(ReportFiles { html: hp, md: mp, plots: r.plots, warnings, pages })
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

/// The report's first screen: title, what was measured and how, the main result, inputs, warnings.
fn head(dirs: &[PathBuf], inp: &Inputs, metric: Metric, method: &Method, warnings: &[String]) -> Vec<Block> {
    let mut head = String::from("# powertrain report\n\n");
    let study_findings = findings::of_studies(&inp.studies);
    let bench_only = inp.runs.is_empty() && inp.failed.is_empty() && !inp.benches.is_empty();
    if bench_only {
        let (what, result) = bench::head(&inp.benches);
        head += &format!("**What was measured:** {what}\n\n**Main result:** {result}\n\n");
    } else {
        head += &format!("**What was measured:** {}\n\n", measured(inp, method));
    }
    if bench_only {
        // The kernel benchmark's result is above.
    } else if study_findings.is_empty() {
        head += &format!("**Main result:** {}\n\n", main_result(inp, metric));
    } else {
        head += "**Main result** (each study's finding, ours beside the paper's; intervals are 95 % over seeds, a \
                 side that did not reach its target makes the finding a bound):\n\n";
        for f in &study_findings {
            head += &format!("- {}\n", f.line());
        }
        head += &format!("\nCheapest single run: {}\n\n", main_result(inp, metric));
    }
    if let Some(c) = carbon_line(inp) {
        head += &format!("**Carbon:** {c}\n\n");
    }
    let inputs = dirs.iter().map(|d| format!("`{}`", d.display())).collect::<Vec<_>>().join(", ");
    head += &if inp.runs.is_empty() && inp.failed.is_empty() {
        // Kernel benchmarks only: no training runs to count.
        format!("Inputs: {inputs}.\n\n")
    } else {
        format!(
            "Inputs: {inputs}. Runs: {} finished, {} failed. Protocol version {:?}.\n\n",
            inp.runs.len(),
            inp.failed.len(),
            protocols(inp)
        )
    };
    let mut blocks = vec![Block::Md(head)];
    if matches!(metric, Metric::Time) && !bench_only {
        blocks.push(Block::Warn(metric.note().to_string()));
    }
    if let Some(e) = estimate_note(inp) {
        blocks.push(Block::Warn(e));
    }
    blocks.extend(warnings.iter().map(|w| Block::Warn(w.clone())));
    blocks
}

/// "N runs of MODEL on DEVICE; energy: METHOD".
fn measured(inp: &Inputs, method: &Method) -> String {
    let mut models: Vec<String> = inp
        .runs
        .iter()
        .map(|r| format!("{} on {} ({})", r.summary.model, r.summary.device, r.summary.device_name))
        .collect();
    models.sort();
    models.dedup();
    let kinds: Vec<String> = inp.studies.iter().filter_map(|s| s.manifest.as_ref().map(|m| m.kind.clone())).collect();
    let study = if kinds.is_empty() { String::new() } else { format!(" in a {} study", kinds.join(" + ")) };
    format!(
        "{} training run(s){study} of {}; energy: {}.",
        inp.runs.len(),
        if models.is_empty() { "nothing".into() } else { models.join(", ") },
        method.label
    )
}

/// One run's carbon, or the runs' summed carbon (or why it is not summed); None when no run carries carbon.
fn carbon_line(inp: &Inputs) -> Option<String> {
    match inp.runs.as_slice() {
        [r] => findings::carbon_text(r),
        _ => findings::carbon_total(inp),
    }
}

/// The cheapest run to its target, else the run with the lowest total.
fn main_result(inp: &Inputs, metric: Metric) -> String {
    let (u, name) = (metric.unit(), metric.name());
    let f = |v: Option<f64>| svg::fmt(v.unwrap_or(f64::NAN));
    let best =
        inp.runs.iter().filter_map(|r| Some((r, metric.to_target(&r.summary)?))).min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((r, v)) = best {
        let s = &r.summary;
        return format!(
            "the cheapest run to the target accuracy {} is `{}` (batch {}, lr {}): {} {u} of {name} in {} epoch(s).",
            f(s.target_acc),
            r.id,
            s.batch_size,
            s.lr,
            svg::fmt(v),
            s.epochs_to_target.unwrap_or(s.epochs)
        );
    }
    match inp.runs.iter().min_by(|a, b| {
        metric.total(&a.summary).unwrap_or(f64::MAX).total_cmp(&metric.total(&b.summary).unwrap_or(f64::MAX))
    }) {
        Some(r) => format!(
            "run `{}` used {} {u} of {name} over {} steps ({} epochs; final validation accuracy {}).",
            r.id,
            f(metric.total(&r.summary)),
            r.summary.steps,
            r.summary.epochs,
            f(r.summary.final_val_acc)
        ),
        None => "no run finished.".into(),
    }
}

/// What an estimate means, when any run is one (the watts of the device power model and where they came from).
fn estimate_note(inp: &Inputs) -> Option<String> {
    let r = inp.runs.iter().find(|r| r.summary.energy_source == "estimate")?;
    let e = r.summary.energy_context.estimate.as_ref();
    let watts = e.and_then(|e| e.watts).map(|w| format!("{} W", svg::fmt(w))).unwrap_or_else(|| "? W".into());
    let note = e.map(|e| e.note.clone()).unwrap_or_default();
    Some(format!(
        "Energy here is an ESTIMATE (no sensor): {watts} x time ({note}). It shows the shape of the costs, not a \
         measurement; run on a machine with a readable sensor (NVML, RAPL) for measured joules."
    ))
}

/// The report's texts and its plots' (file, caption).
pub(crate) struct Rendered {
    pub md: String,
    pub html: String,
    pub plots: Vec<(String, String)>,
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;line-height:1.4}\
table{border-collapse:collapse;margin:1em 0;display:block;overflow-x:auto;max-width:100%}\
td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}.warn{color:#a00;font-weight:bold}\
figure{margin:1.5em 0}figcaption{font-size:13px;max-width:860px}svg{max-width:100%;height:auto}\
.about{font-size:14px;max-width:860px;color:#222}";

/// report.md and report.html from the blocks; each plot's SVG is written beside them (and inlined in the
/// HTML).
pub(crate) fn render(blocks: &[Block], out: &Path, title: &str) -> Result<Rendered> {
    let mut md = String::new();
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        svg::esc(title)
    );
    let mut plots_written = Vec::new();
    for b in blocks {
        match b {
            Block::Md(t) => {
                md += t;
                html += &md_to_html(t);
            }
            Block::Warn(t) => {
                md += &format!("**{t}**\n\n");
                let inner = md_to_html(t);
                let inner = inner.trim().trim_start_matches("<p>").trim_end_matches("</p>");
                html += &format!("<p class=\"warn\">{inner}</p>\n");
            }
            Block::Plot { file, caption, svg, about } => {
                crate::util::write_atomic(&out.join(file), svg.as_bytes())?;
                md += &format!("![{caption}]({file})\n\n{caption}\n\n{about}\n\n");
                html += &format!(
                    "<figure>{svg}<figcaption>{}</figcaption></figure>\n<div class=\"about\">{}</div>\n",
                    svg::esc(caption),
                    md_to_html(about)
                );
                plots_written.push((file.clone(), caption.clone()));
            }
        }
    }
    html += "</body></html>\n";
    Ok(Rendered { md, html, plots: plots_written })
}

/// Markdown (CommonMark with tables) to HTML through pulldown-cmark; raw HTML in the input is escaped.
pub fn md_to_html(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        e => e,
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

pub(crate) fn cap1(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_lists_tables_and_escaping() {
        let h = md_to_html("- a\n- b\n\n| x | y |\n|---|---|\n| 1 | <b>2</b> |\n");
        assert_eq!(h.matches("<ul>").count(), 1, "one list for two items: {h}");
        assert_eq!(h.matches("<li>").count(), 2);
        assert!(h.contains("<table>") && h.contains("<td>1</td>"), "{h}");
        assert!(h.contains("&lt;b&gt;2&lt;/b&gt;") && !h.contains("<b>2"), "{h}");
        assert!(md_to_html("**bold** `c`").contains("<strong>bold</strong> <code>c</code>"));
    }

    #[test]
    fn sources_are_labelled_for_readers() {
        assert_eq!(source_label("estimate"), "estimate (no sensor)");
        assert_eq!(source_label("nvml-counter"), "measured (nvml-counter)");
        assert_eq!(source_label("sim"), "sim (simulated GPU counter)");
    }
}

//! "Where the joules go": a section in the report and a page per run with `--per-kernel` (kernels.csv):
//! per kernel the launches, time, energy with its uncertainty, J per launch, J per GFLOP, and the share of
//! static (idle) vs dynamic energy; a step timeline showing the step windows the sensor's updates are split
//! over; plain-language explanations beside each.
//!
//! TODO(kernels.csv `bytes`): the energy roofline (J/FLOP vs arithmetic intensity) and J per GB moved need
//! the bytes each kernel moves, which kernels.csv does not record yet; until then the J/GFLOP bars stand in.
use super::load::{self, Inputs, Run};
use super::svg::{self, Bar, Lines, Series, VLine};
use super::{source_label, text, Block};
use crate::energy::KernelRow;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A run id as a file-name part (each run's page and SVGs have their own names in one folder).
fn file_id(id: &str) -> String {
    id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '.' && c != '-', "_")
}

/// Adds the section to `blocks` and writes one page per run with kernels; returns the pages.
pub(super) fn pages(inp: &Inputs, out: &Path, blocks: &mut Vec<Block>) -> Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    let mut links = Vec::new();
    for run in &inp.runs {
        let Ok(rows) = load::kernels(&run.dir) else { continue };
        if rows.is_empty() {
            continue;
        }
        let file = format!("joules_{}.html", file_id(&run.id));
        let page = run_blocks(run, &rows);
        let r = super::render(&page, out, &format!("where the joules go: {}", run.id))?;
        let path = out.join(&file);
        crate::util::write_atomic(&path, r.html.as_bytes())?;
        crate::util::write_atomic(&path.with_extension("md"), r.md.as_bytes())?;
        links.push(format!(
            "- [{}]({file}): {} kernels, {}",
            run.id,
            rows.len(),
            source_label(&run.summary.energy_source)
        ));
        pages.push(path);
    }
    if !links.is_empty() {
        blocks.push(Block::Md(format!(
            "## Where the joules go\n\nOne page per run trained with `--per-kernel`: every kernel's energy, its \
             static and dynamic share, and how a sensor that updates every few milliseconds is split over 1 ms \
             steps.\n\n{}\n\n",
            links.join("\n")
        )));
    }
    Ok(pages)
}

/// The blocks of one run's page.
fn run_blocks(run: &Run, rows: &[KernelRow]) -> Vec<Block> {
    let method = source_label(&run.summary.energy_source);
    let mut b = vec![Block::Md(format!(
        "# Where the joules go: run `{}`\n\n**Energy: {method}.** {} steps, {} epochs, total {} J.\n\n{}\n\n",
        run.id,
        run.summary.steps,
        run.summary.epochs,
        svg::fmt(run.summary.total_energy_j.unwrap_or(f64::NAN)),
        text::STATIC
    ))];
    if run.summary.energy_source == "estimate" {
        b.push(Block::Warn(
            "estimate (no sensor): every joule on this page is the device power model x time, not a reading".into(),
        ));
    }
    b.push(Block::Md(kernel_table(rows, run.summary.idle_power_w)));
    let t = format!(" [{method}]");
    let cap = format!("Joules per GFLOP per kernel (J/GFLOP; lower = more work per joule){t}");
    let bars: Vec<Bar> = rows
        .iter()
        .filter(|r| r.j_per_gflop.is_some())
        .map(|r| Bar { label: r.name.clone(), value: r.j_per_gflop, err: None, missing: "no FLOPs".into() })
        .collect();
    if let Some(svg) = svg::hbars(&cap, "J/GFLOP", "J/GFLOP", &bars) {
        b.push(Block::Plot {
            file: format!("jpergflop_{}.svg", file_id(&run.id)),
            caption: cap,
            svg,
            about: text::ROOFLINE.into(),
        });
    }
    if let Ok(st) = load::steps(&run.dir) {
        let cap = format!("Step timeline: the first steps' windows and energy (J per step){t}");
        let first: Vec<(f64, f64, Option<f64>)> = st.into_iter().take(40).collect();
        let series = vec![Series {
            name: "energy of the step window".into(),
            points: first.iter().filter_map(|(t, _, e)| Some((*t, (*e)?))).collect(),
        }];
        let marks: Vec<VLine> = first
            .iter()
            .enumerate()
            .map(|(i, (t, w, _))| VLine { x: *t, label: format!("step {} ends ({} s window)", i + 1, svg::fmt(*w)) })
            .collect();
        let svg = Lines {
            caption: &cap,
            x_desc: "time since start (s)",
            y_desc: "energy per step (J)",
            series: &series,
            log_x: false,
            x_at: None,
            vlines: &marks,
        }
        .svg();
        if let Some(svg) = svg {
            b.push(Block::Plot {
                file: format!("step_timeline_{}.svg", file_id(&run.id)),
                caption: cap,
                svg,
                about: text::TIMELINE.into(),
            });
        }
    }
    b
}

/// Per kernel: launches, time, energy ± uncertainty, J/launch, J/GFLOP, GFLOP, and the static share (idle
/// power x the kernel's time, over its energy).
fn kernel_table(rows: &[KernelRow], idle_w: Option<f64>) -> String {
    let f = |v: Option<f64>| v.map(svg::fmt).unwrap_or_else(|| "-".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let gflop = match (r.energy_j, r.j_per_gflop) {
                (Some(e), Some(j)) if j > 0.0 => Some(e / j),
                _ => None,
            };
            let stat = match (idle_w, r.gpu_time_s, r.energy_j) {
                (Some(w), Some(t), Some(e)) if e > 0.0 => Some((100.0 * w * t / e).min(100.0)),
                _ => None,
            };
            vec![
                r.name.clone(),
                r.launches.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                f(r.gpu_time_s),
                match (r.energy_j, r.energy_uncertainty_j) {
                    (Some(e), Some(u)) => format!("{} ± {}", svg::fmt(e), svg::fmt(u)),
                    (e, _) => f(e),
                },
                f(r.j_per_launch),
                f(r.j_per_gflop),
                f(gflop),
                f(stat),
                f(stat.map(|s| 100.0 - s)),
            ]
        })
        .collect();
    format!(
        "## Per kernel\n\nStatic = the idle power measured before the run x the kernel's time; dynamic = the rest \
         (`-` where the run has no idle baseline).\n\n{}\n",
        crate::study::md_table(
            &[
                "kernel",
                "launches",
                "time (s)",
                "energy (J)",
                "J/launch",
                "J/GFLOP",
                "GFLOP",
                "static (%)",
                "dynamic (%)"
            ],
            &cells
        )
    )
}

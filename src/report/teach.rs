//! "Where the joules go": a section in the report and a page per run with `--per-kernel` (kernels.csv):
//! per kernel the launches, time, energy with its uncertainty, J per launch, J per GFLOP, and the share of
//! static (idle) vs dynamic energy; a step timeline showing the step windows the sensor's updates are split
//! over; the energy roofline (`roofline.rs`: J/FLOP vs arithmetic intensity, the kernels' FLOPs and bytes from
//! the model's layer shapes, a fitted device model where the split was calibrated); plain-language
//! explanations beside each.
use super::load::{self, Inputs, Run};
use super::svg::{self, Bar, Series};
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
            about: text::JPERGFLOP.into(),
        });
    }
    b.extend(energy_roofline(run, rows, &t));
    b.extend(step_timeline(run, &t));
    b
}

/// The step timeline over one counter update interval (`timeline.rs` picks the steps and the updates).
fn step_timeline(run: &Run, t: &str) -> Vec<Block> {
    let Ok(Some(recs)) = crate::rundir::RunDir::new(&run.dir).steps() else { return vec![] };
    let period = run.summary.energy_context.totals().and_then(|c| c.update_period_s).filter(|p| *p > 0.0);
    let Some(tl) = super::timeline::pick(&recs, period) else { return vec![] };
    let cap = format!(
        "Step timeline: counter updates, the step windows between them, their kernels and the carried residual{}{t}",
        if tl.nominal { " (nominal 100 ms update period: this run recorded none)" } else { "" }
    );
    let svg = svg::Timeline {
        caption: &cap,
        steps: &tl.steps,
        updates: &tl.updates,
        residual: tl.residual,
        kernel_names: &tl.kernel_names,
    }
    .svg();
    let Some(svg) = svg else { return vec![] };
    vec![Block::Plot {
        file: format!("step_timeline_{}.svg", file_id(&run.id)),
        caption: cap,
        svg,
        about: format!("{} {}", text::TIMELINE, tl.summary()),
    }]
}

/// The energy roofline plot and the device model's line (or why there is none).
fn energy_roofline(run: &Run, rows: &[KernelRow], t: &str) -> Vec<Block> {
    use super::roofline::{calibrated, fit, model_line, points, step_work};
    let pts = points(rows, &step_work(&run.summary), run.summary.steps);
    if pts.is_empty() {
        return vec![Block::Md(
            "No energy roofline: no kernel with FLOPs has an energy (kernels.csv without energies, or a model \
             whose shapes this version does not know).\n\n"
                .into(),
        )];
    }
    let model = match (calibrated(rows), run.summary.idle_power_w) {
        (true, Some(w)) => fit(&pts, w),
        _ => None,
    };
    let note = match &model {
        Some(m) => format!(
            "**Device model** (fitted to this run's calibrated kernels, least squares on the dynamic energy): static \
             {} W (idle power measured before the run), {} pJ per FLOP, {} pJ per byte moved. The line is the \
             dynamic part, J/FLOP + (J/byte) / intensity; the points are each kernel's whole energy per FLOP, static \
             included, so they sit above it by the static share. Residual of the fit: {:.0} % of the kernels' dynamic              energy{}",
            svg::fmt(m.static_w),
            svg::fmt(m.j_per_flop * 1e12),
            svg::fmt(m.j_per_byte * 1e12),
            100.0 * m.rel_residual,
            if m.rel_residual > 0.3 {
                ": the two-number model does not describe these kernels well, so read the line as a summary of this \
                 run, not as a property of the device."
            } else {
                "."
            }
        ),
        None => "**Device model: none.** This run's per-kernel split was not calibrated (kernels.csv's method is \
                 not `calibrated`, or no idle power was measured), so no static watts, J per FLOP or J per byte \
                 are fitted: the points follow the time-proportional split. Run `powertrain bench kernels \
                 --energy` on this device, then train with `--per-kernel`, to get one."
            .into(),
    };
    let (lo, hi) = pts.iter().fold((f64::MAX, 0.0f64), |a, p| (a.0.min(p.intensity), a.1.max(p.intensity)));
    let lines: Vec<Series> = model
        .iter()
        .map(|m| Series { name: "device model (dynamic)".into(), points: model_line(m, lo / 2.0, hi * 2.0) })
        .collect();
    let series: Vec<Series> =
        pts.iter().map(|p| Series { name: p.name.clone(), points: vec![(p.intensity, p.j_per_flop)] }).collect();
    let notes: Vec<Vec<String>> = pts
        .iter()
        .map(|p| {
            vec![format!(
                "{} GFLOP, {} GB, {} J",
                svg::fmt(p.flops / 1e9),
                svg::fmt(p.bytes / 1e9),
                svg::fmt(p.energy_j)
            )]
        })
        .collect();
    let cap = format!("Energy roofline: joules per FLOP vs arithmetic intensity per kernel (J/FLOP){t}");
    let svg = svg::Scatter {
        caption: &cap,
        x_desc: "arithmetic intensity (FLOP per byte, from the layer shapes; log)",
        y_desc: "J per FLOP (log)",
        lines: &lines,
        points: &series,
        notes: &notes,
    }
    .svg();
    let mut b = vec![Block::Md(format!("{note}\n\n"))];
    if let Some(svg) = svg {
        b.push(Block::Plot {
            file: format!("energy_roofline_{}.svg", file_id(&run.id)),
            caption: cap,
            svg,
            about: text::ROOFLINE.into(),
        });
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

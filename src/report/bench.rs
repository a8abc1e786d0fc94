//! The kernel-benchmark report (`bench kernels --json` output): a roofline of each kernel's GFLOP/s against its
//! arithmetic intensity under the measured ceilings, a per-kernel efficiency table and, when the benchmark ran
//! with `--energy`, joules per launch with their interval and how they were obtained.
use super::load::{BenchRowIn, KernelBench};
use super::svg::{self, Bar, Scatter, Series};
use super::Block;
use crate::study::md_table;
use crate::util::fmt_fixed;

/// How a benchmark's joules were obtained ("measured (rapl)", "estimate (no sensor)", "sim ..."), None without
/// `--energy`.
pub fn energy_label(b: &KernelBench) -> Option<String> {
    let src = b.energy.as_ref()?.get("source")?.as_str()?;
    Some(super::source_label(src))
}

/// The ceiling lines of a roofline over intensities [lo, hi]: min(peak, intensity x bandwidth), log-spaced.
pub fn roof(peak_gflops: f64, bw_gbps: f64, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let n = 48;
    (0..=n)
        .map(|i| {
            let x = lo * (hi / lo).powf(i as f64 / n as f64);
            (x, (x * bw_gbps).min(peak_gflops))
        })
        .collect()
}

/// "memory" below the ridge point (peak / bandwidth), "compute" above it.
pub fn bound(intensity: f64, peak_gflops: f64, bw_gbps: f64) -> &'static str {
    if intensity < peak_gflops / bw_gbps {
        "memory"
    } else {
        "compute"
    }
}

/// The first screen of a kernel-benchmark report: what was measured (cases, device, how) and the main result
/// (how far the kernels are from the ceilings, and which bound holds them).
pub(super) fn head(benches: &[KernelBench]) -> (String, String) {
    let mut what = Vec::new();
    let mut result = Vec::new();
    for b in benches {
        let ok: Vec<&BenchRowIn> = b.rows.iter().filter(|r| r.status == "ok").collect();
        what.push(format!(
            "{} kernel cases timed on {} ({}); energy per launch: {}",
            ok.len(),
            b.device,
            b.kind,
            energy_label(b).unwrap_or_else(|| "not measured".into())
        ));
        let Some(c) = &b.ceilings else {
            result.push(format!("{}: no measured ceilings in this file, so no percentages", b.device));
            continue;
        };
        let best = ok
            .iter()
            .filter_map(|r| Some((r, r.frac_peak_flops?.max(r.frac_peak_bw.unwrap_or(0.0)))))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let memory = ok
            .iter()
            .filter(|r| r.intensity().is_some_and(|a| bound(a, c.gemm_gflops, c.copy_gbps) == "memory"))
            .count();
        let with_ai = ok.iter().filter(|r| r.intensity().is_some()).count();
        let best = best.map_or(String::new(), |(r, f)| {
            format!(
                "; closest to its ceiling: {} ({} {} b{}) at {:.0} %",
                r.kernel,
                r.model,
                r.layer,
                r.batch,
                100.0 * f
            )
        });
        result.push(format!(
            "on {} ({} GFLOP/s, {} GB/s measured), {memory} of {with_ai} cases with FLOPs are memory-bound{best}",
            b.device,
            svg::fmt(c.gemm_gflops),
            svg::fmt(c.copy_gbps)
        ));
    }
    (what.join("; ") + ".", result.join("; ") + ".")
}

/// The report blocks of every benchmark: head line, roofline, efficiency table, J per launch.
pub(super) fn blocks(benches: &[KernelBench]) -> Vec<Block> {
    let mut out = vec![Block::Md("## Kernel benchmarks\n\n".into())];
    for (i, b) in benches.iter().enumerate() {
        let ok: Vec<&BenchRowIn> = b.rows.iter().filter(|r| r.status == "ok").collect();
        let ceil = b.ceilings.as_ref().map_or("no ceilings in this file (an older version)".to_string(), |c| {
            format!(
                "ceilings {} GFLOP/s and {} GB/s ({})",
                svg::fmt(c.gemm_gflops),
                svg::fmt(c.copy_gbps),
                if c.what.is_empty() { "cuda: device copy and our gemm" } else { &c.what }
            )
        });
        out.push(Block::Md(format!(
            "### {} ({}), `{}`\n\n{} cases timed ({} refused or failed); {ceil}. Times are the median of repeated \
             calls timed on the device (CUDA events) or the wall clock (CPU); energy: {}.\n\n",
            b.device,
            b.kind,
            b.path.display(),
            ok.len(),
            b.rows.len() - ok.len(),
            energy_label(b).unwrap_or_else(|| "none (run with --energy for joules per launch)".into())
        )));
        if let Some(p) = roofline(b, &ok, i) {
            out.push(p);
        }
        out.push(Block::Md(table(b, &ok)));
        if let Some(p) = joules(b, &ok, i) {
            out.push(p);
        }
    }
    out
}

/// The roofline plot: one colour per kernel, the compute and memory ceilings as lines.
fn roofline(b: &KernelBench, ok: &[&BenchRowIn], i: usize) -> Option<Block> {
    let mut kernels: Vec<String> = ok.iter().filter(|r| r.intensity().is_some()).map(|r| r.kernel.clone()).collect();
    kernels.sort();
    kernels.dedup();
    let mut points = Vec::new();
    let mut notes = Vec::new();
    for k in &kernels {
        let rows: Vec<&&BenchRowIn> = ok.iter().filter(|r| &r.kernel == k && r.intensity().is_some()).collect();
        points.push(Series {
            name: k.clone(),
            points: rows.iter().map(|r| (r.intensity().unwrap_or(0.0), r.gflops.unwrap_or(0.0))).collect(),
        });
        notes.push(rows.iter().map(|r| format!("{} {} b{}", r.model, r.layer, r.batch)).collect());
    }
    let xs: Vec<f64> = points.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| *x > 0.0).collect();
    let (lo, hi) = (xs.iter().copied().fold(f64::MAX, f64::min), xs.iter().copied().fold(0.0, f64::max));
    let lines: Vec<Series> = match &b.ceilings {
        Some(c) if lo < f64::MAX && c.copy_gbps > 0.0 && c.gemm_gflops > 0.0 => {
            let ridge = c.gemm_gflops / c.copy_gbps;
            vec![Series {
                name: format!("ceiling (ridge at {} FLOP/B)", svg::fmt(ridge)),
                points: roof(c.gemm_gflops, c.copy_gbps, (lo / 2.0).min(ridge / 4.0), (hi * 2.0).max(ridge * 4.0)),
            }]
        }
        _ => vec![],
    };
    let caption = format!(
        "Roofline: GFLOP/s vs arithmetic intensity per kernel, {} ({}) [timed; ceilings measured on this device]",
        b.device, b.kind
    );
    let svg = Scatter {
        caption: &caption,
        x_desc: "arithmetic intensity (FLOP per byte moved, log)",
        y_desc: "GFLOP/s (log)",
        lines: &lines,
        points: &points,
        notes: &notes,
    }
    .svg()?;
    Some(Block::Plot {
        file: format!("bench_roofline_{i}.svg"),
        caption,
        svg,
        about: super::text::BENCH_ROOFLINE.into(),
    })
}

/// The per-kernel efficiency table.
fn table(b: &KernelBench, ok: &[&BenchRowIn]) -> String {
    let f = |v: Option<f64>, d: usize| fmt_fixed(v, d);
    let pct = |v: Option<f64>| v.map(|x| format!("{:.1}", 100.0 * x)).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = ok
        .iter()
        .map(|r| {
            let ai = r.intensity();
            let bnd = match (ai, &b.ceilings) {
                (Some(a), Some(c)) if c.copy_gbps > 0.0 => bound(a, c.gemm_gflops, c.copy_gbps).to_string(),
                _ => "-".into(),
            };
            let e = r.energy.as_ref();
            vec![
                r.kernel.clone(),
                format!("{} {}", r.model, r.layer),
                r.batch.to_string(),
                f(r.median_ms, 3),
                f(r.gflops, 1),
                f(r.gbps, 1),
                f(ai, 2),
                pct(r.frac_peak_flops),
                pct(r.frac_peak_bw),
                bnd,
                e.map(|e| format!("{} ± {}", svg::fmt(e.j_per_launch), svg::fmt(e.ci95_j)))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    format!(
        "Per-kernel efficiency: %flop and %bw are the kernel's GFLOP/s and GB/s over the ceilings above; bound = \
         memory when the kernel's intensity is left of the ridge point (peak GFLOP/s / GB/s), else compute. On the \
         CPU the bandwidth ceiling is main memory (STREAM triad): a kernel whose buffers fit in the caches can \
         exceed 100 %bw. \
         J/launch: {}.\n\n{}\n",
        energy_label(b).map_or("not measured (no --energy)".into(), |l| format!("{l}, ± the 95 % interval")),
        md_table(
            &["kernel", "case", "batch", "ms", "GFLOP/s", "GB/s", "FLOP/B", "%flop", "%bw", "bound", "J/launch"],
            &rows
        )
    )
}

/// Joules per launch as bars (with `--energy`).
fn joules(b: &KernelBench, ok: &[&BenchRowIn], i: usize) -> Option<Block> {
    let label = energy_label(b)?;
    let bars: Vec<Bar> = ok
        .iter()
        .filter_map(|r| {
            let e = r.energy.as_ref()?;
            Some(Bar {
                label: format!("{} {} {} b{}", r.kernel, r.model, r.layer, r.batch),
                value: Some(e.j_per_launch),
                err: Some(e.ci95_j),
                missing: String::new(),
            })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    let caption = format!("Energy per launch (J) [{label}]");
    let svg = svg::hbars(&caption, "J per launch", "J", &bars)?;
    Some(Block::Plot {
        file: format!("bench_joules_{i}.svg"),
        caption,
        svg,
        about: "Each case run back to back for several windows; the window's energy over its launches, with the 95 % \
                interval over windows. An estimate is the device power model x time, not a measurement."
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roof_and_bound() {
        // 100 GFLOP/s and 10 GB/s: ridge at 10 FLOP/B.
        let r = roof(100.0, 10.0, 1.0, 100.0);
        assert_eq!(r.first(), Some(&(1.0, 10.0)));
        let last = r.last().unwrap();
        assert!((last.0 - 100.0).abs() < 1e-9 && last.1 == 100.0);
        assert!(r.iter().all(|&(x, y)| y <= 100.0 && y <= x * 10.0 + 1e-9));
        assert_eq!(bound(5.0, 100.0, 10.0), "memory");
        assert_eq!(bound(20.0, 100.0, 10.0), "compute");
    }
}

//! SVG plots (plotters, SVG backend; text is drawn as SVG `<text>`, so no font files are needed).
//! Each function returns the SVG document, or None when its data is absent.
use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

const W: u32 = 760;
const H: u32 = 460;

fn e<E: std::fmt::Debug>(x: E) -> anyhow::Error {
    anyhow!("plot: {x:?}")
}

/// A series of (x, y) points with a name.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn bounds(series: &[Series], log_x: bool) -> Option<((f64, f64), (f64, f64))> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if log_x {
        (x0, x1) = (x0 / 1.5, x1 * 1.5);
    } else if x1 - x0 < 1e-12 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    } else {
        let pad = 0.03 * (x1 - x0);
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    let pad = if y1 - y0 < 1e-12 { y0.abs().max(1.0) * 0.1 } else { 0.08 * (y1 - y0) };
    let x = if log_x { log_tickable(x0, x1)? } else { tickable(x0, x1)? };
    Some((x, tickable((y0 - pad).min(if y0 >= 0.0 { 0.0 } else { y0 - pad }), y1 + pad)?))
}

/// A linear axis range plotters can put ticks on, or None (the plot is left out). Its tick search loops for
/// ever on a range that is infinite (values near f64::MAX overflow when padded) or narrower than the float
/// spacing of its ends (e.g. 1e16..1e16+2): such a range is widened to a billionth of its magnitude.
fn tickable(lo: f64, hi: f64) -> Option<(f64, f64)> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return None;
    }
    let min_w = lo.abs().max(hi.abs()) * 1e-9;
    let (lo, hi) = if hi - lo < min_w {
        let c = lo / 2.0 + hi / 2.0;
        (c - min_w, c + min_w)
    } else {
        (lo, hi)
    };
    (lo.is_finite() && hi.is_finite() && (hi - lo).is_finite() && hi > lo).then_some((lo, hi))
}

/// A logarithmic axis range: positive, finite, the same bounds on its decades.
fn log_tickable(lo: f64, hi: f64) -> Option<(f64, f64)> {
    if !(lo > 0.0 && lo.is_normal() && hi.is_finite() && hi > lo) {
        return None;
    }
    tickable(lo.log10(), hi.log10()).map(|_| (lo, hi))
}

/// A line chart: one polyline per series (with point markers), a legend of the series names.
pub fn lines(caption: &str, x_desc: &str, y_desc: &str, series: &[Series], log_x: bool) -> Result<Option<String>> {
    let Some(((x0, x1), (y0, y1))) = bounds(series, log_x) else { return Ok(None) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut b = ChartBuilder::on(&root);
        b.caption(caption, ("sans-serif", 18)).margin(12).x_label_area_size(42).y_label_area_size(70);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(e)?;
                for (i, s) in series.iter().enumerate() {
                    let c = Palette99::pick(i).to_rgba();
                    let pts: Vec<(f64, f64)> =
                        s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
                    chart
                        .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                        .map_err(e)?
                        .label(s.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(e)?;
                }
                if series.len() <= 16 {
                    chart
                        .configure_series_labels()
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .position(SeriesLabelPosition::UpperRight)
                        .draw()
                        .map_err(e)?;
                }
            }};
        }
        if log_x {
            body!(b.build_cartesian_2d((x0..x1).log_scale(), y0..y1).map_err(e)?);
        } else {
            body!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(e)?);
        }
        root.present().map_err(e)?;
    }
    Ok(Some(svg))
}

/// Vertical bars, one per (label, value); `None` values are drawn as an empty slot labelled "n/a".
pub fn bars(caption: &str, x_desc: &str, y_desc: &str, bars: &[(String, Option<f64>)]) -> Result<Option<String>> {
    let vals: Vec<f64> = bars.iter().filter_map(|b| b.1).filter(|v| v.is_finite()).collect();
    if vals.is_empty() {
        return Ok(None);
    }
    let top = vals.iter().copied().fold(0.0, f64::max).max(1e-12) * 1.12;
    let Some((_, top)) = tickable(0.0, top) else { return Ok(None) };
    let n = bars.len() as i32;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(bars.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(e)?;
        for (i, (_, v)) in bars.iter().enumerate() {
            let i = i as i32;
            match v {
                Some(v) if v.is_finite() => {
                    let c = Palette99::pick(i as usize).to_rgba();
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)],
                            c.filled(),
                        )))
                        .map_err(e)?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            crate::study::fmt_num(Some(*v)),
                            (SegmentValue::CenterOf(i), *v + top * 0.01),
                            ("sans-serif", 12),
                        )))
                        .map_err(e)?;
                }
                _ => {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            "n/a".to_string(),
                            (SegmentValue::CenterOf(i), top * 0.02),
                            ("sans-serif", 12),
                        )))
                        .map_err(e)?;
                }
            }
        }
        root.present().map_err(e)?;
    }
    Ok(Some(svg))
}

/// A heatmap: `cells[j][i]` is the value at column i (x label) and row j (y label); None = "n/r" (grey).
/// Colour runs from green (lowest) to red (highest) on a log scale.
pub fn heatmap(
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    x_labels: &[String],
    y_labels: &[String],
    cells: &[Vec<Option<f64>>],
) -> Result<Option<String>> {
    let vals: Vec<f64> = cells.iter().flatten().flatten().copied().filter(|v| v.is_finite() && *v > 0.0).collect();
    if x_labels.is_empty() || y_labels.is_empty() || cells.iter().flatten().count() == 0 {
        return Ok(None);
    }
    let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (nx, ny) = (x_labels.len() as i32, y_labels.len() as i32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d((0..nx).into_segmented(), (0..ny).into_segmented())
            .map_err(e)?;
        let fx = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => x_labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let fy = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => y_labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(x_labels.len())
            .y_labels(y_labels.len())
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .draw()
            .map_err(e)?;
        for (j, row) in cells.iter().enumerate() {
            for (i, v) in row.iter().enumerate() {
                let (i, j) = (i as i32, j as i32);
                let (color, text) = match v {
                    Some(v) if v.is_finite() => {
                        let t = if hi > lo && *v > 0.0 { (v.ln() - lo.ln()) / (hi.ln() - lo.ln()) } else { 0.0 };
                        (
                            HSLColor((1.0 - t.clamp(0.0, 1.0)) * 0.33, 0.7, 0.55).to_rgba(),
                            crate::study::fmt_num(Some(*v)),
                        )
                    }
                    _ => (RGBColor(200, 200, 200).to_rgba(), "n/r".to_string()),
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(i), SegmentValue::Exact(j)),
                            (SegmentValue::Exact(i + 1), SegmentValue::Exact(j + 1)),
                        ],
                        color.filled(),
                    )))
                    .map_err(e)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (SegmentValue::CenterOf(i), SegmentValue::CenterOf(j)),
                        ("sans-serif", 13),
                    )))
                    .map_err(e)?;
            }
        }
        root.present().map_err(e)?;
    }
    Ok(Some(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f` on a thread, failing when it runs past 20 s (the plotting library's tick search once never ended).
    fn within_20s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).expect("a plot ran past 20 s: a hang")
    }

    #[test]
    fn ranges_the_tick_search_cannot_end_on_are_left_out_or_widened() {
        // Found by tests/fuzz_rundir.rs: cumulative energies near f64::MAX (the padded axis became infinite)
        // in epochs.csv, and a multi-task mean of f64::MAX (the bar axis 0..MAX*1.12) in multitask.json.
        let huge = vec![Series { name: "r".into(), points: vec![(1e308, 0.5), (1.79e308, 0.6)] }];
        assert!(within_20s(move || lines("c", "x", "y", &huge, false).unwrap()).is_none());
        let huge_log = vec![Series { name: "r".into(), points: vec![(1e308, 0.5), (1.7e308, 0.6)] }];
        assert!(within_20s(move || lines("c", "x", "y", &huge_log, true).unwrap()).is_none());
        let bars_max = vec![("multi".to_string(), Some(f64::MAX)), ("single".to_string(), Some(7.0))];
        assert!(within_20s(move || bars("c", "x", "y", &bars_max).unwrap()).is_none());
        // A range narrower than the float spacing of its ends is widened, and drawn.
        let narrow = vec![Series { name: "r".into(), points: vec![(1e16, 1.0), (1e16 + 2.0, 2.0)] }];
        assert!(within_20s(move || lines("c", "x", "y", &narrow, false).unwrap()).is_some());
        let (lo, hi) = tickable(1e16, 1e16 + 2.0).unwrap();
        assert!(hi - lo >= 1e7, "{lo} {hi}");
        // Ordinary ranges are left as they are.
        assert_eq!(tickable(0.0, 3.5), Some((0.0, 3.5)));
        assert_eq!(tickable(f64::NEG_INFINITY, 1.0), None);
        assert_eq!(log_tickable(0.0, 10.0), None);
        assert_eq!(log_tickable(10.0, 1000.0), Some((10.0, 1000.0)));
    }
}

//! The report's SVG charts, written element by element so that their structure can be checked: every chart
//! has a `<title>` (its caption, with the unit and the method), a `rect.plot-area`, axes whose ticks are
//! labelled, a `g.legend` (series names or the colour scale) placed to the right of the plot area (never over
//! the data), and a hover `<title>` with the number behind every point, bar and cell.
//!
//! Why not plotters (not a dependency): its SVG backend cannot tag the legend and plot area, attach hover titles, or put a
//! legend outside the chart's data area, which the browser test (tests/report_browser.rs) and the issue's
//! defect list both need. Text widths are estimated (0.6 em per character of sans-serif), generously.
//!
//! Palette: Okabe & Ito's colour-blind-safe colours (yellow left out: unreadable on white); beyond seven
//! series the dash pattern changes too. The heatmap uses viridis (sequential, colour-blind safe), on a
//! domain at least 25 % wide so that a 1.05x difference is not drawn as two opposite colours.

use std::fmt::Write as _;

/// Width of every chart (px); heights depend on the chart.
pub const W: f64 = 860.0;
const H: f64 = 440.0;
const TITLE_FONT: f64 = 15.0;
const FONT: f64 = 12.0;
/// The colour-blind-safe palette (Okabe-Ito without yellow).
pub const PALETTE: [&str; 7] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000"];
const DASHES: [&str; 4] = ["", "7 3", "2 3", "9 3 2 3"];

/// A series of (x, y) points with a name.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One horizontal bar: a value, its half-width uncertainty, or a note in its place ("not reached").
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub err: Option<f64>,
    /// Shown instead of a bar when `value` is None.
    pub missing: String,
}

/// A vertical marker line on a line chart (e.g. a counter update).
#[derive(Clone, Debug)]
pub struct VLine {
    pub x: f64,
    pub label: String,
}

/// Estimated width of `s` in sans-serif at `size` px.
pub fn text_w(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.6
}

/// XML escaping for text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A number for a tick, label or hover title: at most 4 significant digits, scientific when tiny or huge.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.2e}");
    }
    let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `s` cut to `max` px wide with an ellipsis.
fn clip(s: &str, size: f64, max: f64) -> String {
    if text_w(s, size) <= max {
        return s.to_string();
    }
    let n = ((max / (size * 0.6)) as usize).saturating_sub(1).max(1);
    s.chars().take(n).collect::<String>() + "…"
}

/// Greedy word wrap of a title into lines at most `max` px wide.
fn wrap(s: &str, size: f64, max: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for w in s.split_whitespace() {
        let cand = if cur.is_empty() { w.to_string() } else { format!("{cur} {w}") };
        if text_w(&cand, size) > max && !cur.is_empty() {
            lines.push(std::mem::take(&mut cur));
            cur = w.to_string();
        } else {
            cur = cand;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines.into_iter().map(|l| clip(&l, size, max)).collect()
}

/// An axis: linear or logarithmic, mapping data to pixels between `p0` and `p1`.
#[derive(Clone, Debug)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub ticks: Vec<f64>,
}

impl Axis {
    /// A linear axis over [lo, hi] with 1-2-5 ticks (about `n`), widened to whole ticks.
    pub fn linear(lo: f64, hi: f64, n: usize) -> Option<Axis> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return None;
        }
        let (lo, hi) = if hi - lo <= lo.abs().max(hi.abs()) * 1e-9 {
            let d = lo.abs().max(1.0) * 0.1;
            (lo - d, hi + d)
        } else {
            (lo, hi)
        };
        let raw = (hi - lo) / n.max(1) as f64;
        if !(raw.is_finite() && raw > 0.0) {
            return None;
        }
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
        let (a, b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let k = ((b - a) / step).round() as usize;
        if !(a.is_finite() && b.is_finite()) || k > 50 || b <= a {
            return None;
        }
        Some(Axis { lo: a, hi: b, log: false, ticks: (0..=k).map(|i| a + i as f64 * step).collect() })
    }

    /// A logarithmic axis over [lo, hi] (both > 0). Ticks: `at` when given (e.g. the batch sizes),
    /// else 1-2-5 within each decade when the range is short, else decades.
    pub fn log(lo: f64, hi: f64, at: Option<Vec<f64>>) -> Option<Axis> {
        if !(lo > 0.0 && lo.is_normal() && hi.is_finite() && hi >= lo) {
            return None;
        }
        let (lo, hi) = if hi / lo < 1.5 { (lo / 1.25, hi * 1.25) } else { (lo / 1.12, hi * 1.12) };
        let ticks = match at {
            Some(t) => t.into_iter().filter(|v| *v >= lo && *v <= hi).collect(),
            None => {
                let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
                if d1 - d0 > 40 {
                    return None;
                }
                let mults: &[f64] = if d1 - d0 <= 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
                (d0..=d1)
                    .flat_map(|d| mults.iter().map(move |m| m * 10f64.powi(d)))
                    .filter(|v| *v >= lo && *v <= hi)
                    .collect()
            }
        };
        Some(Axis { lo, hi, log: true, ticks })
    }

    /// `v` in pixels between `p0` (at lo) and `p1` (at hi).
    pub fn px(&self, v: f64, p0: f64, p1: f64) -> f64 {
        let t = if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        p0 + t * (p1 - p0)
    }
}

/// Where the parts of a chart go.
struct Frame {
    h: f64,
    title: Vec<String>,
    /// The plot area: left, top, right, bottom.
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl Frame {
    /// A frame with a title, `left` px for the y labels, `legend` px on the right and `h` px in all.
    fn new(title: &str, left: f64, legend: f64, h: f64) -> Frame {
        let title = wrap(title, TITLE_FONT, W - 20.0);
        let t = 14.0 + title.len() as f64 * (TITLE_FONT + 4.0) + 10.0;
        Frame { h, l: left, t, r: W - legend - 16.0, b: h - 52.0, title }
    }

    /// The opening of the SVG: size, hover title, white background, the wrapped title and the plot area.
    fn open(&self, caption: &str, kind: &str) -> String {
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart {kind}\" width=\"{W}\" height=\"{h}\" \
             viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\"><title>{c}</title>\
             <rect width=\"{W}\" height=\"{h}\" fill=\"white\"/>",
            h = self.h,
            c = esc(caption)
        );
        for (i, line) in self.title.iter().enumerate() {
            let y = 14.0 + (i + 1) as f64 * (TITLE_FONT + 4.0) - 4.0;
            let _ = write!(
                s,
                "<text class=\"title\" x=\"{}\" y=\"{y}\" font-size=\"{TITLE_FONT}\" text-anchor=\"middle\">{}</text>",
                W / 2.0,
                esc(line)
            );
        }
        let _ = write!(
            s,
            "<rect class=\"plot-area\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>",
            self.l,
            self.t,
            self.r - self.l,
            self.b - self.t
        );
        s
    }

    /// The axis names: x centred under the plot area, y rotated left of it.
    fn axis_names(&self, x_desc: &str, y_desc: &str) -> String {
        let mut s = format!(
            "<text class=\"axis-name x\" x=\"{}\" y=\"{}\" font-size=\"{FONT}\" text-anchor=\"middle\">{}</text>",
            (self.l + self.r) / 2.0,
            self.h - 12.0,
            esc(&clip(x_desc, FONT, self.r - self.l))
        );
        if !y_desc.is_empty() {
            let (x, y) = (16.0, (self.t + self.b) / 2.0);
            let _ = write!(
                s,
                "<text class=\"axis-name y\" x=\"{x}\" y=\"{y}\" font-size=\"{FONT}\" text-anchor=\"middle\" \
                 transform=\"rotate(-90 {x} {y})\">{}</text>",
                esc(&clip(y_desc, FONT, self.b - self.t))
            );
        }
        s
    }

    /// Ticks and labels of a numeric x axis; labels that would overlap their left neighbour are skipped.
    fn x_ticks(&self, ax: &Axis) -> String {
        let mut s = String::from("<g class=\"axis x\">");
        let mut last_end = f64::MIN;
        for &v in &ax.ticks {
            let x = ax.px(v, self.l, self.r);
            let label = fmt(v);
            let w = text_w(&label, FONT - 1.0);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#444\"/>",
                self.b,
                self.b + 5.0
            );
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/>",
                self.t, self.b
            );
            if x - w / 2.0 > last_end + 4.0 {
                let _ = write!(
                    s,
                    "<text class=\"tick\" x=\"{x:.1}\" y=\"{}\" font-size=\"{}\" text-anchor=\"middle\">{}</text>",
                    self.b + 18.0,
                    FONT - 1.0,
                    esc(&label)
                );
                last_end = x + w / 2.0;
            }
        }
        s + "</g>"
    }

    /// Ticks, grid lines and labels of a numeric y axis.
    fn y_ticks(&self, ax: &Axis) -> String {
        let mut s = String::from("<g class=\"axis y\">");
        for &v in &ax.ticks {
            let y = ax.px(v, self.b, self.t);
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/>",
                self.l, self.r
            );
            let _ = write!(
                s,
                "<text class=\"tick\" x=\"{}\" y=\"{:.1}\" font-size=\"{}\" text-anchor=\"end\">{}</text>",
                self.l - 6.0,
                y + 4.0,
                FONT - 1.0,
                esc(&fmt(v))
            );
        }
        s + "</g>"
    }
}

/// The palette colour and dash pattern of series `i`.
pub fn style(i: usize) -> (&'static str, &'static str) {
    (PALETTE[i % PALETTE.len()], DASHES[(i / PALETTE.len()) % DASHES.len()])
}

/// The legend right of the plot area: a box with one line sample and name per entry (at most as many as
/// fit; the rest are counted in a last line).
fn legend(f: &Frame, names: &[String], width: f64) -> String {
    let x = f.r + 14.0;
    let row = 17.0;
    let fit = (((f.b - f.t) - 10.0) / row).floor().max(1.0) as usize;
    let shown = if names.len() > fit { fit - 1 } else { names.len() };
    let rows = shown + usize::from(names.len() > shown);
    let mut s = format!(
        "<g class=\"legend\"><rect class=\"legend-box\" x=\"{x}\" y=\"{}\" width=\"{width}\" height=\"{}\" \
         fill=\"white\" stroke=\"#999\"/>",
        f.t,
        rows as f64 * row + 8.0
    );
    for (i, n) in names.iter().take(shown).enumerate() {
        let (c, d) = style(i);
        let y = f.t + 4.0 + row * (i as f64 + 0.5);
        let _ = write!(
            s,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{c}\" stroke-width=\"2.5\" stroke-dasharray=\"{d}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"{}\">{}<title>{}</title></text>",
            x + 6.0,
            x + 26.0,
            x + 31.0,
            y + 4.0,
            FONT - 1.0,
            esc(&clip(n, FONT - 1.0, width - 36.0)),
            esc(n)
        );
    }
    if names.len() > shown {
        let y = f.t + 4.0 + row * (shown as f64 + 0.5) + 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{y}\" font-size=\"{}\">+{} more</text>",
            x + 6.0,
            FONT - 1.0,
            names.len() - shown
        );
    }
    s + "</g>"
}

/// A line chart: one polyline per series with point markers (hover: name, x, y), the legend outside the
/// plot area, optional vertical markers. `x_at`: the x ticks (e.g. the batch sizes) instead of 1-2-5 ones.
pub struct Lines<'a> {
    pub caption: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub series: &'a [Series],
    pub log_x: bool,
    pub x_at: Option<Vec<f64>>,
    pub vlines: &'a [VLine],
}

impl Lines<'_> {
    /// The SVG, or None when no point is finite (and positive on a log axis).
    pub fn svg(&self) -> Option<String> {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0))
            .collect();
        if pts.is_empty() {
            return None;
        }
        let (x0, x1, y0, y1) = pts.iter().fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |a, p| {
            (a.0.min(p.0), a.1.max(p.0), a.2.min(p.1), a.3.max(p.1))
        });
        let xa = if self.log_x { Axis::log(x0, x1, self.x_at.clone())? } else { Axis::linear(x0, x1, 8)? };
        let ya = Axis::linear(y0.min(0.0), y1 + 0.04 * (y1 - y0.min(0.0)).abs(), 6)?;
        let names: Vec<String> = self.series.iter().map(|s| s.name.clone()).collect();
        let lw = names.iter().map(|n| text_w(n, FONT - 1.0)).fold(60.0, f64::max).min(230.0) + 40.0;
        let left = 40.0 + ya.ticks.iter().map(|v| text_w(&fmt(*v), FONT - 1.0)).fold(0.0, f64::max);
        let f = Frame::new(self.caption, left, lw, H);
        let mut s = f.open(self.caption, "lines");
        s += &f.y_ticks(&ya);
        s += &f.x_ticks(&xa);
        s += &f.axis_names(self.x_desc, self.y_desc);
        s += &self.markers(&f, &xa);
        for (i, se) in self.series.iter().enumerate() {
            s += &series_svg(&f, &xa, &ya, se, i);
        }
        s += &legend(&f, &names, lw);
        Some(s + "</svg>\n")
    }

    fn markers(&self, f: &Frame, xa: &Axis) -> String {
        let mut s = String::from("<g class=\"markers\">");
        for v in self.vlines.iter().filter(|v| v.x >= xa.lo && v.x <= xa.hi) {
            let x = xa.px(v.x, f.l, f.r);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#888\" stroke-dasharray=\"3 3\">\
                 <title>{}</title></line>",
                f.t,
                f.b,
                esc(&v.label)
            );
        }
        s + "</g>"
    }
}

/// One series: its polyline and, up to 300 points, a marker per point with its numbers on hover.
fn series_svg(f: &Frame, xa: &Axis, ya: &Axis, se: &Series, i: usize) -> String {
    let (c, d) = style(i);
    let pts: Vec<(f64, f64)> =
        se.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite() && (!xa.log || *x > 0.0)).collect();
    let px: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (xa.px(x, f.l, f.r), ya.px(y, f.b, f.t))).collect();
    let mut s = format!("<g class=\"series\" data-name=\"{}\">", esc(&se.name));
    let coords: Vec<String> = px.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" stroke-dasharray=\"{d}\"><title>{}</title></polyline>",
        coords.join(" "),
        esc(&se.name)
    );
    if pts.len() <= 300 {
        for ((x, y), (pxx, pxy)) in pts.iter().zip(&px) {
            let _ = write!(
                s,
                "<circle cx=\"{pxx:.1}\" cy=\"{pxy:.1}\" r=\"3.5\" fill=\"{c}\"><title>{}: x {}, y {}</title></circle>",
                esc(&se.name),
                fmt(*x),
                fmt(*y)
            );
        }
    }
    s + "</g>"
}

/// Horizontal bars, one row per bar with its label on the left and its number at its end (hover: the same
/// with the uncertainty); a missing value shows its note ("not reached") in the row instead of a bar.
pub fn hbars(caption: &str, x_desc: &str, unit: &str, bars: &[Bar]) -> Option<String> {
    let tops: Vec<f64> =
        bars.iter().filter_map(|b| Some(b.value? + b.err.unwrap_or(0.0))).filter(|v| v.is_finite()).collect();
    if tops.is_empty() || bars.iter().any(|b| b.value.is_some_and(|v| !v.is_finite() || v < 0.0)) {
        return None;
    }
    let ax = Axis::linear(0.0, tops.iter().copied().fold(0.0, f64::max) * 1.2, 6)?;
    let left = bars.iter().map(|b| text_w(&b.label, FONT)).fold(60.0, f64::max).min(300.0) + 16.0;
    let row = 24.0;
    let title_h = wrap(caption, TITLE_FONT, W - 20.0).len() as f64 * (TITLE_FONT + 4.0) + 24.0;
    let f = Frame::new(caption, left, 0.0, title_h + bars.len() as f64 * row + 70.0);
    let mut s = f.open(caption, "bars");
    s += &f.x_ticks(&ax);
    s += &f.axis_names(x_desc, "");
    s += "<g class=\"bars\">";
    for (i, b) in bars.iter().enumerate() {
        let y = f.t + 4.0 + i as f64 * row;
        let _ = write!(
            s,
            "<text class=\"tick category\" x=\"{}\" y=\"{}\" font-size=\"{FONT}\" text-anchor=\"end\">{}<title>{}</title></text>",
            f.l - 6.0,
            y + row / 2.0 + 1.0,
            esc(&clip(&b.label, FONT, left - 16.0)),
            esc(&b.label)
        );
        s += &bar_row(&f, &ax, b, i, y, row, unit);
    }
    Some(s + "</g></svg>\n")
}

fn bar_row(f: &Frame, ax: &Axis, b: &Bar, i: usize, y: f64, row: f64, unit: &str) -> String {
    let Some(v) = b.value else {
        return format!(
            "<text class=\"missing\" x=\"{}\" y=\"{}\" font-size=\"{}\" font-style=\"italic\" fill=\"#555\">{}</text>",
            f.l + 6.0,
            y + row / 2.0 + 1.0,
            FONT - 1.0,
            esc(&b.missing)
        );
    };
    let (c, _) = style(i % PALETTE.len());
    let x1 = ax.px(v, f.l, f.r);
    let pm = b.err.map(|e| format!(" ± {}", fmt(e))).unwrap_or_default();
    let mut s = format!(
        "<rect class=\"bar\" x=\"{}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{c}\">\
         <title>{}: {}{pm} {unit}</title></rect>",
        f.l,
        y + 3.0,
        (x1 - f.l).max(0.5),
        row - 6.0,
        esc(&b.label),
        fmt(v)
    );
    let mut end = x1;
    if let Some(e) = b.err.filter(|e| e.is_finite() && *e > 0.0) {
        let (a, z) = (ax.px((v - e).max(0.0), f.l, f.r), ax.px(v + e, f.l, f.r));
        let ym = y + row / 2.0;
        let _ = write!(s, "<line class=\"err\" x1=\"{a:.1}\" y1=\"{ym}\" x2=\"{z:.1}\" y2=\"{ym}\" stroke=\"#222\"/>");
        end = end.max(z);
    }
    let _ = write!(
        s,
        "<text class=\"value\" x=\"{:.1}\" y=\"{}\" font-size=\"{}\">{}</text>",
        end + 4.0,
        y + row / 2.0 + 4.0,
        FONT - 1.0,
        esc(&fmt(v))
    );
    s
}

/// Viridis at t in [0, 1] (5 stops, linear between them).
pub fn viridis(t: f64) -> (u8, u8, u8) {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * 4.0;
    let i = (t.floor() as usize).min(3);
    let u = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let m = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    (m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

/// The heatmap's colour domain: the values' range, widened to at least 25 % above its low end.
pub fn colour_domain(vals: &[f64]) -> Option<(f64, f64)> {
    let (lo, hi) = vals.iter().filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    (lo <= hi).then(|| (lo, hi.max(lo + 0.25 * lo.abs()).max(lo + 1e-12)))
}

/// A heatmap: `cells[j][i]` at column i (x label) and row j (y label); exactly one band per label. A
/// missing value is a grey cell marked "n/r" (not reached). The colour scale sits right of the cells.
pub fn heatmap(
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    x_labels: &[String],
    y_labels: &[String],
    cells: &[Vec<Option<f64>>],
    unit: &str,
) -> Option<String> {
    let vals: Vec<f64> = cells.iter().flatten().flatten().copied().filter(|v| v.is_finite()).collect();
    if x_labels.is_empty() || y_labels.is_empty() || cells.len() != y_labels.len() {
        return None;
    }
    let dom = colour_domain(&vals).unwrap_or((0.0, 1.0));
    let left = 40.0 + y_labels.iter().map(|l| text_w(l, FONT - 1.0)).fold(20.0, f64::max);
    let f = Frame::new(caption, left, 150.0, H);
    let (cw, ch) = ((f.r - f.l) / x_labels.len() as f64, (f.b - f.t) / y_labels.len() as f64);
    let mut s = f.open(caption, "heatmap");
    s += &f.axis_names(x_desc, y_desc);
    s += "<g class=\"axis x\">";
    for (i, l) in x_labels.iter().enumerate() {
        let x = f.l + (i as f64 + 0.5) * cw;
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{}\" font-size=\"{}\" text-anchor=\"middle\">{}</text>",
            f.b + 18.0,
            FONT - 1.0,
            esc(&clip(l, FONT - 1.0, cw - 4.0))
        );
    }
    s += "</g><g class=\"axis y\">";
    for (j, l) in y_labels.iter().enumerate() {
        let y = f.b - (j as f64 + 0.5) * ch + 4.0;
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{}\" y=\"{y:.1}\" font-size=\"{}\" text-anchor=\"end\">{}</text>",
            f.l - 6.0,
            FONT - 1.0,
            esc(l)
        );
    }
    s += "</g><g class=\"cells\">";
    for (j, row) in cells.iter().enumerate() {
        for (i, v) in row.iter().enumerate().take(x_labels.len()) {
            let (x, y) = (f.l + i as f64 * cw, f.b - (j as f64 + 1.0) * ch);
            s += &cell(
                x,
                y,
                (cw, ch),
                *v,
                dom,
                &format!("{} {}, {} {}", x_desc, x_labels[i], y_desc, y_labels[j]),
                unit,
            );
        }
    }
    s += "</g>";
    s += &colour_scale(&f, dom, &vals, unit);
    Some(s + "</svg>\n")
}

fn cell(x: f64, y: f64, (w, h): (f64, f64), v: Option<f64>, (lo, hi): (f64, f64), at: &str, unit: &str) -> String {
    let (fill, text, ink, hover) = match v {
        Some(v) if v.is_finite() => {
            let (r, g, b) = viridis((v - lo) / (hi - lo));
            let light = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64 > 140.0;
            (
                format!("rgb({r},{g},{b})"),
                fmt(v),
                if light { "#000" } else { "#fff" },
                format!("{at}: {} {unit}", fmt(v)),
            )
        }
        _ => ("#d9d9d9".to_string(), "n/r".to_string(), "#333", format!("{at}: not reached")),
    };
    format!(
        "<rect class=\"cell\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\" stroke=\"white\">\
         <title>{}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{FONT}\" text-anchor=\"middle\" fill=\"{ink}\">{}</text>",
        esc(&hover),
        x + w / 2.0,
        y + h / 2.0 + 4.0,
        esc(&text)
    )
}

/// The heatmap's colour bar with its low and high ends labelled and the values' max/min ratio.
fn colour_scale(f: &Frame, (lo, hi): (f64, f64), vals: &[f64], unit: &str) -> String {
    let (x, w, h) = (f.r + 20.0, 18.0, f.b - f.t - 40.0);
    let mut s = String::from("<g class=\"legend colour-scale\">");
    let n = 24;
    for k in 0..n {
        let (r, g, b) = viridis(k as f64 / (n - 1) as f64);
        let y = f.t + h - (k + 1) as f64 * h / n as f64;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{y:.1}\" width=\"{w}\" height=\"{:.2}\" fill=\"rgb({r},{g},{b})\"/>",
            h / n as f64 + 0.5
        );
    }
    for (v, y) in [(hi, f.t + 4.0), (lo, f.t + h)] {
        let _ = write!(
            s,
            "<text class=\"scale-label\" x=\"{}\" y=\"{y:.1}\" font-size=\"{}\">{} {}</text>",
            x + w + 5.0,
            FONT - 1.0,
            fmt(v),
            esc(unit)
        );
    }
    let (vl, vh) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if vl > 0.0 && vh >= vl {
        let _ = write!(
            s,
            "<text class=\"scale-ratio\" x=\"{x}\" y=\"{:.1}\" font-size=\"{}\">max/min {:.2}x</text>",
            f.t + h + 22.0,
            FONT - 1.0,
            vh / vl
        );
    }
    let _ =
        write!(s, "<text x=\"{x}\" y=\"{:.1}\" font-size=\"{}\">grey: not reached</text>", f.t + h + 38.0, FONT - 1.0);
    s + "</g>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_ticks_and_numbers() {
        let a = Axis::linear(0.0, 9.3, 6).unwrap();
        assert_eq!((a.lo, a.hi), (0.0, 10.0));
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(Axis::linear(f64::NEG_INFINITY, 1.0, 6).is_none());
        assert!(Axis::linear(0.0, f64::MAX * 1.5, 6).is_none());
        // Batch sizes on a log axis: one tick per batch size (the issue's single "100.0" tick).
        let l = Axis::log(32.0, 128.0, Some(vec![32.0, 64.0, 128.0])).unwrap();
        assert_eq!(l.ticks, vec![32.0, 64.0, 128.0]);
        // Without categories: one tick per decade.
        let d = Axis::log(1.0, 1000.0, None).unwrap();
        assert_eq!(d.ticks, vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(fmt(1234.5678), "1235");
        assert_eq!(fmt(0.5), "0.5");
        assert_eq!(fmt(72.0), "72");
        assert_eq!(fmt(2.5e-7), "2.50e-7");
        assert_eq!(wrap("a b c", 15.0, 30.0), vec!["a b", "c"]);
    }

    #[test]
    fn colours_are_close_for_close_values() {
        // 100 J vs 105 J: the domain spans 100..125, so the two cells are a fifth of the scale apart.
        let (lo, hi) = colour_domain(&[100.0, 105.0]).unwrap();
        assert_eq!((lo, hi), (100.0, 125.0));
        let (a, b) = (viridis(0.0), viridis((105.0 - lo) / (hi - lo)));
        let dist = ((a.0 as f64 - b.0 as f64).powi(2) + (a.1 as f64 - b.1 as f64).powi(2)).sqrt();
        assert!(dist < 90.0, "{a:?} {b:?}");
        assert_eq!(viridis(1.0), (253, 231, 37));
    }
}

/// A log-log scatter (rooflines): `lines` are drawn as polylines (the ceilings), `points` as markers only, one
/// colour per series (hover: name, x, y and the point's own note); the legend outside the plot area.
pub struct Scatter<'a> {
    pub caption: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub lines: &'a [Series],
    pub points: &'a [Series],
    /// One hover note per point of each `points` series (e.g. "pamap2 conv1 b64"), empty when none.
    pub notes: &'a [Vec<String>],
}

impl Scatter<'_> {
    /// The SVG, or None without a positive finite point.
    pub fn svg(&self) -> Option<String> {
        let ok = |&(x, y): &(f64, f64)| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite();
        let all: Vec<(f64, f64)> =
            self.lines.iter().chain(self.points).flat_map(|s| s.points.iter().copied()).filter(ok).collect();
        if !self.points.iter().any(|s| s.points.iter().any(ok)) {
            return None;
        }
        let (x0, x1, y0, y1) = all.iter().fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |a, p| {
            (a.0.min(p.0), a.1.max(p.0), a.2.min(p.1), a.3.max(p.1))
        });
        let (xa, ya) = (Axis::log(x0, x1, None)?, Axis::log(y0, y1, None)?);
        let names: Vec<String> = self.lines.iter().chain(self.points).map(|s| s.name.clone()).collect();
        let lw = names.iter().map(|n| text_w(n, FONT - 1.0)).fold(60.0, f64::max).min(230.0) + 40.0;
        let left = 40.0 + ya.ticks.iter().map(|v| text_w(&fmt(*v), FONT - 1.0)).fold(0.0, f64::max);
        let f = Frame::new(self.caption, left, lw, H);
        let mut s = f.open(self.caption, "scatter");
        s += &f.y_ticks(&ya);
        s += &f.x_ticks(&xa);
        s += &f.axis_names(self.x_desc, self.y_desc);
        let px = |&(x, y): &(f64, f64)| (xa.px(x, f.l, f.r), ya.px(y, f.b, f.t));
        for (i, se) in self.lines.iter().enumerate() {
            let (c, d) = style(i);
            let coords: Vec<String> =
                se.points.iter().filter(|p| ok(p)).map(px).map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                "<g class=\"series roof\" data-name=\"{n}\"><polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" \
                 stroke-width=\"2.5\" stroke-dasharray=\"{d}\"><title>{n}</title></polyline></g>",
                coords.join(" "),
                n = esc(&se.name)
            );
        }
        for (j, se) in self.points.iter().enumerate() {
            let (c, _) = style(self.lines.len() + j);
            let _ = write!(s, "<g class=\"series points\" data-name=\"{}\">", esc(&se.name));
            for (k, p) in se.points.iter().enumerate().filter(|(_, p)| ok(p)) {
                let (x, y) = px(p);
                let note = self.notes.get(j).and_then(|n| n.get(k)).map(|n| format!(" ({n})")).unwrap_or_default();
                let _ = write!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{c}\" fill-opacity=\"0.8\"><title>{}{}: x {}, y {}\
                     </title></circle>",
                    esc(&se.name),
                    esc(&note),
                    fmt(p.0),
                    fmt(p.1)
                );
            }
            s += "</g>";
        }
        s += &legend(&f, &names, lw);
        Some(s + "</svg>\n")
    }
}

/// One step window on the step timeline (times in ms from the first counter update shown).
#[derive(Clone, Debug)]
pub struct StepSpan {
    pub step: u64,
    pub start: f64,
    pub end: f64,
    pub energy_j: Option<f64>,
    /// (kernel, its time in ms) in launch order, drawn back to back at the end of the window.
    pub kernels: Vec<(String, f64)>,
}

/// The step timeline: three lanes over one counter update interval: the counter's updates, the step windows
/// between them (and the carried residual after the last update), and each step's kernels. Kernel colours
/// follow `kernel_names` (the legend, outside the plot area).
pub struct Timeline<'a> {
    pub caption: &'a str,
    pub steps: &'a [StepSpan],
    /// Counter update times (ms).
    pub updates: &'a [f64],
    /// (from, to) in ms: the part of the last window after the last update, carried to the next update.
    pub residual: Option<(f64, f64)>,
    pub kernel_names: &'a [String],
}

impl Timeline<'_> {
    pub fn svg(&self) -> Option<String> {
        let ends: Vec<f64> =
            self.steps.iter().flat_map(|s| [s.start, s.end]).chain(self.updates.iter().copied()).collect();
        let lo = ends.iter().copied().fold(f64::MAX, f64::min);
        let hi = ends.iter().copied().fold(f64::MIN, f64::max);
        let xa = Axis::linear(lo, hi, 8)?;
        let lw = self.kernel_names.iter().map(|n| text_w(n, FONT - 1.0)).fold(60.0, f64::max).min(230.0) + 40.0;
        let f = Frame::new(self.caption, 118.0, lw, 330.0);
        let mut s = f.open(self.caption, "timeline");
        s += &f.x_ticks(&xa);
        s += &f.axis_names("time (ms from the first counter update shown)", "");
        let lane_h = (f.b - f.t) / 3.0;
        let lanes = ["counter updates", "step windows", "kernels"];
        for (i, name) in lanes.iter().enumerate() {
            let _ = write!(
                s,
                "<text class=\"tick category lane\" x=\"{}\" y=\"{:.1}\" font-size=\"{FONT}\" text-anchor=\"end\">{name}</text>",
                f.l - 6.0,
                f.t + lane_h * (i as f64 + 0.5) + 4.0
            );
        }
        let x = |v: f64| xa.px(v, f.l, f.r);
        s += &self.residual_svg(&f, lane_h, &x);
        s += &self.steps_svg(&f, lane_h, &x);
        for u in self.updates {
            let _ = write!(
                s,
                "<line class=\"update\" x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#B00\" stroke-width=\"2\">\
                 <title>counter update at {3} ms</title></line><circle cx=\"{0:.1}\" cy=\"{4:.1}\" r=\"5\" fill=\"#B00\">\
                 <title>counter update at {3} ms: the energy since the previous update becomes readable</title></circle>",
                x(*u),
                f.t,
                f.b,
                fmt(*u),
                f.t + lane_h / 2.0
            );
        }
        s += &legend(&f, self.kernel_names, lw);
        Some(s + "</svg>\n")
    }

    fn residual_svg(&self, f: &Frame, lane_h: f64, x: &dyn Fn(f64) -> f64) -> String {
        let Some((a, b)) = self.residual.filter(|(a, b)| b > a) else { return String::new() };
        format!(
            "<rect class=\"residual\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#ddd\" \
             stroke=\"#777\" stroke-dasharray=\"4 2\"><title>carried residual: {} ms of this window fall after the \
             last update; their energy is only read at the next update and is carried there</title></rect>\
             <text class=\"residual-label\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{}\" fill=\"#444\">residual</text>",
            x(a),
            f.t + lane_h + 4.0,
            (x(b) - x(a)).max(1.0),
            lane_h - 8.0,
            fmt(b - a),
            x(a) + 2.0,
            f.t + lane_h - 2.0,
            FONT - 2.0
        )
    }

    fn steps_svg(&self, f: &Frame, lane_h: f64, x: &dyn Fn(f64) -> f64) -> String {
        let mut s = String::from("<g class=\"steps\">");
        for (i, st) in self.steps.iter().enumerate() {
            let fill = if i % 2 == 0 { "#9ecae1" } else { "#c6dbef" };
            let e = st.energy_j.map(|e| format!(", attributed {} J", fmt(e))).unwrap_or_default();
            let _ = write!(
                s,
                "<rect class=\"window\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" \
                 stroke=\"#3182bd\"><title>step {}: window {}-{} ms{e}</title></rect>",
                x(st.start),
                f.t + lane_h + 10.0,
                (x(st.end) - x(st.start)).max(0.5),
                lane_h - 20.0,
                st.step,
                fmt(st.start),
                fmt(st.end)
            );
            // Kernels back to back at the end of the window (launch order; exact starts are not recorded).
            let mut t = st.end - st.kernels.iter().map(|k| k.1).sum::<f64>();
            for (name, d) in &st.kernels {
                let c = self.kernel_names.iter().position(|n| n == name).map_or("#999", |j| style(j).0);
                let _ = write!(
                    s,
                    "<rect class=\"kernel\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{c}\">\
                     <title>step {}: {name}, {} ms</title></rect>",
                    x(t),
                    f.t + 2.0 * lane_h + 10.0,
                    (x(t + d) - x(t)).max(0.5),
                    lane_h - 20.0,
                    st.step,
                    fmt(*d)
                );
                t += d;
            }
        }
        s + "</g>"
    }
}

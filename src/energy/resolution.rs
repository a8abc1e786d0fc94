//! Resolution guards: what an energy counter that updates every `period` can and cannot resolve.
//!
//! A counter that adds one update every period (about 100 ms on NVML) cannot tell what happened inside an
//! update. A window spanning n periods sees either floor(n) or ceil(n) updates, so its counter delta is off by
//! up to one update's energy: about 1/n of the window's energy. Below a few updates the number is a resolution
//! bound, not a measurement (a 0.04 s run on a 100 ms counter reports 0 J or a whole update's 12 J).
//!
//! ## The stated numbers
//! - a **window** (a step, an evaluation, a calibration window) is resolved from [`WINDOW_MIN_UPDATES`] = 2
//!   updates on (edge error at most about 50 %; shorter windows are attributed from the update edges, see
//!   `window.rs`, and labelled here as below resolution);
//! - a **run** total from [`RUN_MIN_UPDATES`] = 10 updates (edge error at most about 10 %);
//! - a **comparison** of two runs or arms needs each side at [`COMPARISON_MIN_UPDATES`] = 10 updates.
//!
//! With part-time sampling (the counter adds the mean power of the last `window` of each period, e.g. 25 ms
//! of every 100 ms on A100/H100) only window/period of the time is seen, so the updates are counted as
//! `duration / period x window / period` (effective updates): a conservative rule, stated, not derived.
//!
//! ## Comparing two numbers (`compare`)
//! - both resolved: [`Comparison::Resolved`], the ratio a/b with an interval. Each side's relative half-width
//!   is its stated uncertainty, or, when none is given, one update's share `1 / effective updates`; the
//!   ratio's relative half-width is their root sum of squares (first-order propagation, the two sides
//!   independent). Example: a = 120 J over 2 s, b = 100 J over 2 s on a 100 ms continuous counter: 20 updates
//!   each, 5 % each, ratio 1.20 with relative half-width sqrt(0.05² + 0.05²) = 7.1 %: 1.20 ± 0.085.
//! - one side below resolution: [`Comparison::Bound`]. A window spanning n periods saw between n - 1 and
//!   n + 1 updates' worth, so its true energy lies in [e n/(n+1), e n/(n-1)] (no upper bound for n <= 1), and
//!   the ratio lies between the bounds that follow. Not an estimate of the ratio.
//! - both below resolution: [`Comparison::Unresolved`]; never a ratio of two unresolved numbers. The time is
//!   still comparable; the energy is not.
//!
//! The sensor's character comes from `powertrain bench sensor` (stored per device, [`SensorVerdict`]), else
//! from the twin's settings on `--energy sim`, else from the update period the run itself measured (integration
//! then unknown, and counted as continuous).
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A window (step, evaluation, calibration window) shorter than this many updates is below resolution.
pub const WINDOW_MIN_UPDATES: f64 = 2.0;
/// A run total over fewer updates than this is below resolution.
pub const RUN_MIN_UPDATES: f64 = 10.0;
/// Each side of a comparison needs this many updates.
pub const COMPARISON_MIN_UPDATES: f64 = 10.0;

/// How the counter turns power into energy, as far as it is known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorResolution {
    /// Seconds between counter updates.
    pub update_period_s: f64,
    /// "continuous", "part-time" or "unknown" (counted as continuous).
    pub integration: String,
    /// With part-time sampling: the sampled part of each period (s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_window_s: Option<f64>,
    /// Where these numbers come from (`bench sensor` on a date, the twin's settings, the run's own reads).
    pub from: String,
}

/// What a span of time is, for the number of updates it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Window,
    Run,
    Comparison,
}

impl Span {
    pub fn min_updates(self) -> f64 {
        match self {
            Span::Window => WINDOW_MIN_UPDATES,
            Span::Run => RUN_MIN_UPDATES,
            Span::Comparison => COMPARISON_MIN_UPDATES,
        }
    }
}

/// A duration's label: how many (effective) updates it spans and whether that is enough.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub duration_s: f64,
    /// Effective updates (see the module docs for part-time sampling).
    pub updates: f64,
    pub min_updates: f64,
    pub resolved: bool,
    /// "resolved (23.0 updates)" or "below resolution (0.4 of 10 updates)".
    pub text: String,
}

impl SensorResolution {
    /// Share of each period the counter sees (1 for continuous or unknown integration).
    pub fn seen_fraction(&self) -> f64 {
        match (self.integration.as_str(), self.sampling_window_s) {
            ("part-time", Some(w)) if w > 0.0 && self.update_period_s > 0.0 => (w / self.update_period_s).min(1.0),
            _ => 1.0,
        }
    }

    /// Effective updates in `duration_s`.
    pub fn updates(&self, duration_s: f64) -> f64 {
        if !(self.update_period_s > 0.0) || !duration_s.is_finite() {
            return 0.0;
        }
        (duration_s.max(0.0) / self.update_period_s) * self.seen_fraction()
    }

    /// The shortest resolved duration of `span` (s).
    pub fn min_duration_s(&self, span: Span) -> f64 {
        span.min_updates() * self.update_period_s / self.seen_fraction()
    }

    pub fn label(&self, duration_s: f64, span: Span) -> Label {
        let (n, min) = (self.updates(duration_s), span.min_updates());
        let resolved = n >= min;
        let text = if resolved {
            format!("resolved ({n:.1} updates)")
        } else {
            format!("below resolution ({n:.2} of {min:.0} updates)")
        };
        Label { duration_s, updates: n, min_updates: min, resolved, text }
    }

    /// Runs of `run_s` seconds to repeat so that their sum reaches a comparison's resolution.
    pub fn repeats_needed(&self, run_s: f64) -> usize {
        let need = self.min_duration_s(Span::Comparison);
        if run_s >= need {
            1
        } else if run_s > 0.0 {
            (need / run_s).ceil() as usize
        } else {
            usize::MAX
        }
    }
}

/// One side of a comparison: an energy over a duration, with its stated uncertainty when known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub energy_j: f64,
    pub duration_s: f64,
    /// Half-width of its interval (J), e.g. the meter's; None: one update's share is used.
    pub half_width_j: Option<f64>,
}

/// The outcome of `compare(a, b)` for the ratio a / b.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "kebab-case")]
pub enum Comparison {
    /// Both sides resolved: the ratio with an interval.
    Resolved { ratio: f64, lo: f64, hi: f64, a_updates: f64, b_updates: f64 },
    /// One side below resolution: only bounds on the ratio (hi may be infinite: serialised as null).
    Bound { lo: f64, hi: Option<f64>, why: String },
    /// Both below resolution: no ratio.
    Unresolved { why: String },
}

impl Comparison {
    /// For tables: "1.20 [1.12, 1.29]", "bound [0.8, 3.1]", "not resolved".
    pub fn short(&self) -> String {
        match self {
            Comparison::Resolved { ratio, lo, hi, .. } => format!("{ratio:.2} [{lo:.2}, {hi:.2}]"),
            Comparison::Bound { lo, hi: Some(hi), .. } => format!("bound [{lo:.2}, {hi:.2}]"),
            Comparison::Bound { lo, hi: None, .. } => format!("bound [{lo:.2}, inf)"),
            Comparison::Unresolved { .. } => "not resolved".into(),
        }
    }
}

/// Bounds on the true energy of a window of `n` effective updates whose counter delta is `e`.
fn energy_bounds(e: f64, n: f64) -> (f64, Option<f64>) {
    let lo = if n > 0.0 { e * n / (n + 1.0) } else { 0.0 };
    let hi = (n > 1.0).then(|| e * n / (n - 1.0));
    (lo, hi)
}

/// Compare `a` with `b` (ratio a / b) on a counter of resolution `res` (see the module docs).
pub fn compare(res: &SensorResolution, a: Measured, b: Measured) -> Comparison {
    let (la, lb) = (res.label(a.duration_s, Span::Comparison), res.label(b.duration_s, Span::Comparison));
    let valid = |m: &Measured| m.energy_j.is_finite() && m.energy_j >= 0.0;
    if !valid(&a) || !valid(&b) {
        return Comparison::Unresolved { why: "an energy is missing or not finite".into() };
    }
    match (la.resolved, lb.resolved) {
        (true, true) if b.energy_j > 0.0 => {
            let rel = |m: &Measured, n: f64| match m.half_width_j {
                Some(h) if m.energy_j > 0.0 => h / m.energy_j,
                _ => 1.0 / n,
            };
            let r = a.energy_j / b.energy_j;
            let half = r * (rel(&a, la.updates).powi(2) + rel(&b, lb.updates).powi(2)).sqrt();
            Comparison::Resolved { ratio: r, lo: r - half, hi: r + half, a_updates: la.updates, b_updates: lb.updates }
        }
        (true, true) => Comparison::Unresolved { why: "the second energy is 0 J".into() },
        (false, false) => Comparison::Unresolved {
            why: format!(
                "both below resolution (a {}, b {}); compare times only, or repeat runs to {:.1} s each",
                la.text,
                lb.text,
                res.min_duration_s(Span::Comparison)
            ),
        },
        (ra, _) => {
            let bound = |m: &Measured, l: &Label| {
                if l.resolved {
                    (m.energy_j, Some(m.energy_j))
                } else {
                    energy_bounds(m.energy_j, l.updates)
                }
            };
            let ((alo, ahi), (blo, bhi)) = (bound(&a, &la), bound(&b, &lb));
            let lo = match bhi {
                Some(h) if h > 0.0 => alo / h,
                _ => 0.0,
            };
            let hi = match ahi {
                Some(h) if blo > 0.0 => Some(h / blo),
                _ => None,
            };
            let which = if ra { "b" } else { "a" };
            let text = if ra { &lb.text } else { &la.text };
            Comparison::Bound { lo, hi, why: format!("{which} is {text}: the ratio is only bounded") }
        }
    }
}

/// The `resolution` block of summary.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResolution {
    /// The counter's character; None when unknown (a power reading, or no update period measured).
    pub sensor: Option<SensorResolution>,
    /// The run's total over its wall time.
    pub run: Option<Label>,
    /// A typical step (its mean window).
    pub step: Option<Label>,
    pub min_updates_window: f64,
    pub min_updates_run: f64,
    pub min_updates_comparison: f64,
    /// The shortest run a comparison can resolve on this counter (s).
    pub min_comparison_s: Option<f64>,
    pub note: String,
}

/// The resolution of a run on `source` that lasted `wall_s` with steps of `mean_step_s`. `sensor` is what is
/// known of the counter (`sensor_for_run`). None for estimates and runs without energy (nothing is resolved).
pub fn for_run(source: &str, sensor: Option<SensorResolution>, wall_s: f64, mean_step_s: f64) -> Option<RunResolution> {
    if matches!(source, "none" | "estimate" | "") {
        return None;
    }
    let run = sensor.as_ref().map(|s| s.label(wall_s, Span::Run));
    let step = sensor.as_ref().filter(|_| mean_step_s > 0.0).map(|s| s.label(mean_step_s, Span::Window));
    let mut note = match (&run, &step) {
        (Some(r), Some(st)) if !st.resolved => format!(
            "run total {}; single steps {}: per-step energies are attributed from the counter's updates, not \
             resolved one by one",
            r.text, st.text
        ),
        (Some(r), _) => format!("run total {}", r.text),
        _ => {
            "the counter's update period is unknown: resolution not established (run `powertrain bench sensor`)".into()
        }
    };
    if source == "sim" {
        note.push_str("; sim: a model of a counter, not a measurement");
    }
    Some(RunResolution {
        min_comparison_s: sensor.as_ref().map(|s| s.min_duration_s(Span::Comparison)),
        sensor,
        run,
        step,
        min_updates_window: WINDOW_MIN_UPDATES,
        min_updates_run: RUN_MIN_UPDATES,
        min_updates_comparison: COMPARISON_MIN_UPDATES,
        note,
    })
}

/// What is known of the run's counter: the twin's settings on sim (the context's `sim.sensor_model`), else a
/// stored `bench sensor` verdict for the context's device (`gpu_uuid`, else the source), else the update
/// period the run measured (integration unknown).
pub fn sensor_for_run(ctx: &super::EnergyContext) -> Option<SensorResolution> {
    if let Some(m) = ctx.sensor.get("sim").and_then(|s| s.get("sensor_model")) {
        if let Ok(m) = serde_json::from_value::<super::twin::SensorModel>(m.clone()) {
            return Some(from_sensor_model(&m, "the twin's settings (--sim-sensor)"));
        }
    }
    if let Some(v) = SensorVerdict::load(&device_key(ctx)) {
        return Some(v.resolution());
    }
    let p = ctx.totals().and_then(|t| t.update_period_s).filter(|p| *p > 0.0)?;
    Some(SensorResolution {
        update_period_s: p,
        integration: "unknown".into(),
        sampling_window_s: None,
        from: "the update period this run measured; integration unknown (run `powertrain bench sensor`)".into(),
    })
}

/// A twin's counter settings as a resolution.
pub fn from_sensor_model(m: &super::twin::SensorModel, from: &str) -> SensorResolution {
    let (integration, w) = match m.integration {
        super::twin::Integration::Continuous => ("continuous", None),
        super::twin::Integration::PartTime { window_s } => ("part-time", Some(window_s)),
    };
    SensorResolution {
        update_period_s: m.period_s,
        integration: integration.into(),
        sampling_window_s: w,
        from: from.into(),
    }
}

/// The key a device's stored sensor verdict goes under: the GPU's UUID, else the energy source's name.
pub fn device_key(ctx: &super::EnergyContext) -> String {
    match ctx.sensor.get("gpu_uuid").and_then(|v| v.as_str()) {
        Some(u) if !u.starts_with("unavailable") => u.to_string(),
        _ => ctx.source.clone(),
    }
}

/// The folder of stored device characterisations: `$POWERTRAIN_CACHE`, else `$XDG_CACHE_HOME/powertrain`,
/// else `$HOME/.cache/powertrain`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("POWERTRAIN_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("powertrain")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("powertrain")))
}

/// What `powertrain bench sensor` found, stored as `<cache>/sensor/<device key>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorVerdict {
    /// The device key (GPU UUID, or `sim` / `rapl`).
    pub device: String,
    pub source: String,
    /// Median gap between counter updates (s).
    pub update_period_s: f64,
    /// "continuous" or "part-time"; "unknown" when the probe could not tell.
    pub integration: String,
    /// The sampled part of each period (s), with part-time sampling.
    pub sampling_window_s: Option<f64>,
    /// Delay from a power step to the first update that shows it (s), minus the phase wait.
    pub lag_s: Option<f64>,
    /// Instant power reading vs counter over the same span ((instant - counter) / counter), where both exist.
    pub instant_vs_counter: Option<f64>,
    /// One line for people.
    pub verdict: String,
    /// UTC time of the measurement (RFC 3339).
    pub measured_at: String,
    /// How it was obtained ("measured" on hardware, "sim: ..." on the twin).
    pub method: String,
    /// The probe's raw numbers.
    pub details: serde_json::Value,
}

impl SensorVerdict {
    pub fn resolution(&self) -> SensorResolution {
        SensorResolution {
            update_period_s: self.update_period_s,
            integration: self.integration.clone(),
            sampling_window_s: self.sampling_window_s,
            from: format!("powertrain bench sensor, {} ({})", self.measured_at, self.method),
        }
    }

    fn path_in(dir: &Path, key: &str) -> PathBuf {
        let safe: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        dir.join("sensor").join(format!("{safe}.json"))
    }

    /// Store under the cache folder; returns the file written.
    pub fn store(&self) -> anyhow::Result<PathBuf> {
        let dir = cache_dir().ok_or_else(|| {
            anyhow::anyhow!("no cache folder: set POWERTRAIN_CACHE (or HOME) to store the sensor's verdict")
        })?;
        let path = Self::path_in(&dir, &self.device);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| anyhow::anyhow!("{}: cannot create ({e})", p.display()))?;
        }
        crate::util::write_json(&path, self)?;
        Ok(path)
    }

    /// The stored verdict for `key`, if any (an unreadable file counts as none).
    pub fn load(key: &str) -> Option<SensorVerdict> {
        let path = Self::path_in(&cache_dir()?, key);
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Every stored verdict (for `powertrain info`).
    pub fn load_all() -> Vec<SensorVerdict> {
        let Some(dir) = cache_dir() else { return Vec::new() };
        let Ok(rd) = std::fs::read_dir(dir.join("sensor")) else { return Vec::new() };
        let mut v: Vec<SensorVerdict> =
            rd.flatten().filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()).collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(period: f64) -> SensorResolution {
        SensorResolution {
            update_period_s: period,
            integration: "continuous".into(),
            sampling_window_s: None,
            from: "test".into(),
        }
    }

    #[test]
    fn labels_follow_the_stated_numbers_of_updates() {
        let c = counter(0.1);
        assert!(!c.label(0.19, Span::Window).resolved);
        assert!(c.label(0.2, Span::Window).resolved);
        // The GPU sweep's 0.04-0.13 s runs: below a run's 10 updates.
        for d in [0.04, 0.13] {
            let l = c.label(d, Span::Run);
            assert!(!l.resolved && l.text.starts_with("below resolution"), "{l:?}");
        }
        assert!(c.label(1.0, Span::Run).resolved);
        // Part-time 25 ms of 100 ms: a second holds 2.5 effective updates.
        let pt = SensorResolution { integration: "part-time".into(), sampling_window_s: Some(0.025), ..counter(0.1) };
        assert!((pt.updates(1.0) - 2.5).abs() < 1e-12);
        assert!(!pt.label(1.0, Span::Comparison).resolved);
        assert!((pt.min_duration_s(Span::Comparison) - 4.0).abs() < 1e-12);
        assert_eq!(c.repeats_needed(0.13), 8);
        assert_eq!(c.repeats_needed(2.0), 1);
    }

    #[test]
    fn comparisons_are_resolved_bounded_or_refused() {
        let c = counter(0.1);
        let m = |e: f64, d: f64| Measured { energy_j: e, duration_s: d, half_width_j: None };
        // The worked example of the module docs.
        let Comparison::Resolved { ratio, lo, hi, .. } = compare(&c, m(120.0, 2.0), m(100.0, 2.0)) else {
            panic!("resolved")
        };
        assert!((ratio - 1.2).abs() < 1e-12);
        assert!(((hi - lo) / 2.0 - 1.2 * (2.0f64 * 0.05 * 0.05).sqrt()).abs() < 1e-12);
        // A stated uncertainty replaces the update share.
        let Comparison::Resolved { lo, hi, .. } = compare(
            &c,
            Measured { half_width_j: Some(1.2), ..m(120.0, 2.0) },
            Measured { half_width_j: Some(1.0), ..m(100.0, 2.0) },
        ) else {
            panic!()
        };
        assert!(((hi - lo) / 2.0 - 1.2 * (2.0f64 * 0.01 * 0.01).sqrt()).abs() < 1e-12);
        // Both unresolved (0.04 s and 0.13 s runs): no ratio at all.
        let u = compare(&c, m(5.0, 0.04), m(12.0, 0.13));
        assert!(matches!(u, Comparison::Unresolved { .. }), "{u:?}");
        assert_eq!(u.short(), "not resolved");
        // One side at 0.5 s (5 updates, under 10): bounds [e 5/6, e 5/4] on it.
        let Comparison::Bound { lo, hi, .. } = compare(&c, m(100.0, 2.0), m(60.0, 0.5)) else { panic!() };
        assert!((lo - 100.0 / 75.0).abs() < 1e-12 && (hi.unwrap() - 100.0 / 50.0).abs() < 1e-12);
        // An unresolved numerator of under one update has no upper bound.
        let Comparison::Bound { lo, hi, .. } = compare(&c, m(3.0, 0.05), m(100.0, 2.0)) else { panic!() };
        assert!(hi.is_none() && (lo - 3.0 * (0.5 / 1.5) / 100.0).abs() < 1e-12);
        let v = serde_json::to_value(compare(&c, m(3.0, 0.05), m(100.0, 2.0))).unwrap();
        assert_eq!(v["resolution"], "bound");
    }

    #[test]
    fn run_blocks_say_what_is_resolved_and_verdicts_round_trip_through_the_cache() {
        assert!(for_run("estimate", Some(counter(0.1)), 10.0, 0.01).is_none());
        let r = for_run("nvml-counter", Some(counter(0.1)), 0.13, 0.001).unwrap();
        assert!(!r.run.as_ref().unwrap().resolved && !r.step.as_ref().unwrap().resolved);
        assert_eq!(r.min_comparison_s, Some(1.0));
        let r = for_run("nvml-counter", None, 30.0, 0.001).unwrap();
        assert!(r.run.is_none() && r.note.contains("bench sensor"));

        let dir = tempfile::tempdir().unwrap();
        let v = SensorVerdict {
            device: "GPU-1234/x".into(),
            source: "sim".into(),
            update_period_s: 0.1,
            integration: "part-time".into(),
            sampling_window_s: Some(0.025),
            lag_s: None,
            instant_vs_counter: None,
            verdict: "v".into(),
            measured_at: "t".into(),
            method: "sim".into(),
            details: serde_json::Value::Null,
        };
        let path = SensorVerdict::path_in(dir.path(), &v.device);
        assert!(path.ends_with("sensor/GPU-1234_x.json"), "{}", path.display());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        crate::util::write_json(&path, &v).unwrap();
        let back: SensorVerdict = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, v);
        assert!((back.resolution().seen_fraction() - 0.25).abs() < 1e-12);
    }
}

//! Windows: the spans of time the meter gives energy to, and the energy of one from the sensor.
//!
//! A window opens at `begin_step` and closes at `end_step`. Contiguous windows (the default) start where the
//! previous one ended, so the host work between steps belongs to the next window (its `gap`), and no sensor is
//! read when a window opens.
use super::attribution::{self, Timeline};
use super::sampling::Sensing;

/// A window opened by `begin_step`.
#[derive(Clone, Debug)]
pub(super) struct OpenStep {
    /// Window start (the previous window's end when contiguous).
    pub a: f64,
    /// Start of the step's own work (`begin_step`'s time).
    pub work: f64,
    /// The counter at `a`.
    pub counter: Option<f64>,
    /// A failed read at `a`.
    pub error: Option<String>,
}

/// A closed window: `[a, work)` is the host gap before the step, `[work, b]` the step's own work.
#[derive(Clone, Debug)]
pub(super) struct Span {
    pub open: OpenStep,
    pub a: f64,
    pub work: f64,
    pub b: f64,
}

impl Span {
    pub fn dt(&self) -> f64 {
        self.b - self.a
    }
    pub fn gap_s(&self) -> f64 {
        self.work - self.a
    }
    pub fn busy_s(&self) -> f64 {
        self.b - self.work
    }
}

/// The window edges of a run.
pub(super) struct Windows {
    contiguous: bool,
    open: Option<OpenStep>,
    /// The first window's start.
    pub run_start_s: Option<f64>,
    /// The latest window's end.
    pub last_end_s: f64,
    /// End of the previous window and the counter value read there, for contiguous windows.
    prev_end: Option<(f64, Option<f64>)>,
}

impl Windows {
    pub fn new(contiguous: bool) -> Windows {
        Windows { contiguous, open: None, run_start_s: None, last_end_s: 0.0, prev_end: None }
    }

    /// True before the first window opened.
    pub fn not_started(&self) -> bool {
        self.run_start_s.is_none()
    }

    /// Open a window for a step starting at `now_s`: where the previous one ended (contiguous), else at
    /// `now_s` with a sensor read.
    pub fn open(&mut self, now_s: f64, sensing: &mut Sensing) {
        if let Some((t, counter)) = self.prev_end.filter(|(t, _)| self.contiguous && *t <= now_s) {
            self.open = Some(OpenStep { a: t, work: now_s, counter, error: None });
            return;
        }
        let (counter, error) = sensing.edge_read(now_s);
        if self.run_start_s.is_none() {
            self.run_start_s = Some(now_s);
        }
        self.open = Some(OpenStep { a: now_s, work: now_s, counter, error });
    }

    /// Close the open window at `now_s` (a window that was never opened starts at the previous end).
    pub fn close(&mut self, now_s: f64) -> Span {
        let last = self.last_end_s;
        let open = self.open.take().unwrap_or(OpenStep { a: last, work: last, counter: None, error: None });
        let a = open.a;
        let b = now_s.max(a);
        let work = open.work.clamp(a, b);
        self.last_end_s = b;
        Span { open, a, work, b }
    }

    /// The next window may start at `b` (with the counter read there); None: it starts afresh.
    pub fn continue_from(&mut self, next: Option<(f64, Option<f64>)>) {
        self.prev_end = next;
    }

    /// The first window's start and the last one's end.
    pub fn run_span(&self) -> (f64, f64) {
        (self.run_start_s.unwrap_or(self.last_end_s), self.last_end_s)
    }
}

/// Energy of the window `span` from the sensor (`counter`: its value at `span.b`, or `err` when that read
/// failed): (joules, half-width, method). A window at least `long_periods` update periods long reports the
/// counter's raw delta; shorter ones are attributed from the update edges.
pub(super) fn measured(
    sensing: &Sensing,
    span: &Span,
    counter: Option<f64>,
    err: Option<String>,
    long_periods: f64,
) -> (Option<f64>, Option<f64>, String) {
    let (a, b) = (span.a, span.b);
    let dt = b - a;
    if let Some(e) = err {
        return (None, None, format!("sensor-error: {e}"));
    }
    if let Some(e) = &span.open.error {
        return (None, None, format!("sensor-error at step start: {e}"));
    }
    let mut tl = sensing.timeline();
    if !sensing.is_counter {
        return power_integral(&mut tl, a, b);
    }
    let quantum = sensing.quantum_j;
    let period = tl.period_s();
    let (Some(ca), Some(cb)) = (span.open.counter, counter) else {
        return (None, None, "sensor-error: no counter value".into());
    };
    let d = cb - ca;
    if d < 0.0 || tl.reset_within(a, b) || (dt > 0.0 && d / dt > attribution::MAX_PLAUSIBLE_W) {
        return (None, None, "invalid: counter went backwards or jumped (reset or wrap) in this window".into());
    }
    tl.settle();
    let p = tl.recent_power_w();
    if let Some(per) = period.filter(|per| dt >= long_periods * per) {
        let e = tl.absorb_residual(d);
        let unc = quantum + p.unwrap_or(d / dt.max(1e-9)) * per;
        return (Some(e), Some(unc), "counter-delta".into());
    }
    match tl.window_energy(a, b) {
        Some((est, _)) => {
            let e = tl.absorb_residual(est);
            let p = tl.recent_power_w().unwrap_or(0.0);
            let unc = quantum + p * period.unwrap_or(dt).min(dt.max(0.0));
            (Some(e), Some(unc), "counter-edges-interpolated (window shorter than the update period)".into())
        }
        None => {
            (None, None, "counter-not-updated-yet (no update edge seen; this energy is carried to later steps)".into())
        }
    }
}

/// Energy of [a, b] from power samples.
fn power_integral(tl: &mut Timeline, a: f64, b: f64) -> (Option<f64>, Option<f64>, String) {
    let period = tl.period_s();
    match tl.window_energy(a, b) {
        Some((est, _)) => {
            let e = tl.absorb_residual(est);
            let p = tl.recent_power_w().unwrap_or(0.0);
            // The sensor's averaging window smears energy across window edges; add 5 % for the sensor's
            // stated accuracy.
            let unc = 0.05 * e + p * period.unwrap_or(0.0).min(b - a);
            (Some(e), Some(unc), "power-integral".into())
        }
        None => (None, None, "no-power-samples-yet (carried to later steps)".into()),
    }
}

/// The part of a window's energy `e` in its host gap: the gap's share of the power-weighted time.
pub(super) fn gap_energy(span: &Span, e: f64, power_j: &dyn Fn(f64, f64) -> f64) -> f64 {
    let (a, work, b) = (span.a, span.work, span.b);
    let whole = power_j(a, b);
    if work <= a {
        0.0
    } else if whole > 0.0 {
        e * (power_j(a, work) / whole).clamp(0.0, 1.0)
    } else if span.dt() > 0.0 {
        e * (work - a) / span.dt()
    } else {
        0.0
    }
}

/// Power-weighted time over [t0, t1]: the timeline's energy where it is known and `recent` watts where it
/// is not, for measured sources; plain seconds otherwise (estimates and none split by time).
pub(super) fn power_weight(tl: &Timeline, measured: bool) -> impl Fn(f64, f64) -> f64 + '_ {
    let p = tl.recent_power_w().unwrap_or(1.0);
    move |t0: f64, t1: f64| {
        if measured {
            let i = tl.integrate(t0, t1);
            i.known_j + i.unknown_s * p
        } else {
            t1 - t0
        }
    }
}

//! The meter's books: what the windows held, the idle baseline, and at the end the run's total, its idle /
//! active split and the accounting that goes into the energy context.
use super::attribution::Timeline;
use super::context::{PowerCheck, PowerReading, RunAccounting};
use super::sampling::{Checks, Sensing};
use super::window::Span;
use super::EnergySource;

/// Sums over the run's windows.
#[derive(Clone, Debug, Default)]
pub(super) struct Books {
    /// Sum of the windows' energies.
    pub steps_j: f64,
    pub steps_with_energy: u64,
    pub steps_without_energy: u64,
    /// Step work inside the windows (s).
    pub busy_s: f64,
    /// Host gaps folded into the windows (s).
    pub gap_s: f64,
    /// Measured before the run (`Meter::measure_idle`).
    pub idle_power_w: Option<f64>,
}

impl Books {
    pub fn add_span(&mut self, span: &Span) {
        self.busy_s += span.busy_s();
        self.gap_s += span.gap_s();
    }

    pub fn add_energy(&mut self, energy: Option<f64>) {
        match energy {
            Some(e) => {
                self.steps_j += e;
                self.steps_with_energy += 1;
            }
            None => self.steps_without_energy += 1,
        }
    }

    /// Idle (static) energy over `wall_s` and the rest, when both the idle power and the total are known.
    pub fn idle_split(&self, total: Option<f64>, wall_s: f64) -> (Option<f64>, Option<f64>) {
        let idle_j = match (self.idle_power_w, total) {
            (Some(p), Some(_)) => Some(p * wall_s),
            _ => None,
        };
        let active_j = match (total, idle_j) {
            (Some(t), Some(i)) => Some((t - i).max(0.0)),
            _ => None,
        };
        (idle_j, active_j)
    }
}

/// The run's total over [a, b] (`wall_s` long) and how it was obtained: the estimate's windows, the
/// counter's sum, or the power timeline's integral where it covers the run.
pub(super) fn run_total(
    source: EnergySource,
    sensing: &Sensing,
    books: &Books,
    tl: &Timeline,
    (a, b): (f64, f64),
) -> (Option<f64>, &'static str) {
    let wall = (b - a).max(0.0);
    let (total, note) = match source {
        EnergySource::None => (None, "no energy source"),
        EnergySource::Estimate => (Some(books.steps_j), "estimate: --watts x the windows' time"),
        _ if sensing.is_counter => {
            if sensing.counter.reset {
                (None, "counter went backwards during the run: no total (see total_lower_bound_j)")
            } else if sensing.counter.last.is_none() {
                (None, "no successful counter read")
            } else {
                (Some(sensing.counter.run_j), "counter delta, first begin_step to last end_step")
            }
        }
        _ => {
            let i = tl.integrate(a, b);
            match tl.recent_power_w() {
                Some(p) if i.unknown_s < 0.5 * wall.max(1e-9) => {
                    (Some(i.known_j + i.unknown_s * p), "power integral over the run")
                }
                _ => (None, "power timeline does not cover the run"),
            }
        }
    };
    (total.filter(|t| t.is_finite() && *t >= 0.0), note)
}

/// What the run's total was made of (`total`, by `total_method`) and how well the windows close on it.
pub(super) struct Closing<'a> {
    pub source: EnergySource,
    pub contiguous: bool,
    pub total: Option<f64>,
    pub total_method: &'static str,
    /// The residual left unattributed after settling.
    pub residual_j: f64,
    pub idle_j: Option<f64>,
    /// [first window start, last window end].
    pub span: (f64, f64),
    pub state_at_end: Option<serde_json::Value>,
    pub tl: &'a Timeline,
}

/// The run's accounting for the energy context.
pub(super) fn accounting(c: Closing<'_>, books: &Books, sensing: &Sensing) -> RunAccounting {
    let windows = if c.contiguous {
        "contiguous: each window starts where the previous ended (host gaps included), so windows sum to the total"
    } else {
        "step work only: host time between steps is in the total but in no window"
    };
    let checks = sensing.checks();
    RunAccounting {
        total_method: c.total_method.into(),
        steps_j: (c.source != EnergySource::None).then_some(books.steps_j),
        steps_with_energy: books.steps_with_energy,
        steps_without_energy: books.steps_without_energy,
        busy_s: books.busy_s,
        gap_s: books.gap_s,
        windows: windows.into(),
        // Closure: the windows' attributed energies over the run's total (1 = every joule attributed).
        closure: c.total.filter(|t| *t > 0.0).map(|t| books.steps_j / t),
        unattributed_residual_j: c.residual_j,
        update_period_s: c.tl.period_s(),
        counter_quantum_j: sensing.quantum_j,
        timeline_points: c.tl.len(),
        unsettled_windows: c.tl.unsettled,
        read_errors: sensing.errors(),
        // Clocks, temperature and throttle reasons at the end (the context's top level has them at start).
        state_at_end: c.state_at_end,
        last_read_error: sensing.last_error.clone(),
        total_lower_bound_j: sensing.counter.reset.then_some(sensing.counter.run_j),
        power_check: (!checks.labels.is_empty()).then(|| power_check(&checks, c.span, c.total)),
        idle_note: match (c.total, c.idle_j) {
            (Some(t), Some(i)) if i > t => Some("idle power x wall time exceeds the total: active clamped to 0".into()),
            _ => None,
        },
        uncertainty: None,
    }
}

/// The cross-checks over the run window [a, b] against the counter's `total`: each reading's integral, how
/// much of the window its samples cover, and the gap to the counter.
fn power_check(c: &Checks, (a, b): (f64, f64), total: Option<f64>) -> PowerCheck {
    let window = (b - a).max(0.0);
    let readings = c
        .labels
        .iter()
        .zip(&c.tls)
        .map(|(label, tl)| {
            let i = tl.integrate(a, b);
            let covered = if window > 0.0 { ((window - i.unknown_s) / window).clamp(0.0, 1.0) } else { 0.0 };
            // Uncovered time (before the first sample arrived, after the last) at the covered mean power.
            let integral = (covered >= 0.5).then(|| i.known_j / covered);
            let gap = match (integral, total) {
                (Some(p), Some(t)) if t > 0.0 => Some((p - t) / t),
                _ => None,
            };
            PowerReading {
                reading: label.clone(),
                integral_j: integral,
                covered_fraction: covered,
                samples: tl.len(),
                counter_j: total,
                gap_rel: gap,
            }
        })
        .collect();
    PowerCheck {
        window_s: window,
        readings,
        read_errors: c.errors,
        note: "power readings integrated over the same run window as the counter's total; gap_rel = \
               (integral - counter) / counter. On A100/H100 the instant reading covers ~25 ms of every 100 ms \
               (Yang et al.), so polling it can alias with periodic work; the counter is the reference."
            .into(),
    }
}

//! From raw readings to joules per window and per kernel.
//!
//! `Timeline` turns every observation into a bounded, piecewise-constant power timeline on the meter's clock:
//! - a counter (NVML total energy, RAPL) contributes one segment per observed update edge: the energy between
//!   two edges spread evenly over the time between them (an edge is placed at the midpoint of the two reads
//!   that bracket the change);
//! - power samples contribute one segment per sample, holding its value back to the previous sample.
//!
//! A window's energy is the integral of that timeline. The part of a window newer than the timeline (the
//! counter has not updated yet) is extrapolated at the latest power and recorded as *pending*; once the
//! timeline covers it, the difference (the residual) is carried forward into the next window, so windows
//! sum to the measured total and no short window reads as a silent 0 J.

use super::powercal::KernelPowers;
use super::{KernelEnergy, StepKernels};
use crate::ops::KernelTiming;
use crate::rundir::KernelRow;
use std::collections::{BTreeMap, VecDeque};

/// Above this a power value is not physical for one device/package (a reset or a bad counter).
pub const MAX_PLAUSIBLE_W: f64 = 20_000.0;

/// Name of the per-kernel row holding the energy between kernels within a step (idle, launch overhead).
pub const BETWEEN_KERNELS: &str = "(between kernels)";

/// Name of the per-kernel row holding the energy of the host gap before a step (contiguous windows: loading
/// the batch, writing records, evaluation bookkeeping).
pub const BETWEEN_STEPS: &str = "(between steps)";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seg {
    pub t0: f64,
    pub t1: f64,
    pub w: f64,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Start of the extrapolated part (the timeline's end when the window was reported).
    from: f64,
    to: f64,
    provisional_j: f64,
}

/// Integral of the timeline over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Integral {
    /// Joules from segments that cover the window.
    pub known_j: f64,
    /// Seconds of the window not covered by any segment.
    pub unknown_s: f64,
}

/// The power timeline with counter-edge tracking, reset marks and the carried residual.
#[derive(Debug)]
pub struct Timeline {
    segs: VecDeque<Seg>,
    cap: usize,
    last_read: Option<(f64, f64)>,
    last_edge: Option<(f64, f64)>,
    /// Time of the first read after a (re)start of the counter.
    since: f64,
    /// Smallest gap between two counter changes seen between consecutive tight reads (an upper bound of
    /// the update period); `None` until two changes were bracketed closely.
    pub min_update_gap_s: Option<f64>,
    nominal_period_s: Option<f64>,
    /// Intervals (t_prev_read, t_read] in which the counter went backwards or jumped implausibly.
    resets: VecDeque<(f64, f64)>,
    pending: VecDeque<Pending>,
    /// Joules measured but not yet reported (positive) or over-reported (negative), carried forward.
    pub residual_j: f64,
    /// Pending extrapolations dropped because the timeline no longer held their span.
    pub unsettled: u64,
}

impl Timeline {
    pub fn new(cap: usize, nominal_period_s: Option<f64>) -> Timeline {
        Timeline {
            segs: VecDeque::new(),
            cap: cap.max(16),
            last_read: None,
            last_edge: None,
            since: 0.0,
            min_update_gap_s: None,
            nominal_period_s,
            resets: VecDeque::new(),
            pending: VecDeque::new(),
            residual_j: 0.0,
            unsettled: 0,
        }
    }

    fn push(&mut self, s: Seg) {
        if s.t1.partial_cmp(&s.t0) != Some(std::cmp::Ordering::Greater) || !s.w.is_finite() || s.w < 0.0 {
            return;
        }
        if self.segs.len() == self.cap {
            self.segs.pop_front();
        }
        self.segs.push_back(s);
    }

    fn mark_reset(&mut self, t0: f64, t1: f64) {
        if self.resets.len() == 1024 {
            self.resets.pop_front();
        }
        self.resets.push_back((t0, t1));
    }

    /// Best current estimate of the update period (measured, else nominal).
    pub fn period_s(&self) -> Option<f64> {
        self.min_update_gap_s.or(self.nominal_period_s)
    }

    pub fn set_nominal_period(&mut self, p: Option<f64>) {
        if p.is_some() {
            self.nominal_period_s = p;
        }
    }

    /// A cumulative counter value `e` (J) read at time `t` (s).
    pub fn observe_counter(&mut self, t: f64, e: f64) {
        if !e.is_finite() {
            return;
        }
        let Some((tr, er)) = self.last_read else {
            self.last_read = Some((t, e));
            self.since = t;
            return;
        };
        if t < tr {
            return; // out of order (a sampler read that lost the race): ignore
        }
        if e < er {
            // Went backwards: a reset (driver reload) or an unhandled wrap. Re-baseline.
            self.mark_reset(tr, t);
            self.last_read = Some((t, e));
            self.last_edge = None;
            self.since = t;
            return;
        }
        if e > er {
            let te = 0.5 * (tr + t);
            match self.last_edge {
                Some((t_edge, e_edge)) => {
                    let gap = te - t_edge;
                    let w = (e - e_edge) / gap.max(1e-9);
                    if w > MAX_PLAUSIBLE_W {
                        self.mark_reset(tr, t);
                    } else {
                        self.push(Seg { t0: t_edge, t1: te, w });
                        // Only gaps bracketed tightly (read spacing well below the gap) measure the period.
                        if t - tr < 0.25 * gap {
                            self.min_update_gap_s = Some(self.min_update_gap_s.map_or(gap, |g| g.min(gap)));
                        }
                    }
                }
                None => {
                    // First edge after a (re)start: the energy since the previous update accrued over about
                    // one update period before this edge (the first read may sit anywhere in that period).
                    let span = self.nominal_period_s.unwrap_or(te - self.since).max(te - tr).max(1e-6);
                    let w = (e - er) / span;
                    if w <= MAX_PLAUSIBLE_W {
                        self.push(Seg { t0: te - span, t1: te, w });
                    }
                }
            }
            self.last_edge = Some((te, e));
        }
        self.last_read = Some((t, e));
    }

    /// A power sample `w` (W) taken at `t`; it stands for the time back to the previous sample.
    pub fn observe_power(&mut self, t: f64, w: f64) {
        if !w.is_finite() || !(0.0..=MAX_PLAUSIBLE_W).contains(&w) {
            return;
        }
        match self.last_read {
            Some((tp, _)) if t <= tp => {}
            Some((tp, _)) => {
                self.push(Seg { t0: tp, t1: t, w });
                self.last_read = Some((t, w));
            }
            None => {
                let span = self.nominal_period_s.unwrap_or(0.01);
                self.push(Seg { t0: t - span, t1: t, w });
                self.last_read = Some((t, w));
            }
        }
    }

    /// The latest (time, value) fed in: the counter value for counters, the power for power sensors.
    pub fn last_read(&self) -> Option<(f64, f64)> {
        self.last_read
    }

    /// End of the covered timeline.
    pub fn known_until(&self) -> Option<f64> {
        self.segs.back().map(|s| s.t1)
    }

    /// Latest power (W): the mean of the segments within the last 0.5 s of the timeline (or the last one).
    pub fn recent_power_w(&self) -> Option<f64> {
        let last = self.segs.back()?;
        let from = last.t1 - 0.5;
        let (mut j, mut s) = (0.0, 0.0);
        for g in self.segs.iter().rev() {
            if g.t1 <= from {
                break;
            }
            let a = g.t0.max(from);
            j += g.w * (g.t1 - a);
            s += g.t1 - a;
        }
        Some(if s > 0.0 { j / s } else { last.w })
    }

    /// Integral of the timeline over [a, b].
    pub fn integrate(&self, a: f64, b: f64) -> Integral {
        if b.partial_cmp(&a) != Some(std::cmp::Ordering::Greater) {
            return Integral::default();
        }
        let start = self.segs.partition_point(|s| s.t1 <= a);
        let (mut j, mut covered) = (0.0, 0.0);
        for s in self.segs.iter().skip(start) {
            if s.t0 >= b {
                break;
            }
            let o = s.t1.min(b) - s.t0.max(a);
            if o > 0.0 {
                j += s.w * o;
                covered += o;
            }
        }
        Integral { known_j: j, unknown_s: ((b - a) - covered).max(0.0) }
    }

    /// True when a reset or implausible jump was seen in a read interval overlapping (a, b].
    pub fn reset_within(&self, a: f64, b: f64) -> bool {
        self.resets.iter().any(|&(r0, r1)| r1 > a && r0 < b)
    }

    /// Settle pending extrapolations the timeline now covers: their difference goes into the residual.
    pub fn settle(&mut self) {
        let Some(until) = self.known_until() else { return };
        let oldest = self.segs.front().map_or(until, |s| s.t0);
        while let Some(p) = self.pending.front().copied() {
            if p.to <= oldest {
                self.pending.pop_front();
                self.unsettled += 1;
                continue;
            }
            if p.to > until {
                break;
            }
            self.pending.pop_front();
            let exact = self.integrate(p.from, p.to).known_j;
            self.residual_j += exact - p.provisional_j;
        }
    }

    /// Energy of the window [a, b] from the timeline: (joules, extrapolated seconds) or `None` when nothing
    /// is known about the power yet. Registers the extrapolated part as pending.
    pub fn window_energy(&mut self, a: f64, b: f64) -> Option<(f64, f64)> {
        self.settle();
        let int = self.integrate(a, b);
        if int.unknown_s <= 0.0 {
            return Some((int.known_j, 0.0));
        }
        let Some(p) = self.recent_power_w() else {
            // Nothing known yet: the whole window is carried (provisionally 0 J) and settles later.
            self.pending.push_back(Pending { from: a, to: b, provisional_j: 0.0 });
            return None;
        };
        let until = self.known_until().unwrap_or(a);
        let from = until.max(a);
        // Gaps inside the window (before `until`) are filled at the same power.
        let provisional = p * int.unknown_s;
        if b > from {
            let tail = p * (b - from);
            self.pending.push_back(Pending { from, to: b, provisional_j: tail });
            if self.pending.len() > 100_000 {
                self.pending.pop_front();
                self.unsettled += 1;
            }
        }
        Some((int.known_j + provisional, int.unknown_s))
    }

    /// Add the carried residual to a window's estimate without making it negative; returns the value to
    /// report and leaves what could not be absorbed in the residual.
    pub fn absorb_residual(&mut self, est_j: f64) -> f64 {
        let r = self.residual_j;
        let out = (est_j + r).max(0.0);
        self.residual_j = r - (out - est_j);
        out
    }

    /// Shift every stored time by `-delta_s` (the clock origin moved forward by `delta_s`).
    pub fn shift(&mut self, delta_s: f64) {
        for s in self.segs.iter_mut() {
            s.t0 -= delta_s;
            s.t1 -= delta_s;
        }
        for r in self.resets.iter_mut() {
            r.0 -= delta_s;
            r.1 -= delta_s;
        }
        for p in self.pending.iter_mut() {
            p.from -= delta_s;
            p.to -= delta_s;
        }
        if let Some(x) = self.last_read.as_mut() {
            x.0 -= delta_s;
        }
        if let Some(x) = self.last_edge.as_mut() {
            x.0 -= delta_s;
        }
    }

    /// (t, watts) points of the timeline (segment ends), oldest first.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.segs.iter().map(|s| (s.t1, s.w)).collect()
    }

    pub fn len(&self) -> usize {
        self.segs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }
}

/// What a step's shares are weighed by: the power timeline (`power_j(t0, t1)`: the timeline's energy over
/// [t0, t1], uniform power where it knows nothing; at a counter's update period this is a time split), or,
/// with `cal`, each kernel's calibrated power x its time and the gaps at the calibration's gap power.
#[derive(Clone, Copy)]
pub struct Weigh<'a> {
    pub power_j: &'a dyn Fn(f64, f64) -> f64,
    pub cal: Option<&'a KernelPowers>,
}

impl Weigh<'_> {
    /// Weight (J) of `name` running over [t0, t1] and the relative 95 % half-width of its power.
    fn kernel(&self, name: &str, t0: f64, t1: f64) -> (f64, f64) {
        match self.cal {
            Some(c) => {
                let (p, rel) = c.power(name);
                (p * (t1 - t0), rel)
            }
            None => ((self.power_j)(t0, t1).max(0.0), 0.0),
        }
    }
    /// Weight (J) of a gap of `busy` seconds within [t0, t1] holding `busy_w` of kernel weight.
    fn gap(&self, t0: f64, t1: f64, busy_s: f64, busy_w: f64) -> f64 {
        match self.cal {
            Some(c) => c.gap_w * ((t1 - t0) - busy_s).max(0.0),
            None => ((self.power_j)(t0, t1).max(0.0) - busy_w).max(0.0),
        }
    }
}

/// A step's rows before the energy is shared: per kernel name (first-launch order), then the gaps, with their
/// weights and the relative half-widths of their powers.
fn weigh_rows(
    a: f64,
    work: f64,
    b: f64,
    kernels: &[KernelTiming],
    wg: &Weigh<'_>,
) -> (Vec<KernelEnergy>, Vec<(f64, f64)>) {
    let mut rows: Vec<KernelEnergy> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut weights: Vec<(f64, f64)> = Vec::new();
    let (mut busy_s, mut busy_w) = (0.0, 0.0);
    for k in kernels {
        let t0 = k.start_s.max(work);
        let t1 = (k.start_s + k.dur_s.max(0.0)).min(b);
        let d = (t1 - t0).max(0.0);
        let (w, rel) = if d > 0.0 { wg.kernel(k.name, t0, t1) } else { (0.0, 0.0) };
        let i = *index.entry(k.name).or_insert_with(|| {
            rows.push(KernelEnergy { name: k.name.to_string(), ..Default::default() });
            weights.push((0.0, rel));
            rows.len() - 1
        });
        rows[i].launches += 1;
        rows[i].time_s += k.dur_s.max(0.0);
        weights[i].0 += w;
        busy_s += d;
        busy_w += w;
    }
    let gap_s = ((b - work).max(0.0) - busy_s).max(0.0);
    // Overlapping kernels (several streams) can make busy exceed the window: then no gap row weight.
    rows.push(KernelEnergy { name: BETWEEN_KERNELS.to_string(), time_s: gap_s, ..Default::default() });
    weights.push((wg.gap(work, b, busy_s, busy_w), 0.0));
    // (Back-to-back windows differ by rounding only: no row for that.)
    if work - a > 1e-9 {
        rows.push(KernelEnergy { name: BETWEEN_STEPS.to_string(), time_s: work - a, ..Default::default() });
        weights.push((wg.gap(a, work, 0.0, 0.0), 0.0));
    }
    (rows, weights)
}

/// Split `step_j` joules (± `step_unc_j`) of the window [a, b] among `kernels` as `wg` weighs them.
///
/// [a, work) is the host gap before the step's own work (contiguous windows): it goes to a `BETWEEN_STEPS`
/// row when it is not empty. Kernel intervals are clipped to [work, b]; the rest of that goes to
/// `BETWEEN_KERNELS`. Rows are aggregated per kernel name (first-launch order) and sum to `step_j` up to
/// rounding (shares are scaled to the measurement: never more). Also returns the weights' sum: with a
/// calibration, the model's energy of the window (the additivity check's term).
pub fn split_kernels(
    (a, work, b): (f64, f64, f64),
    step_j: Option<f64>,
    step_unc_j: Option<f64>,
    kernels: &[KernelTiming],
    wg: &Weigh<'_>,
) -> (Vec<KernelEnergy>, f64, Vec<f64>) {
    let work = work.clamp(a, b.max(a));
    let (mut rows, weights) = weigh_rows(a, work, b, kernels, wg);
    let total_w: f64 = weights.iter().map(|w| w.0).sum();
    let mut models = vec![0.0; rows.len()];
    if let Some(e) = step_j {
        let n_time: f64 = rows.iter().map(|r| r.time_s).sum();
        for ((r, (w, rel)), m) in rows.iter_mut().zip(&weights).zip(models.iter_mut()) {
            let by_time = if n_time > 0.0 { r.time_s / n_time } else { 0.0 };
            let share = if total_w > 0.0 { w / total_w } else { by_time };
            r.energy_j = Some(e * share);
            // The model term: the calibrated power's interval, or how far the split is from a time split.
            let model = if wg.cal.is_some() { e * share * rel } else { e * (share - by_time).abs() };
            r.uncertainty_j = step_unc_j.map(|u| share * u + model);
            *m = model;
        }
        if total_w <= 0.0 && n_time <= 0.0 {
            // Nothing to weigh by: everything is "between kernels".
            if let Some(r) = rows.iter_mut().find(|r| r.name == BETWEEN_KERNELS) {
                r.energy_j = Some(e);
                r.uncertainty_j = step_unc_j;
            }
        }
    }
    (rows, total_w, models)
}
/// Per-kernel totals over a run (kernels.csv).
#[derive(Clone, Debug, Default)]
pub struct KernelTable {
    rows: BTreeMap<String, KernelTotal>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTotal {
    pub launches: u64,
    pub gpu_time_s: f64,
    /// Sum of the kernel's shares over steps with a valid energy.
    pub energy_j: f64,
    /// Launches counted in `energy_j` (steps without energy are excluded).
    pub launches_with_energy: u64,
    /// Sum of the shares' half-widths (a linear sum: the split's errors are systematic, not independent).
    pub uncertainty_j: f64,
    /// Shares that carried an uncertainty (0: none did, e.g. an estimate; the column is left empty).
    pub shares_with_uncertainty: u64,
    /// Floating-point operations supplied by the caller (`add_flops`).
    pub flops: f64,
    /// Launches whose time was measured in their own step (the others came from a timed profile,
    /// `--kernel-sample`).
    pub timed_launches: u64,
    /// Sum of the split's model terms (calibrated power intervals; systematic: a linear sum).
    pub model_unc_j: f64,
    /// `--energy sim`: the twin's true energy of this row over the run.
    pub true_energy_j: Option<f64>,
}

/// The run-level uncertainty a kernel total takes its share of (see `uncertainty.rs`), and the split's label.
#[derive(Clone, Debug, Default)]
pub struct RunShare {
    /// The windows' energy (the shares' denominator).
    pub steps_j: f64,
    pub stat_j: f64,
    pub sys_j: Option<f64>,
    /// "calibrated" or "time-proportional".
    pub method: String,
}

impl KernelTotal {
    /// Half-width of `energy_j` from the run's parts: its share of the run's stat and sys, plus its model terms.
    pub fn run_uncertainty(&self, r: &RunShare) -> f64 {
        let share = if r.steps_j > 0.0 { self.energy_j / r.steps_j } else { 0.0 };
        share * (r.stat_j + r.sys_j.unwrap_or(0.0)) + self.model_unc_j
    }
}

impl KernelTable {
    /// Add a step's rows (`models`: each row's split model term, J); `timed`: its launches were timed in that step (not taken from a profile).
    pub fn add_step(&mut self, rows: &[KernelEnergy], models: &[f64], timed: bool) {
        for (i, r) in rows.iter().enumerate() {
            let t = self.rows.entry(r.name.clone()).or_default();
            t.model_unc_j += models.get(i).copied().unwrap_or(0.0);
            if let Some(x) = r.true_energy_j {
                *t.true_energy_j.get_or_insert(0.0) += x;
            }
            t.launches += r.launches as u64;
            if timed {
                t.timed_launches += r.launches as u64;
            }
            t.gpu_time_s += r.time_s;
            if let Some(e) = r.energy_j {
                t.energy_j += e;
                t.launches_with_energy += r.launches as u64;
                if let Some(u) = r.uncertainty_j {
                    t.uncertainty_j += u;
                    t.shares_with_uncertainty += 1;
                }
            }
        }
    }
    pub fn add_flops(&mut self, name: &str, flops: f64) {
        if flops.is_finite() && flops > 0.0 {
            self.rows.entry(name.to_string()).or_default().flops += flops;
        }
    }
    pub fn get(&self, name: &str) -> Option<&KernelTotal> {
        self.rows.get(name)
    }
    pub fn rows(&self) -> impl Iterator<Item = (&String, &KernelTotal)> {
        self.rows.iter()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// kernels.csv's rows (`crate::rundir::KernelsCsv` writes and reads them), sorted by energy (then time),
    /// largest first; unknown values empty. `timed_launches` below `launches` means the rest took their times
    /// from a timed profile (`--kernel-sample`).
    /// With `run`, a row's uncertainty is its share of the run's statistical and systematic parts plus its
    /// split's model terms; without, the linear sum of its step shares' half-widths.
    pub fn csv_rows(&self, have_energy: bool, run: Option<&RunShare>) -> Vec<KernelRow> {
        let mut v: Vec<(&String, &KernelTotal)> = self.rows.iter().collect();
        v.sort_by(|x, y| y.1.energy_j.total_cmp(&x.1.energy_j).then(y.1.gpu_time_s.total_cmp(&x.1.gpu_time_s)));
        v.into_iter()
            .map(|(name, t)| {
                let with_energy =
                    have_energy && (t.launches_with_energy > 0 || name == BETWEEN_KERNELS || name == BETWEEN_STEPS);
                KernelRow {
                    name: name.clone(),
                    launches: Some(t.launches),
                    gpu_time_s: Some(t.gpu_time_s),
                    energy_j: with_energy.then_some(t.energy_j),
                    j_per_launch: (with_energy && t.launches_with_energy > 0)
                        .then(|| t.energy_j / t.launches_with_energy as f64),
                    j_per_gflop: (with_energy && t.flops > 0.0 && t.launches_with_energy == t.launches)
                        .then(|| t.energy_j / (t.flops * 1e-9)),
                    energy_uncertainty_j: (have_energy && t.shares_with_uncertainty > 0)
                        .then(|| run.map_or(t.uncertainty_j, |r| t.run_uncertainty(r))),
                    timed_launches: Some(t.timed_launches),
                    true_energy_j: t.true_energy_j,
                    method: run.map(|r| r.method.clone()).filter(|m| !m.is_empty()),
                }
            })
            .collect()
    }
}

/// The launches of the latest timed step of one kind.
#[derive(Clone, Debug, Default)]
struct KernelProfile {
    /// (name, start relative to the step's start (s), duration (s)), in launch order.
    launches: Vec<(&'static str, f64, f64)>,
    /// The step's own time (s): its start to its end.
    span_s: f64,
    /// Per kernel, the relative change of its summed time between the last two timed steps.
    spread: BTreeMap<&'static str, f64>,
    /// Timed steps seen of this kind.
    samples: u32,
}

impl KernelProfile {
    fn update(&mut self, kernels: &[KernelTiming], work: f64, b: f64) {
        let sums = |v: &[(&'static str, f64, f64)]| {
            let mut m: BTreeMap<&'static str, f64> = BTreeMap::new();
            for (n, _, d) in v {
                *m.entry(*n).or_default() += d.max(0.0);
            }
            m
        };
        let launches: Vec<(&'static str, f64, f64)> =
            kernels.iter().map(|k| (k.name, k.start_s - work, k.dur_s.max(0.0))).collect();
        if self.samples > 0 {
            let (old, new) = (sums(&self.launches), sums(&launches));
            self.spread = new
                .iter()
                .map(|(n, t)| {
                    let o = old.get(n).copied().unwrap_or(0.0);
                    (*n, if o > 0.0 { (t - o).abs() / o } else { 1.0 })
                })
                .collect();
        }
        self.launches = launches;
        self.span_s = (b - work).max(0.0);
        self.samples += 1;
    }

    /// The profile's launches placed in a step running from `work` to `b`.
    fn place(&self, work: f64, b: f64) -> Vec<KernelTiming> {
        let scale = if self.span_s > 0.0 { ((b - work) / self.span_s).min(1.0) } else { 1.0 };
        self.launches
            .iter()
            .map(|&(name, rel, dur)| KernelTiming { name, start_s: work + rel.max(0.0) * scale, dur_s: dur })
            .collect()
    }
}

/// The meter's per-kernel side (`--per-kernel`): each window's split among its kernels (calibrated or
/// time-proportional), the timed profiles that stand in for untimed steps (`--kernel-sample`), the run's
/// per-kernel totals and the additivity check's sums.
#[derive(Clone, Debug, Default)]
pub struct KernelAttribution {
    per_kernel: bool,
    pub table: KernelTable,
    /// Timed kernel profiles by key (`StepKernels`).
    profiles: BTreeMap<u64, KernelProfile>,
    /// Calibrated powers (None: time-proportional).
    pub powers: Option<KernelPowers>,
    /// Additivity: the calibrated model's energy and the measured energy of the same windows (J).
    pub model_j: f64,
    pub measured_j: f64,
    pub model_windows: u64,
}

impl KernelAttribution {
    pub fn new(per_kernel: bool) -> KernelAttribution {
        KernelAttribution { per_kernel, ..Default::default() }
    }

    pub fn per_kernel(&self) -> bool {
        self.per_kernel
    }

    /// The split's label: "calibrated" or "time-proportional".
    pub fn method(&self) -> &'static str {
        if self.powers.is_some() {
            "calibrated"
        } else {
            "time-proportional"
        }
    }

    /// Timed steps seen so far of the kind `key`.
    pub fn profile_samples(&self, key: u64) -> u32 {
        self.profiles.get(&key).map_or(0, |p| p.samples)
    }

    /// The rows of the window [a, b] (step work from `work`) holding `energy` ± `unc`, from the step's timed
    /// launches (kept as the profile of their key) or the latest profile of its key, with each row's model
    /// term; empty without --per-kernel. `commit` adds them to the run's totals.
    pub fn split(
        &mut self,
        step: StepKernels<'_>,
        span: (f64, f64, f64),
        energy: Option<f64>,
        unc: Option<f64>,
        power_j: &dyn Fn(f64, f64) -> f64,
    ) -> (Vec<KernelEnergy>, Vec<f64>) {
        if !self.per_kernel {
            return (Vec::new(), Vec::new());
        }
        let (_, work, b) = span;
        let wg = Weigh { power_j, cal: self.powers.as_ref() };
        let (rows, model_w, models) = match step {
            StepKernels::Timed(kernels, key) => {
                if let Some(key) = key {
                    self.profiles.entry(key).or_default().update(kernels, work, b);
                }
                split_kernels(span, energy, unc, kernels, &wg)
            }
            StepKernels::Profiled(key) => {
                let profile = self.profiles.get(&key);
                let placed = profile.map(|p| p.place(work, b)).unwrap_or_default();
                let (mut rows, w, mut models) = split_kernels(span, energy, unc, &placed, &wg);
                // Measured steps only: estimates carry no uncertainty (see KernelEnergy).
                if let (Some(p), Some(_)) = (profile, unc) {
                    for (r, m) in rows.iter_mut().zip(models.iter_mut()).filter(|(r, _)| r.launches > 0) {
                        // Unknown spread (a single timed step): the whole share is uncertain.
                        let spread = p.spread.get(r.name.as_str()).copied().unwrap_or(1.0);
                        if let Some(e) = r.energy_j {
                            r.uncertainty_j = Some(r.uncertainty_j.unwrap_or(0.0) + e * spread);
                            *m += e * spread;
                        }
                    }
                }
                (rows, w, models)
            }
        };
        if let (Some(e), true) = (energy, self.powers.is_some()) {
            self.model_j += model_w;
            self.measured_j += e;
            self.model_windows += 1;
        }
        (rows, models)
    }

    /// Add a window's rows to the run's totals (`timed`: its launches were timed in that step).
    pub fn commit(&mut self, rows: &[KernelEnergy], models: &[f64], timed: bool) {
        if self.per_kernel {
            self.table.add_step(rows, models, timed);
        }
    }
}

//! How a study turns run costs into statements a reader can check: the definitions every study, table and plot
//! uses, bounds for runs that did not reach their target, and intervals over seeds.
//!
//! Definitions (the same in every table, plot and report):
//!
//! * **Cost to target** of a run: the energy (or, without energy readings, the wall time) from the start of
//!   training up to and including the evaluation of the first epoch whose validation accuracy reaches the target
//!   (`energy_to_target_j` in summary.json). A run that never reaches the target costs *more* than it used: its
//!   whole run's cost is a **lower bound** ([`Cost::lower_bound`]), never dropped and never shown as a value.
//! * **Mean cost** of a configuration or an arm: the mean over its seeds, with a 95 % Student-t interval over
//!   seeds ([`Mean`]); when any seed is a lower bound, the mean is a lower bound too.
//! * **Ratio** of two arms (worst / best, multi-task / single-task): the ratio of their mean costs with a 95 %
//!   interval from the delta method on the log ratio, log(x) ± t(n-1) · sqrt(s_a²/(n_a ā²) + s_b²/(n_b b̄²)), with
//!   the smaller arm's degrees of freedom (a percentile bootstrap over 3 seeds has only 10 distinct resamples and
//!   comes out far too narrow, so it is not used).
//!   When the numerator is a lower bound, the ratio is "≥ x"; when the denominator is, "≤ x"; when both are, the
//!   ratio is not determined ([`Ratio`]). Never a plain ratio with an unreached side.
//! * **% saving** of the best arm against another: 1 - best / other, with the same bound rules.
//! * **Break-even reuses** of pretraining: E_pretrain / (mean E_scratch - mean E_reuse), the ratio of mean costs
//!   over seeds (the same number the break-even plot crosses at), with a conservative 95 % interval from the
//!   t-intervals of the pretraining cost and of the saving (P_lo / D_hi .. P_hi / D_lo, unbounded above when the
//!   saving's interval reaches 0); "never" when the mean saving is not positive ([`BreakEven`]).
//!
//! * **Below resolution** (`energy::resolution`, issue 18): a cost whose span (time to target, or the whole run)
//!   covers fewer than `COMPARISON_MIN_UPDATES` effective updates of the run's counter is marked
//!   [`Cost::unresolved`]; a mean with such a seed is marked too. A ratio or break-even with an unresolved side is
//!   never computed: it is [`Ratio::NotResolved`] / [`BreakEven::NotResolved`], "energy comparison not resolved",
//!   and the studies show the time comparison beside it (time is resolved by the clock). Repeat such runs to a
//!   resolvable length (the run's `resolution.min_comparison_s`) or use a sensor with shorter updates.
//!
//! Worked example: scratch costs 100, 120, 110 J (all reached), fine-tuning 40, 50, 45 J, pretraining 600, 640,
//! 620 J: break-even = 620 / (110 - 45) = 9.5 reuses. Had one fine-tuning run not reached its target (its 50 J a
//! lower bound), the saving 110 - 45 would be an upper bound and break-even "≥ 9.5".
use crate::stats::{mean, std_dev, t_interval, t_quantile, Interval};
use serde::{Deserialize, Serialize};

/// Confidence of every interval a study prints.
pub const CONF: f64 = 0.95;

/// One run's cost: exact when the run reached its target, else a lower bound (the whole run's cost).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub value: f64,
    pub reached: bool,
    /// The run's counter cannot resolve this cost (too few updates over its span): not comparable.
    #[serde(default)]
    pub unresolved: bool,
}

impl Cost {
    pub fn exact(value: f64) -> Cost {
        Cost { value, reached: true, unresolved: false }
    }
    pub fn lower_bound(value: f64) -> Cost {
        Cost { value, reached: false, unresolved: false }
    }
    /// This cost, marked below the counter's resolution when `below` is true.
    pub fn below_resolution(self, below: bool) -> Cost {
        Cost { unresolved: self.unresolved || below, ..self }
    }
}

/// A mean over seeds with its interval; `lower_bound` when any seed did not reach its target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mean {
    pub interval: Interval,
    pub lower_bound: bool,
    /// Some seed's cost is below the counter's resolution.
    #[serde(default)]
    pub unresolved: bool,
}

impl Mean {
    /// None for no costs.
    pub fn of(costs: &[Cost]) -> Option<Mean> {
        let v: Vec<f64> = costs.iter().map(|c| c.value).collect();
        Some(Mean {
            interval: t_interval(&v, CONF)?,
            lower_bound: costs.iter().any(|c| !c.reached),
            unresolved: costs.iter().any(|c| c.unresolved),
        })
    }
    pub fn value(&self) -> f64 {
        self.interval.mean
    }
    /// "123 ± 4" (3 significant digits), "≥ 123 (not reached)", or "123 (n=1)"; with " (below resolution)"
    /// when a seed's cost is below the counter's resolution.
    pub fn text(&self) -> String {
        let t = self.text_value();
        if self.unresolved {
            format!("{t} (below resolution)")
        } else {
            t
        }
    }
    fn text_value(&self) -> String {
        let m = super::fmt_num(Some(self.interval.mean));
        if self.lower_bound {
            return format!("≥ {m} (not reached)");
        }
        match self.interval.half_width {
            Some(h) => format!("{m} ± {}", super::fmt_num(Some(h))),
            None => format!("{m} (n=1)"),
        }
    }
}

/// A ratio between two arms, or the bound that is all the data supports.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Ratio {
    /// Both sides reached: the ratio of means with its 95 % interval (None with one seed).
    Value { x: f64, lo: Option<f64>, hi: Option<f64> },
    /// The numerator did not reach its target: the ratio is at least `x`.
    AtLeast(f64),
    /// The denominator did not reach its target: the ratio is at most `x`.
    AtMost(f64),
    /// Neither side reached (or a side is missing): no ratio can be stated.
    Undetermined,
    /// A side's energy is below the counter's resolution: never a ratio of unresolved numbers.
    NotResolved,
}

impl Ratio {
    /// Ratio of the mean costs `num` / `den` with bound rules and a delta-method interval on the log ratio (none
    /// when an arm has a single seed).
    pub fn of(num: &[Cost], den: &[Cost]) -> Ratio {
        let (Some(a), Some(b)) = (Mean::of(num), Mean::of(den)) else {
            return Ratio::Undetermined;
        };
        if a.unresolved || b.unresolved {
            return Ratio::NotResolved;
        }
        if !(b.value() > 0.0) || !a.value().is_finite() {
            return Ratio::Undetermined;
        }
        let x = a.value() / b.value();
        match (a.lower_bound, b.lower_bound) {
            (false, false) => {
                let (lo, hi) = log_ratio_interval(num, den, x).map_or((None, None), |(l, h)| (Some(l), Some(h)));
                Ratio::Value { x, lo, hi }
            }
            (true, false) => Ratio::AtLeast(x),
            (false, true) => Ratio::AtMost(x),
            (true, true) => Ratio::Undetermined,
        }
    }
    /// "3.21x (95 % CI 2.80-3.70)", "≥ 3.21x", "≤ 3.21x" or "not determined".
    pub fn text(&self) -> String {
        let f = |v: f64| super::fmt_num(Some(v));
        match *self {
            Ratio::Value { x, lo: Some(l), hi: Some(h) } if l <= 1.0 && h >= 1.0 => format!(
                "{}x (95 % CI {}-{}: the interval includes 1, so which side costs less is not resolved)",
                f(x),
                f(l),
                f(h)
            ),
            Ratio::Value { x, lo: Some(l), hi: Some(h) } => format!("{}x (95 % CI {}-{})", f(x), f(l), f(h)),
            Ratio::Value { x, .. } => format!("{}x (one seed: no interval)", f(x)),
            Ratio::AtLeast(x) => format!("≥ {}x (a lower bound: the costlier side did not reach its target)", f(x)),
            Ratio::AtMost(x) => format!("≤ {}x (an upper bound: the cheaper side did not reach its target)", f(x)),
            Ratio::Undetermined => "not determined (neither side reached its target)".into(),
            Ratio::NotResolved => {
                "energy comparison not resolved (a side is below the sensor's resolution; compare the times)".into()
            }
        }
    }
    /// Whether the ratio's 95 % interval lies entirely above or below 1 (a value with one seed is not).
    pub fn resolved_side(&self) -> bool {
        matches!(*self, Ratio::Value { lo: Some(l), hi: Some(h), .. } if l > 1.0 || h < 1.0)
    }
    /// The value when it is a finding (both sides reached), else None: what a headline may quote.
    pub fn finding(&self) -> Option<f64> {
        match *self {
            Ratio::Value { x, .. } => Some(x),
            _ => None,
        }
    }
    /// The percentage saving 1 - 1/ratio of the cheaper side, as text with the same bound rules.
    pub fn saving_text(&self) -> String {
        let pct = |r: f64| format!("{:.0} %", 100.0 * (1.0 - 1.0 / r));
        match *self {
            Ratio::Value { x, lo: Some(l), hi: Some(h) } => format!("{} (95 % CI {}-{})", pct(x), pct(l), pct(h)),
            Ratio::Value { x, .. } => pct(x),
            Ratio::AtLeast(x) => format!("≥ {}", pct(x)),
            Ratio::AtMost(x) => format!("≤ {}", pct(x)),
            Ratio::Undetermined => "not determined".into(),
            Ratio::NotResolved => "not resolved".into(),
        }
    }
}

/// The 95 % interval of `x` = mean(a) / mean(b) from the delta method on log x (None with a single seed).
fn log_ratio_interval(a: &[Cost], b: &[Cost], x: f64) -> Option<(f64, f64)> {
    let (n, m) = (a.len(), b.len());
    if n < 2 || m < 2 {
        return None;
    }
    let va: Vec<f64> = a.iter().map(|c| c.value).collect();
    let vb: Vec<f64> = b.iter().map(|c| c.value).collect();
    let rel2 = (std_dev(&va) / mean(&va)).powi(2) / n as f64 + (std_dev(&vb) / mean(&vb)).powi(2) / m as f64;
    let hw = t_quantile((n.min(m) - 1) as f64, CONF) * rel2.sqrt();
    hw.is_finite().then(|| (x * (-hw).exp(), x * hw.exp()))
}

/// The t-interval (lo, hi) of the mean of `v` (None for fewer than 2 values).
fn t_bounds(v: &[f64]) -> Option<(f64, f64)> {
    let i = t_interval(v, CONF)?;
    Some((i.lo()?, i.hi()?))
}

/// Break-even reuses of one reuse way, as the data supports it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum BreakEven {
    /// Every run reached its target: the ratio of means with its 95 % interval (None with one seed).
    Reuses { x: f64, lo: Option<f64>, hi: Option<f64> },
    /// Some scratch run did not reach: the saving is a lower bound, so break-even is at most `x`.
    AtMost(f64),
    /// Some reuse run did not reach: the saving is an upper bound, so break-even is at least `x`.
    AtLeast(f64),
    /// The mean saving is not positive (with the reuse side exact or a lower bound): pretraining never pays off.
    Never,
    /// Both sides have unreached runs, or a side is missing.
    Undetermined,
    /// A cost it needs (pretraining, scratch or reuse) is below the counter's resolution.
    NotResolved,
}

impl BreakEven {
    /// E_pretrain / (mean scratch - mean reuse) over seeds; `pretrain`, `scratch` and `reuse` are per seed
    /// (paired by index when the lengths agree).
    pub fn of(pretrain: &[f64], scratch: &[Cost], reuse: &[Cost]) -> BreakEven {
        let (Some(s), Some(r)) = (Mean::of(scratch), Mean::of(reuse)) else {
            return BreakEven::Undetermined;
        };
        if pretrain.is_empty() {
            return BreakEven::Undetermined;
        }
        if s.unresolved || r.unresolved {
            return BreakEven::NotResolved;
        }
        let p = pretrain.iter().sum::<f64>() / pretrain.len() as f64;
        let saving = s.value() - r.value();
        match (s.lower_bound, r.lower_bound) {
            (true, true) => BreakEven::Undetermined,
            // Scratch is at least its mean: the saving can only be larger.
            (true, false) if saving > 0.0 => BreakEven::AtMost(p / saving),
            (true, false) => BreakEven::Undetermined,
            // The reuse costs at least its mean: the saving can only be smaller.
            (false, true) if saving > 0.0 => BreakEven::AtLeast(p / saving),
            (false, true) => BreakEven::Never,
            (false, false) if saving > 0.0 => {
                // The saving per seed, paired when every arm ran the same seeds.
                let d: Vec<f64> = if scratch.len() == reuse.len() {
                    scratch.iter().zip(reuse).map(|(a, b)| a.value - b.value).collect()
                } else {
                    vec![]
                };
                let ci = match (t_bounds(pretrain), t_bounds(&d)) {
                    (Some((p_lo, p_hi)), Some((d_lo, d_hi))) => {
                        Some((p_lo.max(0.0) / d_hi, if d_lo > 0.0 { p_hi / d_lo } else { f64::INFINITY }))
                    }
                    _ => None,
                };
                BreakEven::Reuses { x: p / saving, lo: ci.map(|c| c.0), hi: ci.map(|c| c.1) }
            }
            (false, false) => BreakEven::Never,
        }
    }
    /// The number the plot's curves cross at, when there is one (also for bounds: the crossing of the means).
    pub fn crossing(&self) -> Option<f64> {
        match *self {
            BreakEven::Reuses { x, .. } | BreakEven::AtMost(x) | BreakEven::AtLeast(x) => Some(x),
            _ => None,
        }
    }
    pub fn text(&self) -> String {
        let f = |v: f64| super::fmt_num(Some(v));
        match *self {
            BreakEven::Reuses { x, lo: Some(l), hi: Some(h) } if h.is_infinite() => {
                format!("{} (95 % CI {}-unbounded: the saving's interval reaches 0)", f(x), f(l))
            }
            BreakEven::Reuses { x, lo: Some(l), hi: Some(h) } => format!("{} (95 % CI {}-{})", f(x), f(l), f(h)),
            BreakEven::Reuses { x, .. } => format!("{} (one seed: no interval)", f(x)),
            BreakEven::AtMost(x) => format!("≤ {} (a scratch run did not reach the target)", f(x)),
            BreakEven::AtLeast(x) => format!("≥ {} (a reuse run did not reach the target)", f(x)),
            BreakEven::Never => "never (the reuse saves no energy)".into(),
            BreakEven::Undetermined => "not determined (runs on both sides did not reach the target)".into(),
            BreakEven::NotResolved => {
                "energy comparison not resolved (a run is below the sensor's resolution; compare the times)".into()
            }
        }
    }
    /// [`BreakEven::NotResolved`] when `pretrain_unresolved` (the pretraining cost is below resolution), else
    /// this.
    pub fn unless_unresolved(self, pretrain_unresolved: bool) -> BreakEven {
        if pretrain_unresolved && !matches!(self, BreakEven::Undetermined) {
            BreakEven::NotResolved
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(v: &[f64]) -> Vec<Cost> {
        v.iter().map(|&x| Cost::exact(x)).collect()
    }

    #[test]
    fn a_ratio_with_an_unreached_side_is_a_bound_never_a_value() {
        let best = exact(&[10.0, 12.0, 11.0]);
        let mut worst = exact(&[50.0, 60.0, 55.0]);
        match Ratio::of(&worst, &best) {
            Ratio::Value { x, lo: Some(lo), hi: Some(hi) } => {
                assert!((x - 5.0).abs() < 1e-12);
                assert!(lo <= x && x <= hi && lo > 3.0 && hi < 7.0, "{lo} {hi}");
            }
            r => panic!("{r:?}"),
        }
        worst[1].reached = false;
        assert_eq!(Ratio::of(&worst, &best), Ratio::AtLeast(5.0));
        assert!(Ratio::of(&worst, &best).text().starts_with("≥ 5.00x"));
        assert_eq!(Ratio::of(&worst, &best).finding(), None);
        assert_eq!(Ratio::of(&best, &worst), Ratio::AtMost(0.2));
        let mut b2 = best.clone();
        b2[0].reached = false;
        assert_eq!(Ratio::of(&worst, &b2), Ratio::Undetermined);
        assert_eq!(Ratio::of(&[], &best), Ratio::Undetermined);
    }

    #[test]
    fn break_even_is_the_ratio_of_means_with_bounds() {
        let pre = [600.0, 640.0, 620.0];
        let s = exact(&[100.0, 120.0, 110.0]);
        let mut r = exact(&[40.0, 50.0, 45.0]);
        let be = BreakEven::of(&pre, &s, &r);
        let BreakEven::Reuses { x, lo: Some(lo), hi: Some(hi) } = be else { panic!("{be:?}") };
        assert!((x - 620.0 / 65.0).abs() < 1e-9, "{x}");
        assert!(lo <= x && x <= hi);
        // Not the mean of per-seed ratios (600/60, 640/70, 620/65 average to 9.62).
        assert!((x - (600.0 / 60.0 + 640.0 / 70.0 + 620.0 / 65.0) / 3.0).abs() > 1e-3);
        r[1].reached = false;
        assert_eq!(BreakEven::of(&pre, &s, &r), BreakEven::AtLeast(620.0 / 65.0));
        let mut s2 = s.clone();
        s2[0].reached = false;
        assert_eq!(BreakEven::of(&pre, &s2, &exact(&[40.0, 50.0, 45.0])), BreakEven::AtMost(620.0 / 65.0));
        assert_eq!(BreakEven::of(&pre, &s2, &r), BreakEven::Undetermined);
        assert_eq!(BreakEven::of(&pre, &s, &exact(&[130.0, 120.0, 110.0])), BreakEven::Never);
    }

    #[test]
    fn three_noisy_seeds_give_an_honestly_wide_interval() {
        // Seeds of the quick sweep on this CPU: the ratio is about 2.2, but three seeds cannot pin it down.
        let a = exact(&[157.0, 244.0, 292.0]);
        let b = exact(&[64.5, 125.0, 129.0]);
        let Ratio::Value { x, lo: Some(lo), hi: Some(hi) } = Ratio::of(&a, &b) else { panic!() };
        assert!((x - 231.0 / (318.5 / 3.0)).abs() < 1e-9);
        assert!(lo < 1.0 && hi > 4.0, "{x} {lo} {hi}");
        // A saving whose interval reaches 0: break-even has no upper limit.
        let be = BreakEven::of(&[600.0, 640.0, 620.0], &exact(&[100.0, 120.0, 110.0]), &exact(&[90.0, 60.0, 105.0]));
        let BreakEven::Reuses { hi: Some(h), .. } = be else { panic!("{be:?}") };
        assert!(h.is_infinite() && be.text().contains("unbounded"), "{}", be.text());
    }

    #[test]
    fn a_side_below_resolution_gives_no_ratio_and_no_break_even() {
        let best = exact(&[10.0, 12.0, 11.0]);
        let worst = exact(&[50.0, 60.0, 55.0]);
        let mut short = best.clone();
        short[2] = short[2].below_resolution(true);
        assert!(Mean::of(&short).unwrap().unresolved);
        assert!(Mean::of(&short).unwrap().text().ends_with("(below resolution)"));
        assert_eq!(Ratio::of(&worst, &short), Ratio::NotResolved);
        assert_eq!(Ratio::of(&short, &worst), Ratio::NotResolved);
        assert_eq!(Ratio::of(&short, &worst).finding(), None);
        assert!(Ratio::of(&worst, &short).text().contains("not resolved"));
        // A bound does not rescue an unresolved side either.
        let mut unreached_short = worst.clone();
        unreached_short[0] = Cost::lower_bound(50.0).below_resolution(true);
        assert_eq!(Ratio::of(&unreached_short, &best), Ratio::NotResolved);
        // Resolved sides still give the ratio.
        assert!(matches!(Ratio::of(&worst, &best), Ratio::Value { .. }));
        let pre = [600.0, 640.0, 620.0];
        let s = exact(&[100.0, 120.0, 110.0]);
        let r = exact(&[40.0, 50.0, 45.0]);
        assert!(matches!(BreakEven::of(&pre, &s, &r), BreakEven::Reuses { .. }));
        let mut r2 = r.clone();
        r2[0] = r2[0].below_resolution(true);
        assert_eq!(BreakEven::of(&pre, &s, &r2), BreakEven::NotResolved);
        assert_eq!(BreakEven::of(&pre, &s, &r).unless_unresolved(true), BreakEven::NotResolved);
        assert_eq!(BreakEven::of(&pre, &s, &r).crossing(), Some(620.0 / 65.0));
        assert_eq!(BreakEven::NotResolved.crossing(), None);
    }

    #[test]
    fn a_ratio_whose_interval_includes_one_says_the_order_is_not_resolved() {
        // The quick multi-task study's seeds (J): single-task totals vs the multi-task network.
        let single = exact(&[3417.0, 3955.0, 3601.0]);
        let multi = exact(&[1128.0, 2646.0, 3001.0]);
        let r = Ratio::of(&single, &multi);
        let Ratio::Value { x, lo: Some(l), hi: Some(h) } = r else { panic!("{r:?}") };
        assert!((x - 3657.67 / 2258.33).abs() < 1e-3 && l < 1.0 && h > 1.0, "{x} {l} {h}");
        assert!(!r.resolved_side());
        assert!(r.text().contains("the interval includes 1, so which side costs less is not resolved"), "{}", r.text());
        // Well separated seeds: resolved, and the text is the plain ratio with its interval.
        let r = Ratio::of(&exact(&[50.0, 60.0, 55.0]), &exact(&[10.0, 12.0, 11.0]));
        assert!(r.resolved_side());
        assert!(!r.text().contains("not resolved"), "{}", r.text());
    }

    #[test]
    fn means_are_bounds_when_a_seed_did_not_reach() {
        let m = Mean::of(&[Cost::exact(10.0), Cost::lower_bound(20.0)]).unwrap();
        assert!(m.lower_bound);
        assert_eq!(m.text(), "≥ 15.0 (not reached)");
        let m = Mean::of(&exact(&[1.0, 2.0, 3.0])).unwrap();
        assert_eq!(m.text(), "2.00 ± 2.48");
        assert_eq!(Ratio::Value { x: 5.0, lo: Some(4.0), hi: Some(6.0) }.saving_text(), "80 % (95 % CI 75 %-83 %)");
    }
}

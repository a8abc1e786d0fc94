//! What the step timeline of the teaching view shows: one counter update interval of a run, the step windows
//! that fall into it, each step's kernels, and the residual after the last update that is carried to the next
//! one. The counter's update times are not recorded per run, only its period (`update_period_s`, measured
//! when the meter characterised the sensor); the first update shown is placed at the start of the third step's
//! window (after warm-up), so the phase is illustrative, the period and the windows are the run's.
use super::svg::StepSpan;
use crate::rundir::StepRecord;

/// The nominal update period (s) used when the run's source has no counter (estimate, none).
pub const NOMINAL_PERIOD_S: f64 = 0.1;
/// At most this many step windows are drawn.
pub const MAX_STEPS: usize = 150;

/// The picked part of the run (times in ms from the first update shown).
#[derive(Clone, Debug)]
pub struct Picked {
    pub steps: Vec<StepSpan>,
    pub updates: Vec<f64>,
    pub residual: Option<(f64, f64)>,
    pub kernel_names: Vec<String>,
    /// True when the period is the nominal one.
    pub nominal: bool,
    pub period_ms: f64,
}

impl Picked {
    /// One sentence with this run's numbers: steps per update, the median step window, the residual.
    pub fn summary(&self) -> String {
        let n = self.steps.len();
        let mut w: Vec<f64> = self.steps.iter().map(|s| s.end - s.start).collect();
        w.sort_by(f64::total_cmp);
        let med = w.get(n / 2).copied().unwrap_or(0.0);
        let r = self.residual.map_or(String::new(), |(a, b)| {
            format!(
                " The last {} ms shown fall after the last update: that is the carried residual.",
                super::svg::fmt(b - a)
            )
        });
        format!(
            "In this run a step window lasts about {} ms and the counter updates every {} ms{}: {n} step window(s) \
             are drawn here against {} update(s).{r}",
            super::svg::fmt(med),
            super::svg::fmt(self.period_ms),
            if self.nominal { " (nominal)" } else { "" },
            self.updates.len()
        )
    }
}

/// Pick the timeline from a run's step records and its counter's update period (s); None without usable
/// windows (no `t_s`).
pub fn pick(recs: &[StepRecord], period_s: Option<f64>) -> Option<Picked> {
    let nominal = period_s.is_none();
    let p = 1e3 * period_s.unwrap_or(NOMINAL_PERIOD_S);
    let spans: Vec<(f64, f64, &StepRecord)> = recs
        .iter()
        .filter_map(|r| {
            let end = 1e3 * r.t_s?;
            Some((end - 1e3 * r.covered_s(), end, r))
        })
        .collect();
    let k = spans.len().min(3).checked_sub(1)?;
    let u0 = spans[k].0;
    let mut steps = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for &(a, b, r) in spans[k..].iter().take_while(|(a, _, _)| *a < u0 + p).take(MAX_STEPS) {
        let kernels: Vec<(String, f64)> = r
            .kernels
            .iter()
            .flatten()
            .filter(|k| !k.name.starts_with('(') && k.time_s > 0.0)
            .map(|k| (k.name.clone(), 1e3 * k.time_s))
            .collect();
        for (n, _) in &kernels {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        steps.push(StepSpan { step: r.step, start: a - u0, end: b - u0, energy_j: r.energy_j, kernels });
    }
    let last_end = steps.last()?.end;
    let n_updates = ((last_end / p).floor() as usize + 1).min(50);
    let updates: Vec<f64> = (0..n_updates).map(|i| i as f64 * p).collect();
    let last_update = updates.last().copied().unwrap_or(0.0);
    let residual = (last_end > last_update).then_some((last_update, last_end));
    Some(Picked { steps, updates, residual, kernel_names: names, nominal, period_ms: p })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64, t_s: f64, window_s: f64) -> StepRecord {
        StepRecord { step, t_s: Some(t_s), window_s: Some(window_s), wall_s: window_s, ..Default::default() }
    }

    #[test]
    fn one_update_interval_of_steps_and_the_residual() {
        // 3 ms windows back to back, a 10 ms counter: from the third window (starting at 6 ms) the windows
        // starting before 16 ms are 6-9, 9-12, 12-15, 15-18 ms; updates at 0 and 10 ms (relative); the last
        // window ends at 12 ms relative, 2 ms after the last update: the carried residual.
        let recs: Vec<StepRecord> = (1..=20).map(|i| rec(i, 3e-3 * i as f64, 3e-3)).collect();
        let t = pick(&recs, Some(0.01)).unwrap();
        assert_eq!(t.steps.iter().map(|s| s.step).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
        assert!((t.steps[0].start - 0.0).abs() < 1e-9 && (t.steps[3].end - 12.0).abs() < 1e-9);
        assert_eq!(t.updates, vec![0.0, 10.0]);
        let (a, b) = t.residual.unwrap();
        assert!((a - 10.0).abs() < 1e-9 && (b - 12.0).abs() < 1e-9);
        assert!(!t.nominal);
        assert!(t.summary().contains("4 step window(s) are drawn here against 2 update(s)"), "{}", t.summary());
    }

    #[test]
    fn without_a_counter_the_period_is_nominal_and_kernels_come_along() {
        let mut recs: Vec<StepRecord> = (1..=3).map(|i| rec(i, 0.05 * i as f64, 0.05)).collect();
        recs[2].kernels = Some(vec![
            crate::energy::KernelEnergy { name: "gemm".into(), launches: 2, time_s: 0.01, ..Default::default() },
            crate::energy::KernelEnergy { name: "(between kernels)".into(), time_s: 0.01, ..Default::default() },
        ]);
        let t = pick(&recs, None).unwrap();
        assert!(t.nominal && (t.period_ms - 100.0).abs() < 1e-9);
        assert_eq!(t.kernel_names, vec!["gemm".to_string()]);
        assert_eq!(t.steps[0].kernels, vec![("gemm".to_string(), 10.0)]);
        assert!(pick(&[], None).is_none());
    }
}

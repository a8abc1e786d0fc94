//! Ground truth of a sim run (`--energy sim`): the twin's true energy of every window and kernel, kept beside
//! what the meter attributed, and summary.json's `attribution_error` block. Only the twin knows the truth;
//! with a real sensor nothing here exists.
use super::twin::SimHandle;
use super::{KernelEnergy, BETWEEN_KERNELS, BETWEEN_STEPS};
use crate::ops::KernelTiming;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One kernel's attributed total against the truth.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelTruth {
    pub name: String,
    pub attributed_j: f64,
    pub true_j: f64,
    /// attributed / true - 1.
    pub rel_err: Option<f64>,
    /// The kernel's share of the windows' true energy.
    pub share: f64,
    /// The stated 95 % half-width of `attributed_j` (statistical + systematic), when there is one.
    pub uncertainty_j: Option<f64>,
    /// True when |attributed - true| <= uncertainty.
    pub covered: Option<bool>,
}

/// summary.json's `attribution_error`: how far the meter's numbers are from the twin's truth.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributionError {
    pub note: String,
    /// Windows (steps and evaluations) compared.
    pub windows: u64,
    /// |attributed / true - 1| over the windows: median and 95th percentile.
    pub step_rel_err_median: Option<f64>,
    pub step_rel_err_p95: Option<f64>,
    /// Share of windows whose stated interval holds the truth.
    pub step_coverage: Option<f64>,
    pub steps_sum_j: f64,
    pub true_sum_j: f64,
    /// The twin counter's delta over the run (what the meter's total is).
    pub counter_j: Option<f64>,
    /// steps_sum / counter (1: the windows close on the counter).
    pub closure_counter: Option<f64>,
    /// steps_sum / true_sum - 1.
    pub steps_vs_truth: Option<f64>,
    /// Per kernel (with --per-kernel), largest true energy first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<KernelTruth>,
    /// Share of the kernels holding >= 5 % of the energy whose interval holds the truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_coverage: Option<f64>,
    /// Largest |rel_err| among the kernels holding >= 5 % of the energy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_max_rel_err: Option<f64>,
}

/// The truth kept while a sim run goes.
#[derive(Clone, Debug, Default)]
pub struct TruthBook {
    rel_errs: Vec<f64>,
    covered: (u64, u64),
    steps_sum_j: f64,
    true_sum_j: f64,
    kernel_true: BTreeMap<String, f64>,
}

impl TruthBook {
    /// The window [a, b] (step work from `work`, the step's actual launches `launches`): its true energy, and
    /// each row's truth written into `rows` (kernels by name; the gaps as the rest). Records the window's
    /// error against `energy` ± `unc`.
    pub fn window(
        &mut self,
        twin: &SimHandle,
        (a, work, b): (f64, f64, f64),
        launches: &[KernelTiming],
        (energy, unc): (Option<f64>, Option<f64>),
        rows: &mut [KernelEnergy],
    ) -> f64 {
        let truth = twin.true_energy(a, b);
        let mut by: BTreeMap<&str, f64> = BTreeMap::new();
        for (k, e) in launches.iter().zip(twin.true_kernel_energies(launches)) {
            *by.entry(k.name).or_default() += e;
        }
        let kernels_j: f64 = by.values().sum();
        let before = twin.true_energy(a, work.clamp(a, b));
        for r in rows.iter_mut() {
            let t = match r.name.as_str() {
                BETWEEN_STEPS => before,
                BETWEEN_KERNELS => (truth - before - kernels_j).max(0.0),
                n => by.get(n).copied().unwrap_or(0.0),
            };
            r.true_energy_j = Some(t);
            *self.kernel_true.entry(r.name.clone()).or_default() += t;
        }
        if let Some(e) = energy {
            self.steps_sum_j += e;
            self.true_sum_j += truth;
            if truth > 0.0 {
                self.rel_errs.push((e / truth - 1.0).abs());
            }
            if let Some(u) = unc {
                self.covered.1 += 1;
                self.covered.0 += u64::from((e - truth).abs() <= u);
            }
        }
        truth
    }

    /// The block, given the kernels' attributed totals and stated half-widths (name -> (J, half-width)) and
    /// the counter's delta over the run.
    pub fn report(
        &self,
        attributed: &BTreeMap<String, (f64, Option<f64>)>,
        counter_j: Option<f64>,
    ) -> AttributionError {
        let sorted = crate::stats::sorted(&self.rel_errs);
        let q = |f: f64| (!sorted.is_empty()).then(|| crate::stats::quantile_sorted(&sorted, f));
        let total_true: f64 = self.kernel_true.values().sum();
        let mut kernels: Vec<KernelTruth> = self
            .kernel_true
            .iter()
            .map(|(name, &t)| {
                let (a, u) = attributed.get(name).copied().unwrap_or((0.0, None));
                KernelTruth {
                    name: name.clone(),
                    attributed_j: a,
                    true_j: t,
                    rel_err: (t > 0.0).then(|| a / t - 1.0),
                    share: if total_true > 0.0 { t / total_true } else { 0.0 },
                    uncertainty_j: u,
                    covered: u.map(|u| (a - t).abs() <= u),
                }
            })
            .collect();
        kernels.sort_by(|x, y| y.true_j.total_cmp(&x.true_j));
        let big: Vec<&KernelTruth> = kernels.iter().filter(|k| k.share >= 0.05).collect();
        let cov: Vec<bool> = big.iter().filter_map(|k| k.covered).collect();
        AttributionError {
            note: "sim: the twin's true energy against the meter's attribution; the twin is a model, not a \
                   measurement"
                .into(),
            windows: self.rel_errs.len() as u64,
            step_rel_err_median: q(0.5),
            step_rel_err_p95: q(0.95),
            step_coverage: (self.covered.1 > 0).then(|| self.covered.0 as f64 / self.covered.1 as f64),
            steps_sum_j: self.steps_sum_j,
            true_sum_j: self.true_sum_j,
            counter_j,
            closure_counter: counter_j.filter(|c| *c > 0.0).map(|c| self.steps_sum_j / c),
            steps_vs_truth: (self.true_sum_j > 0.0).then(|| self.steps_sum_j / self.true_sum_j - 1.0),
            kernel_coverage: (!cov.is_empty()).then(|| cov.iter().filter(|c| **c).count() as f64 / cov.len() as f64),
            kernel_max_rel_err: big.iter().filter_map(|k| k.rel_err.map(f64::abs)).reduce(f64::max),
            kernels,
        }
    }
}

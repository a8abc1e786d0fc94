//! Uncertainty that is an uncertainty: a statistical part and a systematic part, kept apart and propagated
//! to steps, kernels and the run.
//!
//! ## The two parts
//! - **Statistical** (`stat`): where the counter's update edges fall relative to a window's edges, the
//!   interpolation of windows shorter than an update, and (part-time sampling) which part of each update
//!   period the sensor saw. A window's edge error is about one update's energy, but contiguous windows share
//!   their edges: what one window misses the next one holds, so a *run* total is off by about one update, not
//!   by the sum of every window's bound. Part-time sampling adds a random error per update; over `N` updates
//!   it grows as `sqrt(N)`, estimated from the spread of the counter's update-to-update energy (an upper
//!   bound: genuine changes of power count as spread).
//! - **Systematic** (`sys`): the sensor's gain and offset (NVIDIA states +-5 % / +-5 W class accuracy for
//!   the board power of recent GPUs; the twin, which models NVML, is given the same stated class, whatever
//!   its own settings are — the meter does not know them), and for a kernel's share the interval of its
//!   calibrated power. They have the same sign in every window, so they add linearly over steps.
//!
//! Every half-width is stated at about 95 %: `total = stat + sys` (a simple, conservative sum of a 95 %
//! random part and a bound).
//!
//! ## Propagation
//! - step: `stat` = the window's edge/interpolation half-width (`window.rs`), `sys = gain x E + offset x dt`;
//! - run: `stat = one update's energy (P x period + quantum) + 1.96 x sd(update energy) x sqrt(N updates)`
//!   when the sampling spread is known, `sys = gain x E + offset x wall`;
//! - kernel total over a run: `stat = share x run stat` (its share of the windows' energy),
//!   `sys = share x run sys + sum over steps of its split's model term` (calibrated: `E_k x ci95(P_k) / P_k`;
//!   time-proportional: how far a power-weighted share is from a time share).
//!
//! ## Worked example
//! An H100-like run of 100 s at 200 W (20 000 J) on a counter that updates every 100 ms, 10 000 steps of
//! 10 ms: one step's edge bound is 200 W x 0.1 s = 20 J on a 2 J step (about +-1000 %, the old, useless
//! figure), and summed linearly over the run it would be 200 000 J (10x the total). Here: the run's `stat`
//! is one update, 20 J, plus sampling (sd of update energy 1 J, 1000 updates: 1.96 x 1 x 31.6 = 62 J), so
//! 82 J (0.4 %); `sys` = 5 % x 20 000 + 5 W x 100 s = 1500 J (7.5 %). A GEMM holding 30 % of the energy with
//! a calibrated power of 400 +- 8 W (2 %) gets `stat` 0.3 x 82 = 25 J, `sys` 0.3 x 1500 + 2 % x 6000 =
//! 570 J: 6000 +- 595 J, almost all of it the sensor's stated accuracy, which cancels when two runs on the
//! same board are compared.
use super::EnergySource;
use serde::{Deserialize, Serialize};

/// A sensor's stated systematic accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Systematic {
    /// Relative gain error (0.05: +-5 %).
    pub gain_rel: f64,
    /// Offset error (W).
    pub offset_w: f64,
}

/// The stated accuracy of `source`: NVML's class (+-5 % / +-5 W) for NVML and the twin; none is documented
/// for RAPL (its systematic part is then unknown, and said so); none for estimates.
pub fn systematic(source: EnergySource) -> Option<Systematic> {
    match source {
        EnergySource::NvmlCounter | EnergySource::NvmlPower | EnergySource::Sim => {
            Some(Systematic { gain_rel: 0.05, offset_w: 5.0 })
        }
        _ => None,
    }
}

/// A window's systematic half-width: gain x energy + offset x seconds.
pub fn window_sys(s: Option<Systematic>, energy_j: f64, dt_s: f64) -> Option<f64> {
    s.map(|s| s.gain_rel * energy_j.abs() + s.offset_w * dt_s.max(0.0))
}

/// The run's uncertainty block (in the energy context).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUncertainty {
    /// One update's energy at the counter's edges (J).
    pub edges_j: f64,
    /// Part-time sampling and other per-update noise over the run (J), None when the spread is unknown.
    pub sampling_j: Option<f64>,
    /// edges + sampling (J).
    pub stat_j: f64,
    /// Sensor gain and offset over the run (J); None when the sensor's accuracy is not documented.
    pub sys_j: Option<f64>,
    /// stat + sys (J).
    pub total_j: f64,
    pub note: String,
}

/// The run's uncertainty: `energy_j` over `wall_s`, the counter's `period_s` and `quantum_j`, the power
/// `power_w` near the end, and the update energies seen (`updates_j`, one per update).
pub fn run(
    source: EnergySource,
    energy_j: f64,
    wall_s: f64,
    (period_s, quantum_j, power_w): (Option<f64>, f64, f64),
    updates_j: &[f64],
) -> RunUncertainty {
    let edges_j = quantum_j + power_w.max(0.0) * period_s.unwrap_or(0.0);
    let sampling_j = (updates_j.len() >= 3).then(|| {
        let n_updates = period_s.filter(|p| *p > 0.0).map_or(updates_j.len() as f64, |p| wall_s / p);
        1.96 * crate::stats::std_dev(updates_j) * n_updates.max(1.0).sqrt()
    });
    let stat_j = edges_j + sampling_j.unwrap_or(0.0);
    let sys_j = window_sys(systematic(source), energy_j, wall_s);
    RunUncertainty {
        edges_j,
        sampling_j,
        stat_j,
        sys_j,
        total_j: stat_j + sys_j.unwrap_or(0.0),
        note: "95 % half-widths: stat = one counter update at the run's edges (contiguous windows cancel theirs) + \
               1.96 x sd(update energy) x sqrt(updates); sys = stated sensor gain x energy + offset x time \
               (energy/uncertainty.rs)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_of_the_module_docs_holds() {
        // 1000 updates of 20 J with sd 1 J.
        let ups: Vec<f64> = (0..1000).map(|i| 20.0 + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let r = run(EnergySource::NvmlCounter, 20_000.0, 100.0, (Some(0.1), 1e-3, 200.0), &ups);
        assert!((r.edges_j - 20.001).abs() < 1e-9);
        assert!((r.sampling_j.unwrap() - 1.96 * 1.0005 * 1000f64.sqrt()).abs() < 0.1, "{:?}", r.sampling_j);
        assert!((r.sys_j.unwrap() - 1500.0).abs() < 1e-9);
        assert!((r.total_j - (r.stat_j + 1500.0)).abs() < 1e-9);
        let rapl = run(EnergySource::Rapl, 100.0, 10.0, (Some(0.001), 1e-6, 10.0), &[]);
        assert!(rapl.sys_j.is_none() && rapl.sampling_j.is_none(), "undocumented accuracy stays unknown");
    }
}

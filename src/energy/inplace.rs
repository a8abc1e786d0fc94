//! In-place calibration for `train --per-kernel` (issue 18 item 2): the decision before the first step and the
//! accounting of a calibration, behind [`InPlaceCalibrator`] so both are tested on any machine.
//!
//! ## The decision ([`plan`])
//! `--calibration none`: split by time, labelled `time-proportional`. `--calibration FILE`: that file. Otherwise
//! the cache's file for this device (`powercal::cache_file`); kernels it lacks at the step's shape are
//! calibrated in place when a calibrator is available, and with no file at all the step's kernels are
//! calibrated in place. On the twin (`--energy sim`, [`TwinCalibrator`]) that happens at the first timed step,
//! in simulated time, before its split. On a sensor (NVML, RAPL) the training loop hands the meter the device's
//! calibrator (`bench::inplace::DeviceCalibrator`, `bench kernels --energy`'s repeat-and-divide on the run's own
//! backend) before the first step (`Meter::calibrate_before_run`), so that neither the counter's run total nor
//! the run's wall time holds it. When none ran, the split is by time and says why.
//!
//! ## The accounting ([`run_in_place`])
//! The step's kernels are listed once (name, the step's shape, the median of their launch times on the twin;
//! on a device the calibrator times each layer case itself); those the stored calibration already holds at
//! this shape are not calibrated again ([`missing`]). The new rows are stored in the
//! cache (merged with what it holds) and the split uses the merged file; the calibration's cost (kernels,
//! device seconds, joules, wall seconds here) is said on stderr and kept in summary.json's `kernel_split.cost`.
//!
//! The device calibrator itself (CUDA + NVML) is unverified on GPU.
use super::powercal::{self, CalibrationChoice, CalibrationCost, PowerCalibration, SimCalOpts};
use super::twin::SimHandle;
use crate::ops::KernelTiming;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Kernels to calibrate: (name, shape, median launch seconds).
pub type Todo = Vec<(String, String, f64)>;

/// Measures kernels' steady-state power where the run is.
pub trait InPlaceCalibrator {
    /// Where it measures, for labels: "the twin" or "the device".
    fn place(&self) -> &'static str;
    /// A calibration holding a row per kernel of `todo`, and what it cost.
    fn calibrate(&mut self, todo: &[(String, String, f64)]) -> Result<(PowerCalibration, CalibrationCost)>;
    /// The stderr line that says what was calibrated and what it cost.
    fn describe(&self, cost: &CalibrationCost) -> String {
        format!(
            "calibrating {} kernels on {} before the first step (no stored calibration for this device and \
             shape): {:.1} s of device time, {:.1} J, {:.2} s here",
            cost.kernels,
            self.place(),
            cost.device_s,
            cost.energy_j,
            cost.wall_s
        )
    }
}

/// The twin's calibrator: `powercal::calibrate_on_twin` on a copy of the run's twin (simulated time).
pub struct TwinCalibrator(pub SimHandle);

impl InPlaceCalibrator for TwinCalibrator {
    fn place(&self) -> &'static str {
        "the twin"
    }
    fn calibrate(&mut self, todo: &[(String, String, f64)]) -> Result<(PowerCalibration, CalibrationCost)> {
        powercal::calibrate_on_twin(self.0.power_model(), self.0.sensor_model(), todo, &SimCalOpts::default())
    }
    fn describe(&self, cost: &CalibrationCost) -> String {
        format!(
            "calibrating {} kernels on the twin (sim) before the first step's split: {:.1} s of simulated device \
             time, {:.1} J simulated, {:.2} s here",
            cost.kernels, cost.device_s, cost.energy_j, cost.wall_s
        )
    }
}

/// What the per-kernel split uses, decided before the first step.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitPlan {
    /// `--calibration none`.
    TimeSplitAsked,
    /// `--calibration FILE`.
    File(PathBuf),
    /// The cache's file; `calibrate_missing`: kernels it lacks at the step's shape are calibrated in place.
    Cache { path: PathBuf, calibrate_missing: bool },
    /// Nothing stored: calibrate the step's kernels in place before the first step's split.
    Calibrate,
    /// Nothing stored and no calibrator here: split by time.
    TimeSplit,
}

/// The decision (module docs): `cached` is the cache's file for this device when it exists.
pub fn plan(choice: &CalibrationChoice, cached: Option<PathBuf>, can_calibrate: bool) -> SplitPlan {
    match (choice, cached) {
        (CalibrationChoice::Off, _) => SplitPlan::TimeSplitAsked,
        (CalibrationChoice::File(p), _) => SplitPlan::File(p.clone()),
        (CalibrationChoice::Auto, Some(path)) => SplitPlan::Cache { path, calibrate_missing: can_calibrate },
        (CalibrationChoice::Auto, None) if can_calibrate => SplitPlan::Calibrate,
        (CalibrationChoice::Auto, None) => SplitPlan::TimeSplit,
    }
}

/// The step's kernels that `stored` lacks at `shape`, with their median launch time; empty when it holds all.
pub fn todo(launches: &[KernelTiming], shape: &str, stored: Option<&PowerCalibration>) -> Todo {
    let mut names: Vec<&'static str> = launches.iter().map(|k| k.name).collect();
    names.sort_unstable();
    names.dedup();
    let all = names.into_iter().map(|n| {
        let d: Vec<f64> = launches.iter().filter(|k| k.name == n).map(|k| k.dur_s).collect();
        (n.to_string(), shape.to_string(), crate::stats::median(&d))
    });
    missing(all.collect(), stored)
}

/// What an in-place calibration did.
#[derive(Clone, Debug)]
pub struct InPlaceOutcome {
    /// The calibration the split uses (the cache's file after the new rows were merged into it).
    pub calibration: PowerCalibration,
    pub cost: CalibrationCost,
    /// For summary.json's `kernel_split.calibration`.
    pub label: String,
    /// The stderr line.
    pub message: String,
}

/// Calibrate the step's kernels the cache lacks (module docs); None when it holds them all.
pub fn run_in_place(
    cal: &mut dyn InPlaceCalibrator,
    launches: &[KernelTiming],
    shape: &str,
    cache: Option<&Path>,
) -> Result<Option<InPlaceOutcome>> {
    run_todo(cal, |stored| todo(launches, shape, stored), cache)
}

/// The kernels of `all` that `stored` lacks at their shape.
pub fn missing(all: Todo, stored: Option<&PowerCalibration>) -> Todo {
    all.into_iter().filter(|(n, shape, _)| !stored.is_some_and(|c| c.covers(&[n], shape))).collect()
}

/// Calibrate what `todo` lists given the cache's calibration, store it in the cache and merge; None when
/// there is nothing to calibrate.
pub fn run_todo(
    cal: &mut dyn InPlaceCalibrator,
    todo: impl FnOnce(Option<&PowerCalibration>) -> Todo,
    cache: Option<&Path>,
) -> Result<Option<InPlaceOutcome>> {
    let stored = cache.filter(|p| p.exists()).map(|p| PowerCalibration::read(p, "calibration cache")).transpose()?;
    let todo = todo(stored.as_ref());
    if todo.is_empty() {
        return Ok(None);
    }
    let (new, cost) = cal.calibrate(&todo)?;
    let message = cal.describe(&cost);
    let (calibration, label) = match cache {
        Some(p) => match new.store(p) {
            Ok(()) => (
                PowerCalibration::read(p, "calibration cache").unwrap_or(new),
                format!("in place on {}, stored in {}", cal.place(), p.display()),
            ),
            Err(e) => (new, format!("in place on {} (not stored: {e:#})", cal.place())),
        },
        None => (new, format!("in place on {} (no cache folder: not stored)", cal.place())),
    };
    Ok(Some(InPlaceOutcome { calibration, cost, label, message }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::powercal::KernelPowerRow;

    /// A fake device: each kernel draws a known power; the calibration costs 2 s per kernel at that power.
    struct FakeDevice {
        watts: Vec<(&'static str, f64)>,
        asked: Vec<Todo>,
    }

    impl InPlaceCalibrator for FakeDevice {
        fn place(&self) -> &'static str {
            "the device"
        }
        fn calibrate(&mut self, todo: &[(String, String, f64)]) -> Result<(PowerCalibration, CalibrationCost)> {
            self.asked.push(todo.to_vec());
            let mut c = PowerCalibration::new("GPU-fake", "nvml-counter", 70.0);
            let mut energy_j = 0.0;
            for (name, shape, launch_s) in todo {
                let w = self.watts.iter().find(|(n, _)| n == name).map(|x| x.1).unwrap_or(100.0);
                energy_j += 2.0 * w;
                c.kernels.push(KernelPowerRow {
                    name: name.clone(),
                    shape: shape.clone(),
                    power_w: w,
                    ci95_w: 1.0,
                    windows: 5,
                    window_s: 0.4,
                    launch_s: *launch_s,
                });
            }
            Ok((c, CalibrationCost { kernels: todo.len(), device_s: 2.0 * todo.len() as f64, energy_j, wall_s: 0.0 }))
        }
    }

    fn launches() -> Vec<KernelTiming> {
        let k = |name, start_s, dur_s| KernelTiming { name, start_s, dur_s };
        let names = crate::ops::KERNEL_NAMES;
        let (a, b) = (names[0], names[1]);
        vec![k(a, 0.0, 1e-4), k(b, 1e-4, 3e-5), k(a, 2e-4, 3e-4), k(a, 6e-4, 2e-4), k(b, 9e-4, 5e-5)]
    }

    #[test]
    fn the_decision_before_the_first_step() {
        let p = PathBuf::from("/c/GPU-1.json");
        let f = CalibrationChoice::File("x.json".into());
        assert_eq!(plan(&CalibrationChoice::Off, Some(p.clone()), true), SplitPlan::TimeSplitAsked);
        assert_eq!(plan(&f, None, false), SplitPlan::File("x.json".into()));
        assert_eq!(
            plan(&CalibrationChoice::Auto, Some(p.clone()), true),
            SplitPlan::Cache { path: p.clone(), calibrate_missing: true }
        );
        assert_eq!(
            plan(&CalibrationChoice::Auto, Some(p.clone()), false),
            SplitPlan::Cache { path: p, calibrate_missing: false }
        );
        assert_eq!(plan(&CalibrationChoice::Auto, None, true), SplitPlan::Calibrate);
        assert_eq!(plan(&CalibrationChoice::Auto, None, false), SplitPlan::TimeSplit);
    }

    #[test]
    fn in_place_calibrates_what_the_cache_lacks_stores_it_and_says_what_it_cost() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("GPU-fake.json");
        let names = crate::ops::KERNEL_NAMES;
        let mut dev = FakeDevice { watts: vec![(names[0], 300.0), (names[1], 150.0)], asked: vec![] };
        let out = run_in_place(&mut dev, &launches(), "pamap2/b64", Some(&cache)).unwrap().unwrap();
        // Both kernels, once each, with the median of their launch times.
        assert_eq!(dev.asked.len(), 1);
        let asked = &dev.asked[0];
        assert_eq!(asked.len(), 2);
        let a = asked.iter().find(|t| t.0 == names[0]).unwrap();
        assert!((a.2 - 2e-4).abs() < 1e-12, "median of 1e-4, 3e-4, 2e-4: {}", a.2);
        let b = asked.iter().find(|t| t.0 == names[1]).unwrap();
        assert!((b.2 - 4e-5).abs() < 1e-12, "median of 3e-5, 5e-5: {}", b.2);
        assert_eq!(out.cost.kernels, 2);
        assert_eq!(out.cost.energy_j, 2.0 * 300.0 + 2.0 * 150.0);
        assert!(out.message.contains("2 kernels on the device"), "{}", out.message);
        assert!(out.message.contains("4.0 s of device time, 900.0 J"), "{}", out.message);
        assert!(out.label.contains("stored in") && cache.exists(), "{}", out.label);
        let powers = out.calibration.powers("pamap2/b64");
        assert_eq!(powers.power(names[0]).0, 300.0);
        assert_eq!(powers.power(names[1]).0, 150.0);
        // The same step again: the cache holds both, nothing is calibrated.
        assert!(run_in_place(&mut dev, &launches(), "pamap2/b64", Some(&cache)).unwrap().is_none());
        assert_eq!(dev.asked.len(), 1);
        // Another shape: calibrated again, and the cache keeps both shapes.
        let out = run_in_place(&mut dev, &launches(), "pamap2/b256", Some(&cache)).unwrap().unwrap();
        assert_eq!(dev.asked.len(), 2);
        assert!(out.calibration.covers(&[names[0], names[1]], "pamap2/b64"));
        assert!(out.calibration.covers(&[names[0], names[1]], "pamap2/b256"));
        // Without a cache folder: used, said to be unstored.
        let out = run_in_place(&mut dev, &launches(), "pamap2/b64", None).unwrap().unwrap();
        assert!(out.label.contains("not stored"), "{}", out.label);
    }
}

//! The device's in-place calibration for `train --per-kernel` (issue 18 item 2): when the calibration cache
//! holds no power for this device and the step's shape, the step's kernels are calibrated on the training's
//! own backend **before the first step**, by the same repeat-and-divide as `bench kernels --energy`
//! ([`super::kernels::Calibrator`]): idle measured right before, each kernel's layer cases run back to back over
//! windows started at random phases of the sensor's update period, a Student t interval over the windows.
//!
//! Which cases: the step's calls at the run's batch (`Arch::step_cases`, max pooling as the models use it, the
//! run's optimiser), grouped by kernel; per kernel the largest cases by launch time until they hold
//! [`COVER`] of that kernel's time in a step, at most [`MAX_CASES`] (the rest are small: they would cost
//! windows, not accuracy). Five windows of 0.3 s per case (three updates of a 100 ms counter each): about
//! 15 kernels x up to 2 cases x 1.5 s, some 30-45 s for a model's step on a GPU. A kernel's
//! power is the launch-time-weighted mean of its cases' powers, as `bench kernels --energy` stores it.
//!
//! It runs before the meter's first window, so that neither the counter's run total nor the run's wall time
//! holds it; what it cost (device seconds, joules, wall seconds) is said on stderr and kept in summary.json's
//! `kernel_split.cost`. On CUDA with an NVML counter it is unverified on GPU; its CPU test uses the labelled
//! estimate (`--energy-source estimate`), whose powers are the estimate's watts by construction.
use super::kernels::{time_op, Calibrator, KernelBenchOptions};
use crate::energy::inplace::{InPlaceCalibrator, Todo};
use crate::energy::powercal::{CalibrationCost, KernelPowerRow, PowerCalibration};
use crate::model::Arch;
use crate::ops::check::{host_data, prepare, Case, StepCases};
use crate::ops::prelude::*;
use crate::ops::{Op, OptimCall, PoolCall};
use anyhow::{bail, Result};
use std::time::Instant;

/// The share of a kernel's step time its calibrated cases must hold.
pub const COVER: f64 = 0.8;
/// The most cases calibrated per kernel.
pub const MAX_CASES: usize = 2;

/// Calibrates a run's step kernels on the run's backend `be`.
pub struct DeviceCalibrator<'a, B: Backend> {
    pub be: &'a B,
    pub arch: Arch,
    pub batch: usize,
    /// "sgd" or "adam": the optimiser kernel the step launches.
    pub optimizer: String,
    /// The energy source as `bench kernels --energy-source` takes it (nvml on a GPU, rapl on a CPU; estimate
    /// in tests).
    pub source: String,
    pub watts: Option<f64>,
    pub windows: usize,
    pub window_s: f64,
}

impl<'a, B: Backend> DeviceCalibrator<'a, B> {
    /// Five windows of 0.3 s per case (module docs).
    pub fn new(be: &'a B, arch: Arch, batch: usize, optimizer: &str, source: &str) -> Self {
        DeviceCalibrator {
            be,
            arch,
            batch,
            optimizer: optimizer.to_string(),
            source: source.to_string(),
            watts: None,
            windows: 5,
            window_s: 0.3,
        }
    }

    /// The calls of one training step at the run's batch.
    pub fn step_cases(&self) -> Vec<Case> {
        let adam = self.optimizer == "adam";
        self.arch
            .step_cases(self.batch, true)
            .into_iter()
            .filter(|c| match &c.op {
                Op::Pool(PoolCall::AvgForward(_) | PoolCall::AvgBackward(_)) => false,
                Op::Optim(OptimCall::Adam(_)) => adam,
                Op::Optim(OptimCall::Sgd(_)) => !adam,
                _ => true,
            })
            .collect()
    }

    /// The step's kernel names, each once, in step order.
    pub fn step_kernels(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for c in self.step_cases() {
            if !out.contains(&c.op.kernel()) {
                out.push(c.op.kernel());
            }
        }
        out
    }

    /// The bench calibrator (its meter measures idle power for 1 s on a sensor).
    fn open(&self) -> Result<Calibrator> {
        Calibrator::open(&KernelBenchOptions {
            model: Some(self.arch.name().to_string()),
            batch_size: Some(self.batch),
            device: self.be.kind(),
            iters: None,
            kernel: None,
            energy: true,
            energy_source: self.source.clone(),
            watts: self.watts,
            windows: Some(self.windows),
            window_s: Some(self.window_s),
            compare: None,
            out: None,
            json: false,
        })
    }

    /// One kernel's row from its cases (module docs), and the energy its windows used.
    fn kernel_row(&self, cal: &mut Calibrator, name: &str, shape: &str, seed: u64) -> Result<(KernelPowerRow, f64)> {
        let cases: Vec<Case> = self.step_cases().into_iter().filter(|c| c.op.kernel() == name).collect();
        if cases.is_empty() {
            bail!("in-place calibration: {name} is not a kernel of a {} step", self.arch.name());
        }
        let mut timed = Vec::new();
        for c in cases {
            let h = host_data(&c.op, seed);
            let mut p = prepare(self.be, &h)?;
            let (ms, _) = time_op(self.be, &c.op, &mut p.f, &mut p.i, Some(10))?;
            timed.push((c, ms / 1e3));
        }
        let picked = cover(timed, COVER, MAX_CASES);
        let (mut joules, mut secs, mut ci, mut used, mut windows, mut window_s) = (0.0, 0.0, 0.0, 0.0, 0, 0.0);
        for (k, (c, launch_s)) in picked.iter().enumerate() {
            let e = cal.measure(self.be, c, *launch_s, seed.wrapping_add(k as u64))?;
            // Power x launch time summed over the cases = their joules per launch summed.
            joules += e.j_per_launch;
            ci += e.ci95_j;
            secs += launch_s;
            used += e.j_per_launch * e.launches as f64;
            windows += e.windows;
            window_s += e.seconds;
        }
        let row = KernelPowerRow {
            name: name.to_string(),
            shape: shape.to_string(),
            power_w: joules / secs.max(1e-12),
            ci95_w: ci / secs.max(1e-12),
            windows,
            window_s: window_s / windows.max(1) as f64,
            launch_s: secs / picked.len() as f64,
        };
        Ok((row, used))
    }
}

/// The largest cases by launch time until they hold `share` of the total (at least one, at most `max`).
pub fn cover(mut timed: Vec<(Case, f64)>, share: f64, max: usize) -> Vec<(Case, f64)> {
    timed.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = timed.iter().map(|t| t.1).sum();
    let mut out = Vec::new();
    let mut held = 0.0;
    for t in timed {
        if !out.is_empty() && (held >= share * total || out.len() >= max) {
            break;
        }
        held += t.1;
        out.push(t);
    }
    out
}

impl<B: Backend> InPlaceCalibrator for DeviceCalibrator<'_, B> {
    fn place(&self) -> &'static str {
        "the device"
    }

    fn calibrate(&mut self, todo: &[(String, String, f64)]) -> Result<(PowerCalibration, CalibrationCost)> {
        let t0 = Instant::now();
        let mut cal = self.open()?;
        let mut out = PowerCalibration::new(&cal.device_id(), &cal.source_name(), cal.idle_w().unwrap_or(0.0));
        // The gaps between kernels are charged at idle power on a device (energy/powercal.rs).
        out.gap_w = out.idle_w;
        out.device_name = self.be.device_name();
        let mut cost = CalibrationCost { kernels: todo.len(), ..CalibrationCost::default() };
        for (i, (name, shape, _)) in todo.iter().enumerate() {
            let (row, used) = self.kernel_row(&mut cal, name, shape, 0xca11 + 97 * i as u64)?;
            cost.device_s += row.window_s * row.windows as f64;
            cost.energy_j += used;
            out.kernels.push(row);
        }
        cost.wall_s = t0.elapsed().as_secs_f64();
        Ok((out, cost))
    }
}

/// Kernels of a step, for `Meter::calibrate_before_run`: (name, shape, unknown launch time).
pub fn todo_of(kernels: &[&'static str], shape: &str) -> Todo {
    kernels.iter().map(|k| (k.to_string(), shape.to_string(), f64::NAN)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::cpu::CpuBackend;

    #[test]
    fn the_step_kernels_are_the_ones_a_step_launches() {
        let cpu = CpuBackend::new();
        let d = DeviceCalibrator::new(&cpu, Arch::Pamap2, 8, "sgd", "estimate");
        let k = d.step_kernels();
        assert!(k.contains(&"conv2d_forward") && k.contains(&"gemm") && k.contains(&"sgd_step"), "{k:?}");
        assert!(!k.contains(&"adam_step") && !k.iter().any(|n| n.contains("avg")), "{k:?}");
        let a = DeviceCalibrator::new(&cpu, Arch::Pamap2, 8, "adam", "estimate");
        assert!(a.step_kernels().contains(&"adam_step") && !a.step_kernels().contains(&"sgd_step"));
    }

    #[test]
    fn cover_keeps_the_largest_cases_until_they_hold_the_share() {
        let cpu = CpuBackend::new();
        let d = DeviceCalibrator::new(&cpu, Arch::Pamap2, 8, "sgd", "estimate");
        let cases: Vec<Case> = d.step_cases().into_iter().take(4).collect();
        let timed: Vec<(Case, f64)> = cases.into_iter().zip([1.0, 6.0, 2.0, 1.0]).collect();
        let got: Vec<f64> = cover(timed.clone(), 0.8, 3).iter().map(|t| t.1).collect();
        assert_eq!(got, vec![6.0, 2.0], "6 + 2 = 8 of 10");
        assert_eq!(cover(timed.clone(), 0.0, 3).len(), 1, "at least one");
        assert_eq!(cover(timed, 1.0, 2).len(), 2, "at most max");
    }

    /// On the CPU with the labelled estimate (40 W while busy), every calibrated kernel's power is the
    /// estimate's watts (window energy = 40 W x window time, divided by the launches and their launch time):
    /// what remains is the gap between a case's timed launch and its launches back to back.
    #[test]
    fn the_device_calibrator_measures_each_kernel_it_is_asked_for() {
        let cpu = CpuBackend::new();
        let mut d = DeviceCalibrator::new(&cpu, Arch::Pamap2, 4, "sgd", "estimate");
        d.watts = Some(40.0);
        d.windows = 2;
        d.window_s = 0.05;
        let todo = todo_of(&["gemm", "relu_forward"], "pamap2/b4");
        let (cal, cost) = d.calibrate(&todo).unwrap();
        assert_eq!(cal.kernels.len(), 2);
        assert_eq!(cost.kernels, 2);
        for r in &cal.kernels {
            assert_eq!(r.shape, "pamap2/b4");
            assert!(r.power_w > 20.0 && r.power_w < 80.0, "{}: {} W for a 40 W estimate", r.name, r.power_w);
            assert!(r.windows >= 2 && r.launch_s > 0.0, "{r:?}");
        }
        assert!(cost.device_s >= 2.0 * 2.0 * 0.05 * 0.9, "{cost:?}");
        assert!((cost.energy_j / cost.device_s - 40.0).abs() < 12.0, "{cost:?}");
        let e = d.calibrate(&todo_of(&["adam_step"], "pamap2/b4")).unwrap_err();
        assert!(format!("{e:#}").contains("adam_step is not a kernel of a pamap2 step"), "{e:#}");
    }
}

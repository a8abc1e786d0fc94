//! The step probe: per-kernel timing of training steps and evaluations (`--per-kernel`, `--kernel-sample`,
//! `--kernel-timing`), handing each step's launches to the meter, and the FLOP accounting behind J/GFLOP in
//! kernels.csv.
use super::TrainConfig;
use crate::energy::{KernelTimingInfo, Meter, StepEnergy, StepKernels};
use crate::model::Model;
use crate::ops::{Backend, DeviceKind, KernelClock};
use crate::rundir::KernelRow;
use anyhow::Result;
use std::collections::BTreeMap;

pub struct StepProbe {
    per_kernel: bool,
    /// `--energy sim`: every launch is timed, per-kernel or not: the twin's power trace is driven by them.
    sim: bool,
    /// Time every Nth training step's launches (1: all).
    sample: u64,
    clock: KernelClock,
    /// (batch size, training step (true) or evaluation batch) -> count: FLOPs per kernel depend on the batch
    /// size only, so they are counted here and added to the meter once at the end.
    batches: BTreeMap<(usize, bool), u64>,
}

/// What the probe leaves for the run's records.
pub struct ProbeResult {
    /// kernels.csv's rows (with --per-kernel).
    pub kernels: Option<Vec<KernelRow>>,
    /// The `kernel_timing` block of the energy context (with --per-kernel).
    pub timing: Option<KernelTimingInfo>,
}

impl StepProbe {
    /// Set the backend's kernel clock and turn launch timing on (with --per-kernel).
    pub fn start<B: Backend>(be: &B, cfg: &TrainConfig) -> Result<StepProbe> {
        let sim = cfg.energy == "sim";
        if cfg.per_kernel {
            be.set_kernel_clock(cfg.kernel_timing)?;
        }
        if cfg.per_kernel || sim {
            be.set_kernel_timing(true);
        }
        Ok(StepProbe {
            per_kernel: cfg.per_kernel,
            sim,
            sample: cfg.kernel_sample,
            clock: cfg.kernel_timing,
            batches: BTreeMap::new(),
        })
    }

    /// Before training step `done + 1` of `n` rows: whether its launches are timed. With --kernel-sample N,
    /// every Nth step is (and the first two of each batch size, so that a profile and its spread exist); the
    /// others take the latest timed profile.
    pub fn before_step<B: Backend>(&self, be: &B, meter: &Meter, done: u64, n: usize) -> bool {
        let timed = self.per_kernel
            && (self.sample <= 1 || done.is_multiple_of(self.sample) || meter.kernel_profile_samples(n as u64) < 2);
        if self.per_kernel && self.sample > 1 {
            be.set_kernel_timing(timed || self.sim);
        }
        timed
    }

    /// End the meter's window of a training step of `n` rows at `t1` (`timed`: from `before_step`).
    pub fn end_step<B: Backend>(
        &mut self,
        be: &B,
        meter: &mut Meter,
        t1: f64,
        n: usize,
        timed: bool,
    ) -> Result<StepEnergy> {
        let key = n as u64;
        let se = if timed {
            let timings = be.take_kernel_timings()?;
            // A profile is kept only when some steps will need it.
            meter.end_step_with(t1, StepKernels::Timed(&timings, (self.sample > 1).then_some(key)))
        } else if self.per_kernel {
            if self.sim {
                meter.sim_launches(be.take_kernel_timings()?);
            }
            meter.end_step_with(t1, StepKernels::Profiled(key))
        } else if self.sim {
            meter.end_step(t1, &be.take_kernel_timings()?)
        } else {
            meter.end_step(t1, &[])
        };
        if self.per_kernel {
            *self.batches.entry((n, true)).or_insert(0) += 1;
        }
        Ok(se)
    }

    /// Before an evaluation: its launches are always timed (with --per-kernel).
    pub fn begin_eval<B: Backend>(&self, be: &B) {
        if self.per_kernel || self.sim {
            be.set_kernel_timing(true);
        }
    }

    /// End the meter's window of an evaluation of `rows` rows in batches of `batch` at `t1`.
    pub fn end_eval<B: Backend>(
        &mut self,
        be: &B,
        meter: &mut Meter,
        t1: f64,
        batch: usize,
        rows: usize,
    ) -> Result<StepEnergy> {
        if !self.per_kernel {
            let timings = if self.sim { be.take_kernel_timings()? } else { Vec::new() };
            return Ok(meter.end_step(t1, &timings));
        }
        // evaluate's batches: full ones of `batch`, then the rest.
        *self.batches.entry((batch, false)).or_insert(0) += (rows / batch) as u64;
        if !rows.is_multiple_of(batch) {
            *self.batches.entry((rows % batch, false)).or_insert(0) += 1;
        }
        let timings = be.take_kernel_timings()?;
        Ok(meter.end_step(t1, &timings))
    }

    /// The run ended: timing off, every launch's FLOPs added to the meter, kernels.csv's rows and the kernel
    /// timing summary taken (before `Meter::finish`).
    pub fn finish<B: Backend>(self, be: &B, meter: &mut Meter, model: &Model<'_, B>) -> ProbeResult {
        be.set_kernel_timing(false);
        for (&(n, train), &count) in &self.batches {
            let flops = if train { model.kernel_flops(n) } else { model.forward_kernel_flops(n) };
            for (name, f) in flops {
                meter.add_flops(name, f * count as f64);
            }
        }
        if !self.per_kernel {
            return ProbeResult { kernels: None, timing: None };
        }
        let (launches, timed_launches) =
            meter.kernel_table().rows().fold((0, 0), |(l, t), (_, k)| (l + k.launches, t + k.timed_launches));
        let clock = if be.kind() == DeviceKind::Cuda { self.clock.name() } else { "wall clock" };
        ProbeResult {
            kernels: Some(meter.kernel_rows()),
            timing: Some(KernelTimingInfo { clock: clock.into(), sample: self.sample, launches, timed_launches }),
        }
    }
}

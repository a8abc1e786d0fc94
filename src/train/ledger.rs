//! The run's accounts: steps, losses, energy per epoch and cumulative, validation results, the prediction;
//! they become epochs.csv's rows and summary.json.
use super::stop::StopReason;
use super::{Setup, TaskSpec};
use crate::energy::predict::{Prediction, Predictor};
use crate::energy::{EnergySource, KernelTimingInfo, Meter};
use crate::ops::Backend;
use crate::rundir::{EpochRow, RunSummary};
use anyhow::Result;

/// One epoch's training so far.
pub struct EpochTally {
    pub epoch: usize,
    /// Start on the backend's clock.
    pub t0: f64,
    /// Training energy (None without an energy reading).
    energy: Option<f64>,
    loss_sum: f64,
    pub steps: u64,
}

impl EpochTally {
    pub fn add(&mut self, loss: f32, energy_j: Option<f64>) {
        self.steps += 1;
        self.loss_sum += loss as f64;
        if let (Some(e), Some(c)) = (energy_j, self.energy.as_mut()) {
            *c += e;
        }
    }
}

/// An epoch's evaluation on the validation split (a metered window of its own).
pub struct Evaluation {
    pub loss: f64,
    pub acc: f64,
    pub per_task: Vec<f64>,
    pub energy_j: Option<f64>,
}

pub struct Ledger {
    pub summary: RunSummary,
    /// Optimiser steps done.
    pub steps: u64,
    /// The run's start on the backend's clock.
    pub t_start: f64,
    /// Every metered joule so far (None without an energy reading).
    cum_energy: Option<f64>,
    /// Training energy of the finished epochs (evaluations excluded).
    train_energy: f64,
    /// Every step's and evaluation's energy so far, as they end (what a run that fails has used).
    used_j: Option<f64>,
    step_times: Vec<f64>,
    predictor: Predictor,
    /// The run's wall time at the end of the epoch last fed to the predictor.
    predicted_wall_s: f64,
}

impl Ledger {
    pub fn new(s: &Setup, device: (&str, String), host: &str, source: EnergySource, t_start: f64) -> Ledger {
        let cfg = &s.cfg;
        let summary = RunSummary {
            protocol: crate::PROTOCOL_VERSION,
            model: s.spec.arch.name().into(),
            device: device.0.into(),
            device_name: device.1,
            optimizer: cfg.optimizer.clone(),
            lr: cfg.lr,
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            target_acc: cfg.target_acc,
            energy_source: source.as_str().into(),
            host: host.into(),
            stop_reason: StopReason::EpochLimit.as_str().into(),
            ..Default::default()
        };
        let has_energy = source.is_measurement() || matches!(source, EnergySource::Estimate | EnergySource::Sim);
        Ledger {
            summary,
            steps: 0,
            t_start,
            cum_energy: has_energy.then_some(0.0),
            train_energy: 0.0,
            used_j: has_energy.then_some(0.0),
            step_times: Vec::new(),
            predictor: Predictor::new(1, cfg.epochs, cfg.target_acc),
            predicted_wall_s: 0.0,
        }
    }

    pub fn start_epoch(&self, epoch: usize, t0: f64) -> EpochTally {
        EpochTally { epoch, t0, energy: self.cum_energy.map(|_| 0.0), loss_sum: 0.0, steps: 0 }
    }

    /// A training step of `dt` seconds ended.
    pub fn step(&mut self, ep: &mut EpochTally, loss: f32, dt: f64, energy_j: Option<f64>) {
        self.steps += 1;
        self.step_times.push(dt);
        ep.add(loss, energy_j);
        if let (Some(u), Some(e)) = (self.used_j.as_mut(), energy_j) {
            *u += e;
        }
    }

    /// The energy every step and evaluation so far used (None without an energy reading).
    pub fn used_j(&self) -> Option<f64> {
        self.used_j
    }

    /// The loss of the latest step is not finite: the run stops in this epoch. Its steps are accounted as a
    /// partial epoch (no evaluation): its row is marked `partial` and its energy counts, so a diverged run
    /// keeps what it used.
    pub fn diverged(
        &mut self,
        ep: &EpochTally,
        wall_s: f64,
        loss: f32,
        lr: f32,
        spec: &TaskSpec,
        now: f64,
    ) -> EpochRow {
        eprintln!("note: the loss became {loss} at step {}: stopping (lr {lr} too large?)", self.steps);
        self.end_training(ep);
        self.summary.final_train_loss = Some(loss as f64);
        EpochRow { partial: true, ..self.end_epoch(ep, wall_s, None, spec, now) }
    }

    /// The epoch's training ended (before its evaluation).
    pub fn end_training(&mut self, ep: &EpochTally) {
        self.summary.epochs = ep.epoch;
        self.summary.final_train_loss = Some(ep.loss_sum / ep.steps as f64);
        if let Some(e) = ep.energy {
            self.train_energy += e;
        }
    }

    /// The epoch ended (`wall_s`: its training time; `now`: after its evaluation): the validation results go
    /// into the summary, the energy into the cumulative sum; returns its epochs.csv row.
    pub fn end_epoch(
        &mut self,
        ep: &EpochTally,
        wall_s: f64,
        eval: Option<&Evaluation>,
        spec: &TaskSpec,
        now: f64,
    ) -> EpochRow {
        let s = &mut self.summary;
        if let Some(ev) = eval {
            s.final_val_acc = Some(ev.acc);
            s.best_val_acc = Some(s.best_val_acc.map_or(ev.acc, |b: f64| b.max(ev.acc)));
            s.final_val_acc_per_task = spec.names.iter().cloned().zip(ev.per_task.iter().cloned()).collect();
            if let Some(t) = s.target_acc {
                for (name, &acc_j) in spec.names.iter().zip(&ev.per_task) {
                    if acc_j >= t {
                        s.task_epoch_reached.entry(name.clone()).or_insert(ep.epoch);
                    }
                }
            }
        }
        let eval_energy = eval.and_then(|e| e.energy_j);
        if let (Some(u), Some(e)) = (self.used_j.as_mut(), eval_energy) {
            *u += e;
        }
        if let (Some(c), Some(e)) = (self.cum_energy.as_mut(), ep.energy) {
            *c += e + eval_energy.unwrap_or(0.0);
        }
        EpochRow {
            epoch: ep.epoch,
            steps: ep.steps,
            train_loss: s.final_train_loss.unwrap_or(f64::NAN),
            val_loss: eval.map(|e| e.loss),
            val_acc: eval.map(|e| e.acc),
            epoch_wall_s: wall_s,
            epoch_energy_j: ep.energy,
            eval_energy_j: eval_energy,
            cum_energy_j: self.cum_energy,
            cum_wall_s: now - self.t_start,
            partial: false,
        }
    }

    /// Feed the epoch's row to the predictor; a prediction when it makes one.
    /// The epoch's time is everything since the previous epoch ended (training, evaluation, host time), so the
    /// epochs sum to the run's wall time (`epoch_wall_s` alone is the training part).
    pub fn predict(&mut self, row: &EpochRow) -> Option<Prediction> {
        let energy = row.epoch_energy_j.map(|e| e + row.eval_energy_j.unwrap_or(0.0));
        let wall_s = row.cum_wall_s - std::mem::replace(&mut self.predicted_wall_s, row.cum_wall_s);
        self.predictor.observe_epoch(row.epoch, energy, wall_s, row.val_acc)
    }

    /// Every task reached the target in `row`'s epoch.
    pub fn target_reached(&mut self, row: &EpochRow) {
        let s = &mut self.summary;
        s.target_reached = true;
        s.epochs_to_target = Some(row.epoch);
        s.energy_to_target_j = row.cum_energy_j;
        s.time_to_target_s = Some(row.cum_wall_s);
    }

    /// Close the accounts: the meter's totals, the run's wall time (on `be`'s clock, once the meter finished),
    /// the kernel timing block, the prediction's outcome and carbon.
    pub fn finish<B: Backend>(
        mut self,
        meter: Meter,
        be: &B,
        stop: StopReason,
        kernel_timing: Option<KernelTimingInfo>,
        carbon: (Option<f64>, Option<f64>),
    ) -> Result<RunSummary> {
        let run_energy = meter.finish();
        let now = be.clock_s();
        let s = &mut self.summary;
        s.stop_reason = stop.as_str().into();
        s.steps = self.steps;
        s.wall_s = now - self.t_start;
        s.mean_step_s = if self.step_times.is_empty() {
            0.0
        } else {
            self.step_times.iter().sum::<f64>() / self.step_times.len() as f64
        };
        // The meter's total covers the first step to the last evaluation, host gaps between steps included;
        // the epoch and target figures sum the metered steps and evaluations.
        s.total_energy_j = run_energy.total_j.or(self.cum_energy);
        s.energy_per_epoch_j = self.cum_energy.map(|_| self.train_energy / s.epochs.max(1) as f64);
        s.idle_j = run_energy.idle_j;
        s.active_j = run_energy.active_j;
        s.idle_power_w = run_energy.idle_power_w;
        s.energy_context = run_energy.context;
        s.attribution_error = run_energy.attribution_error;
        s.kernel_split = run_energy.kernel_split;
        s.energy_context.kernel_timing = kernel_timing;
        s.prediction = self.predictor.compare(s.total_energy_j, s.wall_s, s.epochs);
        let sensor = crate::energy::resolution::sensor_for_run(&s.energy_context);
        s.resolution = crate::energy::resolution::for_run(&s.energy_source, sensor, s.wall_s, s.mean_step_s);
        s.carbon = crate::energy::records::carbon_block(s.total_energy_j, carbon.0, carbon.1)?;
        if let Some(c) = s.carbon.as_object_mut() {
            // The carbon figure is as good as the energy behind it: say how that was obtained.
            c.insert("energy_source".into(), serde_json::json!(s.energy_source));
        }
        Ok(self.summary)
    }
}

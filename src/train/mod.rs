//! The training loop: [`train`] runs a prepared [`Setup`] on a backend, metering every step and evaluation,
//! and writes the run directory through a [`RunWriter`] (formats in `crate::rundir`).
//!
//! The loop is an orchestrator over small parts: the meter (`crate::energy::Meter`), the step probe
//! (`probe.rs`: kernel timing, `--kernel-sample`, FLOP accounting), the stopper (`stop.rs`: target,
//! max-steps, divergence), the ledger (`ledger.rs`: epoch and run accounts, summary) and the progress bar.
//! `eval.rs` evaluates a model on a split. Commands (`crate::cmd::train`) open the backend and commit the
//! run directory.

mod config;
pub mod eval;
mod ledger;
mod probe;
mod progress;
mod stop;

pub use crate::rundir::RunSummary;
pub use config::{
    check_target_acc, check_watts, task_names, task_spec, Setup, TaskSpec, TrainConfig, MAX_BATCH, MAX_EPOCHS,
};
pub use eval::evaluate;
pub use stop::StopReason;

use crate::data::{Loader, Split};
use crate::energy::{EnergySource, Meter, MeterConfig};
use crate::model::{checkpoint, Model};
use crate::ops::Backend;
use crate::rundir::{Config, RunWriter, StepRecord};
use anyhow::Result;
use ledger::{Evaluation, Ledger};
use probe::StepProbe;
use progress::Progress;
use std::sync::Arc;
use stop::Stopper;

/// Train `s` on `be`, writing its records to `out`; returns the run's summary (also in summary.json).
pub fn train<B: Backend>(be: &B, s: &Setup, out: &mut RunWriter) -> Result<RunSummary> {
    let cfg = &s.cfg;
    let mut model = Model::new(be, s.spec.arch, cfg.batch_size.min(s.ds.train.n.max(1)), &s.init)?;
    model.freeze_encoder = cfg.freeze_encoder;
    let mut meter = open_meter(be, s)?;
    let source = meter.source();
    let mut probe = StepProbe::start(be, cfg)?;
    let (device, host) = ((be.kind().name(), be.device_name()), crate::util::hostname());
    out.config(&run_config(s, device.clone(), &host, source))?;
    let progress = Progress::new(cfg, s.ds.train.n);
    let mut run = Ledger::new(s, device, &host, source, be.clock_s());
    let mut stop = Stopper::new(cfg.max_steps, cfg.target_acc).with_cap(cfg.cap);
    let looped = (|| -> Result<()> {
        'epochs: for epoch in 1..=cfg.epochs {
            let mut ep = run.start_epoch(epoch, be.clock_s());
            let cols = s.spec.cols.clone();
            let shuffle = !cfg.no_shuffle;
            for batch in Loader::new(s.ds.train.clone(), cfg.batch_size, shuffle, cfg.seed, epoch as u64, cols)? {
                let b = batch?;
                if stop.max_steps_reached(run.steps) {
                    break;
                }
                model.load_batch(b.n, &b.x, &b.y_class, &b.y_bin)?;
                let timed = probe.before_step(be, &meter, run.steps, b.n);
                let t0 = be.clock_s();
                meter.begin_step(t0);
                let loss = model.train_step(b.n, &s.optimizer)?;
                let t1 = be.clock_s();
                let se = probe.end_step(be, &mut meter, t1, b.n, timed)?;
                run.step(&mut ep, loss, t1 - t0, se.energy_j);
                out.step(&StepRecord::new(run.steps, epoch, loss, b.n, (t1 - t0, t1 - run.t_start), source, &se))?;
                progress.step(epoch, loss);
                if stop.capped(run.used_j().unwrap_or(be.clock_s() - run.t_start)) {
                    break;
                }
                if stop.diverged(loss) {
                    let wall_s = be.clock_s() - ep.t0;
                    out.epoch(run.diverged(&ep, wall_s, loss, cfg.lr, &s.spec, be.clock_s()))?;
                    break 'epochs;
                }
            }
            let wall_s = be.clock_s() - ep.t0;
            if ep.steps == 0 {
                break;
            }
            run.end_training(&ep);
            let eval = match &s.ds.val {
                Some(v) => Some(evaluate_metered(be, &mut model, &mut meter, &mut probe, v, &s.spec.cols)?),
                None => None,
            };
            let row = run.end_epoch(&ep, wall_s, eval.as_ref(), &s.spec, be.clock_s());
            out.epoch(row.clone())?;
            if let Some(p) = run.predict(&row) {
                progress.prediction(epoch, &p);
            }
            if eval.is_some() && stop.target_reached(&run.summary.final_val_acc_per_task) {
                run.target_reached(&row);
                break;
            }
            if stop.stops_after_epoch() {
                break;
            }
        }
        Ok(())
    })();
    progress.finish();
    if let Err(e) = looped {
        return Err(match run.used_j() {
            Some(j) => e.context(UsedEnergy { joules: j, source }),
            None => e,
        });
    }
    let kernels = probe.finish(be, &mut meter, &model);
    let summary = run.finish(meter, be, stop.reason, kernels.timing, (cfg.carbon_intensity, cfg.pue))?;
    // The records first: a checkpoint that cannot be written never costs the run's records (the command
    // commits a finished run directory whatever fails after `finish`).
    out.finish(&summary, kernels.kernels.as_deref())?;
    if let Some(p) = &cfg.save {
        save_checkpoint(p, s, &model)?;
    }
    Ok(summary)
}

/// Attached to the error of a run that failed part way: the energy its steps and evaluations used (studies
/// keep it in their tables; `anyhow::Error::downcast_ref::<UsedEnergy>()` finds it).
#[derive(Clone, Copy, Debug)]
pub struct UsedEnergy {
    pub joules: f64,
    pub source: EnergySource,
}

impl std::fmt::Display for UsedEnergy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.source {
            EnergySource::Estimate => "an estimate, not measured".to_string(),
            s => s.as_str().to_string(),
        };
        write!(f, "the run stopped after using {:.1} J ({how})", self.joules)
    }
}

/// The meter `--energy`, `--watts` and `--per-kernel` ask for, with the idle baseline measured (for 1 s,
/// when the source is a sensor), and with `--per-kernel` on a sensor and no stored calibration for this device
/// and shape, the step's kernels calibrated before the first step (bench/inplace.rs).
fn open_meter<B: Backend>(be: &B, s: &Setup) -> Result<Meter> {
    let cfg = &s.cfg;
    let cfg_meter = MeterConfig {
        source: cfg.energy.clone(),
        watts: cfg.watts,
        per_kernel: cfg.per_kernel,
        device: be.kind(),
        gpu_ordinal: 0,
    };
    // --energy auto with no sensor: a labelled estimate from the device power model (energy/device_power.rs).
    let mut meter = crate::energy::device_power::open_for_training(cfg_meter, &cfg.energy_options()?)?;
    let secs = match meter.source() {
        s if s.is_measurement() => 1.0,
        EnergySource::Sim => 0.3,
        _ => 0.0,
    };
    meter.measure_idle(secs)?;
    if meter.wants_calibration_before_run() {
        use crate::bench::inplace::{todo_of, DeviceCalibrator};
        let source = if meter.source() == EnergySource::Rapl { "rapl" } else { "nvml" };
        let mut cal = DeviceCalibrator::new(be, s.spec.arch, cfg.batch_size, &cfg.optimizer, source);
        let todo = todo_of(&cal.step_kernels(), meter.split_shape());
        meter.calibrate_before_run(&mut cal, todo);
    }
    Ok(meter)
}

/// An epoch's evaluation on `split`, metered as a window of its own (its launches always timed with
/// --per-kernel).
fn evaluate_metered<B: Backend>(
    be: &B,
    model: &mut Model<'_, B>,
    meter: &mut Meter,
    probe: &mut StepProbe,
    split: &Arc<Split>,
    cols: &[usize],
) -> Result<Evaluation> {
    probe.begin_eval(be);
    meter.begin_step(be.clock_s());
    let batch = model.max_batch;
    let (loss, acc, per_task) = evaluate(model, split, cols, batch)?;
    let se = probe.end_eval(be, meter, be.clock_s(), batch, split.n)?;
    Ok(Evaluation { loss, acc, per_task, energy_j: se.energy_j })
}

/// config.json: the settings and what they resolved to.
fn run_config(s: &Setup, (device, device_name): (&str, String), host: &str, source: EnergySource) -> Config {
    let cfg = &s.cfg;
    Config {
        protocol: crate::PROTOCOL_VERSION,
        powertrain_version: env!("CARGO_PKG_VERSION").into(),
        model: s.spec.arch.name().into(),
        outputs: s.spec.arch.outputs(),
        tasks: s.spec.names.clone(),
        data: cfg.data.clone(),
        val: cfg.val.clone(),
        train_rows: s.ds.train.n,
        val_rows: s.ds.val.as_ref().map(|v| v.n),
        device: device.into(),
        device_name,
        host: host.into(),
        optimizer: cfg.optimizer.clone(),
        lr: cfg.lr,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
        batch_size: cfg.batch_size,
        epochs: cfg.epochs,
        max_steps: cfg.max_steps,
        target_acc: cfg.target_acc,
        shuffle: !cfg.no_shuffle,
        seed: cfg.seed,
        init: cfg.init.clone(),
        save: cfg.save.clone(),
        freeze_encoder: cfg.freeze_encoder,
        energy: cfg.energy.clone(),
        energy_source: source.as_str().into(),
        watts: cfg.watts,
        per_kernel: cfg.per_kernel,
        kernel_sample: cfg.kernel_sample,
        kernel_timing: cfg.per_kernel.then(|| cfg.kernel_timing.name().to_string()),
        carbon_intensity: cfg.carbon_intensity,
        pue: cfg.pue,
        parameters: s.layout.total,
    }
}

/// `--save`: the final weights with the model, its tasks and the protocol version in the metadata.
fn save_checkpoint<B: Backend>(path: &std::path::Path, s: &Setup, model: &Model<'_, B>) -> Result<()> {
    let meta = std::collections::HashMap::from([
        ("model".to_string(), s.spec.arch.name().to_string()),
        ("tasks".to_string(), s.spec.names.join(",")),
        ("protocol".to_string(), crate::PROTOCOL_VERSION.to_string()),
    ]);
    checkpoint::save(path, &s.layout, &model.parameters()?, Some(meta))
}

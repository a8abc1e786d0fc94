//! `powertrain sweep`, `pretrain-study` and `multitask-study`: the flags become the studies' options, and the
//! studies train with [`train_run`].
//!
//! Each command checks its whole configuration once, before the study directory is touched: the grid, every
//! run's settings (in the studies), and for one run the files, the device and the energy source
//! ([`preflight`]) — so a sweep that cannot run exits non-zero before its first run, never after recording
//! every run as failed.
use super::train::{preflight, train_run};
use crate::cli::{MultitaskStudyArgs, PretrainStudyArgs, SweepArgs};
use crate::study::pretrain::write_target_splits;
use crate::study::{
    multitask_study_with, pretrain_study_with, sweep_with, MultitaskOptions, PretrainOptions, RunExtras, SweepOptions,
};
use crate::train::{Setup, TrainConfig};
use anyhow::{bail, Result};

pub fn sweep(a: &SweepArgs) -> Result<()> {
    let o = SweepOptions::from(a);
    let grid = crate::study::sweep::resolve(&o)?;
    let first = crate::study::sweep::configs(&grid).into_iter().next();
    if let Some(c) = first {
        let cfg = crate::study::sweep::train_config(&o, &grid, &c);
        if o.emit_slurm.is_some() {
            // The runs happen on the cluster's nodes: their device and sensors are theirs; the data is checked.
            Setup::new(&cfg)?;
        } else {
            preflight(&cfg)?;
        }
    }
    sweep_with(&o, &train_run).map(|_| ())
}

pub fn pretrain(a: &PretrainStudyArgs) -> Result<()> {
    let o = PretrainOptions::from(a);
    let g = crate::study::pretrain::resolve(&o)?;
    let cfg = crate::study::pretrain::base_config(&o, &g, &o.data, 0);
    let (setup, _) = preflight(&cfg)?;
    if setup.ds.val.is_none() || setup.ds.test.is_none() || !o.data.is_dir() {
        bail!(
            "--data {}: the pretraining study needs a PAMAP2 dataset directory with val and test splits (the \
             target subjects 105 and 106)",
            o.data.display()
        );
    }
    pretrain_study_with(&o, &train_run, &write_target_splits).map(|_| ())
}

pub fn multitask(a: &MultitaskStudyArgs) -> Result<()> {
    let o = MultitaskOptions::from(a);
    let g = crate::study::multitask::resolve(&o)?;
    let cfg: TrainConfig = crate::study::multitask::run_config(&o, &g, &g.tasks, 0);
    preflight(&cfg)?;
    multitask_study_with(&o, &train_run).map(|_| ())
}

/// The energy flags every study's arguments carry (the same four fields in each argh struct), as `RunExtras`.
macro_rules! run_extras {
    ($a:expr) => {
        RunExtras {
            sim_model: $a.sim_model.clone(),
            sim_sensor: $a.sim_sensor.clone(),
            carbon_intensity: $a.carbon_intensity,
            pue: $a.pue,
        }
    };
}

impl From<&SweepArgs> for SweepOptions {
    fn from(a: &SweepArgs) -> SweepOptions {
        SweepOptions {
            model: a.model.clone(),
            data: a.data.clone(),
            batch_sizes: a.batch_sizes.clone(),
            lrs: a.lrs.clone(),
            seeds: a.seeds,
            target_acc: a.target_acc,
            epochs: a.epochs,
            optimizer: a.optimizer.clone(),
            tasks: a.tasks.clone(),
            device: a.device.clone(),
            energy: a.energy.clone(),
            watts: a.watts,
            extras: run_extras!(a),
            quick: a.quick,
            prune: a.prune,
            emit_slurm: a.emit_slurm.clone(),
            only: a.only,
            out: a.out.clone(),
        }
    }
}

impl From<&PretrainStudyArgs> for PretrainOptions {
    fn from(a: &PretrainStudyArgs) -> PretrainOptions {
        PretrainOptions {
            model: a.model.clone(),
            data: a.data.clone(),
            seeds: a.seeds,
            batch_size: a.batch_size,
            lr: a.lr,
            epochs: a.epochs,
            target_acc: a.target_acc,
            device: a.device.clone(),
            energy: a.energy.clone(),
            watts: a.watts,
            extras: run_extras!(a),
            quick: a.quick,
            out: a.out.clone(),
        }
    }
}

impl From<&MultitaskStudyArgs> for MultitaskOptions {
    fn from(a: &MultitaskStudyArgs) -> MultitaskOptions {
        MultitaskOptions {
            model: a.model.clone(),
            data: a.data.clone(),
            tasks: a.tasks.clone(),
            batch_size: a.batch_size,
            lr: a.lr,
            epochs: a.epochs,
            target_acc: a.target_acc,
            seeds: a.seeds,
            device: a.device.clone(),
            energy: a.energy.clone(),
            watts: a.watts,
            extras: run_extras!(a),
            quick: a.quick,
            out: a.out.clone(),
        }
    }
}

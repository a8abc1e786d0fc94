//! `powertrain sweep`, `pretrain-study` and `multitask-study`: the flags become the studies' options, and the
//! studies train with [`train_run`].
use super::train::train_run;
use crate::cli::{MultitaskStudyArgs, PretrainStudyArgs, SweepArgs};
use crate::study::pretrain::write_target_splits;
use crate::study::{
    multitask_study_with, pretrain_study_with, sweep_with, MultitaskOptions, PretrainOptions, SweepOptions,
};
use anyhow::Result;

pub fn sweep(a: &SweepArgs) -> Result<()> {
    sweep_with(&SweepOptions::from(a), &train_run).map(|_| ())
}

pub fn pretrain(a: &PretrainStudyArgs) -> Result<()> {
    pretrain_study_with(&PretrainOptions::from(a), &train_run, &write_target_splits).map(|_| ())
}

pub fn multitask(a: &MultitaskStudyArgs) -> Result<()> {
    multitask_study_with(&MultitaskOptions::from(a), &train_run).map(|_| ())
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
            quick: a.quick,
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
            quick: a.quick,
            out: a.out.clone(),
        }
    }
}

//! The study: sweep, pretraining reuse, multi-task.
use crate::cli::{MultitaskStudyArgs, PretrainStudyArgs, SweepArgs};
use anyhow::Result;

pub fn run_sweep(_a: &SweepArgs) -> Result<()> {
    anyhow::bail!("sweep: not implemented yet")
}
pub fn run_pretrain_study(_a: &PretrainStudyArgs) -> Result<()> {
    anyhow::bail!("pretrain-study: not implemented yet")
}
pub fn run_multitask_study(_a: &MultitaskStudyArgs) -> Result<()> {
    anyhow::bail!("multitask-study: not implemented yet")
}

//! The training loop, evaluation, `info` and `bench step`.
use crate::cli::{BenchArgs, EvalArgs, InfoArgs, TrainArgs};
use anyhow::Result;

pub fn run_train(_a: &TrainArgs) -> Result<()> {
    anyhow::bail!("train: not implemented yet")
}
pub fn run_eval(_a: &EvalArgs) -> Result<()> {
    anyhow::bail!("eval: not implemented yet")
}
pub fn run_info(_a: &InfoArgs) -> Result<()> {
    anyhow::bail!("info: not implemented yet")
}
pub fn run_bench_step(_a: &BenchArgs) -> Result<()> {
    anyhow::bail!("bench step: not implemented yet")
}

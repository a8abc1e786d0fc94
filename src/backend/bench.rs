//! `powertrain bench kernels`: per-kernel timing (and energy with --energy) at the protocol's shapes.
use crate::cli::BenchArgs;
use anyhow::Result;

pub fn run_bench_kernels(_a: &BenchArgs) -> Result<()> {
    anyhow::bail!("bench kernels: not implemented yet")
}

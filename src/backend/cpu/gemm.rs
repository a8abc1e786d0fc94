//! GEMM on the CPU.
use crate::backend::GemmParams;
use anyhow::Result;

pub fn gemm(_p: &GemmParams, _a: &[f32], _b: &[f32], _c: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu gemm: not implemented yet")
}

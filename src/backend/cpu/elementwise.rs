//! bias and ReLU on the CPU.
use crate::backend::{BiasParams, EltwiseParams};
use anyhow::Result;

pub fn bias_forward(_p: &BiasParams, _b: &[f32], _y: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu bias_forward: not implemented yet")
}
pub fn bias_backward(_p: &BiasParams, _dy: &[f32], _db: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu bias_backward: not implemented yet")
}
pub fn relu_forward(_p: &EltwiseParams, _x: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu relu_forward: not implemented yet")
}
pub fn relu_backward(_p: &EltwiseParams, _y: &[f32], _dy: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu relu_backward: not implemented yet")
}

//! SGD and Adam on the CPU.
use crate::backend::{AdamParams, SgdParams};
use anyhow::Result;

pub fn sgd_step(_p: &SgdParams, _w: &mut [f32], _grad: &[f32], _mom: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu sgd_step: not implemented yet")
}
pub fn adam_step(_p: &AdamParams, _w: &mut [f32], _grad: &[f32], _m: &mut [f32], _v: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu adam_step: not implemented yet")
}

//! max / avg pooling on the CPU.
use crate::backend::Pool2dParams;
use anyhow::Result;

pub fn maxpool2d_forward(_p: &Pool2dParams, _x: &[f32], _y: &mut [f32], _idx: &mut [i32]) -> Result<()> {
    anyhow::bail!("cpu maxpool2d_forward: not implemented yet")
}
pub fn maxpool2d_backward(_p: &Pool2dParams, _dy: &[f32], _idx: &[i32], _dx: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu maxpool2d_backward: not implemented yet")
}
pub fn avgpool2d_forward(_p: &Pool2dParams, _x: &[f32], _y: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu avgpool2d_forward: not implemented yet")
}
pub fn avgpool2d_backward(_p: &Pool2dParams, _dy: &[f32], _dx: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu avgpool2d_backward: not implemented yet")
}

//! conv2d forward / backward-data / backward-filter on the CPU.
use crate::backend::Conv2dParams;
use anyhow::Result;

/// x [n, c_in, h, w], w [c_out, c_in, kh, kw] -> y [n, c_out, h_out, w_out].
pub fn conv2d_forward(_p: &Conv2dParams, _x: &[f32], _w: &[f32], _y: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu conv2d_forward: not implemented yet")
}
/// dy [n, c_out, h_out, w_out], w -> dx [n, c_in, h, w] (overwritten).
pub fn conv2d_backward_data(_p: &Conv2dParams, _dy: &[f32], _w: &[f32], _dx: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu conv2d_backward_data: not implemented yet")
}
/// x, dy -> dw [c_out, c_in, kh, kw] (overwritten).
pub fn conv2d_backward_filter(_p: &Conv2dParams, _x: &[f32], _dy: &[f32], _dw: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu conv2d_backward_filter: not implemented yet")
}

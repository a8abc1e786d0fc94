//! Max / average pooling on the GPU (and under the emulation): buffer checks and the launch plans of pool.cu
//! (grid-stride, one thread per output element, or per input element where the backward pass gathers).
use super::{Pool2dParams, PoolOps};
use crate::ops::launch::{elems, grid_1d, need, Arg, Launch, Launcher};
use anyhow::Result;

pub fn maxpool2d_forward_plan(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("maxpool2d_forward", p.y_len())
}
/// One thread per output when the windows tile the input exactly (the kernel then scatters each window), else
/// one per input element (gather).
pub fn maxpool2d_backward_plan(p: &Pool2dParams) -> Vec<Launch> {
    let tiles_exactly = p.kh == p.stride_h && p.kw == p.stride_w && p.h == p.h_out * p.kh && p.w == p.w_out * p.kw;
    grid_1d("maxpool2d_backward", if tiles_exactly { p.y_len() } else { p.x_len() })
}
pub fn avgpool2d_forward_plan(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("avgpool2d_forward", p.y_len())
}
pub fn avgpool2d_backward_plan(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("avgpool2d_backward", p.x_len())
}

/// Element counts (x, y) the params imply.
fn lens(op: &str, p: &Pool2dParams) -> Result<(usize, usize)> {
    if p.stride_h <= 0 || p.stride_w <= 0 || p.kh <= 0 || p.kw <= 0 {
        anyhow::bail!("{op}: window and stride must be positive, got {p:?}");
    }
    Ok((elems(op, &[p.n, p.c, p.h, p.w])?, elems(op, &[p.n, p.c, p.h_out, p.w_out])?))
}

impl<L: Launcher> PoolOps for L {
    /// x [n, c, h, w] -> y [n, c, h_out, w_out], idx [n, c, h_out, w_out] (flat index into one h*w plane).
    fn maxpool2d_forward(&self, p: &Pool2dParams, x: L::View<'_>, y: L::ViewMut<'_>, idx: &mut L::IBuf) -> Result<()> {
        const OP: &str = "maxpool2d_forward";
        let (xl, yl) = lens(OP, p)?;
        need(OP, "x", L::view_len(&x), xl)?;
        need(OP, "y", L::view_mut_len(&y), yl)?;
        need(OP, "idx", self.len_i32(idx), yl)?;
        self.launch(OP, &maxpool2d_forward_plan(p), p, &mut [Arg::input(x), Arg::output(y), Arg::IOut(idx)])
    }

    /// dy [n, c, h_out, w_out], idx [n, c, h_out, w_out] -> dx [n, c, h, w] (overwritten).
    fn maxpool2d_backward(&self, p: &Pool2dParams, dy: L::View<'_>, idx: &L::IBuf, dx: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "maxpool2d_backward";
        let (xl, yl) = lens(OP, p)?;
        need(OP, "dy", L::view_len(&dy), yl)?;
        need(OP, "idx", self.len_i32(idx), yl)?;
        need(OP, "dx", L::view_mut_len(&dx), xl)?;
        self.launch(OP, &maxpool2d_backward_plan(p), p, &mut [Arg::input(dy), Arg::IIn(idx), Arg::output(dx)])
    }

    /// x [n, c, h, w] -> y [n, c, h_out, w_out].
    fn avgpool2d_forward(&self, p: &Pool2dParams, x: L::View<'_>, y: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "avgpool2d_forward";
        let (xl, yl) = lens(OP, p)?;
        need(OP, "x", L::view_len(&x), xl)?;
        need(OP, "y", L::view_mut_len(&y), yl)?;
        self.launch(OP, &avgpool2d_forward_plan(p), p, &mut [Arg::input(x), Arg::output(y)])
    }

    /// dy [n, c, h_out, w_out] -> dx [n, c, h, w] (overwritten).
    fn avgpool2d_backward(&self, p: &Pool2dParams, dy: L::View<'_>, dx: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "avgpool2d_backward";
        let (xl, yl) = lens(OP, p)?;
        need(OP, "dy", L::view_len(&dy), yl)?;
        need(OP, "dx", L::view_mut_len(&dx), xl)?;
        self.launch(OP, &avgpool2d_backward_plan(p), p, &mut [Arg::input(dy), Arg::output(dx)])
    }
}

//! conv2d forward / backward-data / backward-filter on the GPU (kernels/conv2d.cu, plans in launch.rs).
use super::{elems, launch, launch_op, need, CudaBackend};
use crate::ops::Conv2dParams;
use anyhow::Result;
use cudarc::driver::{CudaView, CudaViewMut};

/// Element counts (x, w, y) the params imply, checked for the kernels' 32-bit indexing.
fn lens(op: &str, p: &Conv2dParams) -> Result<(usize, usize, usize)> {
    if p.stride_h <= 0 || p.stride_w <= 0 || p.kh <= 0 || p.kw <= 0 {
        anyhow::bail!("{op}: kernel size and stride must be positive, got {p:?}");
    }
    Ok((
        elems(op, &[p.n, p.c_in, p.h, p.w])?,
        elems(op, &[p.c_out, p.c_in, p.kh, p.kw])?,
        elems(op, &[p.n, p.c_out, p.h_out, p.w_out])?,
    ))
}

/// x [n, c_in, h, w], w [c_out, c_in, kh, kw] -> y [n, c_out, h_out, w_out].
pub(super) fn forward(
    be: &CudaBackend,
    p: &Conv2dParams,
    x: CudaView<'_, f32>,
    w: CudaView<'_, f32>,
    mut y: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    let (xl, wl, yl) = lens(OP, p)?;
    need(OP, "x", x.len(), xl)?;
    need(OP, "w", w.len(), wl)?;
    need(OP, "y", y.len(), yl)?;
    launch_op!(be, OP, launch::conv2d_forward(p), p, &x, &w, &mut y)
}

/// dy [n, c_out, h_out, w_out], w [c_out, c_in, kh, kw] -> dx [n, c_in, h, w] (overwritten).
pub(super) fn backward_data(
    be: &CudaBackend,
    p: &Conv2dParams,
    dy: CudaView<'_, f32>,
    w: CudaView<'_, f32>,
    mut dx: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_data";
    let (xl, wl, yl) = lens(OP, p)?;
    need(OP, "dy", dy.len(), yl)?;
    need(OP, "w", w.len(), wl)?;
    need(OP, "dx", dx.len(), xl)?;
    launch_op!(be, OP, launch::conv2d_backward_data(p), p, &dy, &w, &mut dx)
}

/// x [n, c_in, h, w], dy [n, c_out, h_out, w_out] -> dw [c_out, c_in, kh, kw] (overwritten).
pub(super) fn backward_filter(
    be: &CudaBackend,
    p: &Conv2dParams,
    x: CudaView<'_, f32>,
    dy: CudaView<'_, f32>,
    mut dw: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_filter";
    let (xl, wl, yl) = lens(OP, p)?;
    need(OP, "x", x.len(), xl)?;
    need(OP, "dy", dy.len(), yl)?;
    need(OP, "dw", dw.len(), wl)?;
    launch_op!(be, OP, launch::conv2d_backward_filter(p), p, &x, &dy, &mut dw)
}

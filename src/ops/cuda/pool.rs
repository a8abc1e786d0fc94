//! Max / average pooling on the GPU (kernels/pool.cu, plans in launch.rs).
use super::{elems, launch, launch_op, need, CudaBackend};
use crate::ops::Pool2dParams;
use anyhow::Result;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};

/// Element counts (x, y) the params imply.
fn lens(op: &str, p: &Pool2dParams) -> Result<(usize, usize)> {
    if p.stride_h <= 0 || p.stride_w <= 0 || p.kh <= 0 || p.kw <= 0 {
        anyhow::bail!("{op}: window and stride must be positive, got {p:?}");
    }
    Ok((elems(op, &[p.n, p.c, p.h, p.w])?, elems(op, &[p.n, p.c, p.h_out, p.w_out])?))
}

/// x [n, c, h, w] -> y [n, c, h_out, w_out], idx [n, c, h_out, w_out] (flat index into one h*w plane).
pub(super) fn max_forward(
    be: &CudaBackend,
    p: &Pool2dParams,
    x: CudaView<'_, f32>,
    mut y: CudaViewMut<'_, f32>,
    idx: &mut CudaSlice<i32>,
) -> Result<()> {
    const OP: &str = "maxpool2d_forward";
    let (xl, yl) = lens(OP, p)?;
    need(OP, "x", x.len(), xl)?;
    need(OP, "y", y.len(), yl)?;
    need(OP, "idx", idx.len(), yl)?;
    launch_op!(be, OP, launch::maxpool2d_forward(p), p, &x, &mut y, &mut *idx)
}

/// dy [n, c, h_out, w_out], idx [n, c, h_out, w_out] -> dx [n, c, h, w] (overwritten).
pub(super) fn max_backward(
    be: &CudaBackend,
    p: &Pool2dParams,
    dy: CudaView<'_, f32>,
    idx: &CudaSlice<i32>,
    mut dx: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "maxpool2d_backward";
    let (xl, yl) = lens(OP, p)?;
    need(OP, "dy", dy.len(), yl)?;
    need(OP, "idx", idx.len(), yl)?;
    need(OP, "dx", dx.len(), xl)?;
    launch_op!(be, OP, launch::maxpool2d_backward(p), p, &dy, idx, &mut dx)
}

/// x [n, c, h, w] -> y [n, c, h_out, w_out].
pub(super) fn avg_forward(
    be: &CudaBackend,
    p: &Pool2dParams,
    x: CudaView<'_, f32>,
    mut y: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "avgpool2d_forward";
    let (xl, yl) = lens(OP, p)?;
    need(OP, "x", x.len(), xl)?;
    need(OP, "y", y.len(), yl)?;
    launch_op!(be, OP, launch::avgpool2d_forward(p), p, &x, &mut y)
}

/// dy [n, c, h_out, w_out] -> dx [n, c, h, w] (overwritten).
pub(super) fn avg_backward(
    be: &CudaBackend,
    p: &Pool2dParams,
    dy: CudaView<'_, f32>,
    mut dx: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "avgpool2d_backward";
    let (xl, yl) = lens(OP, p)?;
    need(OP, "dy", dy.len(), yl)?;
    need(OP, "dx", dx.len(), xl)?;
    launch_op!(be, OP, launch::avgpool2d_backward(p), p, &dy, &mut dx)
}

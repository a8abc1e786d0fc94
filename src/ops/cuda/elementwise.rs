//! Bias and ReLU on the GPU (kernels/elementwise.cu, plans in launch.rs). `fill` is in mod.rs.
use super::{elems, launch, launch_op, need, CudaBackend};
use crate::ops::{BiasParams, EltwiseParams};
use anyhow::Result;
use cudarc::driver::{CudaView, CudaViewMut};

/// b [c], y [n, c, inner]: y += b broadcast.
pub(super) fn bias_forward(
    be: &CudaBackend,
    p: &BiasParams,
    b: CudaView<'_, f32>,
    mut y: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "bias_forward";
    need(OP, "b", b.len(), elems(OP, &[p.c])?)?;
    need(OP, "y", y.len(), elems(OP, &[p.n, p.c, p.inner])?)?;
    launch_op!(be, OP, launch::bias_forward(p), p, &b, &mut y)
}

/// dy [n, c, inner] -> db [c] (overwritten).
pub(super) fn bias_backward(
    be: &CudaBackend,
    p: &BiasParams,
    dy: CudaView<'_, f32>,
    mut db: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "bias_backward";
    need(OP, "dy", dy.len(), elems(OP, &[p.n, p.c, p.inner])?)?;
    need(OP, "db", db.len(), elems(OP, &[p.c])?)?;
    launch_op!(be, OP, launch::bias_backward(p), p, &dy, &mut db)
}

/// x [len], in place.
pub(super) fn relu_forward(be: &CudaBackend, p: &EltwiseParams, mut x: CudaViewMut<'_, f32>) -> Result<()> {
    const OP: &str = "relu_forward";
    need(OP, "x", x.len(), elems(OP, &[p.len])?)?;
    launch_op!(be, OP, launch::relu_forward(p), p, &mut x)
}

/// y [len] (the ReLU's output), dy [len] in place.
pub(super) fn relu_backward(
    be: &CudaBackend,
    p: &EltwiseParams,
    y: CudaView<'_, f32>,
    mut dy: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "relu_backward";
    need(OP, "y", y.len(), elems(OP, &[p.len])?)?;
    need(OP, "dy", dy.len(), elems(OP, &[p.len])?)?;
    launch_op!(be, OP, launch::relu_backward(p), p, &y, &mut dy)
}

//! Row-major FP32 GEMM on the GPU (kernels/gemm.cu, plans in launch.rs).
use super::{elems, launch, launch_op, need, CudaBackend};
use crate::ops::GemmParams;
use anyhow::Result;
use cudarc::driver::{CudaView, CudaViewMut};

/// a [m, k] (or [k, m] when trans_a), b [k, n] (or [n, k] when trans_b), c [m, n]:
/// c = alpha * op(a) op(b) + beta * c.
pub(super) fn gemm(
    be: &CudaBackend,
    p: &GemmParams,
    a: CudaView<'_, f32>,
    b: CudaView<'_, f32>,
    mut c: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "gemm";
    need(OP, "a", a.len(), elems(OP, &[p.m, p.k])?)?;
    need(OP, "b", b.len(), elems(OP, &[p.k, p.n])?)?;
    need(OP, "c", c.len(), elems(OP, &[p.m, p.n])?)?;
    launch_op!(be, OP, launch::gemm(p), p, &a, &b, &mut c)
}

//! Fused optimiser steps on the GPU (kernels/optim.cu, plans in launch.rs).
use super::{elems, launch, launch_op, need, CudaBackend};
use crate::ops::{AdamParams, SgdParams};
use anyhow::Result;
use cudarc::driver::{CudaView, CudaViewMut};

/// w [len], grad [len], mom [len]: one SGD step in place.
pub(super) fn sgd_step(
    be: &CudaBackend,
    p: &SgdParams,
    mut w: CudaViewMut<'_, f32>,
    grad: CudaView<'_, f32>,
    mut mom: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "sgd_step";
    let n = elems(OP, &[p.len])?;
    need(OP, "w", w.len(), n)?;
    need(OP, "grad", grad.len(), n)?;
    need(OP, "mom", mom.len(), n)?;
    launch_op!(be, OP, launch::sgd_step(p), p, &mut w, &grad, &mut mom)
}

/// w [len], grad [len], m [len], v [len]: one Adam step in place.
pub(super) fn adam_step(
    be: &CudaBackend,
    p: &AdamParams,
    mut w: CudaViewMut<'_, f32>,
    grad: CudaView<'_, f32>,
    mut m: CudaViewMut<'_, f32>,
    mut v: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "adam_step";
    let n = elems(OP, &[p.len])?;
    need(OP, "w", w.len(), n)?;
    need(OP, "grad", grad.len(), n)?;
    need(OP, "m", m.len(), n)?;
    need(OP, "v", v.len(), n)?;
    launch_op!(be, OP, launch::adam_step(p), p, &mut w, &grad, &mut m, &mut v)
}

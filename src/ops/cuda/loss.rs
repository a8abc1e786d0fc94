//! Losses and accuracies on the GPU (kernels/loss.cu, plans in launch.rs).
use super::{elems, launch, launch_op, need, CudaBackend};
use crate::ops::LossParams;
use anyhow::Result;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};

/// logits [n, k], labels i32 [n] -> grad [n, k], loss [1].
pub(super) fn softmax_xent(
    be: &CudaBackend,
    p: &LossParams,
    logits: CudaView<'_, f32>,
    labels: &CudaSlice<i32>,
    mut grad: CudaViewMut<'_, f32>,
    mut loss: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "softmax_xent";
    let nk = elems(OP, &[p.n, p.k])?;
    need(OP, "logits", logits.len(), nk)?;
    need(OP, "labels", labels.len(), elems(OP, &[p.n])?)?;
    need(OP, "grad", grad.len(), nk)?;
    need(OP, "loss", loss.len(), 1)?;
    launch_op!(be, OP, launch::softmax_xent(p), p, &logits, labels, &mut grad, &mut loss)
}

/// logits [n, k], targets [n, k] (0/1) -> grad [n, k], loss [1].
pub(super) fn bce_logits(
    be: &CudaBackend,
    p: &LossParams,
    logits: CudaView<'_, f32>,
    targets: CudaView<'_, f32>,
    mut grad: CudaViewMut<'_, f32>,
    mut loss: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "bce_logits";
    let nk = elems(OP, &[p.n, p.k])?;
    need(OP, "logits", logits.len(), nk)?;
    need(OP, "targets", targets.len(), nk)?;
    need(OP, "grad", grad.len(), nk)?;
    need(OP, "loss", loss.len(), 1)?;
    launch_op!(be, OP, launch::bce_logits(p), p, &logits, &targets, &mut grad, &mut loss)
}

/// logits [n, k], labels i32 [n] -> correct [1] += rows whose first argmax is the label.
pub(super) fn accuracy_classes(
    be: &CudaBackend,
    p: &LossParams,
    logits: CudaView<'_, f32>,
    labels: &CudaSlice<i32>,
    mut correct: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "accuracy_classes";
    need(OP, "logits", logits.len(), elems(OP, &[p.n, p.k])?)?;
    need(OP, "labels", labels.len(), elems(OP, &[p.n])?)?;
    need(OP, "correct", correct.len(), 1)?;
    launch_op!(be, OP, launch::accuracy_classes(p), p, &logits, labels, &mut correct)
}

/// logits [n, k], targets [n, k] -> correct [k] += per-attribute hits.
pub(super) fn accuracy_binary(
    be: &CudaBackend,
    p: &LossParams,
    logits: CudaView<'_, f32>,
    targets: CudaView<'_, f32>,
    mut correct: CudaViewMut<'_, f32>,
) -> Result<()> {
    const OP: &str = "accuracy_binary";
    let nk = elems(OP, &[p.n, p.k])?;
    need(OP, "logits", logits.len(), nk)?;
    need(OP, "targets", targets.len(), nk)?;
    need(OP, "correct", correct.len(), elems(OP, &[p.k])?)?;
    launch_op!(be, OP, launch::accuracy_binary(p), p, &logits, &targets, &mut correct)
}

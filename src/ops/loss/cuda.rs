//! Losses and accuracies on the GPU (and under the emulation): buffer checks and the launch plans of loss.cu.
use super::{LossOps, LossParams};
use crate::ops::launch::{elems, need, single, u, Arg, Launch, Launcher};
use anyhow::Result;

/// Threads of the single-block loss and accuracy kernels (a multiple of 32: one warp per row).
pub const LOSS_THREADS: u32 = 512;

pub fn softmax_xent_plan(_p: &LossParams) -> Vec<Launch> {
    single("softmax_xent", (1, 1, 1), LOSS_THREADS)
}
pub fn bce_logits_plan(_p: &LossParams) -> Vec<Launch> {
    single("bce_logits", (1, 1, 1), LOSS_THREADS)
}
pub fn accuracy_classes_plan(_p: &LossParams) -> Vec<Launch> {
    single("accuracy_classes", (1, 1, 1), LOSS_THREADS)
}
/// One thread per attribute.
pub fn accuracy_binary_plan(p: &LossParams) -> Vec<Launch> {
    single("accuracy_binary", (u(p.k).div_ceil(64).max(1) as u32, 1, 1), 64)
}

impl<L: Launcher> LossOps for L {
    /// logits [n, k], labels i32 [n] -> grad [n, k], loss [1].
    fn softmax_xent(
        &self,
        p: &LossParams,
        logits: L::View<'_>,
        labels: &L::IBuf,
        grad: L::ViewMut<'_>,
        loss: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "softmax_xent";
        let nk = elems(OP, &[p.n, p.k])?;
        need(OP, "logits", L::view_len(&logits), nk)?;
        need(OP, "labels", self.len_i32(labels), elems(OP, &[p.n])?)?;
        need(OP, "grad", L::view_mut_len(&grad), nk)?;
        need(OP, "loss", L::view_mut_len(&loss), 1)?;
        let args = &mut [Arg::input(logits), Arg::IIn(labels), Arg::output(grad), Arg::output(loss)];
        self.launch(OP, &softmax_xent_plan(p), p, args)
    }

    /// logits [n, k], targets [n, k] (0/1) -> grad [n, k], loss [1].
    fn bce_logits(
        &self,
        p: &LossParams,
        logits: L::View<'_>,
        targets: L::View<'_>,
        grad: L::ViewMut<'_>,
        loss: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "bce_logits";
        let nk = elems(OP, &[p.n, p.k])?;
        need(OP, "logits", L::view_len(&logits), nk)?;
        need(OP, "targets", L::view_len(&targets), nk)?;
        need(OP, "grad", L::view_mut_len(&grad), nk)?;
        need(OP, "loss", L::view_mut_len(&loss), 1)?;
        let args = &mut [Arg::input(logits), Arg::input(targets), Arg::output(grad), Arg::output(loss)];
        self.launch(OP, &bce_logits_plan(p), p, args)
    }

    /// logits [n, k], labels i32 [n] -> correct [1] += rows whose first argmax is the label.
    fn accuracy_classes(
        &self,
        p: &LossParams,
        logits: L::View<'_>,
        labels: &L::IBuf,
        correct: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "accuracy_classes";
        need(OP, "logits", L::view_len(&logits), elems(OP, &[p.n, p.k])?)?;
        need(OP, "labels", self.len_i32(labels), elems(OP, &[p.n])?)?;
        need(OP, "correct", L::view_mut_len(&correct), 1)?;
        let args = &mut [Arg::input(logits), Arg::IIn(labels), Arg::output(correct)];
        self.launch(OP, &accuracy_classes_plan(p), p, args)
    }

    /// logits [n, k], targets [n, k] -> correct [k] += per-attribute hits.
    fn accuracy_binary(
        &self,
        p: &LossParams,
        logits: L::View<'_>,
        targets: L::View<'_>,
        correct: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "accuracy_binary";
        let nk = elems(OP, &[p.n, p.k])?;
        need(OP, "logits", L::view_len(&logits), nk)?;
        need(OP, "targets", L::view_len(&targets), nk)?;
        need(OP, "correct", L::view_mut_len(&correct), elems(OP, &[p.k])?)?;
        let args = &mut [Arg::input(logits), Arg::input(targets), Arg::output(correct)];
        self.launch(OP, &accuracy_binary_plan(p), p, args)
    }
}

//! Losses with their gradient in one pass (softmax cross-entropy, BCE with logits) and accuracies, over logits
//! [n, k]. CPU: cpu.rs (one thread, fixed row order); GPU: loss.cu (one block, fixed-order reductions), plans
//! in cuda.rs.

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// Losses and accuracies over logits [n, k].
    #[derive(Eq)]
    pub struct LossParams {
        pub n: i32,
        pub k: i32,
    }
}

impl LossParams {
    pub fn new(n: usize, k: usize) -> Self {
        LossParams { n: n as i32, k: k as i32 }
    }
}

/// The loss and accuracy kernels.
pub trait LossOps: Device {
    /// Mean softmax cross-entropy over the batch. logits [n, k], labels i32 [n] in 0..k.
    /// grad [n, k] = (softmax(logits) - onehot(labels)) / n; loss[0] = mean loss (overwritten).
    fn softmax_xent(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        labels: &Self::IBuf,
        grad: Self::ViewMut<'_>,
        loss: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Mean BCE-with-logits over n*k. targets f32 [n, k] (0/1). grad = (sigmoid(l) - t) / (n*k);
    /// loss[0] = mean loss (overwritten). Numerically stable form: max(l,0) - l*t + log1p(exp(-|l|)).
    fn bce_logits(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        targets: Self::View<'_>,
        grad: Self::ViewMut<'_>,
        loss: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Top-1 accuracy: correct[0] += number of rows whose argmax (first max) equals the label.
    fn accuracy_classes(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        labels: &Self::IBuf,
        correct: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Binary accuracy per attribute: correct[j] += #{i : (logits[i, j] > 0) == (targets[i, j] > 0.5)}, j < k.
    fn accuracy_binary(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        targets: Self::View<'_>,
        correct: Self::ViewMut<'_>,
    ) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["softmax_xent", "bce_logits", "accuracy_classes", "accuracy_binary"];

/// One loss or accuracy call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossCall {
    SoftmaxXent(LossParams),
    BceLogits(LossParams),
    AccuracyClasses(LossParams),
    AccuracyBinary(LossParams),
}

impl LossCall {
    fn params(&self) -> &LossParams {
        match self {
            LossCall::SoftmaxXent(p)
            | LossCall::BceLogits(p)
            | LossCall::AccuracyClasses(p)
            | LossCall::AccuracyBinary(p) => p,
        }
    }
}

impl CallInfo for LossCall {
    fn kernel(&self) -> &'static str {
        match self {
            LossCall::SoftmaxXent(_) => KERNELS[0],
            LossCall::BceLogits(_) => KERNELS[1],
            LossCall::AccuracyClasses(_) => KERNELS[2],
            LossCall::AccuracyBinary(_) => KERNELS[3],
        }
    }
    fn shape(&self) -> String {
        let p = self.params();
        format!("n{} k{}", p.n, p.k)
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        let p_ = Init::Poison;
        let p = *self.params();
        let nk = (p.n * p.k) as usize;
        let labels = || sp("labels", p.n as usize, In, Init::Labels(p.k));
        let logits4 = || sp("logits", nk, In, Init::Uniform(-4.0, 4.0));
        match self {
            LossCall::SoftmaxXent(_) => {
                (vec![logits4(), sp("grad", nk, Out, p_), sp("loss", 1, Out, p_)], vec![labels()])
            }
            LossCall::BceLogits(_) => (
                vec![logits4(), sp("targets", nk, In, Init::Binary), sp("grad", nk, Out, p_), sp("loss", 1, Out, p_)],
                vec![],
            ),
            LossCall::AccuracyClasses(_) => {
                (vec![sp("logits", nk, In, U), sp("correct", 1, InOut, Init::Counts)], vec![labels()])
            }
            LossCall::AccuracyBinary(_) => (
                vec![
                    sp("logits", nk, In, U),
                    sp("targets", nk, In, Init::Binary),
                    sp("correct", p.k as usize, InOut, Init::Counts),
                ],
                vec![],
            ),
        }
    }
    fn tolerance(&self) -> f64 {
        match self {
            LossCall::SoftmaxXent(_) | LossCall::BceLogits(_) => 1e-4,
            LossCall::AccuracyClasses(_) | LossCall::AccuracyBinary(_) => 1e-5,
        }
    }
}

impl KernelCall for LossCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (self, f, i) {
            (LossCall::SoftmaxXent(p), [l, g, loss], [labels]) => {
                b.softmax_xent(p, b.view(l), labels, b.view_mut(g), b.view_mut(loss))
            }
            (LossCall::BceLogits(p), [l, t, g, loss], []) => {
                b.bce_logits(p, b.view(l), b.view(t), b.view_mut(g), b.view_mut(loss))
            }
            (LossCall::AccuracyClasses(p), [l, c], [labels]) => b.accuracy_classes(p, b.view(l), labels, b.view_mut(c)),
            (LossCall::AccuracyBinary(p), [l, t, c], []) => b.accuracy_binary(p, b.view(l), b.view(t), b.view_mut(c)),
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward losses: 1 row, 7 rows, 1000 classes; 1, 5 and 40 binary outputs; each with its accuracy.
pub fn awkward_calls() -> Vec<LossCall> {
    let mut out = Vec::new();
    for (n, k) in [(1, 12), (7, 12), (33, 1000)] {
        out.extend([LossCall::SoftmaxXent(LossParams::new(n, k)), LossCall::AccuracyClasses(LossParams::new(n, k))]);
    }
    for (n, k) in [(1, 1), (7, 5), (300, 40)] {
        out.extend([LossCall::BceLogits(LossParams::new(n, k)), LossCall::AccuracyBinary(LossParams::new(n, k))]);
    }
    out
}

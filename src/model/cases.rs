//! The kernel calls of one training step of a model, from its layer table: what `powertrain check` compares
//! (with the awkward shapes of src/ops/check.rs) and `bench kernels` times.
use super::{Arch, Layout};
use crate::ops::check::{Case, StepCases};
use crate::ops::*;

/// Number of outputs of the CelebA model in the protocol's single-task default (`Smiling`).
pub const CELEBA_K: usize = 1;

impl StepCases for Arch {
    /// Every kernel call of one training step at batch `n`, at the protocol's shapes (forward, backward, loss,
    /// accuracy), labelled `<model> <layer>`; with `with_optim` also the batch-independent optimiser steps and
    /// the gradient fill over all parameters.
    fn step_cases(&self, n: usize, with_optim: bool) -> Vec<Case> {
        let model = self.name();
        let layout = Layout::new(*self);
        let mut out = Vec::new();
        let mut push = |layer: &str, op: Op| out.push(Case { label: format!("{model} {layer}"), batch: n, op });
        for (i, l) in layout.conv_layers(n).iter().enumerate() {
            let (c, name) = (l.conv, format!("conv{}", i + 1));
            push(&name, Conv2dCall::Forward(c).into());
            push(&name, Conv2dCall::BackwardData(c).into());
            push(&name, Conv2dCall::BackwardFilter(c).into());
            let bias = BiasParams::new(n, c.c_out as usize, (c.h_out * c.w_out) as usize);
            push(&name, BiasCall::Forward(bias).into());
            push(&name, BiasCall::Backward(bias).into());
            push(&name, ElementwiseCall::ReluForward(EltwiseParams::new(c.y_len())).into());
            push(&name, ElementwiseCall::ReluBackward(EltwiseParams::new(c.y_len())).into());
            let pname = format!("pool{}", i + 1);
            for call in [PoolCall::MaxForward, PoolCall::MaxBackward, PoolCall::AvgForward, PoolCall::AvgBackward] {
                push(&pname, call(l.pool).into());
            }
        }
        let fcs = layout.fc_layers();
        for (i, f) in fcs.iter().enumerate() {
            let name = format!("fc{}", i + 1);
            // y[n, out] = x[n, in] W[out, in]^T; dx[n, in] = dy[n, out] W; dW[out, in] = dy^T x.
            push(&name, GemmCall(GemmParams::new(n, f.out, f.fan_in, false, true)).into());
            push(&name, GemmCall(GemmParams::new(n, f.fan_in, f.out, false, false)).into());
            push(&name, GemmCall(GemmParams::new(f.out, f.fan_in, n, true, false)).into());
            push(&name, BiasCall::Forward(BiasParams::new(n, f.out, 1)).into());
            push(&name, BiasCall::Backward(BiasParams::new(n, f.out, 1)).into());
            if i + 1 < fcs.len() {
                push(&name, ElementwiseCall::ReluForward(EltwiseParams::new(n * f.out)).into());
                push(&name, ElementwiseCall::ReluBackward(EltwiseParams::new(n * f.out)).into());
            }
        }
        let lp = LossParams::new(n, self.outputs());
        if self.is_classification() {
            push("loss", LossCall::SoftmaxXent(lp).into());
            push("loss", LossCall::AccuracyClasses(lp).into());
        } else {
            push("loss", LossCall::BceLogits(lp).into());
            push("loss", LossCall::AccuracyBinary(lp).into());
        }
        if with_optim {
            let len = layout.total as i32;
            push("params", ElementwiseCall::Fill(FillParams { len, value: 0.0 }).into());
            push("params", OptimCall::Sgd(SgdParams { len, lr: 0.01, momentum: 0.9, weight_decay: 1e-4 }).into());
            push("params", OptimCall::Adam(AdamParams::at_step(layout.total, 1e-3, 1e-4, 3)).into());
        }
        out
    }
}

/// Every case of `powertrain check` (and of the emulation tests): the protocol's two models, then the awkward
/// shapes (`ops::check::check_cases`).
pub fn check_cases() -> Vec<Case> {
    crate::ops::check::check_cases(&[&Arch::Pamap2, &Arch::Celeba { k: CELEBA_K }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// One line per case: kernel, label, batch, shape, tolerance and every parameter (the struct's Debug).
    fn case_line(c: &Case) -> String {
        let params = match c.op {
            Op::Conv2d(Conv2dCall::Forward(p) | Conv2dCall::BackwardData(p) | Conv2dCall::BackwardFilter(p)) => {
                format!("{p:?}")
            }
            Op::Pool(
                PoolCall::MaxForward(p) | PoolCall::MaxBackward(p) | PoolCall::AvgForward(p) | PoolCall::AvgBackward(p),
            ) => format!("{p:?}"),
            Op::Gemm(GemmCall(p)) => format!("{p:?}"),
            Op::Bias(BiasCall::Forward(p) | BiasCall::Backward(p)) => format!("{p:?}"),
            Op::Elementwise(ElementwiseCall::ReluForward(p) | ElementwiseCall::ReluBackward(p)) => format!("{p:?}"),
            Op::Elementwise(ElementwiseCall::Fill(p)) => format!("{p:?}"),
            Op::Loss(
                LossCall::SoftmaxXent(p)
                | LossCall::BceLogits(p)
                | LossCall::AccuracyClasses(p)
                | LossCall::AccuracyBinary(p),
            ) => format!("{p:?}"),
            Op::Optim(OptimCall::Sgd(p)) => format!("{p:?}"),
            Op::Optim(OptimCall::Adam(p)) => format!("{p:?}"),
        };
        format!("{}\t{}\t{}\t{}\t{:e}\t{params}", c.op.kernel(), c.label, c.batch, c.op.shape(), c.op.tolerance())
    }

    /// `check`'s 378 cases are exactly those of the commit before the ops moved into their folders (85747d2),
    /// in the same order (case j runs with seed + j, so the order is part of what `--seed` reproduces): the
    /// SHA-256 of their lines, as that commit's src/ops/cuda/check.rs produced them.
    #[test]
    fn the_check_list_is_unchanged() {
        let cases = check_cases();
        assert_eq!(cases.len(), 378);
        let text: String = cases.iter().map(|c| case_line(c) + "\n").collect();
        let digest = format!("{:x}", Sha256::digest(text.as_bytes()));
        if digest != "7c751d25a834feb1594a4ad796abf40c45a81e11be09ae5e00f3eb96b95bf5ec" {
            eprintln!("{text}");
            panic!("the check list changed (sha256 {digest}); the list is printed above");
        }
        assert_eq!(
            case_line(&cases[0]),
            "conv2d_forward\tpamap2 conv1\t1\tn1 c27 1x256 -> c64 k1x5 p0,2 s1,1\t1e-4\tConv2dParams { n: 1, c_in: 27, \
             h: 1, w: 256, c_out: 64, kh: 1, kw: 5, pad_h: 0, pad_w: 2, stride_h: 1, stride_w: 1, h_out: 1, w_out: 256 }"
        );
    }

    #[test]
    fn cases_cover_every_kernel() {
        let cases = check_cases();
        for k in KERNEL_NAMES {
            assert!(cases.iter().any(|c| c.op.kernel() == *k), "no check case for {k}");
        }
        // pamap2 parameter count (596300 per the protocol's layers) drives the optimiser cases.
        let m = Arch::Pamap2.step_cases(1, true);
        assert!(m.iter().any(|c| c.op == Op::from(ElementwiseCall::Fill(FillParams { len: 596_300, value: 0.0 }))));
    }
}

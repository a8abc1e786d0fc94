//! Fused optimiser steps over one flat parameter buffer (every tensor in one launch): PyTorch's SGD and Adam.
//! CPU: cpu.rs; GPU: optim.cu (grid-stride), plans in cuda.rs.

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// SGD with momentum (dampening 0) and coupled weight decay over `len` parameters.
    pub struct SgdParams {
        pub len: i32,
        pub lr: f32,
        pub momentum: f32,
        pub weight_decay: f32,
    }
}

cuda_struct! {
    /// Adam over `len` parameters; bias_correction1 = 1 - beta1^t and bias_correction2 = 1 - beta2^t are
    /// computed on the host for step t (1-based).
    pub struct AdamParams {
        pub len: i32,
        pub lr: f32,
        pub beta1: f32,
        pub beta2: f32,
        pub eps: f32,
        pub weight_decay: f32,
        pub bias_correction1: f32,
        pub bias_correction2: f32,
    }
}

impl AdamParams {
    /// PyTorch's defaults (betas 0.9/0.999, eps 1e-8) at step `t` (1-based).
    pub fn at_step(len: usize, lr: f32, weight_decay: f32, t: u64) -> Self {
        let (b1, b2) = (0.9f32, 0.999f32);
        AdamParams {
            len: len as i32,
            lr,
            beta1: b1,
            beta2: b2,
            eps: 1e-8,
            weight_decay,
            bias_correction1: 1.0 - (b1 as f64).powi(t as i32) as f32,
            bias_correction2: 1.0 - (b2 as f64).powi(t as i32) as f32,
        }
    }
}

/// The optimiser kernels.
pub trait OptimOps: Device {
    /// PyTorch SGD (dampening 0, no Nesterov), one fused pass over all parameters:
    /// g = grad + wd * w; m = momentum * m + g (m starts at 0, equal to PyTorch's first step);
    /// w -= lr * (momentum != 0 ? m : g).
    fn sgd_step(&self, p: &SgdParams, w: Self::ViewMut<'_>, grad: Self::View<'_>, mom: Self::ViewMut<'_>)
        -> Result<()>;
    /// PyTorch Adam (coupled weight decay, eps after the square root), one fused pass:
    /// g = grad + wd * w; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    /// w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), with bc1 = 1 - b1^t, bc2 = 1 - b2^t from the host.
    fn adam_step(
        &self,
        p: &AdamParams,
        w: Self::ViewMut<'_>,
        grad: Self::View<'_>,
        m: Self::ViewMut<'_>,
        v: Self::ViewMut<'_>,
    ) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["sgd_step", "adam_step"];

/// One optimiser call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimCall {
    Sgd(SgdParams),
    Adam(AdamParams),
}

impl CallInfo for OptimCall {
    fn kernel(&self) -> &'static str {
        match self {
            OptimCall::Sgd(_) => KERNELS[0],
            OptimCall::Adam(_) => KERNELS[1],
        }
    }
    fn shape(&self) -> String {
        match self {
            OptimCall::Sgd(p) => format!("len{} mom{} wd{}", p.len, p.momentum, p.weight_decay),
            OptimCall::Adam(p) => format!("len{} wd{}", p.len, p.weight_decay),
        }
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        match *self {
            OptimCall::Sgd(p) => {
                let n = p.len as usize;
                (vec![sp("w", n, InOut, U), sp("grad", n, In, U), sp("mom", n, InOut, U)], vec![])
            }
            OptimCall::Adam(p) => {
                let n = p.len as usize;
                (
                    vec![
                        sp("w", n, InOut, U),
                        sp("grad", n, In, U),
                        sp("m", n, InOut, Init::Uniform(-0.1, 0.1)),
                        sp("v", n, InOut, Init::Uniform(0.0, 0.01)),
                    ],
                    vec![],
                )
            }
        }
    }
    fn tolerance(&self) -> f64 {
        1e-5
    }
}

impl KernelCall for OptimCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (self, f, i) {
            (OptimCall::Sgd(p), [w, g, m], []) => b.sgd_step(p, b.view_mut(w), b.view(g), b.view_mut(m)),
            (OptimCall::Adam(p), [w, g, m, v], []) => {
                b.adam_step(p, b.view_mut(w), b.view(g), b.view_mut(m), b.view_mut(v))
            }
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward optimiser steps: 1 and 12345 parameters, SGD without and with momentum and weight decay,
/// Adam at step 1 and at step 10 with weight decay.
pub fn awkward_calls() -> Vec<OptimCall> {
    let mut out = Vec::new();
    for len in [1, 12_345] {
        out.push(OptimCall::Sgd(SgdParams { len, lr: 0.1, momentum: 0.0, weight_decay: 0.0 }));
        out.push(OptimCall::Sgd(SgdParams { len, lr: 0.05, momentum: 0.9, weight_decay: 1e-2 }));
        out.push(OptimCall::Adam(AdamParams::at_step(len as usize, 1e-3, 0.0, 1)));
        out.push(OptimCall::Adam(AdamParams::at_step(len as usize, 3e-3, 1e-2, 10)));
    }
    out
}

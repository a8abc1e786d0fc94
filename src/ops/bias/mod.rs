//! Bias over [n, c, inner] (inner = h*w for convolutions, 1 for linear layers): forward (broadcast add) and
//! backward (a per-channel reduction). CPU: cpu.rs; GPU: bias.cu, plans in cuda.rs.

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// Bias over [n, c, inner] (inner = h*w for convolutions, 1 for linear layers).
    #[derive(Eq)]
    pub struct BiasParams {
        pub n: i32,
        pub c: i32,
        pub inner: i32,
    }
}

cuda_const! {
    /// Capacity (floats) of the static scratch `bias_partial` of bias_backward's split reduction.
    pub const BIAS_SPLIT_CAP: usize = 1 << 16;
}

impl BiasParams {
    pub fn new(n: usize, c: usize, inner: usize) -> Self {
        BiasParams { n: n as i32, c: c as i32, inner: inner as i32 }
    }
    pub fn len(&self) -> usize {
        (self.n * self.c * self.inner) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bias kernels.
pub trait BiasOps: Device {
    /// y[n, c, i] += b[c] for i < inner.
    fn bias_forward(&self, p: &BiasParams, b: Self::View<'_>, y: Self::ViewMut<'_>) -> Result<()>;
    /// db[c] = sum_{n, i} dy[n, c, i] (a reduction; overwrites db).
    fn bias_backward(&self, p: &BiasParams, dy: Self::View<'_>, db: Self::ViewMut<'_>) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["bias_forward", "bias_backward"];

/// One bias call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BiasCall {
    Forward(BiasParams),
    Backward(BiasParams),
}

impl CallInfo for BiasCall {
    fn kernel(&self) -> &'static str {
        match self {
            BiasCall::Forward(_) => KERNELS[0],
            BiasCall::Backward(_) => KERNELS[1],
        }
    }
    fn shape(&self) -> String {
        let (BiasCall::Forward(p) | BiasCall::Backward(p)) = self;
        format!("n{} c{} inner{}", p.n, p.c, p.inner)
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        match *self {
            BiasCall::Forward(p) => (vec![sp("b", p.c as usize, In, U), sp("y", p.len(), InOut, U)], vec![]),
            BiasCall::Backward(p) => {
                (vec![sp("dy", p.len(), In, U), sp("db", p.c as usize, Out, Init::Poison)], vec![])
            }
        }
    }
    fn tolerance(&self) -> f64 {
        match self {
            BiasCall::Forward(_) => 1e-5,
            BiasCall::Backward(_) => 1e-4,
        }
    }
}

impl KernelCall for BiasCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (self, f, i) {
            (BiasCall::Forward(p), [bias, y], []) => b.bias_forward(p, b.view(bias), b.view_mut(y)),
            (BiasCall::Backward(p), [dy, db], []) => b.bias_backward(p, b.view(dy), b.view_mut(db)),
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward biases: 27 channels over 13, one channel row, 129 linear channels; both ways.
pub fn awkward_calls() -> Vec<BiasCall> {
    [BiasParams::new(7, 27, 13), BiasParams::new(1, 3, 1), BiasParams::new(5, 129, 1)]
        .into_iter()
        .flat_map(|b| [BiasCall::Forward(b), BiasCall::Backward(b)])
        .collect()
}

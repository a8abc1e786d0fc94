//! Elementwise ops over `len` elements: ReLU forward (in place) and backward, and fill. CPU: cpu.rs; GPU:
//! elementwise.cu (grid-stride; also the empty `pt_probe` of launch stamps), plans in cuda.rs.

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// Elementwise ops over `len` elements.
    #[derive(Eq)]
    pub struct EltwiseParams {
        pub len: i32,
    }
}

cuda_struct! {
    /// Fill `len` elements with `value`.
    pub struct FillParams {
        pub len: i32,
        pub value: f32,
    }
}

impl EltwiseParams {
    pub fn new(len: usize) -> Self {
        EltwiseParams { len: len as i32 }
    }
}

/// The elementwise kernels.
pub trait ElementwiseOps: Device {
    /// In place: x = max(x, 0).
    fn relu_forward(&self, p: &EltwiseParams, x: Self::ViewMut<'_>) -> Result<()>;
    /// In place: dy = dy * (y > 0), y being the ReLU's output.
    fn relu_backward(&self, p: &EltwiseParams, y: Self::View<'_>, dy: Self::ViewMut<'_>) -> Result<()>;
    /// Set every element of `dst` to `value`.
    fn fill(&self, dst: Self::ViewMut<'_>, value: f32) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["relu_forward", "relu_backward", "fill"];

/// One elementwise call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ElementwiseCall {
    ReluForward(EltwiseParams),
    ReluBackward(EltwiseParams),
    Fill(FillParams),
}

impl CallInfo for ElementwiseCall {
    fn kernel(&self) -> &'static str {
        match self {
            ElementwiseCall::ReluForward(_) => KERNELS[0],
            ElementwiseCall::ReluBackward(_) => KERNELS[1],
            ElementwiseCall::Fill(_) => KERNELS[2],
        }
    }
    fn shape(&self) -> String {
        match self {
            ElementwiseCall::ReluForward(p) | ElementwiseCall::ReluBackward(p) => format!("len{}", p.len),
            ElementwiseCall::Fill(p) => format!("len{}", p.len),
        }
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        match *self {
            ElementwiseCall::ReluForward(p) => (vec![sp("x", p.len as usize, InOut, U)], vec![]),
            ElementwiseCall::ReluBackward(p) => (
                vec![sp("y", p.len as usize, In, Init::Uniform(-0.5, 1.0)), sp("dy", p.len as usize, InOut, U)],
                vec![],
            ),
            ElementwiseCall::Fill(p) => (vec![sp("dst", p.len as usize, Out, Init::Poison)], vec![]),
        }
    }
    fn tolerance(&self) -> f64 {
        1e-5
    }
}

impl KernelCall for ElementwiseCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (self, f, i) {
            (ElementwiseCall::ReluForward(p), [x], []) => b.relu_forward(p, b.view_mut(x)),
            (ElementwiseCall::ReluBackward(p), [y, dy], []) => b.relu_backward(p, b.view(y), b.view_mut(dy)),
            (ElementwiseCall::Fill(p), [d], []) => b.fill(b.view_mut(d), p.value),
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward lengths: 1, 255 and 100003, each ReLU both ways and fill.
pub fn awkward_calls() -> Vec<ElementwiseCall> {
    [1usize, 255, 100_003]
        .into_iter()
        .flat_map(|len| {
            [
                ElementwiseCall::ReluForward(EltwiseParams::new(len)),
                ElementwiseCall::ReluBackward(EltwiseParams::new(len)),
                ElementwiseCall::Fill(FillParams { len: len as i32, value: -2.5 }),
            ]
        })
        .collect()
}

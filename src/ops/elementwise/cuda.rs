//! ReLU and fill on the GPU (and under the emulation): buffer checks and the (grid-stride) launch plans of
//! elementwise.cu, and the one-thread plan of the launch-stamp probe.
use super::{ElementwiseOps, EltwiseParams, FillParams};
use crate::ops::launch::{elems, grid_1d, need, single, u, Arg, Launch, Launcher};
use anyhow::{bail, Result};

pub fn relu_forward_plan(p: &EltwiseParams) -> Vec<Launch> {
    grid_1d("relu_forward", u(p.len))
}
pub fn relu_backward_plan(p: &EltwiseParams) -> Vec<Launch> {
    grid_1d("relu_backward", u(p.len))
}
pub fn fill_plan(p: &FillParams) -> Vec<Launch> {
    grid_1d("fill", u(p.len))
}
/// The clock probe of launch stamps: one block of one thread of the empty `pt_probe`.
pub fn stamp_probe_plan() -> Vec<Launch> {
    single("pt_probe", (1, 1, 1), 1)
}

impl<L: Launcher> ElementwiseOps for L {
    /// x [len], in place.
    fn relu_forward(&self, p: &EltwiseParams, x: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "relu_forward";
        need(OP, "x", L::view_mut_len(&x), elems(OP, &[p.len])?)?;
        self.launch(OP, &relu_forward_plan(p), p, &mut [Arg::output(x)])
    }

    /// y [len] (the ReLU's output), dy [len] in place.
    fn relu_backward(&self, p: &EltwiseParams, y: L::View<'_>, dy: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "relu_backward";
        need(OP, "y", L::view_len(&y), elems(OP, &[p.len])?)?;
        need(OP, "dy", L::view_mut_len(&dy), elems(OP, &[p.len])?)?;
        self.launch(OP, &relu_backward_plan(p), p, &mut [Arg::input(y), Arg::output(dy)])
    }

    /// dst [len] = value.
    fn fill(&self, dst: L::ViewMut<'_>, value: f32) -> Result<()> {
        let n = L::view_mut_len(&dst);
        if n > i32::MAX as usize {
            bail!("fill: {n} elements, more than the kernels' 32-bit indexing allows");
        }
        let p = FillParams { len: n as i32, value };
        self.launch("fill", &fill_plan(&p), &p, &mut [Arg::output(dst)])
    }
}

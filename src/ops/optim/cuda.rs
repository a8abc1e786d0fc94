//! Fused optimiser steps on the GPU (and under the emulation): buffer checks and the grid-stride launch plans
//! of optim.cu.
use super::{AdamParams, OptimOps, SgdParams};
use crate::ops::launch::{elems, grid_1d, need, u, Arg, Launch, Launcher};
use anyhow::Result;

pub fn sgd_step_plan(p: &SgdParams) -> Vec<Launch> {
    grid_1d("sgd_step", u(p.len))
}
pub fn adam_step_plan(p: &AdamParams) -> Vec<Launch> {
    grid_1d("adam_step", u(p.len))
}

impl<L: Launcher> OptimOps for L {
    /// w [len], grad [len], mom [len]: one SGD step in place.
    fn sgd_step(&self, p: &SgdParams, w: L::ViewMut<'_>, grad: L::View<'_>, mom: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "sgd_step";
        let n = elems(OP, &[p.len])?;
        need(OP, "w", L::view_mut_len(&w), n)?;
        need(OP, "grad", L::view_len(&grad), n)?;
        need(OP, "mom", L::view_mut_len(&mom), n)?;
        self.launch(OP, &sgd_step_plan(p), p, &mut [Arg::output(w), Arg::input(grad), Arg::output(mom)])
    }

    /// w [len], grad [len], m [len], v [len]: one Adam step in place.
    fn adam_step(
        &self,
        p: &AdamParams,
        w: L::ViewMut<'_>,
        grad: L::View<'_>,
        m: L::ViewMut<'_>,
        v: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "adam_step";
        let n = elems(OP, &[p.len])?;
        need(OP, "w", L::view_mut_len(&w), n)?;
        need(OP, "grad", L::view_len(&grad), n)?;
        need(OP, "m", L::view_mut_len(&m), n)?;
        need(OP, "v", L::view_mut_len(&v), n)?;
        self.launch(OP, &adam_step_plan(p), p, &mut [Arg::output(w), Arg::input(grad), Arg::output(m), Arg::output(v)])
    }
}

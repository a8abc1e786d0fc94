//! Bias on the GPU (and under the emulation): buffer checks and the launch plans of bias.cu.
use super::{BiasOps, BiasParams, BIAS_SPLIT_CAP};
use crate::ops::launch::{elems, grid_1d, need, single, u, Arg, DeviceSpec, Launch, Launcher, BLOCK_1D};
use anyhow::Result;

/// The least number of elements one block of bias_backward's split reduction sums.
const BIAS_MIN_SLICE: usize = 16384;

pub fn bias_forward_plan(p: &BiasParams) -> Vec<Launch> {
    grid_1d("bias_forward", p.len())
}

/// Convolutions (inner > 1): blocks (channel, image slice) reduce, and when there are few channels the images
/// are split into slices (see bias_backward_plan_with_splits). Linear layers (inner == 1): one thread per
/// channel walks the rows (coalesced across channels).
pub fn bias_backward_plan(p: &BiasParams, dev: &DeviceSpec) -> Vec<Launch> {
    let (c, n, inner) = (u(p.c).max(1), u(p.n), u(p.inner));
    // Enough blocks to fill the device, each summing at least BIAS_MIN_SLICE elements.
    let splits = dev.split_target_blocks().div_ceil(c).min((n * inner) / BIAS_MIN_SLICE).min(n).min(BIAS_SPLIT_CAP / c);
    bias_backward_plan_with_splits(p, splits.max(1))
}

/// bias_backward with the images of each channel split into `splits` slices (> 1: bias_backward_reduce
/// follows; the caller keeps c * splits <= BIAS_SPLIT_CAP and splits <= 65535). Public for the tests.
pub fn bias_backward_plan_with_splits(p: &BiasParams, splits: usize) -> Vec<Launch> {
    if p.inner <= 1 {
        return single("bias_backward_rows", (u(p.c).div_ceil(128).max(1) as u32, 1, 1), 128);
    }
    let mut plan = single("bias_backward", (u(p.c).max(1) as u32, splits.max(1) as u32, 1), BLOCK_1D);
    if splits > 1 {
        plan.extend(grid_1d("bias_backward_reduce", u(p.c)));
    }
    plan
}

impl<L: Launcher> BiasOps for L {
    /// b [c], y [n, c, inner]: y += b broadcast.
    fn bias_forward(&self, p: &BiasParams, b: L::View<'_>, y: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "bias_forward";
        need(OP, "b", L::view_len(&b), elems(OP, &[p.c])?)?;
        need(OP, "y", L::view_mut_len(&y), elems(OP, &[p.n, p.c, p.inner])?)?;
        self.launch(OP, &bias_forward_plan(p), p, &mut [Arg::input(b), Arg::output(y)])
    }

    /// dy [n, c, inner] -> db [c] (overwritten).
    fn bias_backward(&self, p: &BiasParams, dy: L::View<'_>, db: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "bias_backward";
        need(OP, "dy", L::view_len(&dy), elems(OP, &[p.n, p.c, p.inner])?)?;
        need(OP, "db", L::view_mut_len(&db), elems(OP, &[p.c])?)?;
        let plan = bias_backward_plan(p, self.spec());
        self.launch(OP, &plan, p, &mut [Arg::input(dy), Arg::output(db)])
    }
}

//! GEMM on the GPU (and under the emulation): buffer checks and the launch plan of gemm.cu: tiles of
//! GEMM_BM x GEMM_BN over c [m, n], split over k when the output is small (the forward pass of fc layers).
use super::{GemmOps, GemmParams, GEMM_BM, GEMM_BN, GEMM_SPLIT_CAP};
use crate::ops::launch::{elems, grid_1d, need, tiled, u, Arg, DeviceSpec, Launch, Launcher};
use anyhow::Result;

/// Least reduction length of one K slice, and the most slices.
const SPLIT_MIN_K: usize = 256;
const SPLIT_MAX: usize = 64;

/// How many K slices an (M x N) output with tile height bm and reduction k gets: 1 when the tiles alone fill
/// the device (a quarter of `split_target_blocks`), else enough to reach `split_target_blocks` within
/// SPLIT_MIN_K, SPLIT_MAX and the scratch.
pub fn split_k(m: usize, n: usize, k: usize, bm: usize, dev: &DeviceSpec) -> usize {
    let target = dev.split_target_blocks();
    let tiles = m.div_ceil(bm).max(1) * n.div_ceil(GEMM_BN).max(1);
    if tiles >= target / 4 {
        return 1;
    }
    let by_cap = GEMM_SPLIT_CAP / (m * n).max(1);
    target.div_ceil(tiles).min(k / SPLIT_MIN_K).min(SPLIT_MAX).min(by_cap).max(1)
}

/// The plan of `p` on `dev`.
pub fn gemm_plan(p: &GemmParams, dev: &DeviceSpec) -> Vec<Launch> {
    gemm_plan_with_splits(p, split_k(u(p.m), u(p.n), u(p.k), GEMM_BM, dev))
}

/// The plan with a given number of K slices (> 1: gemm_splitk_reduce follows and applies alpha / beta; the
/// caller keeps m*n*splits <= GEMM_SPLIT_CAP). Public for the tests, which try several.
pub fn gemm_plan_with_splits(p: &GemmParams, splits: usize) -> Vec<Launch> {
    let mut plan = vec![tiled("gemm", u(p.m), u(p.n), GEMM_BM, GEMM_BN, splits)];
    if splits > 1 {
        plan.extend(grid_1d("gemm_splitk_reduce", u(p.m) * u(p.n)));
    }
    plan
}

impl<L: Launcher> GemmOps for L {
    /// a [m, k] (or [k, m] when trans_a), b [k, n] (or [n, k] when trans_b), c [m, n]:
    /// c = alpha * op(a) op(b) + beta * c.
    fn gemm(&self, p: &GemmParams, a: L::View<'_>, b: L::View<'_>, c: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "gemm";
        need(OP, "a", L::view_len(&a), elems(OP, &[p.m, p.k])?)?;
        need(OP, "b", L::view_len(&b), elems(OP, &[p.k, p.n])?)?;
        need(OP, "c", L::view_mut_len(&c), elems(OP, &[p.m, p.n])?)?;
        let plan = gemm_plan(p, self.spec());
        self.launch(OP, &plan, p, &mut [Arg::input(a), Arg::input(b), Arg::output(c)])
    }
}

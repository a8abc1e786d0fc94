//! conv2d on the GPU (and under the emulation): buffer checks and the launch plans of conv2d.cu.
//!
//! Each op is an implicit GEMM: forward M = c_out, N = n*h_out*w_out, K = c_in*kh*kw; backward-data M = c_in,
//! N = n*h*w, K = c_out*kh*kw; backward-filter M = c_out, N = c_in*kh*kw, K = n*h_out*w_out. A plan picks the
//! tile height that wastes the fewest rows of M (kernel suffix _m32, none, _m128); backward-filter splits K over
//! blocks when its output is small (then conv2d_backward_filter_reduce sums the slices).
use super::{Conv2dOps, Conv2dParams, CONV_BN, CONV_SPLIT_CAP};
use crate::ops::launch::{elems, need, single, tiled, u, Arg, DeviceSpec, Launch, Launcher, BLOCK_1D, MAX_BLOCKS_1D};
use anyhow::Result;

/// Tile height for M output rows (channels): the kernel variant that wastes the fewest rows.
fn conv_bm(m: usize) -> usize {
    match m {
        0..=32 => 32,
        33..=64 => 64,
        _ => 128,
    }
}

/// The kernel of `base` for tile height `bm` (`base_m32`, `base`, `base_m128`).
fn variant(bm: usize, m32: &'static str, m64: &'static str, m128: &'static str) -> &'static str {
    match bm {
        32 => m32,
        64 => m64,
        _ => m128,
    }
}

/// Least reduction length of one K slice.
const SPLIT_MIN_K: usize = 256;

/// GEMM M = c_out, N = n*h_out*w_out, K = c_in*kh*kw.
pub fn forward_plan(p: &Conv2dParams) -> Vec<Launch> {
    let (m, n) = (u(p.c_out), u(p.n) * u(p.h_out) * u(p.w_out));
    let bm = conv_bm(m);
    vec![tiled(variant(bm, "conv2d_forward_m32", "conv2d_forward", "conv2d_forward_m128"), m, n, bm, CONV_BN, 1)]
}

/// GEMM M = c_in, N = n*h*w, K = c_out*kh*kw.
pub fn backward_data_plan(p: &Conv2dParams) -> Vec<Launch> {
    let (m, n) = (u(p.c_in), u(p.n) * u(p.h) * u(p.w));
    let bm = conv_bm(m);
    let f = variant(bm, "conv2d_backward_data_m32", "conv2d_backward_data", "conv2d_backward_data_m128");
    vec![tiled(f, m, n, bm, CONV_BN, 1)]
}

/// GEMM M = c_out, N = c_in*kh*kw, K = n*h_out*w_out, split over K when the output is small (`filter_splits`).
pub fn backward_filter_plan(p: &Conv2dParams, dev: &DeviceSpec) -> Vec<Launch> {
    let (m, n, k) = (u(p.c_out), u(p.c_in) * u(p.kh) * u(p.kw), u(p.n) * u(p.h_out) * u(p.w_out));
    backward_filter_plan_with_splits(p, filter_splits(m, n, k, conv_bm(m), dev))
}

/// K slices of backward-filter (M = c_out, N = c_in*kh*kw tiny, K = n*h_out*w_out huge): fill two full waves of
/// the device (2 x `conv_wave_blocks` blocks, rounded DOWN so that no tail wave is left), each slice at least
/// SPLIT_MIN_K long; when the scratch cannot hold two waves, one full wave within the scratch. (A generic
/// split-K stopping at 64 slices would leave celeba conv1, one 32 x 128 tile, on 64 blocks of 132 SMs.) The
/// reduce pass spreads the slices over warps, so hundreds of slices stay cheap to sum.
pub fn filter_splits(m: usize, n: usize, k: usize, bm: usize, dev: &DeviceSpec) -> usize {
    let wave = dev.conv_wave_blocks();
    let tiles = m.div_ceil(bm).max(1) * n.div_ceil(CONV_BN).max(1);
    if tiles >= wave {
        return 1;
    }
    let by_cap = CONV_SPLIT_CAP / (m * n).max(1);
    let mut splits = 2 * wave / tiles;
    if splits > by_cap {
        splits = (wave / tiles).min(by_cap);
    }
    splits.min(k / SPLIT_MIN_K).min(dev.max_grid.2 as usize).max(1)
}

/// Backward-filter with a given number of K slices (> 1: a second, reducing launch follows; the caller keeps
/// c_out*c_in*kh*kw*splits <= CONV_SPLIT_CAP). Public for the tests, which try several.
pub fn backward_filter_plan_with_splits(p: &Conv2dParams, splits: usize) -> Vec<Launch> {
    let (m, n) = (u(p.c_out), u(p.c_in) * u(p.kh) * u(p.kw));
    let bm = conv_bm(m);
    let f = variant(bm, "conv2d_backward_filter_m32", "conv2d_backward_filter", "conv2d_backward_filter_m128");
    let mut plan = vec![tiled(f, m, n, bm, CONV_BN, splits)];
    if splits > 1 {
        // One block per 32 outputs, its 8 warps splitting the slices (see the kernel).
        let blocks = p.w_len().div_ceil(32).clamp(1, MAX_BLOCKS_1D) as u32;
        plan.extend(single("conv2d_backward_filter_reduce", (blocks, 1, 1), BLOCK_1D));
    }
    plan
}

/// Element counts (x, w, y) the params imply, checked for the kernels' 32-bit indexing.
fn lens(op: &str, p: &Conv2dParams) -> Result<(usize, usize, usize)> {
    if p.stride_h <= 0 || p.stride_w <= 0 || p.kh <= 0 || p.kw <= 0 {
        anyhow::bail!("{op}: kernel size and stride must be positive, got {p:?}");
    }
    Ok((
        elems(op, &[p.n, p.c_in, p.h, p.w])?,
        elems(op, &[p.c_out, p.c_in, p.kh, p.kw])?,
        elems(op, &[p.n, p.c_out, p.h_out, p.w_out])?,
    ))
}

impl<L: Launcher> Conv2dOps for L {
    /// x [n, c_in, h, w], w [c_out, c_in, kh, kw] -> y [n, c_out, h_out, w_out].
    fn conv2d_forward(&self, p: &Conv2dParams, x: L::View<'_>, w: L::View<'_>, y: L::ViewMut<'_>) -> Result<()> {
        const OP: &str = "conv2d_forward";
        let (xl, wl, yl) = lens(OP, p)?;
        need(OP, "x", L::view_len(&x), xl)?;
        need(OP, "w", L::view_len(&w), wl)?;
        need(OP, "y", L::view_mut_len(&y), yl)?;
        self.launch(OP, &forward_plan(p), p, &mut [Arg::input(x), Arg::input(w), Arg::output(y)])
    }

    /// dy [n, c_out, h_out, w_out], w [c_out, c_in, kh, kw] -> dx [n, c_in, h, w] (overwritten).
    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: L::View<'_>,
        w: L::View<'_>,
        dx: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_data";
        let (xl, wl, yl) = lens(OP, p)?;
        need(OP, "dy", L::view_len(&dy), yl)?;
        need(OP, "w", L::view_len(&w), wl)?;
        need(OP, "dx", L::view_mut_len(&dx), xl)?;
        self.launch(OP, &backward_data_plan(p), p, &mut [Arg::input(dy), Arg::input(w), Arg::output(dx)])
    }

    /// x [n, c_in, h, w], dy [n, c_out, h_out, w_out] -> dw [c_out, c_in, kh, kw] (overwritten).
    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: L::View<'_>,
        dy: L::View<'_>,
        dw: L::ViewMut<'_>,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_filter";
        let (xl, wl, yl) = lens(OP, p)?;
        need(OP, "x", L::view_len(&x), xl)?;
        need(OP, "dy", L::view_len(&dy), yl)?;
        need(OP, "dw", L::view_mut_len(&dw), wl)?;
        let plan = backward_filter_plan(p, self.spec());
        self.launch(OP, &plan, p, &mut [Arg::input(x), Arg::input(dy), Arg::output(dw)])
    }
}

//! Launch plans: which kernel function(s) of `kernels/*.cu` an op runs, with which grid, block and shared
//! memory. Shared by the CUDA backend and by the CPU emulation tests (tests/emu_kernels.rs), so both launch the
//! kernels the same way. Every launch of an op receives the op's full argument list (params by value, then the
//! pointers in the trait's order). The tile sizes here must match the `#define`s of the kernel files.
//!
//! Two-launch plans: conv2d_backward_filter, gemm and bias_backward may split their reduction over blocks
//! (`grid.z` / `grid.y` slices) into a static `__device__` scratch of their module, then a second launch
//! (`*_reduce`) sums the slices in a fixed order: deterministic, no atomics, no workspace argument. The scratch
//! is per module, so the launches of one plan must not interleave with another plan of the same module on a
//! second stream (the CUDA backend uses one stream).

/// One kernel launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// `extern "C"` function name in the kernels.
    pub func: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

use crate::ops::*;

/// Threads per block of the elementwise (grid-stride) plans.
pub const BLOCK_1D: u32 = 256;
/// Grid cap of the grid-stride plans (132 SMs x 16 resident blocks of 256 threads is far below it).
const MAX_BLOCKS_1D: usize = 8192;
/// Threads of the single-block loss and accuracy kernels (a multiple of 32: one warp per row).
pub const LOSS_THREADS: u32 = 512;

/// Output tile width of the GEMM and implicit-GEMM conv kernels (GEMM_BN / CONV_BN in the .cu files), their
/// threads per block, and the GEMM tile height (GEMM_BM).
const TILE_BN: usize = 128;
const TILE_THREADS: u32 = 256;
const GEMM_BM: usize = 64;
/// Split-K scratch capacity in floats (GEMM_SPLIT_CAP / CONV_SPLIT_CAP in the .cu files).
pub const SPLIT_CAP: usize = 1 << 22;
/// Scratch of bias_backward's split reduction in floats (BIAS_SPLIT_CAP in elementwise.cu), and the least
/// number of elements one of its blocks sums.
pub const BIAS_SPLIT_CAP: usize = 1 << 16;
const BIAS_MIN_SLICE: usize = 16384;
/// Split-K aims at this many blocks (4 waves of one block per SM on a 132-SM H100) ...
const SPLIT_TARGET_BLOCKS: usize = 528;
/// ... gives each slice at least this much of the reduction, and uses at most this many slices.
const SPLIT_MIN_K: usize = 256;
const SPLIT_MAX: usize = 64;

/// The clock probe of launch stamps: one block of one thread of the empty `pt_probe`.
pub fn stamp_probe() -> Vec<Launch> {
    launch("pt_probe", (1, 1, 1), 1)
}

fn launch(func: &'static str, grid: (u32, u32, u32), block: u32) -> Vec<Launch> {
    vec![Launch { func, grid, block: (block, 1, 1), shared_bytes: 0 }]
}

/// Grid-stride elementwise plan over `len` elements.
fn grid_1d(func: &'static str, len: usize) -> Vec<Launch> {
    let blocks = len.div_ceil(BLOCK_1D as usize).clamp(1, MAX_BLOCKS_1D) as u32;
    launch(func, (blocks, 1, 1), BLOCK_1D)
}

/// Tiled plan for an (M x N) output in tiles of bm x TILE_BN: grid.x over N (may be large: n*h*w), grid.y
/// over M (channels), grid.z = K slices.
fn tiled(func: &'static str, m: usize, n: usize, bm: usize, splits: usize) -> Launch {
    let gx = n.div_ceil(TILE_BN).max(1) as u32;
    let gy = m.div_ceil(bm).max(1) as u32;
    Launch { func, grid: (gx, gy, splits.max(1) as u32), block: (TILE_THREADS, 1, 1), shared_bytes: 0 }
}

/// How many K slices an (M x N) output with tile height bm and reduction k gets: 1 when the tiles alone fill
/// the GPU, else enough to reach SPLIT_TARGET_BLOCKS within SPLIT_MIN_K, SPLIT_MAX and the scratch.
pub fn split_k(m: usize, n: usize, k: usize, bm: usize) -> usize {
    let tiles = m.div_ceil(bm).max(1) * n.div_ceil(TILE_BN).max(1);
    if tiles >= SPLIT_TARGET_BLOCKS / 4 {
        return 1;
    }
    let by_cap = SPLIT_CAP / (m * n).max(1);
    SPLIT_TARGET_BLOCKS.div_ceil(tiles).min(k / SPLIT_MIN_K).min(SPLIT_MAX).min(by_cap).max(1)
}

/// Tile height for M output rows (channels): the kernel variant that wastes the fewest rows.
fn conv_bm(m: usize) -> usize {
    match m {
        0..=32 => 32,
        33..=64 => 64,
        _ => 128,
    }
}

fn u(v: i32) -> usize {
    v.max(0) as usize
}

// One function per op, named like the op; each returns the launches in order.

/// GEMM M = c_out, N = n*h_out*w_out, K = c_in*kh*kw.
pub fn conv2d_forward(p: &Conv2dParams) -> Vec<Launch> {
    let (m, n) = (u(p.c_out), u(p.n) * u(p.h_out) * u(p.w_out));
    let func = match conv_bm(m) {
        32 => "conv2d_forward_m32",
        64 => "conv2d_forward",
        _ => "conv2d_forward_m128",
    };
    vec![tiled(func, m, n, conv_bm(m), 1)]
}
/// GEMM M = c_in, N = n*h*w, K = c_out*kh*kw.
pub fn conv2d_backward_data(p: &Conv2dParams) -> Vec<Launch> {
    let (m, n) = (u(p.c_in), u(p.n) * u(p.h) * u(p.w));
    let func = match conv_bm(m) {
        32 => "conv2d_backward_data_m32",
        64 => "conv2d_backward_data",
        _ => "conv2d_backward_data_m128",
    };
    vec![tiled(func, m, n, conv_bm(m), 1)]
}
/// GEMM M = c_out, N = c_in*kh*kw, K = n*h_out*w_out, split over K when the output is small (see split_k).
pub fn conv2d_backward_filter(p: &Conv2dParams) -> Vec<Launch> {
    let (m, n, k) = (u(p.c_out), u(p.c_in) * u(p.kh) * u(p.kw), u(p.n) * u(p.h_out) * u(p.w_out));
    conv2d_backward_filter_with_splits(p, conv_filter_splits(m, n, k, conv_bm(m)))
}
/// Blocks of the conv tile kernels resident per wave on a 132-SM H100 (2 per SM: __launch_bounds__(256, 2)).
const CONV_WAVE_BLOCKS: usize = 264;
/// K slices of backward-filter (M = c_out, N = c_in*kh*kw tiny, K = n*h_out*w_out huge). The generic split_k
/// stops at SPLIT_MAX = 64 slices, which leaves celeba conv1 (one 32 x 128 tile) on 64 blocks of 132 SMs.
/// Here: fill two full waves (2 x CONV_WAVE_BLOCKS blocks, rounded DOWN so that no tail wave is left), each
/// slice at least SPLIT_MIN_K long; when the scratch cannot hold two waves, one full wave within the scratch.
/// The reduce pass spreads the slices over warps, so hundreds of slices stay cheap to sum.
pub fn conv_filter_splits(m: usize, n: usize, k: usize, bm: usize) -> usize {
    let tiles = m.div_ceil(bm).max(1) * n.div_ceil(TILE_BN).max(1);
    if tiles >= CONV_WAVE_BLOCKS {
        return 1;
    }
    let by_cap = SPLIT_CAP / (m * n).max(1);
    let mut splits = 2 * CONV_WAVE_BLOCKS / tiles;
    if splits > by_cap {
        splits = (CONV_WAVE_BLOCKS / tiles).min(by_cap);
    }
    splits.min(k / SPLIT_MIN_K).min(65535).max(1)
}
/// conv2d_backward_filter with a given number of K slices (>1: a second, reducing launch follows; the
/// caller keeps c_out*c_in*kh*kw*splits <= SPLIT_CAP). Public for the tests, which try several.
pub fn conv2d_backward_filter_with_splits(p: &Conv2dParams, splits: usize) -> Vec<Launch> {
    let (m, n) = (u(p.c_out), u(p.c_in) * u(p.kh) * u(p.kw));
    let func = match conv_bm(m) {
        32 => "conv2d_backward_filter_m32",
        64 => "conv2d_backward_filter",
        _ => "conv2d_backward_filter_m128",
    };
    let mut plan = vec![tiled(func, m, n, conv_bm(m), splits)];
    if splits > 1 {
        // One block per 32 outputs, its 8 warps splitting the slices (see the kernel).
        let blocks = p.w_len().div_ceil(32).clamp(1, MAX_BLOCKS_1D) as u32;
        plan.extend(launch("conv2d_backward_filter_reduce", (blocks, 1, 1), BLOCK_1D));
    }
    plan
}
pub fn maxpool2d_forward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("maxpool2d_forward", p.y_len())
}
/// One thread per output when the windows tile the input exactly (the kernel then scatters each window), else
/// one per input element (gather).
pub fn maxpool2d_backward(p: &Pool2dParams) -> Vec<Launch> {
    let tiles_exactly = p.kh == p.stride_h && p.kw == p.stride_w && p.h == p.h_out * p.kh && p.w == p.w_out * p.kw;
    grid_1d("maxpool2d_backward", if tiles_exactly { p.y_len() } else { p.x_len() })
}
pub fn avgpool2d_forward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("avgpool2d_forward", p.y_len())
}
pub fn avgpool2d_backward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("avgpool2d_backward", p.x_len())
}
/// Tiles of 64 x 128 over c [m, n], split over k when the output is small (the forward pass of fc layers).
pub fn gemm(p: &GemmParams) -> Vec<Launch> {
    gemm_with_splits(p, split_k(u(p.m), u(p.n), u(p.k), GEMM_BM))
}
/// gemm with a given number of K slices (>1: gemm_splitk_reduce follows and applies alpha / beta; the caller
/// keeps m*n*splits <= SPLIT_CAP). Public for the tests, which try several.
pub fn gemm_with_splits(p: &GemmParams, splits: usize) -> Vec<Launch> {
    let mut plan = vec![tiled("gemm", u(p.m), u(p.n), GEMM_BM, splits)];
    if splits > 1 {
        plan.extend(grid_1d("gemm_splitk_reduce", u(p.m) * u(p.n)));
    }
    plan
}
pub fn bias_forward(p: &BiasParams) -> Vec<Launch> {
    grid_1d("bias_forward", p.len())
}
/// Convolutions (inner > 1): blocks (channel, image slice) reduce, and when there are few channels the images
/// are split into slices (see bias_backward_with_splits). Linear layers (inner == 1): one thread per channel
/// walks the rows (coalesced across channels).
pub fn bias_backward(p: &BiasParams) -> Vec<Launch> {
    let (c, n, inner) = (u(p.c).max(1), u(p.n), u(p.inner));
    // Enough blocks to fill the GPU, each summing at least BIAS_MIN_SLICE elements.
    let splits = SPLIT_TARGET_BLOCKS.div_ceil(c).min((n * inner) / BIAS_MIN_SLICE).min(n).min(BIAS_SPLIT_CAP / c);
    bias_backward_with_splits(p, splits.max(1))
}
/// bias_backward with the images of each channel split into `splits` slices (> 1: bias_backward_reduce
/// follows; the caller keeps c * splits <= BIAS_SPLIT_CAP and splits <= 65535). Public for the tests.
pub fn bias_backward_with_splits(p: &BiasParams, splits: usize) -> Vec<Launch> {
    if p.inner <= 1 {
        return launch("bias_backward_rows", (u(p.c).div_ceil(128).max(1) as u32, 1, 1), 128);
    }
    let mut plan = launch("bias_backward", (u(p.c).max(1) as u32, splits.max(1) as u32, 1), BLOCK_1D);
    if splits > 1 {
        plan.extend(grid_1d("bias_backward_reduce", u(p.c)));
    }
    plan
}
pub fn relu_forward(p: &EltwiseParams) -> Vec<Launch> {
    grid_1d("relu_forward", u(p.len))
}
pub fn relu_backward(p: &EltwiseParams) -> Vec<Launch> {
    grid_1d("relu_backward", u(p.len))
}
pub fn softmax_xent(_p: &LossParams) -> Vec<Launch> {
    launch("softmax_xent", (1, 1, 1), LOSS_THREADS)
}
pub fn bce_logits(_p: &LossParams) -> Vec<Launch> {
    launch("bce_logits", (1, 1, 1), LOSS_THREADS)
}
pub fn accuracy_classes(_p: &LossParams) -> Vec<Launch> {
    launch("accuracy_classes", (1, 1, 1), LOSS_THREADS)
}
/// One thread per attribute.
pub fn accuracy_binary(p: &LossParams) -> Vec<Launch> {
    launch("accuracy_binary", (u(p.k).div_ceil(64).max(1) as u32, 1, 1), 64)
}
pub fn sgd_step(p: &SgdParams) -> Vec<Launch> {
    grid_1d("sgd_step", u(p.len))
}
pub fn adam_step(p: &AdamParams) -> Vec<Launch> {
    grid_1d("adam_step", u(p.len))
}
pub fn fill(p: &FillParams) -> Vec<Launch> {
    grid_1d("fill", u(p.len))
}

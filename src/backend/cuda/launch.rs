//! Launch plans: which kernel function(s) of `kernels/*.cu` an op runs, with which grid, block and shared
//! memory. Shared by the CUDA backend and by the CPU emulation tests (tests/emu_kernels.rs), so both launch the
//! kernels the same way. Every launch of an op receives the op's full argument list (params by value, then the
//! pointers in the trait's order). The tile sizes here must match the `#define`s of the kernel files.

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

use crate::backend::*;

/// Threads per block of the elementwise (grid-stride) plans.
pub const BLOCK_1D: u32 = 256;
/// Grid cap of the grid-stride plans (132 SMs x 16 resident blocks of 256 threads is far below it).
const MAX_BLOCKS_1D: usize = 8192;
/// Threads of the single-block loss and accuracy kernels (a multiple of 32: one warp per row).
pub const LOSS_THREADS: u32 = 512;

/// Tile of the GEMM and implicit-GEMM conv kernels (GEMM_BM/BN and CONV_BM/BN in the .cu files) and its
/// thread count ((BM/TM) * (BN/TN)).
const TILE_BM: usize = 64;
const TILE_BN: usize = 64;
const TILE_THREADS: u32 = 256;

fn launch(func: &'static str, grid: (u32, u32, u32), block: u32) -> Vec<Launch> {
    vec![Launch { func, grid, block: (block, 1, 1), shared_bytes: 0 }]
}

/// Grid-stride elementwise plan over `len` elements.
fn grid_1d(func: &'static str, len: usize) -> Vec<Launch> {
    let blocks = len.div_ceil(BLOCK_1D as usize).clamp(1, MAX_BLOCKS_1D) as u32;
    launch(func, (blocks, 1, 1), BLOCK_1D)
}

/// Tiled plan for an (M x N) output: grid.x over N (may be large: n*h*w), grid.y over M (channels).
fn tiled(func: &'static str, m: usize, n: usize) -> Vec<Launch> {
    let gx = n.div_ceil(TILE_BN).max(1) as u32;
    let gy = m.div_ceil(TILE_BM).max(1) as u32;
    launch(func, (gx, gy, 1), TILE_THREADS)
}

fn u(v: i32) -> usize {
    v.max(0) as usize
}

// One function per op, named like the op; each returns the launches in order.

/// GEMM M = c_out, N = n*h_out*w_out.
pub fn conv2d_forward(p: &Conv2dParams) -> Vec<Launch> {
    tiled("conv2d_forward", u(p.c_out), u(p.n) * u(p.h_out) * u(p.w_out))
}
/// GEMM M = c_in, N = n*h*w.
pub fn conv2d_backward_data(p: &Conv2dParams) -> Vec<Launch> {
    tiled("conv2d_backward_data", u(p.c_in), u(p.n) * u(p.h) * u(p.w))
}
/// GEMM M = c_out, N = c_in*kh*kw (the reduction over n*h_out*w_out stays inside each block).
pub fn conv2d_backward_filter(p: &Conv2dParams) -> Vec<Launch> {
    tiled("conv2d_backward_filter", u(p.c_out), u(p.c_in) * u(p.kh) * u(p.kw))
}
pub fn maxpool2d_forward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("maxpool2d_forward", p.y_len())
}
pub fn maxpool2d_backward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("maxpool2d_backward", p.x_len())
}
pub fn avgpool2d_forward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("avgpool2d_forward", p.y_len())
}
pub fn avgpool2d_backward(p: &Pool2dParams) -> Vec<Launch> {
    grid_1d("avgpool2d_backward", p.x_len())
}
pub fn gemm(p: &GemmParams) -> Vec<Launch> {
    tiled("gemm", u(p.m), u(p.n))
}
pub fn bias_forward(p: &BiasParams) -> Vec<Launch> {
    grid_1d("bias_forward", p.len())
}
/// Convolutions (inner > 1): one block per channel reduces it. Linear layers (inner == 1): one thread per
/// channel walks the rows (coalesced across channels).
pub fn bias_backward(p: &BiasParams) -> Vec<Launch> {
    if p.inner <= 1 {
        launch("bias_backward_rows", (u(p.c).div_ceil(128).max(1) as u32, 1, 1), 128)
    } else {
        launch("bias_backward", (u(p.c).max(1) as u32, 1, 1), BLOCK_1D)
    }
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

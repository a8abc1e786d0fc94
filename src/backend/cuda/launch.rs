//! Launch plans: which kernel function(s) of `kernels/*.cu` an op runs, with which grid, block and shared
//! memory. Shared by the CUDA backend and by the CPU emulation tests, so both launch the kernels the same way.
//! Every launch of an op receives the op's full argument list (params by value, then the pointers in the
//! trait's order).

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

/// Threads per block of the simple 1-D plans.
pub const BLOCK_1D: u32 = 256;

fn grid_1d(len: usize) -> Launch {
    let blocks = len.div_ceil(BLOCK_1D as usize).max(1) as u32;
    Launch { func: "", grid: (blocks, 1, 1), block: (BLOCK_1D, 1, 1), shared_bytes: 0 }
}

fn one(func: &'static str, mut l: Launch) -> Vec<Launch> {
    l.func = func;
    vec![l]
}

// One function per op, named like the op; each returns the launches in order. These are the starting
// plans (one thread per output element); the kernel files refine them together with the kernels.

pub fn conv2d_forward(p: &Conv2dParams) -> Vec<Launch> {
    one("conv2d_forward", grid_1d(p.y_len()))
}
pub fn conv2d_backward_data(p: &Conv2dParams) -> Vec<Launch> {
    one("conv2d_backward_data", grid_1d(p.x_len()))
}
pub fn conv2d_backward_filter(p: &Conv2dParams) -> Vec<Launch> {
    one("conv2d_backward_filter", grid_1d(p.w_len()))
}
pub fn maxpool2d_forward(p: &Pool2dParams) -> Vec<Launch> {
    one("maxpool2d_forward", grid_1d(p.y_len()))
}
pub fn maxpool2d_backward(p: &Pool2dParams) -> Vec<Launch> {
    one("maxpool2d_backward", grid_1d(p.x_len()))
}
pub fn avgpool2d_forward(p: &Pool2dParams) -> Vec<Launch> {
    one("avgpool2d_forward", grid_1d(p.y_len()))
}
pub fn avgpool2d_backward(p: &Pool2dParams) -> Vec<Launch> {
    one("avgpool2d_backward", grid_1d(p.x_len()))
}
pub fn gemm(p: &GemmParams) -> Vec<Launch> {
    one("gemm", grid_1d((p.m * p.n) as usize))
}
pub fn bias_forward(p: &BiasParams) -> Vec<Launch> {
    one("bias_forward", grid_1d(p.len()))
}
pub fn bias_backward(p: &BiasParams) -> Vec<Launch> {
    one("bias_backward", Launch { func: "", grid: (p.c as u32, 1, 1), block: (BLOCK_1D, 1, 1), shared_bytes: 0 })
}
pub fn relu_forward(p: &EltwiseParams) -> Vec<Launch> {
    one("relu_forward", grid_1d(p.len as usize))
}
pub fn relu_backward(p: &EltwiseParams) -> Vec<Launch> {
    one("relu_backward", grid_1d(p.len as usize))
}
pub fn softmax_xent(_p: &LossParams) -> Vec<Launch> {
    one("softmax_xent", Launch { func: "", grid: (1, 1, 1), block: (BLOCK_1D, 1, 1), shared_bytes: 0 })
}
pub fn bce_logits(_p: &LossParams) -> Vec<Launch> {
    one("bce_logits", Launch { func: "", grid: (1, 1, 1), block: (BLOCK_1D, 1, 1), shared_bytes: 0 })
}
pub fn accuracy_classes(_p: &LossParams) -> Vec<Launch> {
    one("accuracy_classes", Launch { func: "", grid: (1, 1, 1), block: (BLOCK_1D, 1, 1), shared_bytes: 0 })
}
pub fn accuracy_binary(p: &LossParams) -> Vec<Launch> {
    one("accuracy_binary", Launch { func: "", grid: (p.k.max(1) as u32, 1, 1), block: (BLOCK_1D, 1, 1), shared_bytes: 0 })
}
pub fn sgd_step(p: &SgdParams) -> Vec<Launch> {
    one("sgd_step", grid_1d(p.len as usize))
}
pub fn adam_step(p: &AdamParams) -> Vec<Launch> {
    one("adam_step", grid_1d(p.len as usize))
}
pub fn fill(p: &FillParams) -> Vec<Launch> {
    one("fill", grid_1d(p.len as usize))
}

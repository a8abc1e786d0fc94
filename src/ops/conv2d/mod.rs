//! 2-D convolution, NCHW, weights `[c_out, c_in, kh, kw]`, zero padding, any stride, no bias (`bias_forward`
//! adds it): forward, backward-data and backward-filter. CPU: im2col + the `gemm` crate (cpu.rs); GPU: implicit
//! GEMM on the tiled core of kernels/common.cuh (conv2d.cu, plans in cuda.rs).

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// Convolution, NCHW, weights [c_out, c_in, kh, kw]. h_out = (h + 2*pad_h - kh) / stride_h + 1, same for w.
    #[derive(Eq)]
    pub struct Conv2dParams {
        pub n: i32,
        pub c_in: i32,
        pub h: i32,
        pub w: i32,
        pub c_out: i32,
        pub kh: i32,
        pub kw: i32,
        pub pad_h: i32,
        pub pad_w: i32,
        pub stride_h: i32,
        pub stride_w: i32,
        pub h_out: i32,
        pub w_out: i32,
    }
}

cuda_const! {
    /// Output tile width of the implicit-GEMM kernels (N direction); the tile height (BM) is picked per launch.
    pub const CONV_BN: usize = 128;
    /// Capacity of backward-filter's split-K scratch `conv_partial` in floats: 16 MB of device memory.
    pub const CONV_SPLIT_CAP: usize = 1 << 22;
}

impl Conv2dParams {
    /// Stride 1 convolution with the given padding; output size derived.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kh: usize,
        kw: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> Self {
        Self::strided(n, c_in, h, w, c_out, kh, kw, pad_h, pad_w, 1, 1)
    }
    #[allow(clippy::too_many_arguments)]
    pub fn strided(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kh: usize,
        kw: usize,
        pad_h: usize,
        pad_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> Self {
        let h_out = (h + 2 * pad_h - kh) / stride_h + 1;
        let w_out = (w + 2 * pad_w - kw) / stride_w + 1;
        let i = |v: usize| v as i32;
        Conv2dParams {
            n: i(n),
            c_in: i(c_in),
            h: i(h),
            w: i(w),
            c_out: i(c_out),
            kh: i(kh),
            kw: i(kw),
            pad_h: i(pad_h),
            pad_w: i(pad_w),
            stride_h: i(stride_h),
            stride_w: i(stride_w),
            h_out: i(h_out),
            w_out: i(w_out),
        }
    }
    pub fn x_len(&self) -> usize {
        (self.n * self.c_in * self.h * self.w) as usize
    }
    pub fn w_len(&self) -> usize {
        (self.c_out * self.c_in * self.kh * self.kw) as usize
    }
    pub fn y_len(&self) -> usize {
        (self.n * self.c_out * self.h_out * self.w_out) as usize
    }
    /// Multiply-adds x2 of the forward pass (each backward pass costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * self.y_len() as f64 * (self.c_in * self.kh * self.kw) as f64
    }
}

/// The convolution kernels.
pub trait Conv2dOps: Device {
    /// y[n, c_out, h_out, w_out] = sum_{ci,ky,kx} x[n, ci, oy*sh - ph + ky, ox*sw - pw + kx] * w[co, ci, ky, kx]
    /// (zero padding; no bias: `bias_forward` adds it).
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: Self::View<'_>,
        w: Self::View<'_>,
        y: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// dx[n, c_in, h, w] = gradient of the above w.r.t. x, given dy [n, c_out, h_out, w_out]. Overwrites dx.
    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: Self::View<'_>,
        w: Self::View<'_>,
        dx: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// dw[c_out, c_in, kh, kw] = gradient w.r.t. w, given x and dy. Overwrites dw.
    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: Self::View<'_>,
        dy: Self::View<'_>,
        dw: Self::ViewMut<'_>,
    ) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["conv2d_forward", "conv2d_backward_data", "conv2d_backward_filter"];

/// One convolution call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Conv2dCall {
    Forward(Conv2dParams),
    BackwardData(Conv2dParams),
    BackwardFilter(Conv2dParams),
}

impl Conv2dCall {
    fn params(&self) -> &Conv2dParams {
        match self {
            Conv2dCall::Forward(p) | Conv2dCall::BackwardData(p) | Conv2dCall::BackwardFilter(p) => p,
        }
    }
}

impl CallInfo for Conv2dCall {
    fn kernel(&self) -> &'static str {
        match self {
            Conv2dCall::Forward(_) => KERNELS[0],
            Conv2dCall::BackwardData(_) => KERNELS[1],
            Conv2dCall::BackwardFilter(_) => KERNELS[2],
        }
    }
    fn shape(&self) -> String {
        let p = self.params();
        format!(
            "n{} c{} {}x{} -> c{} k{}x{} p{},{} s{},{}",
            p.n, p.c_in, p.h, p.w, p.c_out, p.kh, p.kw, p.pad_h, p.pad_w, p.stride_h, p.stride_w
        )
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        let p_ = Init::Poison;
        match *self {
            Conv2dCall::Forward(p) => {
                (vec![sp("x", p.x_len(), In, U), sp("w", p.w_len(), In, U), sp("y", p.y_len(), Out, p_)], vec![])
            }
            Conv2dCall::BackwardData(p) => {
                (vec![sp("dy", p.y_len(), In, U), sp("w", p.w_len(), In, U), sp("dx", p.x_len(), Out, p_)], vec![])
            }
            Conv2dCall::BackwardFilter(p) => {
                (vec![sp("x", p.x_len(), In, U), sp("dy", p.y_len(), In, U), sp("dw", p.w_len(), Out, p_)], vec![])
            }
        }
    }
    fn flops(&self) -> Option<f64> {
        Some(self.params().flops())
    }
    fn tolerance(&self) -> f64 {
        1e-4
    }
}

impl KernelCall for Conv2dCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (self, f, i) {
            (Conv2dCall::Forward(p), [x, w, y], []) => b.conv2d_forward(p, b.view(x), b.view(w), b.view_mut(y)),
            (Conv2dCall::BackwardData(p), [dy, w, dx], []) => {
                b.conv2d_backward_data(p, b.view(dy), b.view(w), b.view_mut(dx))
            }
            (Conv2dCall::BackwardFilter(p), [x, dy, dw], []) => {
                b.conv2d_backward_filter(p, b.view(x), b.view(dy), b.view_mut(dw))
            }
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward convolutions: 3 and 27 channels, sizes that are no tile multiple, batch 1, 1x5 kernels,
/// stride 2, 1x1, a 5x5 kernel over a 5x6 input; every one forward, backward-data and backward-filter.
pub fn awkward_calls() -> Vec<Conv2dCall> {
    let convs = [
        Conv2dParams::new(7, 3, 13, 17, 5, 3, 3, 1, 1),
        Conv2dParams::new(1, 27, 1, 37, 9, 1, 5, 0, 2),
        Conv2dParams::new(3, 27, 1, 250, 64, 1, 5, 0, 2),
        Conv2dParams::strided(3, 5, 11, 9, 6, 3, 3, 1, 1, 2, 2),
        Conv2dParams::strided(2, 27, 1, 61, 13, 1, 5, 0, 2, 1, 2),
        Conv2dParams::new(5, 7, 3, 3, 33, 1, 1, 0, 0),
        Conv2dParams::new(2, 3, 5, 6, 4, 5, 5, 0, 0),
    ];
    let calls = |c| [Conv2dCall::Forward(c), Conv2dCall::BackwardData(c), Conv2dCall::BackwardFilter(c)];
    convs.into_iter().flat_map(calls).collect()
}

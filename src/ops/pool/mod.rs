//! Max and average pooling, NCHW, no padding, floor mode: forward and backward. CPU: parallel over planes
//! (cpu.rs); GPU: one thread per output (or input) element (pool.cu, plans in cuda.rs).

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// Pooling, NCHW, no padding, floor mode: h_out = (h - kh) / stride_h + 1.
    #[derive(Eq)]
    pub struct Pool2dParams {
        pub n: i32,
        pub c: i32,
        pub h: i32,
        pub w: i32,
        pub kh: i32,
        pub kw: i32,
        pub stride_h: i32,
        pub stride_w: i32,
        pub h_out: i32,
        pub w_out: i32,
    }
}

impl Pool2dParams {
    /// Window = stride (the protocol's pooling).
    pub fn new(n: usize, c: usize, h: usize, w: usize, kh: usize, kw: usize) -> Self {
        let i = |v: usize| v as i32;
        Pool2dParams {
            n: i(n),
            c: i(c),
            h: i(h),
            w: i(w),
            kh: i(kh),
            kw: i(kw),
            stride_h: i(kh),
            stride_w: i(kw),
            h_out: i((h - kh) / kh + 1),
            w_out: i((w - kw) / kw + 1),
        }
    }
    pub fn x_len(&self) -> usize {
        (self.n * self.c * self.h * self.w) as usize
    }
    pub fn y_len(&self) -> usize {
        (self.n * self.c * self.h_out * self.w_out) as usize
    }
}

/// The pooling kernels.
pub trait PoolOps: Device {
    /// Max pooling (no padding, floor mode). `idx[n, c, h_out, w_out]` receives the flat index (into one
    /// `h*w` plane) of the chosen element; ties pick the first in row-major window order (PyTorch's rule).
    fn maxpool2d_forward(
        &self,
        p: &Pool2dParams,
        x: Self::View<'_>,
        y: Self::ViewMut<'_>,
        idx: &mut Self::IBuf,
    ) -> Result<()>;
    /// dx = scatter of dy through idx. Overwrites all of dx (zeros where nothing was chosen).
    fn maxpool2d_backward(
        &self,
        p: &Pool2dParams,
        dy: Self::View<'_>,
        idx: &Self::IBuf,
        dx: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Average pooling (no padding, floor mode, divisor kh*kw).
    fn avgpool2d_forward(&self, p: &Pool2dParams, x: Self::View<'_>, y: Self::ViewMut<'_>) -> Result<()>;
    /// Overwrites all of dx.
    fn avgpool2d_backward(&self, p: &Pool2dParams, dy: Self::View<'_>, dx: Self::ViewMut<'_>) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"];

/// One pooling call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolCall {
    MaxForward(Pool2dParams),
    MaxBackward(Pool2dParams),
    AvgForward(Pool2dParams),
    AvgBackward(Pool2dParams),
}

impl PoolCall {
    fn params(&self) -> &Pool2dParams {
        match self {
            PoolCall::MaxForward(p) | PoolCall::MaxBackward(p) | PoolCall::AvgForward(p) | PoolCall::AvgBackward(p) => {
                p
            }
        }
    }
}

impl CallInfo for PoolCall {
    fn kernel(&self) -> &'static str {
        match self {
            PoolCall::MaxForward(_) => KERNELS[0],
            PoolCall::MaxBackward(_) => KERNELS[1],
            PoolCall::AvgForward(_) => KERNELS[2],
            PoolCall::AvgBackward(_) => KERNELS[3],
        }
    }
    fn shape(&self) -> String {
        let p = self.params();
        format!("n{} c{} {}x{} k{}x{} s{},{}", p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride_h, p.stride_w)
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        let p_ = Init::Poison;
        match *self {
            PoolCall::MaxForward(p) => {
                (vec![sp("x", p.x_len(), In, U), sp("y", p.y_len(), Out, p_)], vec![sp("idx", p.y_len(), Out, p_)])
            }
            PoolCall::MaxBackward(p) => (
                vec![sp("dy", p.y_len(), In, U), sp("dx", p.x_len(), Out, p_)],
                vec![sp("idx", p.y_len(), In, Init::PoolIdx(p))],
            ),
            PoolCall::AvgForward(p) => (vec![sp("x", p.x_len(), In, U), sp("y", p.y_len(), Out, p_)], vec![]),
            PoolCall::AvgBackward(p) => (vec![sp("dy", p.y_len(), In, U), sp("dx", p.x_len(), Out, p_)], vec![]),
        }
    }
    fn tolerance(&self) -> f64 {
        1e-5
    }
}

impl KernelCall for PoolCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (self, f, i) {
            (PoolCall::MaxForward(p), [x, y], [idx]) => b.maxpool2d_forward(p, b.view(x), b.view_mut(y), idx),
            (PoolCall::MaxBackward(p), [dy, dx], [idx]) => b.maxpool2d_backward(p, b.view(dy), idx, b.view_mut(dx)),
            (PoolCall::AvgForward(p), [x, y], []) => b.avgpool2d_forward(p, b.view(x), b.view_mut(y)),
            (PoolCall::AvgBackward(p), [dy, dx], []) => b.avgpool2d_backward(p, b.view(dy), b.view_mut(dx)),
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward pools: odd sizes (floor mode), 27 channels 1x2, 3x3 windows; max and avg, both ways.
pub fn awkward_calls() -> Vec<PoolCall> {
    let pools = [(3, 5, 7, 9, 2, 2), (2, 27, 1, 37, 1, 2), (2, 3, 10, 11, 3, 3)];
    let calls = |(n, c, h, w, kh, kw)| {
        let p = Pool2dParams::new(n, c, h, w, kh, kw);
        [PoolCall::MaxForward(p), PoolCall::MaxBackward(p), PoolCall::AvgForward(p), PoolCall::AvgBackward(p)]
    };
    pools.into_iter().flat_map(calls).collect()
}

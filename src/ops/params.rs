//! `#[repr(C)]` parameter structs, one per op family. Each has a twin of the same name, field order and
//! types in `kernels/common.cuh`; kernels take them by value as their first argument.
//! Integers are i32 (CUDA-side `int`), reals f32.

use bytemuck::{Pod, Zeroable};

/// Convolution, NCHW, weights [c_out, c_in, kh, kw]. h_out = (h + 2*pad_h - kh) / stride_h + 1, same for w.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
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

impl Conv2dParams {
    /// Stride 1 convolution with the given padding; output size derived.
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

/// Pooling, NCHW, no padding, floor mode: h_out = (h - kh) / stride_h + 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
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

/// Row-major GEMM: c[m, n] = alpha * op(a)[m, k] * op(b)[k, n] + beta * c.
/// trans_a != 0: a is stored [k, m]; trans_b != 0: b is stored [n, k].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct GemmParams {
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub trans_a: i32,
    pub trans_b: i32,
    pub alpha: f32,
    pub beta: f32,
}

impl GemmParams {
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
        GemmParams {
            m: m as i32,
            n: n as i32,
            k: k as i32,
            trans_a: trans_a as i32,
            trans_b: trans_b as i32,
            alpha: 1.0,
            beta: 0.0,
        }
    }
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Bias over [n, c, inner] (inner = h*w for convolutions, 1 for linear layers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BiasParams {
    pub n: i32,
    pub c: i32,
    pub inner: i32,
}

impl BiasParams {
    pub fn new(n: usize, c: usize, inner: usize) -> Self {
        BiasParams { n: n as i32, c: c as i32, inner: inner as i32 }
    }
    pub fn len(&self) -> usize {
        (self.n * self.c * self.inner) as usize
    }
}

/// Elementwise ops over `len` elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EltwiseParams {
    pub len: i32,
}

impl EltwiseParams {
    pub fn new(len: usize) -> Self {
        EltwiseParams { len: len as i32 }
    }
}

/// Losses and accuracies over logits [n, k].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LossParams {
    pub n: i32,
    pub k: i32,
}

impl LossParams {
    pub fn new(n: usize, k: usize) -> Self {
        LossParams { n: n as i32, k: k as i32 }
    }
}

/// SGD with momentum (dampening 0) and coupled weight decay over `len` parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct SgdParams {
    pub len: i32,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Adam over `len` parameters; bias_correction1 = 1 - beta1^t and bias_correction2 = 1 - beta2^t are
/// computed on the host for step t (1-based).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct AdamParams {
    pub len: i32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

impl AdamParams {
    /// PyTorch's defaults (betas 0.9/0.999, eps 1e-8) at step `t` (1-based).
    pub fn at_step(len: usize, lr: f32, weight_decay: f32, t: u64) -> Self {
        let (b1, b2) = (0.9f32, 0.999f32);
        AdamParams {
            len: len as i32,
            lr,
            beta1: b1,
            beta2: b2,
            eps: 1e-8,
            weight_decay,
            bias_correction1: 1.0 - (b1 as f64).powi(t as i32) as f32,
            bias_correction2: 1.0 - (b2 as f64).powi(t as i32) as f32,
        }
    }
}

/// Fill `len` elements with `value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct FillParams {
    pub len: i32,
    pub value: f32,
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Sizes must match `kernels/common.cuh` (all fields 4 bytes, no padding).
    #[test]
    fn param_struct_sizes_match_the_cuda_twins() {
        assert_eq!(std::mem::size_of::<Conv2dParams>(), 13 * 4);
        assert_eq!(std::mem::size_of::<Pool2dParams>(), 10 * 4);
        assert_eq!(std::mem::size_of::<GemmParams>(), 7 * 4);
        assert_eq!(std::mem::size_of::<BiasParams>(), 3 * 4);
        assert_eq!(std::mem::size_of::<EltwiseParams>(), 4);
        assert_eq!(std::mem::size_of::<LossParams>(), 2 * 4);
        assert_eq!(std::mem::size_of::<SgdParams>(), 4 * 4);
        assert_eq!(std::mem::size_of::<AdamParams>(), 8 * 4);
        assert_eq!(std::mem::size_of::<FillParams>(), 2 * 4);
        let c = Conv2dParams::new(2, 27, 1, 256, 64, 1, 5, 0, 2);
        assert_eq!((c.h_out, c.w_out), (1, 256));
        let p = Pool2dParams::new(2, 64, 1, 256, 1, 2);
        assert_eq!((p.h_out, p.w_out), (1, 128));
    }
}

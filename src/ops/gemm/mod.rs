//! Row-major FP32 GEMM with all four transposes, alpha and beta: the linear layers. CPU: the `gemm` crate
//! (cpu.rs, whose strided `matmul` the CPU convolutions lower to); GPU: tiled, split over K when the output is
//! small (gemm.cu, plan in cuda.rs).

pub mod cpu;
pub mod cuda;
#[cfg(test)]
mod tests;

use crate::ops::check::{bad_buffers, sp, Buffers, CallInfo, Init, KernelCall, Role, U};
use crate::ops::{Backend, Device};
use anyhow::Result;

cuda_struct! {
    /// Row-major GEMM: c[m, n] = alpha * op(a)[m, k] * op(b)[k, n] + beta * c.
    /// trans_a != 0: a is stored [k, m]; trans_b != 0: b is stored [n, k].
    pub struct GemmParams {
        pub m: i32,
        pub n: i32,
        pub k: i32,
        pub trans_a: i32,
        pub trans_b: i32,
        pub alpha: f32,
        pub beta: f32,
    }
}

cuda_const! {
    /// Output tile of the GEMM kernel: GEMM_BM rows x GEMM_BN columns.
    pub const GEMM_BM: usize = 64;
    pub const GEMM_BN: usize = 128;
    /// Capacity of the split-K scratch `gemm_partial` in floats: 16 MB of device memory.
    pub const GEMM_SPLIT_CAP: usize = 1 << 22;
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

/// The GEMM kernel.
pub trait GemmOps: Device {
    /// c[m, n] = alpha * op(a) * op(b) + beta * c, row-major; op(a) is [m, k] (a stored [m, k], or [k, m]
    /// when trans_a), op(b) is [k, n] (b stored [k, n], or [n, k] when trans_b). beta = 0 ignores c's
    /// old contents (NaN included).
    fn gemm(&self, p: &GemmParams, a: Self::View<'_>, b: Self::View<'_>, c: Self::ViewMut<'_>) -> Result<()>;
}

/// The kernels of this family, by name.
pub const KERNELS: &[&str] = &["gemm"];

/// One GEMM call (for `check` and `bench kernels`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmCall(pub GemmParams);

impl CallInfo for GemmCall {
    fn kernel(&self) -> &'static str {
        KERNELS[0]
    }
    fn shape(&self) -> String {
        let p = &self.0;
        format!(
            "m{} n{} k{} {}{} a{} b{}",
            p.m,
            p.n,
            p.k,
            if p.trans_a != 0 { "T" } else { "N" },
            if p.trans_b != 0 { "T" } else { "N" },
            p.alpha,
            p.beta
        )
    }
    fn buffers(&self) -> Buffers {
        use Role::*;
        let p = self.0;
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let c = if p.beta == 0.0 { sp("c", m * n, Out, Init::Poison) } else { sp("c", m * n, InOut, U) };
        (vec![sp("a", m * k, In, U), sp("b", k * n, In, U), c], vec![])
    }
    fn flops(&self) -> Option<f64> {
        Some(self.0.flops())
    }
    fn tolerance(&self) -> f64 {
        1e-4
    }
}

impl KernelCall for GemmCall {
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        match (f, i) {
            ([a, bb, c], []) => b.gemm(&self.0, b.view(a), b.view(bb), b.view_mut(c)),
            _ => Err(bad_buffers(self.kernel())),
        }
    }
}

/// `check`'s awkward GEMMs: 1x1x1 to 128x257x31, every transpose, and two with alpha / beta.
pub fn awkward_calls() -> Vec<GemmCall> {
    let mut out = Vec::new();
    for (m, n, k) in [(1, 1, 1), (7, 13, 29), (65, 33, 129), (128, 257, 31), (3, 300, 1)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            out.push(GemmCall(GemmParams::new(m, n, k, ta, tb)));
        }
    }
    out.push(GemmCall(GemmParams { alpha: 0.5, beta: 0.25, ..GemmParams::new(37, 19, 53, false, true) }));
    out.push(GemmCall(GemmParams { alpha: -1.5, beta: 1.0, ..GemmParams::new(64, 64, 64, true, false) }));
    out
}

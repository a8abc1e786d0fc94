//! GEMM on the CPU (the `gemm` crate): the strided `matmul` the convolutions lower to, and the op.
use crate::ops::cpu::{check_len, dim, Float};
use crate::ops::GemmParams;
use anyhow::{ensure, Result};
use gemm::Parallelism;

/// A strided matrix view: element (i, j) at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

/// Highest index touched by a `rows` x `cols` matrix with strides (rs, cs), plus one; 0 if empty.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// c[m, n] = alpha * a[m, k] * b[k, n] + beta * c (c row-major with row stride `c_rs`, column stride 1);
/// `beta == 0` never reads c. Bounds are checked here, so callers pass any strides.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: &mut [T],
    c_rs: usize,
    par: Parallelism,
) -> Result<()> {
    ensure!(
        extent(m, k, a.rs, a.cs) <= a.data.len()
            && extent(k, n, b.rs, b.cs) <= b.data.len()
            && extent(m, n, c_rs, 1) <= c.len(),
        "cpu matmul: operand out of bounds (m {m}, n {n}, k {k}; a {} b {} c {})",
        a.data.len(),
        b.data.len(),
        c.len()
    );
    if m == 0 || n == 0 {
        return Ok(());
    }
    let read_dst = beta != T::ZERO;
    // SAFETY: the extents checked above keep every index the gemm crate forms from (rows, cols, strides)
    // inside the slices; `c` is a unique borrow so it aliases neither `a` nor `b`; T is f32 or f64, both
    // supported by `gemm::gemm` (it computes dst = alpha_g * dst + beta_g * lhs * rhs, hence the swap).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            read_dst,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// The `Backend::gemm` op: c[m, n] = alpha * op(a) * op(b) + beta * c, row-major; a stored [m, k] (or [k, m]
/// when trans_a), b stored [k, n] (or [n, k] when trans_b), c [m, n]. beta = 0 ignores c (NaN included).
pub fn gemm<T: Float>(p: &GemmParams, a: &[T], b: &[T], c: &mut [T]) -> Result<()> {
    const OP: &str = "gemm";
    let m = dim(OP, "m", p.m, 0)?;
    let n = dim(OP, "n", p.n, 0)?;
    let k = dim(OP, "k", p.k, 0)?;
    check_len(OP, "a", a.len(), m * k, "m*k")?;
    check_len(OP, "b", b.len(), k * n, "k*n")?;
    check_len(OP, "c", c.len(), m * n, "m*n")?;
    let a = if p.trans_a != 0 { MatRef { data: a, rs: 1, cs: m } } else { MatRef { data: a, rs: k, cs: 1 } };
    let b = if p.trans_b != 0 { MatRef { data: b, rs: 1, cs: k } } else { MatRef { data: b, rs: n, cs: 1 } };
    let (alpha, beta) = (T::from_f32(p.alpha), T::from_f32(p.beta));
    matmul(m, n, k, alpha, a, b, beta, c, n, Parallelism::Rayon(0))
}

impl crate::ops::GemmOps for crate::ops::cpu::CpuBackend {
    fn gemm(&self, p: &GemmParams, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        self.timed("gemm", || gemm(p, a, b, c))
    }
}

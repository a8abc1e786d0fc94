//! GEMM on the CPU (the `gemm` crate), plus what every CPU op file shares: the `Float` trait that makes each
//! op generic over f32 (the backend) and f64 (the finite-difference tests), per-thread scratch buffers reused
//! across calls, length checks that name the op, and the chunked-parallel helper.
use crate::ops::GemmParams;
use anyhow::{ensure, Result};
use gemm::Parallelism;
use std::cell::RefCell;
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// The element type of the CPU ops: f32 in the backend, f64 in the gradient checks.
pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn from_usize(v: usize) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn max(self, other: Self) -> Self;
    fn is_nan(self) -> bool;
    /// Run `f` on this thread's scratch buffer number `slot` (< `SCRATCH_SLOTS`), grown to at least `len`
    /// elements and kept for the next call (contents are stale: callers overwrite what they read). If the slot
    /// is already borrowed on this thread (re-entrance through rayon work stealing), a temporary buffer is used.
    fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

/// Scratch slots per thread: `OUTER` for buffers a caller splits across its parallel tasks, `INNER` for the
/// buffer one task uses (so a caller that runs its own tasks never borrows one slot twice).
pub const SCRATCH_SLOTS: usize = 2;
pub const OUTER: usize = 0;
pub const INNER: usize = 1;

macro_rules! impl_float {
    ($t:ty, $tls:ident) => {
        thread_local! {
            static $tls: [RefCell<Vec<$t>>; SCRATCH_SLOTS] =
                const { [RefCell::new(Vec::new()), RefCell::new(Vec::new())] };
        }
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                $tls.with(|slots| match slots[slot].try_borrow_mut() {
                    Ok(mut v) => {
                        if v.len() < len {
                            v.resize(len, 0.0);
                        }
                        f(&mut v[..len])
                    }
                    Err(_) => f(&mut vec![0.0; len]),
                })
            }
        }
    };
}
impl_float!(f32, SCRATCH_F32);
impl_float!(f64, SCRATCH_F64);

/// Elements per parallel task of the elementwise ops; inputs up to this size run inline on the caller.
pub const CHUNK: usize = 1 << 14;

/// `Err` unless `got == want`, naming the op, the buffer and the formula behind `want`.
pub fn check_len(op: &str, buf: &str, got: usize, want: usize, formula: &str) -> Result<()> {
    ensure!(
        got == want,
        "cpu {op}: `{buf}` has {got} elements but the params give {formula} = {want}; pass a view of exactly \
         {want} elements (or fix the params)"
    );
    Ok(())
}

/// A param field as usize: `Err` naming the op and field if it is negative (or below `min`).
pub fn dim(op: &str, field: &str, v: i32, min: i32) -> Result<usize> {
    ensure!(v >= min, "cpu {op}: params field `{field}` is {v}; it must be >= {min}");
    Ok(v as usize)
}

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

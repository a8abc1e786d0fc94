//! What every CPU op shares: the `Float` trait that makes each op generic over f32 (the backend) and f64 (the
//! finite-difference tests), per-thread scratch buffers reused across calls, length checks that name the op,
//! and the size of the elementwise ops' parallel pieces.
use anyhow::{ensure, Result};
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

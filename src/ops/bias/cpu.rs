//! Bias on the CPU: parallel over CHUNK-sized pieces (inline below that), no allocation.
use crate::ops::cpu::{check_len, dim, Float, CHUNK};
use crate::ops::BiasParams;
use anyhow::Result;
use rayon::prelude::*;

fn bias_dims(op: &str, p: &BiasParams) -> Result<(usize, usize, usize)> {
    Ok((dim(op, "n", p.n, 0)?, dim(op, "c", p.c, 0)?, dim(op, "inner", p.inner, 0)?))
}

/// y [n, c, inner] += b [c] broadcast over n and inner.
pub fn bias_forward<T: Float>(p: &BiasParams, b: &[T], y: &mut [T]) -> Result<()> {
    const OP: &str = "bias_forward";
    let (n, c, inner) = bias_dims(OP, p)?;
    check_len(OP, "b", b.len(), c, "c")?;
    check_len(OP, "y", y.len(), n * c * inner, "n*c*inner")?;
    if y.is_empty() {
        return Ok(());
    }
    // One sample [c, inner] at a time; samples are grouped so each task has about CHUNK elements.
    let add = |y_n: &mut [T]| {
        for (row, &bc) in y_n.chunks_exact_mut(inner).zip(b) {
            for v in row {
                *v += bc;
            }
        }
    };
    let per = c * inner;
    if y.len() <= CHUNK {
        y.chunks_exact_mut(per).for_each(add);
    } else {
        y.par_chunks_mut(per).with_min_len((CHUNK / per).max(1)).for_each(add);
    }
    Ok(())
}

/// dy [n, c, inner] -> db [c] = sum over n and inner (overwritten). Parallel over channels; each channel is
/// summed in a fixed order, so the result does not depend on the thread count.
pub fn bias_backward<T: Float>(p: &BiasParams, dy: &[T], db: &mut [T]) -> Result<()> {
    const OP: &str = "bias_backward";
    let (n, c, inner) = bias_dims(OP, p)?;
    check_len(OP, "db", db.len(), c, "c")?;
    check_len(OP, "dy", dy.len(), n * c * inner, "n*c*inner")?;
    let sum_channel = |ch: usize, out: &mut T| {
        let mut acc = T::ZERO;
        for s in 0..n {
            let row = &dy[(s * c + ch) * inner..(s * c + ch + 1) * inner];
            let mut r = T::ZERO;
            for &v in row {
                r += v;
            }
            acc += r;
        }
        *out = acc;
    };
    if dy.len() <= CHUNK {
        db.iter_mut().enumerate().for_each(|(ch, o)| sum_channel(ch, o));
    } else {
        let min = (CHUNK / (n * inner).max(1)).max(1);
        db.par_iter_mut().enumerate().with_min_len(min).for_each(|(ch, o)| sum_channel(ch, o));
    }
    Ok(())
}

impl crate::ops::BiasOps for crate::ops::cpu::CpuBackend {
    fn bias_forward(&self, p: &BiasParams, b: &[f32], y: &mut [f32]) -> Result<()> {
        self.timed("bias_forward", || bias_forward(p, b, y))
    }
    fn bias_backward(&self, p: &BiasParams, dy: &[f32], db: &mut [f32]) -> Result<()> {
        self.timed("bias_backward", || bias_backward(p, dy, db))
    }
}

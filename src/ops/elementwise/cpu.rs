//! ReLU and fill on the CPU: parallel over CHUNK-sized pieces (inline below that), no allocation.
use crate::ops::cpu::{check_len, dim, Float, CHUNK};
use crate::ops::EltwiseParams;
use anyhow::Result;
use rayon::prelude::*;

/// x [len] = max(x, 0) in place.
pub fn relu_forward<T: Float>(p: &EltwiseParams, x: &mut [T]) -> Result<()> {
    const OP: &str = "relu_forward";
    check_len(OP, "x", x.len(), dim(OP, "len", p.len, 0)?, "len")?;
    let f = |s: &mut [T]| {
        // A select, not a conditional store, so the loop vectorises; `max` would turn NaN into 0 where
        // PyTorch's relu keeps NaN.
        for v in s {
            *v = if *v < T::ZERO { T::ZERO } else { *v };
        }
    };
    if x.len() <= CHUNK {
        f(x);
    } else {
        x.par_chunks_mut(CHUNK).for_each(f);
    }
    Ok(())
}

/// y [len] (the ReLU output), dy [len]: dy = dy * (y > 0) in place.
pub fn relu_backward<T: Float>(p: &EltwiseParams, y: &[T], dy: &mut [T]) -> Result<()> {
    const OP: &str = "relu_backward";
    let len = dim(OP, "len", p.len, 0)?;
    check_len(OP, "y", y.len(), len, "len")?;
    check_len(OP, "dy", dy.len(), len, "len")?;
    let f = |(g, y): (&mut [T], &[T])| {
        for (g, &y) in g.iter_mut().zip(y) {
            *g = if y > T::ZERO { *g } else { T::ZERO };
        }
    };
    if len <= CHUNK {
        f((dy, y));
    } else {
        dy.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(f);
    }
    Ok(())
}

impl crate::ops::ElementwiseOps for crate::ops::cpu::CpuBackend {
    fn relu_forward(&self, p: &EltwiseParams, x: &mut [f32]) -> Result<()> {
        self.timed("relu_forward", || relu_forward(p, x))
    }
    fn relu_backward(&self, p: &EltwiseParams, y: &[f32], dy: &mut [f32]) -> Result<()> {
        self.timed("relu_backward", || relu_backward(p, y, dy))
    }
    fn fill(&self, dst: &mut [f32], value: f32) -> Result<()> {
        self.timed("fill", || dst.fill(value));
        Ok(())
    }
}

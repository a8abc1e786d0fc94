//! SGD and Adam on the CPU: one fused pass over the flat parameter buffer, parallel over CHUNK-sized pieces.
use crate::ops::cpu::{check_len, dim, Float, CHUNK};
use crate::ops::{AdamParams, SgdParams};
use anyhow::Result;
use rayon::prelude::*;

/// w, grad, mom [len]: g = grad + wd*w; m = momentum*m + g; w -= lr * (momentum != 0 ? m : g) (PyTorch SGD,
/// dampening 0; m starting at 0 equals PyTorch's first-step buffer = g).
pub fn sgd_step<T: Float>(p: &SgdParams, w: &mut [T], grad: &[T], mom: &mut [T]) -> Result<()> {
    const OP: &str = "sgd_step";
    let len = dim(OP, "len", p.len, 0)?;
    check_len(OP, "w", w.len(), len, "len")?;
    check_len(OP, "grad", grad.len(), len, "len")?;
    check_len(OP, "mom", mom.len(), len, "len")?;
    let (lr, mu, wd) = (T::from_f32(p.lr), T::from_f32(p.momentum), T::from_f32(p.weight_decay));
    let use_m = p.momentum != 0.0;
    let f = |((w, g), m): ((&mut [T], &[T]), &mut [T])| {
        for ((w, &g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            let g = g + wd * *w;
            *m = mu * *m + g;
            *w -= lr * if use_m { *m } else { g };
        }
    };
    if len <= CHUNK {
        f(((w, grad), mom));
    } else {
        w.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(mom.par_chunks_mut(CHUNK)).for_each(f);
    }
    Ok(())
}

/// w, grad, m, v [len]: g = grad + wd*w; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) (PyTorch Adam, coupled weight decay).
pub fn adam_step<T: Float>(p: &AdamParams, w: &mut [T], grad: &[T], m: &mut [T], v: &mut [T]) -> Result<()> {
    const OP: &str = "adam_step";
    let len = dim(OP, "len", p.len, 0)?;
    check_len(OP, "w", w.len(), len, "len")?;
    check_len(OP, "grad", grad.len(), len, "len")?;
    check_len(OP, "m", m.len(), len, "len")?;
    check_len(OP, "v", v.len(), len, "len")?;
    anyhow::ensure!(
        p.bias_correction1 > 0.0 && p.bias_correction2 > 0.0,
        "cpu {OP}: bias corrections must be > 0 (got {} and {}); build the params with AdamParams::at_step, t >= 1",
        p.bias_correction1,
        p.bias_correction2
    );
    let f = |v: f32| T::from_f32(v);
    let (b1, b2, eps, wd) = (f(p.beta1), f(p.beta2), f(p.eps), f(p.weight_decay));
    let step = f(p.lr) / f(p.bias_correction1);
    let bc2_sqrt = f(p.bias_correction2).sqrt();
    let (one_b1, one_b2) = (T::ONE - b1, T::ONE - b2);
    type Slices<'a, T> = (((&'a mut [T], &'a [T]), &'a mut [T]), &'a mut [T]);
    let kernel = |(((w, g), m), v): Slices<'_, T>| {
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + wd * *w;
            *m = b1 * *m + one_b1 * g;
            *v = b2 * *v + one_b2 * g * g;
            *w -= step * *m / (v.sqrt() / bc2_sqrt + eps);
        }
    };
    if len <= CHUNK {
        kernel((((w, grad), m), v));
    } else {
        w.par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(kernel);
    }
    Ok(())
}

impl crate::ops::OptimOps for crate::ops::cpu::CpuBackend {
    fn sgd_step(&self, p: &SgdParams, w: &mut [f32], grad: &[f32], mom: &mut [f32]) -> Result<()> {
        self.timed("sgd_step", || sgd_step(p, w, grad, mom))
    }
    fn adam_step(&self, p: &AdamParams, w: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<()> {
        self.timed("adam_step", || adam_step(p, w, grad, m, v))
    }
}

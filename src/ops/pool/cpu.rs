//! max / avg pooling on the CPU (no padding, floor mode), parallel over (n, c) planes.
use crate::ops::cpu::{check_len, dim, Float, CHUNK};
use crate::ops::Pool2dParams;
use anyhow::{ensure, Result};
use rayon::prelude::*;

/// Validated pooling sizes (usize).
#[derive(Clone, Copy, Debug)]
struct Dims {
    planes: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ho: usize,
    wo: usize,
}

impl Dims {
    fn new(op: &str, p: &Pool2dParams) -> Result<Dims> {
        let n = dim(op, "n", p.n, 0)?;
        let c = dim(op, "c", p.c, 0)?;
        let d = Dims {
            planes: n * c,
            h: dim(op, "h", p.h, 1)?,
            w: dim(op, "w", p.w, 1)?,
            kh: dim(op, "kh", p.kh, 1)?,
            kw: dim(op, "kw", p.kw, 1)?,
            sh: dim(op, "stride_h", p.stride_h, 1)?,
            sw: dim(op, "stride_w", p.stride_w, 1)?,
            ho: dim(op, "h_out", p.h_out, 1)?,
            wo: dim(op, "w_out", p.w_out, 1)?,
        };
        ensure!(
            d.kh <= d.h && d.kw <= d.w,
            "cpu {op}: window {}x{} is larger than the input {}x{}",
            d.kh,
            d.kw,
            d.h,
            d.w
        );
        let (ho, wo) = ((d.h - d.kh) / d.sh + 1, (d.w - d.kw) / d.sw + 1);
        ensure!(
            (d.ho, d.wo) == (ho, wo),
            "cpu {op}: params say h_out x w_out = {}x{} but (h - k) / stride + 1 gives {ho}x{wo}",
            d.ho,
            d.wo
        );
        Ok(d)
    }
    fn hw(&self) -> usize {
        self.h * self.w
    }
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    fn check(&self, op: &str, x: (&str, usize), y: (&str, usize)) -> Result<()> {
        check_len(op, x.0, x.1, self.planes * self.hw(), "n*c*h*w")?;
        check_len(op, y.0, y.1, self.planes * self.p(), "n*c*h_out*w_out")
    }
    /// Planes per rayon task (at least CHUNK input elements per task).
    fn min_planes(&self) -> usize {
        (CHUNK / self.hw()).max(1)
    }
}

/// Max pooling of one plane [h, w] -> y_p, i_p [h_out, w_out]. Each window starts from its first element
/// and a later candidate (row-major window order) replaces the best only if strictly greater or NaN, so ties
/// keep the first element and NaN wins, as in PyTorch. The protocol's pools (1x2 and 2x2, stride = window)
/// get their own copy of the loop with constant window and stride, which the compiler vectorises (5-8x
/// faster on 2x2); other shapes take the same loop with runtime bounds.
fn maxpool_plane<T: Float>(d: &Dims, plane: &[T], y_p: &mut [T], i_p: &mut [i32]) {
    match (d.kh, d.kw, d.sh, d.sw) {
        (1, 2, 1, 2) => maxpool_rows(plane, y_p, i_p, d.w, d.wo, 1, 2, 1, 2),
        (2, 2, 2, 2) => maxpool_rows(plane, y_p, i_p, d.w, d.wo, 2, 2, 2, 2),
        (kh, kw, sh, sw) => maxpool_rows(plane, y_p, i_p, d.w, d.wo, sh, sw, kh, kw),
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn maxpool_rows<T: Float>(
    plane: &[T],
    y_p: &mut [T],
    i_p: &mut [i32],
    w: usize,
    wo: usize,
    sh: usize,
    sw: usize,
    kh: usize,
    kw: usize,
) {
    for (oy, (yr, ir)) in y_p.chunks_exact_mut(wo).zip(i_p.chunks_exact_mut(wo)).enumerate() {
        let r0 = oy * sh * w;
        let rows = &plane[r0..r0 + kh * w];
        for (ox, (yv, iv)) in yr.iter_mut().zip(ir.iter_mut()).enumerate() {
            let c0 = ox * sw;
            let (mut best, mut at) = (rows[c0], c0);
            for ky in 0..kh {
                for kx in 0..kw {
                    let i = ky * w + c0 + kx;
                    let v = rows[i];
                    if v > best || v.is_nan() {
                        best = v;
                        at = i;
                    }
                }
            }
            *yv = best;
            *iv = (r0 + at) as i32;
        }
    }
}

/// x [n, c, h, w] -> y [n, c, h_out, w_out], idx [n, c, h_out, w_out] (flat index into one h*w plane).
/// `idx` may be longer than y (a buffer sized for a larger batch); only its first n*c*h_out*w_out are written.
pub fn maxpool2d_forward<T: Float>(p: &Pool2dParams, x: &[T], y: &mut [T], idx: &mut [i32]) -> Result<()> {
    const OP: &str = "maxpool2d_forward";
    let d = Dims::new(OP, p)?;
    d.check(OP, ("x", x.len()), ("y", y.len()))?;
    ensure!(idx.len() >= y.len(), "cpu {OP}: idx has {} elements, fewer than y's {}", idx.len(), y.len());
    if d.planes == 0 {
        return Ok(());
    }
    let idx = &mut idx[..y.len()];
    let (hw, np) = (d.hw(), d.p());
    x.par_chunks(hw)
        .zip(y.par_chunks_mut(np))
        .zip(idx.par_chunks_mut(np))
        .with_min_len(d.min_planes())
        .for_each(|((plane, y_p), i_p)| maxpool_plane(&d, plane, y_p, i_p));
    Ok(())
}

/// dy [n, c, h_out, w_out], idx (from the forward) -> dx [n, c, h, w]: dx = 0, then dx[plane][idx] += dy.
pub fn maxpool2d_backward<T: Float>(p: &Pool2dParams, dy: &[T], idx: &[i32], dx: &mut [T]) -> Result<()> {
    const OP: &str = "maxpool2d_backward";
    let d = Dims::new(OP, p)?;
    d.check(OP, ("dx", dx.len()), ("dy", dy.len()))?;
    ensure!(idx.len() >= dy.len(), "cpu {OP}: idx has {} elements, fewer than dy's {}", idx.len(), dy.len());
    if d.planes == 0 {
        return Ok(());
    }
    let (hw, np) = (d.hw(), d.p());
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(np))
        .zip(idx[..dy.len()].par_chunks(np))
        .with_min_len(d.min_planes())
        .try_for_each(|((dx_p, dy_p), i_p)| {
            dx_p.fill(T::ZERO);
            for (&g, &i) in dy_p.iter().zip(i_p) {
                let slot = usize::try_from(i).ok().and_then(|i| dx_p.get_mut(i));
                let Some(slot) = slot else {
                    anyhow::bail!(
                        "cpu {OP}: idx value {i} is outside the {hw}-element plane; pass the idx buffer \
                                   that maxpool2d_forward filled with the same params"
                    )
                };
                *slot += g;
            }
            Ok(())
        })
}

/// x [n, c, h, w] -> y [n, c, h_out, w_out], the mean of each kh x kw window.
pub fn avgpool2d_forward<T: Float>(p: &Pool2dParams, x: &[T], y: &mut [T]) -> Result<()> {
    const OP: &str = "avgpool2d_forward";
    let d = Dims::new(OP, p)?;
    d.check(OP, ("x", x.len()), ("y", y.len()))?;
    if d.planes == 0 {
        return Ok(());
    }
    let (hw, np) = (d.hw(), d.p());
    let inv = T::ONE / T::from_usize(d.kh * d.kw);
    x.par_chunks(hw).zip(y.par_chunks_mut(np)).with_min_len(d.min_planes()).for_each(|(plane, y_p)| {
        match (d.kh, d.kw, d.sh, d.sw) {
            (1, 2, 1, 2) => avgpool_rows(plane, y_p, d.w, d.wo, 1, 2, 1, 2, inv),
            (2, 2, 2, 2) => avgpool_rows(plane, y_p, d.w, d.wo, 2, 2, 2, 2, inv),
            (kh, kw, sh, sw) => avgpool_rows(plane, y_p, d.w, d.wo, sh, sw, kh, kw, inv),
        }
    });
    Ok(())
}

/// Average pooling of one plane [h, w] -> y_p [h_out, w_out] (window sums in row-major order, times `inv`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn avgpool_rows<T: Float>(
    plane: &[T],
    y_p: &mut [T],
    w: usize,
    wo: usize,
    sh: usize,
    sw: usize,
    kh: usize,
    kw: usize,
    inv: T,
) {
    for (oy, yr) in y_p.chunks_exact_mut(wo).enumerate() {
        let rows = &plane[oy * sh * w..(oy * sh + kh) * w];
        for (ox, yv) in yr.iter_mut().enumerate() {
            let c0 = ox * sw;
            let mut s = T::ZERO;
            for ky in 0..kh {
                for kx in 0..kw {
                    s += rows[ky * w + c0 + kx];
                }
            }
            *yv = s * inv;
        }
    }
}

/// dy [n, c, h_out, w_out] -> dx [n, c, h, w]: each window gets dy / (kh*kw); dx is overwritten.
pub fn avgpool2d_backward<T: Float>(p: &Pool2dParams, dy: &[T], dx: &mut [T]) -> Result<()> {
    const OP: &str = "avgpool2d_backward";
    let d = Dims::new(OP, p)?;
    d.check(OP, ("dx", dx.len()), ("dy", dy.len()))?;
    if d.planes == 0 {
        return Ok(());
    }
    let (hw, np) = (d.hw(), d.p());
    let inv = T::ONE / T::from_usize(d.kh * d.kw);
    dx.par_chunks_mut(hw).zip(dy.par_chunks(np)).with_min_len(d.min_planes()).for_each(|(dx_p, dy_p)| {
        dx_p.fill(T::ZERO);
        for oy in 0..d.ho {
            for ox in 0..d.wo {
                let g = dy_p[oy * d.wo + ox] * inv;
                let (y0, x0) = (oy * d.sh, ox * d.sw);
                for ky in 0..d.kh {
                    let row = (y0 + ky) * d.w + x0;
                    for v in &mut dx_p[row..row + d.kw] {
                        *v += g;
                    }
                }
            }
        }
    });
    Ok(())
}

impl crate::ops::PoolOps for crate::ops::cpu::CpuBackend {
    fn maxpool2d_forward(&self, p: &Pool2dParams, x: &[f32], y: &mut [f32], idx: &mut Vec<i32>) -> Result<()> {
        self.timed("maxpool2d_forward", || maxpool2d_forward(p, x, y, idx))
    }
    fn maxpool2d_backward(&self, p: &Pool2dParams, dy: &[f32], idx: &Vec<i32>, dx: &mut [f32]) -> Result<()> {
        self.timed("maxpool2d_backward", || maxpool2d_backward(p, dy, idx, dx))
    }
    fn avgpool2d_forward(&self, p: &Pool2dParams, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.timed("avgpool2d_forward", || avgpool2d_forward(p, x, y))
    }
    fn avgpool2d_backward(&self, p: &Pool2dParams, dy: &[f32], dx: &mut [f32]) -> Result<()> {
        self.timed("avgpool2d_backward", || avgpool2d_backward(p, dy, dx))
    }
}

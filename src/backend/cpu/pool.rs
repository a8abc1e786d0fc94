//! max / avg pooling on the CPU (no padding, floor mode), parallel over (n, c) planes.
use super::gemm::{check_len, dim, Float, CHUNK};
use crate::backend::Pool2dParams;
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

/// Max of one window of `plane` [h, w] at output (oy, ox): (value, flat index into the plane). Ties keep the
/// first element in row-major window order and NaN wins, as in PyTorch.
#[inline]
fn window_max<T: Float>(d: &Dims, plane: &[T], oy: usize, ox: usize) -> (T, usize) {
    let (y0, x0) = (oy * d.sh, ox * d.sw);
    let (mut best, mut at) = (T::NEG_INFINITY, y0 * d.w + x0);
    for ky in 0..d.kh {
        let row = (y0 + ky) * d.w;
        for (kx, &v) in plane[row + x0..row + x0 + d.kw].iter().enumerate() {
            if v > best || v.is_nan() {
                best = v;
                at = row + x0 + kx;
            }
        }
    }
    (best, at)
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
    x.par_chunks(hw).zip(y.par_chunks_mut(np)).zip(idx.par_chunks_mut(np)).with_min_len(d.min_planes()).for_each(
        |((plane, y_p), i_p)| {
            for oy in 0..d.ho {
                for ox in 0..d.wo {
                    let (v, at) = window_max(&d, plane, oy, ox);
                    y_p[oy * d.wo + ox] = v;
                    i_p[oy * d.wo + ox] = at as i32;
                }
            }
        },
    );
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
        for oy in 0..d.ho {
            for ox in 0..d.wo {
                let (y0, x0) = (oy * d.sh, ox * d.sw);
                let mut s = T::ZERO;
                for ky in 0..d.kh {
                    let row = (y0 + ky) * d.w + x0;
                    for &v in &plane[row..row + d.kw] {
                        s += v;
                    }
                }
                y_p[oy * d.wo + ox] = s * inv;
            }
        }
    });
    Ok(())
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

//! GEMM: a naive loop in f64 for every transpose and alpha / beta, finite differences of the linear layer,
//! PyTorch's linear layer (tests/fixtures/ops.safetensors, written by scripts/make_fixtures.py), the CUDA source
//! under the emulation (every transpose, split-K), and bad input.
use super::cuda::{gemm_plan, gemm_plan_with_splits};
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::launch::{Arg, DeviceSpec, Launcher};
use crate::ops::prelude::*;
use crate::ops::testutil::*;
use crate::ops::BiasParams;
use anyhow::Result;

fn gemm_naive(p: &GemmParams, a: &[f64], b: &[f64], c: &[f64]) -> Vec<f64> {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let at = |i: usize, l: usize| if p.trans_a != 0 { a[l * m + i] } else { a[i * k + l] };
    let bt = |l: usize, j: usize| if p.trans_b != 0 { b[j * k + l] } else { b[l * n + j] };
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            let old = if p.beta == 0.0 { 0.0 } else { p.beta as f64 * c[i * n + j] };
            out[i * n + j] = p.alpha as f64 * s + old;
        }
    }
    out
}

#[test]
fn gemm_all_transposes_match_naive_loop() {
    let mut rng = Rng::new(7);
    let cpu = CpuBackend::new();
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (13, 9, 4), (37, 29, 41), (70, 65, 130)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 2.0), (-1.5, 1.0)] {
                let mut p = GemmParams::new(m, n, k, ta, tb);
                (p.alpha, p.beta) = (alpha, beta);
                let (a, b, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
                let want = gemm_naive(&p, &a, &b, &c0);
                // beta = 0 must ignore NaN in c.
                let start = if beta == 0.0 { vec![f64::NAN; m * n] } else { c0.clone() };
                let mut c = start.clone();
                cpu::gemm(&p, &a, &b, &mut c).unwrap();
                let e = rel_err(&c, &want);
                assert!(e < 1e-12, "f64 {m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta}: {e}");
                let mut cf = to_f32(&start);
                cpu.gemm(&p, &to_f32(&a), &to_f32(&b), &mut cf).unwrap();
                let e = rel_err(&to_f64(&cf), &want);
                assert!(e < 1e-5, "f32 {m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta}: {e}");
            }
        }
    }
}

#[test]
fn gemm_gradients_match_finite_differences() {
    // Linear-layer shapes: y[n, out] = x[n, in] * W^T; dx = dy * W; dW = dy^T * x.
    let (n, i, o) = (3, 7, 5);
    let mut rng = Rng::new(8);
    let (x, w, r) = (rng.vec(n * i), rng.vec(o * i), rng.vec(n * o));
    let fwd = GemmParams::new(n, o, i, false, true);
    let loss = |x: &[f64], w: &[f64]| {
        let mut y = vec![0.0; n * o];
        cpu::gemm(&fwd, x, w, &mut y).unwrap();
        dot(&y, &r)
    };
    let mut dx = vec![0.0; n * i];
    cpu::gemm(&GemmParams::new(n, i, o, false, false), &r, &w, &mut dx).unwrap();
    let mut dw = vec![0.0; o * i];
    cpu::gemm(&GemmParams::new(o, i, n, true, false), &r, &x, &mut dw).unwrap();
    assert!(rel_err(&dx, &fd_grad(|x| loss(x, &w), &x, 1e-3)) < 1e-9);
    assert!(rel_err(&dw, &fd_grad(|w| loss(&x, w), &w, 1e-3)) < 1e-9);
}

// ---- PyTorch ----------------------------------------------------------------------------------------------------

/// Linear layer as the models build it from gemm + bias: y = x W^T + b, dx = dy W, dW = dy^T x, db = sum dy.
#[test]
fn linear_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let (xs, ws) = (fx.shape("linear.x")?, fx.shape("linear.w")?);
        let (n, k_in, k_out) = (xs[0], xs[1], ws[0]);
        let t = |s: &str| fx.f32s(&format!("linear.{s}"));
        let (x, w, b, dy) = (t("x")?, t("w")?, t("b")?, t("dy")?);

        // y [n, out] = x [n, in] * W^T (W stored [out, in]), then + b.
        let mut y = vec![f32::NAN; n * k_out];
        let fwd = be.gemm(&GemmParams::new(n, k_out, k_in, false, true), &x, &w, &mut y);
        if ck.run("linear gemm forward", fwd)
            && ck.run("linear bias_forward", be.bias_forward(&BiasParams::new(n, k_out, 1), &b, &mut y))
        {
            ck.op("linear.y", &y, &t("y")?);
        }
        // dx [n, in] = dy [n, out] * W [out, in].
        let mut dx = vec![f32::NAN; n * k_in];
        if ck.run("linear gemm dx", be.gemm(&GemmParams::new(n, k_in, k_out, false, false), &dy, &w, &mut dx)) {
            ck.op("linear.dx", &dx, &t("dx")?);
        }
        // dW [out, in] = dy^T (dy stored [n, out]) * x [n, in].
        let mut dw = vec![f32::NAN; k_out * k_in];
        if ck.run("linear gemm dw", be.gemm(&GemmParams::new(k_out, k_in, n, true, false), &dy, &x, &mut dw)) {
            ck.op("linear.dw", &dw, &t("dw")?);
        }
        let mut db = vec![f32::NAN; k_out];
        if ck.run("linear bias_backward", be.bias_backward(&BiasParams::new(n, k_out, 1), &dy, &mut db)) {
            ck.op("linear.db", &db, &t("db")?);
        }
        Ok(())
    })
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

#[test]
fn gemm_matches_cpu_all_transposes() {
    let mut r = rng("gemm");
    let cpu = CpuBackend::new();
    for (m, n, k) in [(1, 1, 1), (5, 70, 33), (67, 3, 130), (65, 66, 17)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (alpha, beta) in [(1.0f32, 0.0f32), (1.5, 0.5)] {
                let mut p = GemmParams::new(m, n, k, ta, tb);
                p.alpha = alpha;
                p.beta = beta;
                let (a, b) = (randn(&mut r, m * k), randn(&mut r, k * n));
                // beta = 0: c starts as NaN and must be ignored; beta != 0: c is an input.
                let c0 = if beta == 0.0 { vec![f32::NAN; m * n] } else { randn(&mut r, m * n) };
                let mut want = c0.clone();
                cpu.gemm(&p, &a, &b, &mut want).unwrap();
                let got = emu3(&a, &b, &c0, |e, a, b, c| e.gemm(&p, a, b, c));
                assert_close(&format!("gemm {p:?}"), &got, &want);
            }
        }
    }
}

/// Split-K of the GEMM: slices reduced by gemm_splitk_reduce, which applies alpha / beta.
#[test]
fn gemm_split_k_matches_cpu() {
    let mut r = rng("gemm_split_k");
    let cpu = CpuBackend::new();
    for (m, n, k, ta, tb) in [(5, 70, 600, false, true), (3, 4, 1100, true, false)] {
        for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 2.0)] {
            let mut p = GemmParams::new(m, n, k, ta, tb);
            p.alpha = alpha;
            p.beta = beta;
            assert!(gemm_plan(&p, &DeviceSpec::H100)[0].grid.2 > 1, "the default plan of {p:?} splits K");
            let (a, b) = (randn(&mut r, m * k), randn(&mut r, k * n));
            let c0 = if beta == 0.0 { vec![f32::NAN; m * n] } else { randn(&mut r, m * n) };
            let mut want = c0.clone();
            cpu.gemm(&p, &a, &b, &mut want).unwrap();
            for splits in [1, 2, 9] {
                let plan = gemm_plan_with_splits(&p, splits);
                let got = emu3(&a, &b, &c0, |e, a, b, c| {
                    e.launch("gemm", &plan, &p, &mut [Arg::input(a), Arg::input(b), Arg::output(c)])
                });
                assert_close(&format!("gemm {p:?} splits {splits}"), &got, &want);
            }
        }
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_are_errors() {
    let cpu = CpuBackend::new();
    let g = GemmParams::new(2, 3, 4, false, false);
    assert!(cpu.gemm(&g, &[0.0; 8], &[0.0; 12], &mut [0.0; 5]).is_err());
    assert!(cpu.gemm(&g, &[0.0; 7], &[0.0; 12], &mut [0.0; 6]).is_err());
}

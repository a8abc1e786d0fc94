//! conv2d: the defining sum in f64, finite differences, the f32 backend against the f64 code, PyTorch's values
//! (tests/fixtures/ops.safetensors, written by scripts/make_fixtures.py), the CUDA source under the emulation
//! (every tile variant, the k-table limits, split-K), and bad input.
use super::cuda::{backward_filter_plan, backward_filter_plan_with_splits};
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::launch::{Arg, DeviceSpec, Launcher};
use crate::ops::prelude::*;
use crate::ops::testutil::*;
use crate::ops::BiasParams;
use anyhow::{ensure, Result};

/// (n, c_in, h, w, c_out, kh, kw, pad_h, pad_w, stride_h, stride_w): batch 1, odd sizes, padding, stride 2,
/// 1x5 and 3x3 kernels, rectangular inputs and kernels, 1x1, and padding wider than the input.
const CONVS: &[[usize; 11]] = &[
    [1, 2, 5, 7, 3, 3, 3, 1, 1, 1, 1],
    [3, 3, 1, 11, 4, 1, 5, 0, 2, 1, 1],
    [2, 3, 7, 6, 2, 3, 3, 1, 1, 2, 2],
    [5, 2, 6, 9, 3, 2, 4, 0, 3, 1, 2],
    [4, 3, 5, 5, 2, 1, 1, 0, 0, 1, 1],
    [3, 2, 4, 5, 3, 5, 2, 2, 0, 3, 1],
    [2, 1, 1, 2, 2, 1, 7, 0, 3, 1, 1],
    [1, 1, 3, 3, 1, 1, 1, 0, 0, 1, 1],
    [19, 2, 3, 4, 3, 3, 3, 1, 1, 1, 1],
];

fn conv_params(c: &[usize; 11]) -> Conv2dParams {
    Conv2dParams::strided(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10])
}

/// The defining sum of `Backend::conv2d_forward`, written out with bounds checks instead of padding.
fn conv_direct(p: &Conv2dParams, x: &[f64], w: &[f64]) -> Vec<f64> {
    let u = |v: i32| v as usize;
    let (n, ci, h, wd, co, kh, kw) = (u(p.n), u(p.c_in), u(p.h), u(p.w), u(p.c_out), u(p.kh), u(p.kw));
    let (ho, wo) = (u(p.h_out), u(p.w_out));
    let mut y = vec![0.0; n * co * ho * wo];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = 0.0;
                    for c in 0..ci {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * u(p.stride_h) + ky) as i64 - p.pad_h as i64;
                                let ix = (ox * u(p.stride_w) + kx) as i64 - p.pad_w as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xi = ((b * ci + c) * h + iy as usize) * wd + ix as usize;
                                s += x[xi] * w[((o * ci + c) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    y[((b * co + o) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
    y
}

#[test]
fn conv_forward_matches_the_direct_sum() {
    let mut rng = Rng::new(1);
    for c in CONVS {
        let p = conv_params(c);
        let (x, w) = (rng.vec(p.x_len()), rng.vec(p.w_len()));
        let mut y = vec![f64::NAN; p.y_len()];
        cpu::conv2d_forward(&p, &x, &w, &mut y).unwrap();
        let e = rel_err(&y, &conv_direct(&p, &x, &w));
        assert!(e < 1e-12, "{c:?}: rel err {e}");
    }
}

#[test]
fn conv_gradients_match_finite_differences() {
    let mut rng = Rng::new(2);
    for c in CONVS {
        let p = conv_params(c);
        let (x, w, r) = (rng.vec(p.x_len()), rng.vec(p.w_len()), rng.vec(p.y_len()));
        // L = sum(y * r), so dL/dy = r.
        let loss = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; p.y_len()];
            cpu::conv2d_forward(&p, x, w, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![f64::NAN; p.x_len()];
        cpu::conv2d_backward_data(&p, &r, &w, &mut dx).unwrap();
        let e = rel_err(&dx, &fd_grad(|x| loss(x, &w), &x, 1e-3));
        assert!(e < 1e-7, "{c:?}: dx rel err {e}");
        let mut dw = vec![f64::NAN; p.w_len()];
        cpu::conv2d_backward_filter(&p, &x, &r, &mut dw).unwrap();
        let e = rel_err(&dw, &fd_grad(|w| loss(&x, w), &w, 1e-3));
        assert!(e < 1e-7, "{c:?}: dw rel err {e}");
    }
}

/// The f32 backend (through the trait; batch larger than the thread count, so samples are processed in
/// parallel chunks of several) agrees with the f64 instantiation run one sample at a time.
#[test]
fn conv_f32_backend_matches_f64_per_sample() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(3);
    for p in [Conv2dParams::new(17, 5, 1, 40, 6, 1, 5, 0, 2), Conv2dParams::new(11, 3, 10, 12, 4, 3, 3, 1, 1)] {
        let (x, w, dy) = (rng.vec(p.x_len()), rng.vec(p.w_len()), rng.vec(p.y_len()));
        let (xf, wf, dyf) = (to_f32(&x), to_f32(&w), to_f32(&dy));
        let mut one = p;
        one.n = 1;
        let (xs, ys) = (one.x_len(), one.y_len());
        let (mut y, mut dx, mut dw) = (vec![0.0; p.y_len()], vec![0.0; p.x_len()], vec![0.0; p.w_len()]);
        let mut dw_n = vec![0.0; p.w_len()];
        for s in 0..p.n as usize {
            let (x_n, dy_n) = (&x[s * xs..(s + 1) * xs], &dy[s * ys..(s + 1) * ys]);
            cpu::conv2d_forward(&one, x_n, &w, &mut y[s * ys..(s + 1) * ys]).unwrap();
            cpu::conv2d_backward_data(&one, dy_n, &w, &mut dx[s * xs..(s + 1) * xs]).unwrap();
            cpu::conv2d_backward_filter(&one, x_n, dy_n, &mut dw_n).unwrap();
            dw.iter_mut().zip(&dw_n).for_each(|(a, b)| *a += b);
        }
        let (mut yf, mut dxf, mut dwf) = (vec![0.0f32; p.y_len()], vec![0.0f32; p.x_len()], vec![0.0f32; p.w_len()]);
        cpu.conv2d_forward(&p, &xf, &wf, &mut yf).unwrap();
        cpu.conv2d_backward_data(&p, &dyf, &wf, &mut dxf).unwrap();
        cpu.conv2d_backward_filter(&p, &xf, &dyf, &mut dwf).unwrap();
        for (name, a, b) in [("y", &yf, &y), ("dx", &dxf, &dx), ("dw", &dwf, &dw)] {
            let e = rel_err(&to_f64(a), b);
            assert!(e < 1e-5, "{p:?} {name}: rel err {e}");
        }
    }
}

// ---- PyTorch ----------------------------------------------------------------------------------------------------

/// conv2d forward (no bias), + bias, backward data, backward filter, bias gradient: three shapes.
#[test]
fn conv2d_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        for case in ["conv2d_pamap2", "conv2d_celeba", "conv2d_stride2"] {
            let meta = fx.params(case)?;
            let (xs, ws) = (fx.shape(&format!("{case}.x"))?, fx.shape(&format!("{case}.w"))?);
            ensure!(xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1], "{case}: bad x/w shapes {xs:?} {ws:?}");
            let (ph, pw) = usize_pair(&meta, "pad")?;
            let (sh, sw) = usize_pair(&meta, "stride")?;
            let p = Conv2dParams::strided(xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], ph, pw, sh, sw);
            let t = |n: &str| fx.f32s(&format!("{case}.{n}"));
            let (x, w, b, dy) = (t("x")?, t("w")?, t("b")?, t("dy")?);

            let mut y = vec![f32::NAN; p.y_len()];
            if ck.run(&format!("{case} forward"), be.conv2d_forward(&p, &x, &w, &mut y)) {
                ck.op(&format!("{case}.y"), &y, &t("y")?);
            }
            let bp = BiasParams::new(xs[0], ws[0], (p.h_out * p.w_out) as usize);
            let mut yb = t("y")?; // bias on top of the reference y: tests bias_forward alone
            if ck.run(&format!("{case} bias_forward"), be.bias_forward(&bp, &b, &mut yb)) {
                ck.op(&format!("{case}.y_bias"), &yb, &t("y_bias")?);
            }
            let mut dx = vec![f32::NAN; p.x_len()];
            if ck.run(&format!("{case} backward_data"), be.conv2d_backward_data(&p, &dy, &w, &mut dx)) {
                ck.op(&format!("{case}.dx"), &dx, &t("dx")?);
            }
            let mut dw = vec![f32::NAN; p.w_len()];
            if ck.run(&format!("{case} backward_filter"), be.conv2d_backward_filter(&p, &x, &dy, &mut dw)) {
                ck.op(&format!("{case}.dw"), &dw, &t("dw")?);
            }
            let mut db = vec![f32::NAN; ws[0]];
            if ck.run(&format!("{case} bias_backward"), be.bias_backward(&bp, &dy, &mut db)) {
                ck.op(&format!("{case}.db"), &db, &t("db")?);
            }
        }
        Ok(())
    })
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

fn conv_cases() -> Vec<Conv2dParams> {
    vec![
        Conv2dParams::new(1, 3, 5, 7, 5, 3, 3, 1, 1), // batch 1, 3 channels, 3x3 pad 1 (m32 tiles)
        Conv2dParams::new(2, 27, 1, 19, 40, 1, 5, 0, 2), // pamap2-like: 27 channels, 1x5 (m64 forward)
        Conv2dParams::strided(2, 4, 6, 5, 70, 3, 3, 0, 0, 2, 2), // c_out 70 (m128), stride 2
        Conv2dParams::strided(3, 2, 9, 9, 3, 2, 3, 1, 0, 2, 1), // 2x3 kernel, asymmetric pad and stride
        Conv2dParams::new(1, 67, 3, 3, 2, 1, 1, 0, 0), // 1x1, c_in 67 (m128 backward-data)
        Conv2dParams::new(2, 40, 2, 3, 33, 3, 3, 1, 1), // c_in 40 / c_out 33 (m64), K spans tiles
        Conv2dParams::new(1, 150, 3, 3, 2, 3, 3, 1, 1), // forward K = 1350 > CONV_KTAB: no k-table
        Conv2dParams::new(1, 2, 3, 3, 150, 3, 3, 1, 1), // backward-data K = 1350: no k-table
        Conv2dParams::new(2, 32, 3, 4, 6, 1, 1, 0, 0), // backward-filter N = 32: the 32 x 32 tile, full width
        Conv2dParams::new(1, 11, 3, 3, 7, 1, 3, 0, 1), // backward-filter N = 33, c_out 7: back to 32 x 128
    ]
}

#[test]
fn conv2d_forward_matches_cpu() {
    let mut r = rng("conv2d_forward");
    let cpu = CpuBackend::new();
    for p in conv_cases() {
        let (x, w) = (randn(&mut r, p.x_len()), randn(&mut r, p.w_len()));
        let mut want = vec![0.0; p.y_len()];
        cpu.conv2d_forward(&p, &x, &w, &mut want).unwrap();
        let got = emu3(&x, &w, &poison(p.y_len()), |e, x, w, y| e.conv2d_forward(&p, x, w, y));
        assert_close(&format!("conv2d_forward {p:?}"), &got, &want);
    }
}

#[test]
fn conv2d_backward_data_matches_cpu() {
    let mut r = rng("conv2d_backward_data");
    let cpu = CpuBackend::new();
    for p in conv_cases() {
        let (dy, w) = (randn(&mut r, p.y_len()), randn(&mut r, p.w_len()));
        let mut want = vec![0.0; p.x_len()];
        cpu.conv2d_backward_data(&p, &dy, &w, &mut want).unwrap();
        let got = emu3(&dy, &w, &poison(p.x_len()), |e, dy, w, dx| e.conv2d_backward_data(&p, dy, w, dx));
        assert_close(&format!("conv2d_backward_data {p:?}"), &got, &want);
    }
}

#[test]
fn conv2d_backward_filter_matches_cpu() {
    let mut r = rng("conv2d_backward_filter");
    let cpu = CpuBackend::new();
    for p in conv_cases() {
        let (x, dy) = (randn(&mut r, p.x_len()), randn(&mut r, p.y_len()));
        let mut want = vec![0.0; p.w_len()];
        cpu.conv2d_backward_filter(&p, &x, &dy, &mut want).unwrap();
        let got = emu3(&x, &dy, &poison(p.w_len()), |e, x, dy, dw| e.conv2d_backward_filter(&p, x, dy, dw));
        assert_close(&format!("conv2d_backward_filter {p:?}"), &got, &want);
    }
}

/// Split-K of backward-filter: any number of K slices (including one that ends up empty) gives the same dw.
#[test]
fn conv2d_backward_filter_split_k_matches_cpu() {
    let mut r = rng("conv2d_backward_filter_split_k");
    let cpu = CpuBackend::new();
    let p = Conv2dParams::new(2, 3, 1, 300, 5, 1, 5, 0, 2); // K = n*h_out*w_out = 600
    assert!(backward_filter_plan(&p, &DeviceSpec::H100)[0].grid.2 > 1, "the default plan of this shape splits K");
    let (x, dy) = (randn(&mut r, p.x_len()), randn(&mut r, p.y_len()));
    let mut want = vec![0.0; p.w_len()];
    cpu.conv2d_backward_filter(&p, &x, &dy, &mut want).unwrap();
    // 37 slices: more than the reduce block's 8 warps, not a multiple of them, and 18 of them empty.
    for splits in [1, 3, 9, 37] {
        let plan = backward_filter_plan_with_splits(&p, splits);
        assert_eq!(plan.len(), if splits > 1 { 2 } else { 1 });
        let got = emu3(&x, &dy, &poison(p.w_len()), |e, x, dy, dw| {
            e.launch("conv2d_backward_filter", &plan, &p, &mut [Arg::input(x), Arg::input(dy), Arg::output(dw)])
        });
        assert_close(&format!("conv2d_backward_filter splits {splits}"), &got, &want);
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_are_errors() {
    let cpu = CpuBackend::new();
    let c = Conv2dParams::new(2, 3, 4, 4, 5, 3, 3, 1, 1);
    let (x, w, mut y) = (vec![0.0f32; c.x_len()], vec![0.0f32; c.w_len()], vec![0.0f32; c.y_len()]);
    let err = cpu.conv2d_forward(&c, &x[1..], &w, &mut y).unwrap_err().to_string();
    assert!(err.contains("conv2d_forward") && err.contains("`x`"), "{err}");
    assert!(cpu.conv2d_forward(&c, &x, &w[1..], &mut y).is_err());
    assert!(cpu.conv2d_backward_data(&c, &y[1..], &w, &mut x.clone()).is_err());
    assert!(cpu.conv2d_backward_filter(&c, &x, &y, &mut w.clone()[1..]).is_err());
    let mut bad = c;
    bad.w_out += 1;
    assert!(cpu.conv2d_forward(&bad, &x, &w, &mut y).is_err(), "inconsistent w_out");
    bad = c;
    bad.stride_h = 0;
    assert!(cpu.conv2d_forward(&bad, &x, &w, &mut y).is_err(), "stride 0");
}

//! Pooling: the window formula and finite differences in f64, PyTorch's rule for ties, the rayon path, PyTorch's
//! values (tests/fixtures/ops.safetensors, written by scripts/make_fixtures.py), the CUDA source under the
//! emulation (the scatter and gather backward paths, ties, overlapping windows), and bad input.
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::emu::EmuBackend;
use crate::ops::testutil::*;
use anyhow::Result;
use approx::assert_abs_diff_eq;
use rand::Rng as _;

/// Window = stride pools (floor mode on odd sizes) and one overlapping pool (3x2 window, stride 2x1).
fn pools() -> Vec<Pool2dParams> {
    let mut v = vec![Pool2dParams::new(2, 3, 5, 7, 2, 2), Pool2dParams::new(1, 2, 1, 9, 1, 2)];
    v.push(Pool2dParams::new(3, 1, 4, 6, 1, 3));
    v.push(Pool2dParams { n: 2, c: 2, h: 7, w: 5, kh: 3, kw: 2, stride_h: 2, stride_w: 1, h_out: 3, w_out: 4 });
    v
}

#[test]
fn avgpool_forward_and_gradient() {
    let mut rng = Rng::new(4);
    for p in pools() {
        let (x, r) = (rng.vec(p.x_len()), rng.vec(p.y_len()));
        let mut y = vec![0.0; p.y_len()];
        cpu::avgpool2d_forward(&p, &x, &mut y).unwrap();
        // Spot value: the first window of the first plane.
        let (kh, kw, w) = (p.kh as usize, p.kw as usize, p.w as usize);
        let first: f64 = (0..kh).flat_map(|i| (0..kw).map(move |j| (i, j))).map(|(i, j)| x[i * w + j]).sum();
        assert_abs_diff_eq!(y[0], first / (kh * kw) as f64, epsilon = 1e-14);
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; p.y_len()];
            cpu::avgpool2d_forward(&p, x, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![f64::NAN; p.x_len()];
        cpu::avgpool2d_backward(&p, &r, &mut dx).unwrap();
        let e = rel_err(&dx, &fd_grad(loss, &x, 1e-3));
        assert!(e < 1e-9, "{p:?}: rel err {e}");
    }
}

#[test]
fn maxpool_forward_and_gradient_away_from_ties() {
    let mut rng = Rng::new(5);
    for p in pools() {
        // Distinct values at least 1e-3 apart: a shuffled grid plus small noise.
        let len = p.x_len();
        let mut x: Vec<f64> = (0..len).map(|i| i as f64 * 1e-2 + rng.next() * 1e-3).collect();
        for i in (1..len).rev() {
            let j = ((rng.next() + 1.0) * 0.5 * (i + 1) as f64) as usize % (i + 1);
            x.swap(i, j);
        }
        let r = rng.vec(p.y_len());
        let mut y = vec![0.0; p.y_len()];
        let mut idx = vec![-1; p.y_len()];
        cpu::maxpool2d_forward(&p, &x, &mut y, &mut idx).unwrap();
        let hw = (p.h * p.w) as usize;
        let plane_of = |o: usize| o / (p.h_out * p.w_out) as usize;
        for (o, (&v, &i)) in y.iter().zip(&idx).enumerate() {
            assert_eq!(v, x[plane_of(o) * hw + i as usize], "y must be x at idx");
        }
        let loss = |x: &[f64]| {
            let (mut y, mut idx) = (vec![0.0; p.y_len()], vec![0; p.y_len()]);
            cpu::maxpool2d_forward(&p, x, &mut y, &mut idx).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![f64::NAN; p.x_len()];
        cpu::maxpool2d_backward(&p, &r, &idx, &mut dx).unwrap();
        let e = rel_err(&dx, &fd_grad(loss, &x, 1e-6));
        assert!(e < 1e-6, "{p:?}: rel err {e}");
    }
}

#[test]
fn maxpool_ties_pick_the_first_in_row_major_window_order() {
    // One plane [2, 4], windows 2x2: window 0 all equal; window 1 has its max (5) at (0,3) and (1,2).
    let p = Pool2dParams::new(1, 1, 2, 4, 2, 2);
    let x = [1.0f32, 1.0, 2.0, 5.0, 1.0, 1.0, 5.0, 0.0];
    let (mut y, mut idx) = (vec![0.0f32; 2], vec![0i32; 2]);
    CpuBackend::new().maxpool2d_forward(&p, &x, &mut y, &mut idx).unwrap();
    assert_eq!(y, [1.0, 5.0]);
    assert_eq!(idx, [0, 3]);
    let mut dx = vec![9.0f32; 8];
    CpuBackend::new().maxpool2d_backward(&p, &[2.0, 3.0], &idx, &mut dx).unwrap();
    assert_eq!(dx, [2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
}

/// Many planes (the rayon path) through the f32 backend, checked element by element.
#[test]
fn pooling_large_batch_matches_per_window_formula() {
    let cpu = CpuBackend::new();
    let p = Pool2dParams::new(64, 32, 1, 256, 1, 2);
    let x = to_f32(&Rng::new(6).vec(p.x_len()));
    let (mut y, mut idx, mut ya) = (vec![0.0f32; p.y_len()], vec![0; p.y_len()], vec![0.0f32; p.y_len()]);
    cpu.maxpool2d_forward(&p, &x, &mut y, &mut idx).unwrap();
    cpu.avgpool2d_forward(&p, &x, &mut ya).unwrap();
    for o in 0..p.y_len() {
        let (a, b) = (x[2 * o], x[2 * o + 1]);
        assert_eq!(y[o], a.max(b));
        assert_eq!(idx[o] as usize, (2 * o) % 256 + usize::from(b > a));
        assert_eq!(ya[o], (a + b) * 0.5);
    }
}

// ---- PyTorch ----------------------------------------------------------------------------------------------------

/// Max pooling 1x2 and 2x2 (odd sizes: floor mode): values, argmax indices (exact), and the scatter backward.
#[test]
fn maxpool_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        for case in ["maxpool_1x2", "maxpool_2x2"] {
            let p = pool_params(fx, case)?;
            let t = |n: &str| fx.f32s(&format!("{case}.{n}"));
            let mut y = vec![f32::NAN; p.y_len()];
            let mut idx = vec![-1i32; p.y_len()];
            let want_idx = fx.i32s(&format!("{case}.idx"))?;
            if ck.run(&format!("{case} forward"), be.maxpool2d_forward(&p, &t("x")?, &mut y, &mut idx)) {
                ck.op(&format!("{case}.y"), &y, &t("y")?);
                let bad = idx.iter().zip(&want_idx).filter(|(a, b)| a != b).count();
                if bad != 0 || idx.len() != want_idx.len() {
                    ck.failures.push(format!("{case}.idx: {bad} of {} indices differ", want_idx.len()));
                }
            }
            // Backward through the reference indices, so a forward bug does not hide a backward one.
            let mut dx = vec![f32::NAN; p.x_len()];
            if ck.run(&format!("{case} backward"), be.maxpool2d_backward(&p, &t("dy")?, &want_idx, &mut dx)) {
                ck.op(&format!("{case}.dx"), &dx, &t("dx")?);
            }
        }
        Ok(())
    })
}

/// Average pooling 1x2 and 2x2 (odd sizes: floor mode), forward and backward.
#[test]
fn avgpool_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        for case in ["avgpool_1x2", "avgpool_2x2"] {
            let p = pool_params(fx, case)?;
            let t = |n: &str| fx.f32s(&format!("{case}.{n}"));
            let mut y = vec![f32::NAN; p.y_len()];
            if ck.run(&format!("{case} forward"), be.avgpool2d_forward(&p, &t("x")?, &mut y)) {
                ck.op(&format!("{case}.y"), &y, &t("y")?);
            }
            let mut dx = vec![f32::NAN; p.x_len()];
            if ck.run(&format!("{case} backward"), be.avgpool2d_backward(&p, &t("dy")?, &mut dx)) {
                ck.op(&format!("{case}.dx"), &dx, &t("dx")?);
            }
        }
        Ok(())
    })
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

fn pool_cases() -> Vec<Pool2dParams> {
    let mut overlap = Pool2dParams::new(2, 3, 7, 6, 3, 2); // windows 3x2 at stride 2x1: they overlap
    overlap.stride_h = 2;
    overlap.stride_w = 1;
    overlap.h_out = (7 - 3) / 2 + 1;
    overlap.w_out = 6 - 2 + 1;
    vec![
        Pool2dParams::new(2, 3, 5, 7, 2, 2), // odd sizes: last row/column dropped (floor mode)
        Pool2dParams::new(1, 4, 1, 9, 1, 2), // pamap2-like 1x2
        Pool2dParams::new(2, 3, 6, 8, 2, 2), // celeba-like 2x2 tiling the input exactly: scatter path
        Pool2dParams::new(1, 2, 1, 12, 1, 3), // 1x3 windows tiling a row exactly: scatter path
        overlap,
    ]
}

#[test]
fn maxpool2d_matches_cpu() {
    let mut r = rng("maxpool2d");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for p in pool_cases() {
        for ties in [false, true] {
            // With ties (values from {0, 1, 2}) the first-max rule decides idx.
            let x: Vec<f32> = if ties {
                (0..p.x_len()).map(|_| r.random_range(0..3) as f32).collect()
            } else {
                randn(&mut r, p.x_len())
            };
            let (mut want_y, mut want_idx) = (vec![0.0; p.y_len()], vec![0i32; p.y_len()]);
            cpu.maxpool2d_forward(&p, &x, &mut want_y, &mut want_idx).unwrap();
            let (gx, mut gy) = (e.upload(&x).unwrap(), e.upload(&poison(p.y_len())).unwrap());
            let mut gi = e.upload_i32(&vec![i32::MIN; p.y_len()]).unwrap();
            e.maxpool2d_forward(&p, e.view(&gx), e.view_mut(&mut gy), &mut gi).unwrap();
            assert_close(&format!("maxpool2d_forward {p:?}"), &e.download(&gy).unwrap(), &want_y);
            assert_eq!(e.download_i32(&gi).unwrap(), want_idx, "maxpool2d_forward idx {p:?} ties {ties}");

            let dy = randn(&mut r, p.y_len());
            let mut want_dx = vec![0.0; p.x_len()];
            cpu.maxpool2d_backward(&p, &dy, &want_idx, &mut want_dx).unwrap();
            let (gdy, gidx) = (e.upload(&dy).unwrap(), e.upload_i32(&want_idx).unwrap());
            let mut gdx = e.upload(&poison(p.x_len())).unwrap();
            e.maxpool2d_backward(&p, e.view(&gdy), &gidx, e.view_mut(&mut gdx)).unwrap();
            assert_close(&format!("maxpool2d_backward {p:?}"), &e.download(&gdx).unwrap(), &want_dx);
        }
    }
}

#[test]
fn avgpool2d_matches_cpu() {
    let mut r = rng("avgpool2d");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for p in pool_cases() {
        let x = randn(&mut r, p.x_len());
        let mut want_y = vec![0.0; p.y_len()];
        cpu.avgpool2d_forward(&p, &x, &mut want_y).unwrap();
        let (gx, mut gy) = (e.upload(&x).unwrap(), e.upload(&poison(p.y_len())).unwrap());
        e.avgpool2d_forward(&p, e.view(&gx), e.view_mut(&mut gy)).unwrap();
        assert_close(&format!("avgpool2d_forward {p:?}"), &e.download(&gy).unwrap(), &want_y);

        let dy = randn(&mut r, p.y_len());
        let mut want_dx = vec![0.0; p.x_len()];
        cpu.avgpool2d_backward(&p, &dy, &mut want_dx).unwrap();
        let (gdy, mut gdx) = (e.upload(&dy).unwrap(), e.upload(&poison(p.x_len())).unwrap());
        e.avgpool2d_backward(&p, e.view(&gdy), e.view_mut(&mut gdx)).unwrap();
        assert_close(&format!("avgpool2d_backward {p:?}"), &e.download(&gdx).unwrap(), &want_dx);
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_and_indices_are_errors() {
    let cpu = CpuBackend::new();
    let p = Pool2dParams::new(1, 2, 4, 4, 2, 2);
    let (px, mut py, mut idx) = (vec![0.0f32; 32], vec![0.0f32; 8], vec![0i32; 8]);
    assert!(cpu.maxpool2d_forward(&p, &px[..31], &mut py, &mut idx).is_err());
    assert!(cpu.maxpool2d_forward(&p, &px, &mut py, &mut vec![0; 7]).is_err());
    assert!(cpu.avgpool2d_backward(&p, &py, &mut [0.0; 33]).is_err());
    assert!(cpu.maxpool2d_backward(&p, &py, &vec![16; 8], &mut [0.0; 32]).is_err(), "idx outside the plane");
}

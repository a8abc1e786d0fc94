//! SGD and Adam: scalar transcriptions of PyTorch's update rules in f64 (torch.optim's `_single_tensor_*`),
//! PyTorch's weights after 3 steps (tests/fixtures/ops.safetensors, written by scripts/make_fixtures.py), the
//! CUDA source under the emulation, and bad input.
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::emu::EmuBackend;
use crate::ops::testutil::*;
use anyhow::Result;
use rand::Rng as _;

#[test]
fn sgd_matches_pytorch_reference() {
    for (momentum, wd) in [(0.0f32, 0.0f32), (0.9, 0.0), (0.9, 1e-2), (0.0, 5e-2)] {
        let len = 20_000; // above the parallel threshold
        let mut rng = Rng::new(14);
        let mut w = to_f32(&rng.vec(len));
        let mut mom = vec![0.0f32; len];
        let (mut w_ref, mut buf): (Vec<f64>, Option<Vec<f64>>) = (to_f64(&w), None);
        let p = SgdParams { len: len as i32, lr: 0.05, momentum, weight_decay: wd };
        let (lr, mu, wd) = (p.lr as f64, momentum as f64, wd as f64);
        for _ in 0..4 {
            let g = to_f32(&rng.vec(len));
            cpu::sgd_step(&p, &mut w, &g, &mut mom).unwrap();
            // torch.optim.SGD._single_tensor_sgd, dampening 0, nesterov False.
            let d_p: Vec<f64> = g.iter().zip(&w_ref).map(|(&g, &w)| g as f64 + wd * w).collect();
            let step = if mu != 0.0 {
                let b = match buf.take() {
                    None => d_p.clone(),
                    Some(b) => b.iter().zip(&d_p).map(|(b, d)| mu * b + d).collect(),
                };
                buf = Some(b.clone());
                b
            } else {
                d_p
            };
            for (w, s) in w_ref.iter_mut().zip(&step) {
                *w -= lr * s;
            }
        }
        let e = rel_err(&to_f64(&w), &w_ref);
        assert!(e < 1e-6, "momentum {momentum}: rel err {e}");
    }
}

#[test]
fn adam_matches_pytorch_reference() {
    for (len, wd) in [(9usize, 0.0f32), (20_000, 1e-2)] {
        let mut rng = Rng::new(15);
        let w0 = rng.vec(len);
        let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; len], vec![0.0; len]);
        let mut w32 = to_f32(&w0);
        let (mut m32, mut v32) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (mut w_ref, mut m_ref, mut v_ref) = (w0.clone(), vec![0.0f64; len], vec![0.0f64; len]);
        let (lr, b1, b2, eps) = (1e-2f32 as f64, 0.9f32 as f64, 0.999f32 as f64, 1e-8f32 as f64);
        for t in 1..=5u64 {
            let g = rng.vec(len);
            let p = AdamParams::at_step(len, 1e-2, wd, t);
            cpu::adam_step(&p, &mut w, &g, &mut m, &mut v).unwrap();
            cpu::adam_step(&p, &mut w32, &to_f32(&g), &mut m32, &mut v32).unwrap();
            // torch.optim.Adam._single_tensor_adam (amsgrad False, maximize False).
            let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            for i in 0..len {
                let g = g[i] + wd as f64 * w_ref[i];
                m_ref[i] += (g - m_ref[i]) * (1.0 - b1); // lerp_(grad, 1 - beta1)
                v_ref[i] = v_ref[i] * b2 + (1.0 - b2) * g * g;
                let denom = v_ref[i].sqrt() / bc2.sqrt() + eps;
                w_ref[i] -= lr / bc1 * m_ref[i] / denom;
            }
        }
        let e = rel_err(&w, &w_ref);
        assert!(e < 1e-7, "f64 len {len}: rel err {e}");
        let e = rel_err(&to_f64(&w32), &w_ref);
        assert!(e < 1e-5, "f32 len {len}: rel err {e}");
        assert!(rel_err(&to_f64(&v32), &v_ref) < 1e-5 && rel_err(&m, &m_ref) < 1e-9);
    }
}

// ---- PyTorch ----------------------------------------------------------------------------------------------------

/// torch.optim.SGD(momentum 0.9, weight_decay 0.01, lr 0.05): weights after each of 3 steps.
#[test]
fn sgd_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let meta = fx.params("sgd")?;
        let mut w = fx.f32s("sgd.w0")?;
        let p = SgdParams {
            len: w.len() as i32,
            lr: f32_field(&meta, "lr")?,
            momentum: f32_field(&meta, "momentum")?,
            weight_decay: f32_field(&meta, "weight_decay")?,
        };
        let mut mom = vec![0.0f32; w.len()];
        for t in 1..=3 {
            let g = fx.f32s(&format!("sgd.grad{t}"))?;
            if !ck.run(&format!("sgd step {t}"), be.sgd_step(&p, &mut w, &g, &mut mom)) {
                break;
            }
            ck.cmp(&format!("sgd.w{t}"), &w, &fx.f32s(&format!("sgd.w{t}"))?, rel_l2, TOL_OPTIM);
        }
        Ok(())
    })
}

/// torch.optim.Adam(lr 1e-3, weight_decay 0.01; betas 0.9/0.999, eps 1e-8): weights after each of 3 steps.
#[test]
fn adam_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let meta = fx.params("adam")?;
        let (lr, wd) = (f32_field(&meta, "lr")?, f32_field(&meta, "weight_decay")?);
        let mut w = fx.f32s("adam.w0")?;
        let (mut m, mut v) = (vec![0.0f32; w.len()], vec![0.0f32; w.len()]);
        for t in 1..=3u64 {
            let p = AdamParams::at_step(w.len(), lr, wd, t);
            let g = fx.f32s(&format!("adam.grad{t}"))?;
            if !ck.run(&format!("adam step {t}"), be.adam_step(&p, &mut w, &g, &mut m, &mut v)) {
                break;
            }
            ck.cmp(&format!("adam.w{t}"), &w, &fx.f32s(&format!("adam.w{t}"))?, rel_l2, TOL_OPTIM);
        }
        Ok(())
    })
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

#[test]
fn sgd_step_matches_cpu() {
    let mut r = rng("sgd_step");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (len, momentum, wd) in [(1, 0.0f32, 0.0f32), (1000, 0.9, 1e-2), (513, 0.0, 5e-4)] {
        let p = SgdParams { len: len as i32, lr: 0.05, momentum, weight_decay: wd };
        let (w, g, m) = (randn(&mut r, len), randn(&mut r, len), randn(&mut r, len));
        let (mut want_w, mut want_m) = (w.clone(), m.clone());
        cpu.sgd_step(&p, &mut want_w, &g, &mut want_m).unwrap();
        let (mut gw, gg, mut gm) = (e.upload(&w).unwrap(), e.upload(&g).unwrap(), e.upload(&m).unwrap());
        e.sgd_step(&p, e.view_mut(&mut gw), e.view(&gg), e.view_mut(&mut gm)).unwrap();
        assert_close(&format!("sgd_step w {p:?}"), &e.download(&gw).unwrap(), &want_w);
        assert_close(&format!("sgd_step mom {p:?}"), &e.download(&gm).unwrap(), &want_m);
    }
}

#[test]
fn adam_step_matches_cpu() {
    let mut r = rng("adam_step");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (len, wd, t) in [(1, 0.0f32, 1u64), (777, 1e-2, 1), (300, 0.0, 57)] {
        let p = AdamParams::at_step(len, 1e-3, wd, t);
        let (w, g, m) = (randn(&mut r, len), randn(&mut r, len), randn(&mut r, len));
        let v: Vec<f32> = (0..len).map(|_| r.random_range(0.0f32..1.0)).collect();
        let (mut want_w, mut want_m, mut want_v) = (w.clone(), m.clone(), v.clone());
        cpu.adam_step(&p, &mut want_w, &g, &mut want_m, &mut want_v).unwrap();
        let (mut gw, gg) = (e.upload(&w).unwrap(), e.upload(&g).unwrap());
        let (mut gm, mut gv) = (e.upload(&m).unwrap(), e.upload(&v).unwrap());
        e.adam_step(&p, e.view_mut(&mut gw), e.view(&gg), e.view_mut(&mut gm), e.view_mut(&mut gv)).unwrap();
        assert_close(&format!("adam_step w {p:?}"), &e.download(&gw).unwrap(), &want_w);
        assert_close(&format!("adam_step m {p:?}"), &e.download(&gm).unwrap(), &want_m);
        assert_close(&format!("adam_step v {p:?}"), &e.download(&gv).unwrap(), &want_v);
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_and_step_zero_are_errors() {
    let cpu = CpuBackend::new();
    let sp = SgdParams { len: 4, lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    assert!(cpu.sgd_step(&sp, &mut [0.0; 4], &[0.0; 4], &mut [0.0; 3]).is_err());
    let ap = AdamParams::at_step(4, 1e-3, 0.0, 1);
    assert!(cpu.adam_step(&ap, &mut [0.0; 4], &[0.0; 5], &mut [0.0; 4], &mut [0.0; 4]).is_err());
    assert!(
        cpu.adam_step(&AdamParams::at_step(4, 1e-3, 0.0, 0), &mut [0.0; 4], &[0.0; 4], &mut [0.0; 4], &mut [0.0; 4])
            .is_err(),
        "t = 0 has no bias correction"
    );
}

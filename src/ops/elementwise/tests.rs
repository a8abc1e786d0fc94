//! ReLU and fill: the definitions element by element (both ReLU paths: inline and rayon), PyTorch's ReLU
//! (tests/fixtures/ops.safetensors, written by scripts/make_fixtures.py), the CUDA source under the emulation, and
//! bad input.
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::emu::EmuBackend;
use crate::ops::testutil::*;
use anyhow::Result;
use rand::Rng as _;

#[test]
fn relu_forward_and_backward() {
    let cpu = CpuBackend::new();
    for len in [7, 100_003] {
        let x = to_f32(&Rng::new(10).vec(len));
        let g = to_f32(&Rng::new(11).vec(len));
        let mut y = x.clone();
        cpu.relu_forward(&EltwiseParams::new(len), &mut y).unwrap();
        let mut dy = g.clone();
        cpu.relu_backward(&EltwiseParams::new(len), &y, &mut dy).unwrap();
        for i in 0..len {
            assert_eq!(y[i], x[i].max(0.0));
            assert_eq!(dy[i], if x[i] > 0.0 { g[i] } else { 0.0 });
        }
    }
}

// ---- PyTorch ----------------------------------------------------------------------------------------------------

/// ReLU forward (in place) and backward (dy masked by y > 0, in place).
#[test]
fn relu_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let t = |s: &str| fx.f32s(&format!("relu.{s}"));
        let p = EltwiseParams::new(t("x")?.len());
        let mut y = t("x")?;
        if ck.run("relu forward", be.relu_forward(&p, &mut y)) {
            ck.op("relu.y", &y, &t("y")?);
        }
        let mut d = t("dy")?;
        if ck.run("relu backward", be.relu_backward(&p, &t("y")?, &mut d)) {
            ck.op("relu.dx", &d, &t("dx")?);
        }
        Ok(())
    })
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

#[test]
fn relu_forward_and_backward_match_cpu() {
    let mut r = rng("relu");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for len in [1, 1000] {
        let p = EltwiseParams::new(len);
        let mut x = randn(&mut r, len);
        x[0] = 0.0;
        let mut want = x.clone();
        cpu.relu_forward(&p, &mut want).unwrap();
        let mut gx = e.upload(&x).unwrap();
        e.relu_forward(&p, e.view_mut(&mut gx)).unwrap();
        assert_close("relu_forward", &e.download(&gx).unwrap(), &want);

        let dy = randn(&mut r, len);
        let mut want_dy = dy.clone();
        cpu.relu_backward(&p, &want, &mut want_dy).unwrap();
        let (gy, mut gdy) = (e.upload(&want).unwrap(), e.upload(&dy).unwrap());
        e.relu_backward(&p, e.view(&gy), e.view_mut(&mut gdy)).unwrap();
        assert_close("relu_backward", &e.download(&gdy).unwrap(), &want_dy);
    }
}

#[test]
fn fill_sets_every_element() {
    let mut r = rng("fill");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for len in [1, 777] {
        let value = r.random_range(-3.0f32..3.0);
        let mut want = vec![0.0; len];
        cpu.fill(&mut want, value).unwrap();
        let mut g = e.upload(&poison(len)).unwrap();
        e.fill(e.view_mut(&mut g), value).unwrap();
        assert_close("fill", &e.download(&g).unwrap(), &want);
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_are_errors() {
    let cpu = CpuBackend::new();
    assert!(cpu.relu_forward(&EltwiseParams::new(5), &mut [0.0; 4]).is_err());
    assert!(cpu.relu_backward(&EltwiseParams::new(5), &[0.0; 5], &mut [0.0; 6]).is_err());
}

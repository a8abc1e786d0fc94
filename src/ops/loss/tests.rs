//! Losses and accuracies: the direct formulas and finite differences in f64, stability at extreme logits,
//! first-max ties, PyTorch's values (tests/fixtures/ops.safetensors, written by scripts/make_fixtures.py), the
//! CUDA source under the emulation, and bad input (labels outside 0..k are errors).
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::emu::EmuBackend;
use crate::ops::testutil::*;
use anyhow::Result;
use approx::assert_abs_diff_eq;
use rand::Rng as _;

#[test]
fn softmax_xent_value_and_gradient() {
    let mut rng = Rng::new(12);
    for (n, k) in [(1, 3), (4, 12), (7, 5)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f64> = rng.vec(n * k).iter().map(|v| 3.0 * v).collect();
        let labels: Vec<i32> = (0..n).map(|i| ((i * 7 + 3) % k) as i32).collect();
        let loss_of = |l: &[f64]| {
            let (mut g, mut loss) = (vec![0.0; n * k], [f64::NAN]);
            cpu::softmax_xent(&p, l, &labels, &mut g, &mut loss).unwrap();
            loss[0]
        };
        // Direct formula: mean of -log(exp(l_y) / sum exp(l)).
        let direct: f64 = (0..n)
            .map(|i| {
                let row = &logits[i * k..(i + 1) * k];
                -(row[labels[i] as usize].exp() / row.iter().map(|v| v.exp()).sum::<f64>()).ln()
            })
            .sum::<f64>()
            / n as f64;
        let (mut g, mut l) = (vec![f64::NAN; n * k], [f64::NAN]);
        cpu::softmax_xent(&p, &logits, &labels, &mut g, &mut l).unwrap();
        assert_abs_diff_eq!(l[0], direct, epsilon = 1e-12 * direct.abs().max(1.0));
        let e = rel_err(&g, &fd_grad(loss_of, &logits, 1e-6));
        assert!(e < 1e-7, "({n}, {k}): grad rel err {e}");
    }
}

#[test]
fn softmax_xent_is_stable_for_large_logits() {
    let p = LossParams::new(2, 3);
    let (mut g, mut l) = (vec![0.0f32; 6], vec![0.0f32; 1]);
    let logits = [1000.0f32, 0.0, -1000.0, 500.0, 500.0, -500.0];
    CpuBackend::new().softmax_xent(&p, &logits, &vec![1, 0], &mut g, &mut l).unwrap();
    // Row 0: loss 1000; row 1: two equal maxima, loss ln 2.
    assert_abs_diff_eq!(l[0], (1000.0 + std::f32::consts::LN_2) / 2.0, epsilon = 1e-3);
    let want = [0.5, -0.5, 0.0, 0.25 - 0.5, 0.25, 0.0];
    assert_abs_diff_eq!(&g[..], &want[..], epsilon = 1e-6);
}

#[test]
fn bce_logits_value_and_gradient() {
    let mut rng = Rng::new(13);
    for (n, k) in [(1, 1), (5, 3), (4, 40)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f64> = rng.vec(n * k).iter().map(|v| 4.0 * v).collect();
        let targets: Vec<f64> = rng.vec(n * k).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
        let loss_of = |l: &[f64]| {
            let (mut g, mut loss) = (vec![0.0; n * k], [0.0]);
            cpu::bce_logits(&p, l, &targets, &mut g, &mut loss).unwrap();
            loss[0]
        };
        // Direct formula: -(t ln s + (1 - t) ln(1 - s)), s = sigmoid(l).
        let direct = logits
            .iter()
            .zip(&targets)
            .map(|(&l, &t)| {
                let s = 1.0 / (1.0 + (-l).exp());
                -(t * s.ln() + (1.0 - t) * (1.0 - s).ln())
            })
            .sum::<f64>()
            / (n * k) as f64;
        let (mut g, mut l) = (vec![0.0; n * k], [0.0]);
        cpu::bce_logits(&p, &logits, &targets, &mut g, &mut l).unwrap();
        assert_abs_diff_eq!(l[0], direct, epsilon = 1e-12);
        let e = rel_err(&g, &fd_grad(loss_of, &logits, 1e-6));
        assert!(e < 1e-7, "({n}, {k}): grad rel err {e}");
    }
    // Stable at extreme logits: loss 100 for a confident wrong answer, 0 for a confident right one.
    let (mut g, mut l) = (vec![0.0f32; 2], vec![0.0f32]);
    CpuBackend::new().bce_logits(&LossParams::new(1, 2), &[100.0, -100.0], &[0.0, 0.0], &mut g, &mut l).unwrap();
    assert_abs_diff_eq!(l[0], 50.0, epsilon = 1e-4);
    assert_abs_diff_eq!(g[0], 0.5, epsilon = 1e-6);
    assert_abs_diff_eq!(g[1], 0.0, epsilon = 1e-30);
}

#[test]
fn accuracies_accumulate() {
    let cpu = CpuBackend::new();
    let p = LossParams::new(3, 3);
    // Row 0: tie between 0 and 2 -> argmax 0 (label 0: hit); row 1: argmax 1 (label 2: miss); row 2: hit.
    let logits = [2.0f32, 1.0, 2.0, 0.0, 3.0, 1.0, -1.0, -2.0, -0.5];
    let mut correct = vec![1.0f32];
    cpu.accuracy_classes(&p, &logits, &vec![0, 2, 2], &mut correct).unwrap();
    assert_eq!(correct, [3.0]);
    cpu.accuracy_classes(&p, &logits, &vec![0, 1, 2], &mut correct).unwrap();
    assert_eq!(correct, [6.0]);
    let targets = [1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let mut per_col = vec![10.0f32, 20.0, 30.0];
    cpu.accuracy_binary(&p, &logits, &targets, &mut per_col).unwrap();
    // Column 0: (T,T) (F,F) (F,F) = 3; column 1: (T,F) (T,T) (F,F) = 2; column 2: (T,T) (T,T) (F,T) = 2.
    assert_eq!(per_col, [13.0, 22.0, 32.0]);
}

// ---- PyTorch ----------------------------------------------------------------------------------------------------

/// Mean softmax cross-entropy: loss and gradient of the mean loss w.r.t. the logits.
#[test]
fn cross_entropy_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let s = fx.shape("cross_entropy.logits")?;
        let p = LossParams::new(s[0], s[1]);
        let labels = fx.i32s("cross_entropy.labels")?;
        let (mut grad, mut loss) = (vec![f32::NAN; s[0] * s[1]], vec![f32::NAN; 1]);
        let r = be.softmax_xent(&p, &fx.f32s("cross_entropy.logits")?, &labels, &mut grad, &mut loss);
        if ck.run("softmax_xent", r) {
            ck.op("cross_entropy.loss", &loss, &fx.f32s("cross_entropy.loss")?);
            ck.op("cross_entropy.grad", &grad, &fx.f32s("cross_entropy.grad")?);
        }
        Ok(())
    })
}

/// Mean BCE-with-logits over n*k: loss and gradient.
#[test]
fn bce_logits_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let s = fx.shape("bce_logits.logits")?;
        let p = LossParams::new(s[0], s[1]);
        let (mut grad, mut loss) = (vec![f32::NAN; s[0] * s[1]], vec![f32::NAN; 1]);
        let r =
            be.bce_logits(&p, &fx.f32s("bce_logits.logits")?, &fx.f32s("bce_logits.targets")?, &mut grad, &mut loss);
        if ck.run("bce_logits", r) {
            ck.op("bce_logits.loss", &loss, &fx.f32s("bce_logits.loss")?);
            ck.op("bce_logits.grad", &grad, &fx.f32s("bce_logits.grad")?);
        }
        Ok(())
    })
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

#[test]
fn softmax_xent_matches_cpu() {
    let mut r = rng("softmax_xent");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (n, k) in [(1, 12), (37, 5), (70, 40)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f32> = (0..n * k).map(|_| r.random_range(-8.0f32..8.0)).collect();
        let labels: Vec<i32> = (0..n).map(|_| r.random_range(0..k as i32)).collect();
        let (mut want_g, mut want_l) = (vec![0.0; n * k], vec![0.0; 1]);
        cpu.softmax_xent(&p, &logits, &labels, &mut want_g, &mut want_l).unwrap();
        let (gl, gy) = (e.upload(&logits).unwrap(), e.upload_i32(&labels).unwrap());
        let (mut gg, mut gloss) = (e.upload(&poison(n * k)).unwrap(), e.upload(&poison(1)).unwrap());
        e.softmax_xent(&p, e.view(&gl), &gy, e.view_mut(&mut gg), e.view_mut(&mut gloss)).unwrap();
        assert_close(&format!("softmax_xent grad {p:?}"), &e.download(&gg).unwrap(), &want_g);
        assert_close(&format!("softmax_xent loss {p:?}"), &e.download(&gloss).unwrap(), &want_l);
    }
}

#[test]
fn bce_logits_matches_cpu() {
    let mut r = rng("bce_logits");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (n, k) in [(1, 1), (3, 5), (100, 40)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f32> = (0..n * k).map(|_| r.random_range(-20.0f32..20.0)).collect();
        let targets: Vec<f32> = (0..n * k).map(|_| r.random_range(0..2) as f32).collect();
        let (mut want_g, mut want_l) = (vec![0.0; n * k], vec![0.0; 1]);
        cpu.bce_logits(&p, &logits, &targets, &mut want_g, &mut want_l).unwrap();
        let (gl, gt) = (e.upload(&logits).unwrap(), e.upload(&targets).unwrap());
        let (mut gg, mut gloss) = (e.upload(&poison(n * k)).unwrap(), e.upload(&poison(1)).unwrap());
        e.bce_logits(&p, e.view(&gl), e.view(&gt), e.view_mut(&mut gg), e.view_mut(&mut gloss)).unwrap();
        assert_close(&format!("bce_logits grad {p:?}"), &e.download(&gg).unwrap(), &want_g);
        assert_close(&format!("bce_logits loss {p:?}"), &e.download(&gloss).unwrap(), &want_l);
    }
}

#[test]
fn accuracy_classes_accumulates_like_cpu() {
    let mut r = rng("accuracy_classes");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (n, k) in [(1, 12), (53, 3), (70, 40)] {
        let p = LossParams::new(n, k);
        // Small integers: many ties, so the first-max rule matters.
        let logits: Vec<f32> = (0..n * k).map(|_| r.random_range(0..4) as f32).collect();
        let labels: Vec<i32> = (0..n).map(|_| r.random_range(0..k as i32)).collect();
        let start = vec![r.random_range(0..100) as f32];
        let mut want = start.clone();
        cpu.accuracy_classes(&p, &logits, &labels, &mut want).unwrap();
        let (gl, gy, mut gc) = (e.upload(&logits).unwrap(), e.upload_i32(&labels).unwrap(), e.upload(&start).unwrap());
        e.accuracy_classes(&p, e.view(&gl), &gy, e.view_mut(&mut gc)).unwrap();
        assert_eq!(e.download(&gc).unwrap(), want, "accuracy_classes {p:?} (started at {start:?})");
        assert!(want[0] >= start[0], "accuracy must accumulate");
    }
}

#[test]
fn accuracy_binary_accumulates_like_cpu() {
    let mut r = rng("accuracy_binary");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (n, k) in [(1, 1), (33, 5), (100, 40), (3, 70)] {
        let p = LossParams::new(n, k);
        let mut logits = randn(&mut r, n * k);
        logits[0] = 0.0; // exactly 0 counts as "negative"
        let targets: Vec<f32> = (0..n * k).map(|_| r.random_range(0..2) as f32).collect();
        let start: Vec<f32> = (0..k).map(|_| r.random_range(0..100) as f32).collect();
        let mut want = start.clone();
        cpu.accuracy_binary(&p, &logits, &targets, &mut want).unwrap();
        let (gl, gt, mut gc) = (e.upload(&logits).unwrap(), e.upload(&targets).unwrap(), e.upload(&start).unwrap());
        e.accuracy_binary(&p, e.view(&gl), e.view(&gt), e.view_mut(&mut gc)).unwrap();
        assert_eq!(e.download(&gc).unwrap(), want, "accuracy_binary {p:?}");
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_and_bad_labels_are_errors() {
    let cpu = CpuBackend::new();
    let lp = LossParams::new(2, 3);
    let (lg, mut gr, mut ls) = (vec![0.0f32; 6], vec![0.0f32; 6], vec![0.0f32; 1]);
    let err = cpu.softmax_xent(&lp, &lg, &vec![0, 3], &mut gr, &mut ls).unwrap_err().to_string();
    assert!(err.contains("label 3"), "{err}");
    assert!(cpu.softmax_xent(&lp, &lg, &vec![-1, 0], &mut gr, &mut ls).is_err());
    assert!(cpu.softmax_xent(&lp, &lg, &vec![0], &mut gr, &mut ls).is_err(), "too few labels");
    assert!(cpu.accuracy_classes(&lp, &lg, &vec![0, 7], &mut ls).is_err());
    assert!(cpu.bce_logits(&lp, &lg, &lg[..5], &mut gr, &mut ls).is_err());
    assert!(cpu.accuracy_binary(&lp, &lg, &lg, &mut [0.0; 2]).is_err());
}

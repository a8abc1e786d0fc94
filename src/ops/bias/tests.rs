//! Bias: the broadcast and finite differences in f64, the CUDA source under the emulation (the per-channel,
//! per-row and split reductions), and bad input. PyTorch's values for the bias are checked with the layers that
//! use it (conv2d/tests.rs, gemm/tests.rs).
use super::cuda::bias_backward_plan_with_splits;
use super::*;
use crate::ops::cpu::CpuBackend;
use crate::ops::emu::EmuBackend;
use crate::ops::launch::{Arg, Launcher};
use crate::ops::testutil::*;

#[test]
fn bias_forward_and_backward() {
    let mut rng = Rng::new(9);
    // inner 1 (linear), small conv-like, and one above the parallel threshold.
    for (n, c, inner) in [(3, 4, 1), (2, 3, 5), (5, 7, 1000)] {
        let p = BiasParams::new(n, c, inner);
        let (b, y0, r) = (rng.vec(c), rng.vec(p.len()), rng.vec(p.len()));
        let mut y = y0.clone();
        cpu::bias_forward(&p, &b, &mut y).unwrap();
        for (e, (&v, &v0)) in y.iter().zip(&y0).enumerate() {
            assert_eq!(v, v0 + b[(e / inner) % c]);
        }
        let loss = |b: &[f64]| {
            let mut y = y0.clone();
            cpu::bias_forward(&p, b, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut db = vec![f64::NAN; c];
        cpu::bias_backward(&p, &r, &mut db).unwrap();
        let e = rel_err(&db, &fd_grad(loss, &b, 1e-3));
        assert!(e < 1e-8, "({n}, {c}, {inner}): rel err {e}");
    }
}

// ---- the CUDA source under the emulation -------------------------------------------------------------------------

#[test]
fn bias_forward_and_backward_match_cpu() {
    let mut r = rng("bias");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    for (n, c, inner) in [(2, 3, 5), (4, 7, 1), (1, 130, 1), (3, 2, 300)] {
        let p = BiasParams::new(n, c, inner);
        let (b, y0) = (randn(&mut r, c), randn(&mut r, p.len()));
        let mut want = y0.clone();
        cpu.bias_forward(&p, &b, &mut want).unwrap();
        let (gb, mut gy) = (e.upload(&b).unwrap(), e.upload(&y0).unwrap());
        e.bias_forward(&p, e.view(&gb), e.view_mut(&mut gy)).unwrap();
        assert_close(&format!("bias_forward {p:?}"), &e.download(&gy).unwrap(), &want);

        let dy = randn(&mut r, p.len());
        let mut want_db = vec![0.0; c];
        cpu.bias_backward(&p, &dy, &mut want_db).unwrap();
        let (gdy, mut gdb) = (e.upload(&dy).unwrap(), e.upload(&poison(c)).unwrap());
        e.bias_backward(&p, e.view(&gdy), e.view_mut(&mut gdb)).unwrap();
        assert_close(&format!("bias_backward {p:?}"), &e.download(&gdb).unwrap(), &want_db);
    }
}

/// bias_backward over image slices: any number of slices (more than images too) gives the same db.
#[test]
fn bias_backward_splits_match_cpu() {
    let mut r = rng("bias_backward_splits");
    let cpu = CpuBackend::new();
    let e = EmuBackend::new();
    let p = BiasParams::new(5, 3, 40);
    let dy = randn(&mut r, p.len());
    let mut want = vec![0.0; 3];
    cpu.bias_backward(&p, &dy, &mut want).unwrap();
    for splits in [1, 2, 7] {
        let plan = bias_backward_plan_with_splits(&p, splits);
        assert_eq!(plan.len(), if splits > 1 { 2 } else { 1 });
        let (gdy, mut gdb) = (e.upload(&dy).unwrap(), e.upload(&poison(3)).unwrap());
        let args = &mut [Arg::input(e.view(&gdy)), Arg::output(e.view_mut(&mut gdb))];
        e.launch("bias_backward", &plan, &p, args).unwrap();
        assert_close(&format!("bias_backward splits {splits}"), &e.download(&gdb).unwrap(), &want);
    }
}

// ---- bad input ---------------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_are_errors() {
    let cpu = CpuBackend::new();
    assert!(cpu.bias_forward(&BiasParams::new(2, 3, 4), &[0.0; 2], &mut [0.0; 24]).is_err());
    assert!(cpu.bias_backward(&BiasParams::new(2, 3, 4), &[0.0; 23], &mut [0.0; 3]).is_err());
}

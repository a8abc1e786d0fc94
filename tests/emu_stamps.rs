//! Launch stamps (`--kernel-timing stamps`, kernels/common.cuh `PtStamp`) on the CPU emulation: every launch
//! of every plan closes exactly one ring slot with its (first block start, last block end), the accumulator is
//! clear again after each launch, the outputs do not change, and nothing is stamped once the pointer is null.
//! A test binary of its own: the stamp pointer is global to the emulator, and other tests' launches would
//! stamp into this buffer.
use powertrain::backend::cuda::launch::{self, Launch, STAMP_BUF_WORDS, STAMP_HEADER_WORDS, STAMP_RING};
use powertrain::backend::*;
use powertrain_emu as emu;
use std::ffi::c_void;

fn run<P: bytemuck::Pod>(plan: &[Launch], p: &P, bufs: &mut [&mut Vec<f32>]) {
    for l in plan {
        let mut ptrs: Vec<*mut c_void> = bufs.iter_mut().map(|b| b.as_mut_ptr() as *mut c_void).collect();
        let mut args: Vec<*mut c_void> = vec![p as *const P as *mut c_void];
        args.extend(ptrs.iter_mut().map(|q| q as *mut *mut c_void as *mut c_void));
        // SAFETY: args[0] points at `p` (size checked by the emulator), the rest at pointer variables into
        // buffers sized for the op's shapes below; all outlive the call.
        unsafe { emu::launch(l.func, l.grid, l.block, l.shared_bytes, &mut args, std::mem::size_of::<P>()) }
            .unwrap_or_else(|e| panic!("launch {l:?}: {e}"));
    }
}

/// The workload: plans with many blocks, a two-launch split-K GEMM and the probe. Returns the launches made.
fn workload(x: &mut Vec<f32>, a: &mut Vec<f32>, b: &mut Vec<f32>, c: &mut Vec<f32>) -> usize {
    let e = EltwiseParams::new(x.len());
    let g = GemmParams::new(64, 48, 1024, false, false);
    let relu = launch::relu_forward(&e);
    let gemm = launch::gemm_with_splits(&g, 4);
    let probe = launch::stamp_probe();
    assert!(relu[0].grid.0 > 1 && gemm.len() == 2 && gemm[0].grid.2 == 4, "{relu:?} {gemm:?}");
    run(&relu, &e, &mut [x]);
    run(&gemm, &g, &mut [a, b, c]);
    run(&probe, &e, &mut [x]);
    relu.len() + gemm.len() + probe.len()
}

#[test]
fn every_launch_closes_one_slot_and_outputs_do_not_change() {
    let (bytes, ring) = emu::stamp_layout();
    assert_eq!((bytes, ring as usize), (8 * STAMP_BUF_WORDS, STAMP_RING), "Rust and C++ layouts differ");
    let fresh = || {
        let x: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).sin()).collect();
        let a: Vec<f32> = (0..64 * 1024).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
        let b: Vec<f32> = (0..1024 * 48).map(|i| ((i % 7) as f32 - 3.0) * 0.02).collect();
        (x, a, b, vec![0.0f32; 64 * 48])
    };
    let (mut x0, mut a0, mut b0, mut c0) = fresh();
    let n = workload(&mut x0, &mut a0, &mut b0, &mut c0);

    let mut buf = vec![0u64; STAMP_BUF_WORDS];
    // SAFETY: a zeroed buffer of the checked size, alive and untouched until stamps are turned off below.
    unsafe { emu::set_stamps(buf.as_mut_ptr() as *mut c_void) };
    let (mut x, mut a, mut b, mut c) = fresh();
    let host0 = std::time::Instant::now();
    let rounds = 3;
    for _ in 0..rounds {
        workload(&mut x, &mut a, &mut b, &mut c);
    }
    let host_ns = host0.elapsed().as_nanos() as u64;
    // SAFETY: null turns stamping off; `buf` is read only after this.
    unsafe { emu::set_stamps(std::ptr::null_mut()) };
    // Stamps change no output (one round without, three with: relu is idempotent and c is overwritten).
    assert_eq!((x.clone(), c.clone()), (x0, c0));

    let (start_acc, end_acc, word2) = (buf[0], buf[1], buf[2]);
    let (blocks_done, seq) = (word2 & 0xffff_ffff, word2 >> 32);
    assert_eq!(seq as usize, rounds * n, "one slot per launch");
    assert_eq!((start_acc, end_acc, blocks_done), (0, 0, 0), "the accumulator is clear after each launch");
    let slot = |s: usize| (buf[STAMP_HEADER_WORDS + 2 * s], buf[STAMP_HEADER_WORDS + 2 * s + 1]);
    let mut busy = 0;
    for s in 0..rounds * n {
        let (t0, t1) = slot(s);
        assert!(t0 > 0 && t0 <= t1, "launch {s}: start {t0} end {t1}");
        if s > 0 {
            assert!(slot(s - 1).1 <= t0, "launch {s} starts before launch {} ended", s - 1);
        }
        busy += t1 - t0;
    }
    assert!(busy > 0 && busy <= host_ns, "stamped {busy} ns of {host_ns} ns");
    // The split-K GEMM (6 MFLOP over 4 blocks of 256 threads) takes longer than the empty probe.
    let (g0, g1) = slot(1);
    let (p0, p1) = slot(3);
    assert!(g1 - g0 > p1 - p0, "gemm {} ns vs probe {} ns", g1 - g0, p1 - p0);

    // Off: launches leave the buffer alone.
    let before = buf.clone();
    workload(&mut x, &mut a, &mut b, &mut c);
    assert_eq!(buf, before);
}

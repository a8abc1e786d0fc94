//! Launch stamps (`--kernel-timing stamps`, kernels/common.cuh `PtStamp`) on the CPU emulation: every launch
//! of every plan closes exactly one ring slot with its (first block start, last block end), the accumulator is
//! clear again after each launch, the outputs do not change, and nothing is stamped once the pointer is null.
//! Then the host's bookkeeping (`StampBook`, the code the CUDA backend runs) on that emulated ring, across a
//! wrap of the ring. A test binary of its own, its tests one at a time: the stamp pointer is global to the
//! emulator, and other tests' launches would stamp into the buffer. The launches go straight to the emulator's
//! C ABI (`ops::emu::ffi`) with the CUDA plans, on plain host buffers.
use powertrain::ops::cuda::stamps::{StampBook, PT_STAMP_RING as STAMP_RING, STAMP_BUF_WORDS, STAMP_HEADER_WORDS};
use powertrain::ops::elementwise::cuda::{relu_forward_plan, stamp_probe_plan};
use powertrain::ops::emu::ffi as emu;
use powertrain::ops::gemm::cuda::gemm_plan_with_splits;
use powertrain::ops::launch::Launch;
use powertrain::ops::*;
use std::ffi::c_void;

/// The emulator's stamp pointer is global: one test at a time.
static STAMPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
    let relu = relu_forward_plan(&e);
    let gemm = gemm_plan_with_splits(&g, 4);
    let probe = stamp_probe_plan();
    assert!(relu[0].grid.0 > 1 && gemm.len() == 2 && gemm[0].grid.2 == 4, "{relu:?} {gemm:?}");
    run(&relu, &e, &mut [x]);
    run(&gemm, &g, &mut [a, b, c]);
    run(&probe, &e, &mut [x]);
    relu.len() + gemm.len() + probe.len()
}

#[test]
fn every_launch_closes_one_slot_and_outputs_do_not_change() {
    let _one = STAMPS.lock().unwrap_or_else(|e| e.into_inner());
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

/// The stamps of launches `a..b` from the emulated ring, read the way the CUDA backend reads the device's.
fn read(buf: *const u64, a: u64, b: u64) -> Vec<(u64, u64)> {
    // SAFETY: `buf` points at STAMP_BUF_WORDS words that live for the test; no launch runs during the read.
    let words = unsafe { std::slice::from_raw_parts(buf, STAMP_BUF_WORDS) };
    let mut out = Vec::new();
    for (_, lo, n) in powertrain::ops::cuda::stamps::ring_chunks(a, b).unwrap() {
        out.extend(words[lo..lo + 2 * n].chunks_exact(2).map(|w| (w[0], w[1])));
    }
    out
}

#[test]
fn the_host_bookkeeping_times_ops_across_a_ring_wrap() {
    let _one = STAMPS.lock().unwrap_or_else(|e| e.into_inner());
    let mut buf = vec![0u64; STAMP_BUF_WORDS];
    let ptr = buf.as_mut_ptr();
    // SAFETY: a zeroed buffer of the checked size, alive until stamps are turned off below; Rust reads it only
    // through `ptr`, between launches.
    unsafe { emu::set_stamps(ptr as *mut c_void) };
    let mut book = StampBook::default();
    let mut x: Vec<f32> = (0..3000).map(|i| i as f32 - 1500.0).collect();
    let e = EltwiseParams::new(x.len());
    let (g, mut a, mut b, mut c) = (
        GemmParams::new(32, 16, 512, false, false),
        vec![0.5f32; 32 * 512],
        vec![0.25f32; 512 * 16],
        vec![0.0f32; 32 * 16],
    );
    let mut drains = 0;
    // One op as the backend runs it: note the first launch, launch the plan, count it (timed or not), and
    // read early when the ring would wrap over unread launches.
    let mut op = |book: &mut StampBook, name: &'static str, timed: bool, go: &mut dyn FnMut()| {
        let first = book.launched;
        go();
        let n = if name == "gemm" { 2 } else { 1 };
        book.end_op(name, timed.then_some(first), n);
        if book.must_drain() {
            let (from, to) = book.unread().unwrap();
            book.absorb(from, read(ptr, from, to)).unwrap();
            drains += 1;
        }
    };
    let probes = STAMP_RING + 3000;
    op(&mut book, "relu_forward", true, &mut || run(&relu_forward_plan(&e), &e, &mut [&mut x]));
    let anchor_gt = read(ptr, 0, 1)[0].0; // launch 0's start (its slot is overwritten later): host time 10 s
    op(&mut book, "gemm", false, &mut || run(&gemm_plan_with_splits(&g, 2), &g, &mut [&mut a, &mut b, &mut c]));
    op(&mut book, "gemm", true, &mut || run(&gemm_plan_with_splits(&g, 2), &g, &mut [&mut a, &mut b, &mut c]));
    for _ in 0..probes {
        op(&mut book, "fill", true, &mut || run(&stamp_probe_plan(), &e, &mut [&mut x]));
    }
    // SAFETY: null turns stamping off.
    unsafe { emu::set_stamps(std::ptr::null_mut()) };
    // The device closed exactly the launches the host counted (what the backend checks at each anchor).
    let seq = powertrain::ops::cuda::stamps::header_seq(buf[2]);
    assert_eq!(seq, book.launched, "device {seq} vs host {}", book.launched);
    assert_eq!(book.launched as usize, 1 + 2 + 2 + probes);
    assert!(drains >= 2, "{drains} early reads for {probes} launches");
    let (from, to) = book.unread().unwrap();
    book.absorb(from, read(ptr, from, to)).unwrap();
    let t = book.take((anchor_gt, 10.0)).unwrap();
    assert_eq!(t.len(), 2 + probes, "timed ops only (the untimed gemm is not among them)");
    assert_eq!((t[0].name, t[1].name, t[2].name), ("relu_forward", "gemm", "fill"));
    approx::assert_abs_diff_eq!(t[0].start_s, 10.0, epsilon = 1e-12);
    // The timed gemm's two launches make one op, after the untimed gemm.
    assert!(t[1].dur_s > 0.0 && t[1].start_s > t[0].start_s + t[0].dur_s, "{:?}", &t[..2]);
    for w in t.windows(2) {
        assert!(w[0].dur_s >= 0.0 && w[0].start_s + w[0].dur_s <= w[1].start_s + 1e-12, "{w:?}");
    }
    assert!(book.is_empty() && book.unread().is_none());
}

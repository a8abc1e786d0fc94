//! The CUDA kernels of `kernels/*.cu`, run on the CPU through the emulator (tests/emu, the same source
//! compiled by g++) with the launch plans of `powertrain::ops::cuda::launch`, against the CPU backend.
//!
//! Every case: fresh random inputs (seeded by the clock, seed printed; rerun one with POWERTRAIN_EMU_SEED=<seed>),
//! outputs poisoned with NaN, every buffer framed by NaN guard zones (a read outside the buffer turns the result
//! NaN, a write outside is caught by `check_guards`), awkward shapes (not tile multiples, batch 1, 3 and 27
//! channels, 1x5 kernels, strides), max relative error <= 1e-4 against `CpuBackend`.
use powertrain::ops::cpu::CpuBackend;
use powertrain::ops::cuda::launch::{self, Launch};
use powertrain::ops::*;
use powertrain_emu as emu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ffi::c_void;

const TOL: f32 = 1e-4;
/// Words of guard on each side of every buffer, holding GUARD_BITS (a NaN with a recognisable payload).
const GUARD: usize = 64;
const GUARD_BITS: u32 = 0x7fa5_5a5a;
const POISON_BITS: u32 = 0x7fc0_0000;

/// A 4-byte-element buffer framed by guard zones, as the kernels see device memory.
struct G {
    bits: Vec<u32>,
    len: usize,
}

impl G {
    fn from_bits(body: impl Iterator<Item = u32>, len: usize) -> G {
        let mut bits = vec![GUARD_BITS; GUARD];
        bits.extend(body);
        bits.extend(std::iter::repeat_n(GUARD_BITS, GUARD));
        assert_eq!(bits.len(), len + 2 * GUARD);
        G { bits, len }
    }
    fn f32(v: &[f32]) -> G {
        G::from_bits(v.iter().map(|x| x.to_bits()), v.len())
    }
    fn i32(v: &[i32]) -> G {
        G::from_bits(v.iter().map(|&x| x as u32), v.len())
    }
    /// Output buffer: every element NaN, so an element the kernel forgets to write fails the comparison.
    fn poisoned(len: usize) -> G {
        G::from_bits(std::iter::repeat_n(POISON_BITS, len), len)
    }
    fn ptr(&mut self) -> *mut c_void {
        self.bits[GUARD..].as_mut_ptr() as *mut c_void
    }
    fn to_f32(&self) -> Vec<f32> {
        self.bits[GUARD..GUARD + self.len].iter().map(|&b| f32::from_bits(b)).collect()
    }
    fn to_i32(&self) -> Vec<i32> {
        self.bits[GUARD..GUARD + self.len].iter().map(|&b| b as i32).collect()
    }
    fn check_guards(&self, what: &str) {
        let n = self.bits.len();
        for (i, &b) in self.bits[..GUARD].iter().chain(&self.bits[n - GUARD..]).enumerate() {
            assert_eq!(b, GUARD_BITS, "{what}: a kernel wrote outside its buffer (guard word {i})");
        }
    }
}

/// Runs every launch of `plan` on the emulator with (params, buffers...) as the kernel arguments.
/// Plans run whole, one at a time: a split-K plan keeps partial sums in the kernels' static scratch between
/// its two launches (as on the GPU, where one stream orders them), so tests running in parallel threads must
/// not interleave their launches.
static PLAN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run<P: bytemuck::Pod>(what: &str, plan: &[Launch], p: &P, bufs: &mut [&mut G]) {
    assert!(!plan.is_empty(), "{what}: empty plan");
    let _serial = PLAN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for l in plan {
        let mut ptrs: Vec<*mut c_void> = bufs.iter_mut().map(|b| b.ptr()).collect();
        let mut args: Vec<*mut c_void> = vec![p as *const P as *mut c_void];
        args.extend(ptrs.iter_mut().map(|q| q as *mut *mut c_void as *mut c_void));
        // SAFETY: args[0] points at `p` (a Pod param struct whose size the emulator checks against the kernel's),
        // the rest at pointer variables into buffers sized by the test for this op's shapes; `ptrs` and `bufs`
        // outlive the call.
        let r = unsafe { emu::launch(l.func, l.grid, l.block, l.shared_bytes, &mut args, std::mem::size_of::<P>()) };
        if let Err(e) = r {
            panic!("{what}: launch {l:?} failed: {e}");
        }
    }
    for (i, b) in bufs.iter().enumerate() {
        b.check_guards(&format!("{what} (buffer {i})"));
    }
}

fn rng(test: &str) -> ChaCha8Rng {
    let seed = std::env::var("POWERTRAIN_EMU_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("{test}: seed = {seed} (rerun with POWERTRAIN_EMU_SEED={seed})");
    ChaCha8Rng::seed_from_u64(seed)
}

fn randn(r: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Max over elements of |got - want| / max(|want|, 1e-2 * max|want|): relative error with a floor, so that
/// sums that cancel to ~0 (long reductions of random signs) are judged on the scale of the output.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = (1e-2 * scale).max(f32::MIN_POSITIVE);
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(w.is_finite(), "{what}: reference not finite at {i}: {w}");
        assert!(g.is_finite(), "{what}: kernel output not finite at {i}: {g} (want {w})");
        let e = (g - w).abs() / w.abs().max(floor);
        if e > worst {
            worst = e;
            at = i;
        }
    }
    assert!(worst <= TOL, "{what}: max relative error {worst:e} at {at}: got {} want {}", got[at], want[at]);
}

// ---- conv2d -------------------------------------------------------------------------------------------------

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
        let (mut gx, mut gw, mut gy) = (G::f32(&x), G::f32(&w), G::poisoned(p.y_len()));
        run("conv2d_forward", &launch::conv2d_forward(&p), &p, &mut [&mut gx, &mut gw, &mut gy]);
        assert_close(&format!("conv2d_forward {p:?}"), &gy.to_f32(), &want);
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
        let (mut gdy, mut gw, mut gdx) = (G::f32(&dy), G::f32(&w), G::poisoned(p.x_len()));
        run("conv2d_backward_data", &launch::conv2d_backward_data(&p), &p, &mut [&mut gdy, &mut gw, &mut gdx]);
        assert_close(&format!("conv2d_backward_data {p:?}"), &gdx.to_f32(), &want);
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
        let (mut gx, mut gdy, mut gdw) = (G::f32(&x), G::f32(&dy), G::poisoned(p.w_len()));
        run("conv2d_backward_filter", &launch::conv2d_backward_filter(&p), &p, &mut [&mut gx, &mut gdy, &mut gdw]);
        assert_close(&format!("conv2d_backward_filter {p:?}"), &gdw.to_f32(), &want);
    }
}

/// Split-K of backward-filter: any number of K slices (including one that ends up empty) gives the same dw.
#[test]
fn conv2d_backward_filter_split_k_matches_cpu() {
    let mut r = rng("conv2d_backward_filter_split_k");
    let cpu = CpuBackend::new();
    let p = Conv2dParams::new(2, 3, 1, 300, 5, 1, 5, 0, 2); // K = n*h_out*w_out = 600
    assert!(launch::conv2d_backward_filter(&p)[0].grid.2 > 1, "the default plan of this shape splits K");
    let (x, dy) = (randn(&mut r, p.x_len()), randn(&mut r, p.y_len()));
    let mut want = vec![0.0; p.w_len()];
    cpu.conv2d_backward_filter(&p, &x, &dy, &mut want).unwrap();
    // 37 slices: more than the reduce block's 8 warps, not a multiple of them, and 18 of them empty.
    for splits in [1, 3, 9, 37] {
        let plan = launch::conv2d_backward_filter_with_splits(&p, splits);
        assert_eq!(plan.len(), if splits > 1 { 2 } else { 1 });
        let (mut gx, mut gdy, mut gdw) = (G::f32(&x), G::f32(&dy), G::poisoned(p.w_len()));
        run("conv2d_backward_filter", &plan, &p, &mut [&mut gx, &mut gdy, &mut gdw]);
        assert_close(&format!("conv2d_backward_filter splits {splits}"), &gdw.to_f32(), &want);
    }
}

// ---- pooling ------------------------------------------------------------------------------------------------

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
            let (mut gx, mut gy, mut gi) = (G::f32(&x), G::poisoned(p.y_len()), G::poisoned(p.y_len()));
            run("maxpool2d_forward", &launch::maxpool2d_forward(&p), &p, &mut [&mut gx, &mut gy, &mut gi]);
            assert_close(&format!("maxpool2d_forward {p:?}"), &gy.to_f32(), &want_y);
            assert_eq!(gi.to_i32(), want_idx, "maxpool2d_forward idx {p:?} ties {ties}");

            let dy = randn(&mut r, p.y_len());
            let mut want_dx = vec![0.0; p.x_len()];
            cpu.maxpool2d_backward(&p, &dy, &want_idx, &mut want_dx).unwrap();
            let (mut gdy, mut gdx) = (G::f32(&dy), G::poisoned(p.x_len()));
            let mut gidx = G::i32(&want_idx);
            run("maxpool2d_backward", &launch::maxpool2d_backward(&p), &p, &mut [&mut gdy, &mut gidx, &mut gdx]);
            assert_close(&format!("maxpool2d_backward {p:?}"), &gdx.to_f32(), &want_dx);
        }
    }
}

#[test]
fn avgpool2d_matches_cpu() {
    let mut r = rng("avgpool2d");
    let cpu = CpuBackend::new();
    for p in pool_cases() {
        let x = randn(&mut r, p.x_len());
        let mut want_y = vec![0.0; p.y_len()];
        cpu.avgpool2d_forward(&p, &x, &mut want_y).unwrap();
        let (mut gx, mut gy) = (G::f32(&x), G::poisoned(p.y_len()));
        run("avgpool2d_forward", &launch::avgpool2d_forward(&p), &p, &mut [&mut gx, &mut gy]);
        assert_close(&format!("avgpool2d_forward {p:?}"), &gy.to_f32(), &want_y);

        let dy = randn(&mut r, p.y_len());
        let mut want_dx = vec![0.0; p.x_len()];
        cpu.avgpool2d_backward(&p, &dy, &mut want_dx).unwrap();
        let (mut gdy, mut gdx) = (G::f32(&dy), G::poisoned(p.x_len()));
        run("avgpool2d_backward", &launch::avgpool2d_backward(&p), &p, &mut [&mut gdy, &mut gdx]);
        assert_close(&format!("avgpool2d_backward {p:?}"), &gdx.to_f32(), &want_dx);
    }
}

// ---- gemm ---------------------------------------------------------------------------------------------------

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
                let (mut ga, mut gb, mut gc) = (G::f32(&a), G::f32(&b), G::f32(&c0));
                run("gemm", &launch::gemm(&p), &p, &mut [&mut ga, &mut gb, &mut gc]);
                assert_close(&format!("gemm {p:?}"), &gc.to_f32(), &want);
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
            assert!(launch::gemm(&p)[0].grid.2 > 1, "the default plan of {p:?} splits K");
            let (a, b) = (randn(&mut r, m * k), randn(&mut r, k * n));
            let c0 = if beta == 0.0 { vec![f32::NAN; m * n] } else { randn(&mut r, m * n) };
            let mut want = c0.clone();
            cpu.gemm(&p, &a, &b, &mut want).unwrap();
            for splits in [1, 2, 9] {
                let (mut ga, mut gb, mut gc) = (G::f32(&a), G::f32(&b), G::f32(&c0));
                run("gemm", &launch::gemm_with_splits(&p, splits), &p, &mut [&mut ga, &mut gb, &mut gc]);
                assert_close(&format!("gemm {p:?} splits {splits}"), &gc.to_f32(), &want);
            }
        }
    }
}

// ---- elementwise --------------------------------------------------------------------------------------------

#[test]
fn bias_forward_and_backward_match_cpu() {
    let mut r = rng("bias");
    let cpu = CpuBackend::new();
    for (n, c, inner) in [(2, 3, 5), (4, 7, 1), (1, 130, 1), (3, 2, 300)] {
        let p = BiasParams::new(n, c, inner);
        let (b, y0) = (randn(&mut r, c), randn(&mut r, p.len()));
        let mut want = y0.clone();
        cpu.bias_forward(&p, &b, &mut want).unwrap();
        let (mut gb, mut gy) = (G::f32(&b), G::f32(&y0));
        run("bias_forward", &launch::bias_forward(&p), &p, &mut [&mut gb, &mut gy]);
        assert_close(&format!("bias_forward {p:?}"), &gy.to_f32(), &want);

        let dy = randn(&mut r, p.len());
        let mut want_db = vec![0.0; c];
        cpu.bias_backward(&p, &dy, &mut want_db).unwrap();
        let (mut gdy, mut gdb) = (G::f32(&dy), G::poisoned(c));
        run("bias_backward", &launch::bias_backward(&p), &p, &mut [&mut gdy, &mut gdb]);
        assert_close(&format!("bias_backward {p:?}"), &gdb.to_f32(), &want_db);
    }
}

/// bias_backward over image slices: any number of slices (more than images too) gives the same db.
#[test]
fn bias_backward_splits_match_cpu() {
    let mut r = rng("bias_backward_splits");
    let cpu = CpuBackend::new();
    let p = BiasParams::new(5, 3, 40);
    let dy = randn(&mut r, p.len());
    let mut want = vec![0.0; 3];
    cpu.bias_backward(&p, &dy, &mut want).unwrap();
    for splits in [1, 2, 7] {
        let plan = launch::bias_backward_with_splits(&p, splits);
        assert_eq!(plan.len(), if splits > 1 { 2 } else { 1 });
        let (mut gdy, mut gdb) = (G::f32(&dy), G::poisoned(3));
        run("bias_backward", &plan, &p, &mut [&mut gdy, &mut gdb]);
        assert_close(&format!("bias_backward splits {splits}"), &gdb.to_f32(), &want);
    }
}

#[test]
fn relu_forward_and_backward_match_cpu() {
    let mut r = rng("relu");
    let cpu = CpuBackend::new();
    for len in [1, 1000] {
        let p = EltwiseParams::new(len);
        let mut x = randn(&mut r, len);
        x[0] = 0.0;
        let mut want = x.clone();
        cpu.relu_forward(&p, &mut want).unwrap();
        let mut gx = G::f32(&x);
        run("relu_forward", &launch::relu_forward(&p), &p, &mut [&mut gx]);
        assert_close("relu_forward", &gx.to_f32(), &want);

        let dy = randn(&mut r, len);
        let mut want_dy = dy.clone();
        cpu.relu_backward(&p, &want, &mut want_dy).unwrap();
        let (mut gy, mut gdy) = (G::f32(&want), G::f32(&dy));
        run("relu_backward", &launch::relu_backward(&p), &p, &mut [&mut gy, &mut gdy]);
        assert_close("relu_backward", &gdy.to_f32(), &want_dy);
    }
}

#[test]
fn fill_sets_every_element() {
    let mut r = rng("fill");
    let cpu = CpuBackend::new();
    for len in [1, 777] {
        let value = r.random_range(-3.0f32..3.0);
        let p = FillParams { len: len as i32, value };
        let mut want = vec![0.0; len];
        cpu.fill(&mut want, value).unwrap();
        let mut g = G::poisoned(len);
        run("fill", &launch::fill(&p), &p, &mut [&mut g]);
        assert_close("fill", &g.to_f32(), &want);
    }
}

// ---- losses and accuracies ----------------------------------------------------------------------------------

#[test]
fn softmax_xent_matches_cpu() {
    let mut r = rng("softmax_xent");
    let cpu = CpuBackend::new();
    for (n, k) in [(1, 12), (37, 5), (70, 40)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f32> = (0..n * k).map(|_| r.random_range(-8.0f32..8.0)).collect();
        let labels: Vec<i32> = (0..n).map(|_| r.random_range(0..k as i32)).collect();
        let (mut want_g, mut want_l) = (vec![0.0; n * k], vec![0.0; 1]);
        cpu.softmax_xent(&p, &logits, &labels, &mut want_g, &mut want_l).unwrap();
        let (mut gl, mut gy, mut gg, mut gloss) =
            (G::f32(&logits), G::i32(&labels), G::poisoned(n * k), G::poisoned(1));
        run("softmax_xent", &launch::softmax_xent(&p), &p, &mut [&mut gl, &mut gy, &mut gg, &mut gloss]);
        assert_close(&format!("softmax_xent grad {p:?}"), &gg.to_f32(), &want_g);
        assert_close(&format!("softmax_xent loss {p:?}"), &gloss.to_f32(), &want_l);
    }
}

#[test]
fn bce_logits_matches_cpu() {
    let mut r = rng("bce_logits");
    let cpu = CpuBackend::new();
    for (n, k) in [(1, 1), (3, 5), (100, 40)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f32> = (0..n * k).map(|_| r.random_range(-20.0f32..20.0)).collect();
        let targets: Vec<f32> = (0..n * k).map(|_| r.random_range(0..2) as f32).collect();
        let (mut want_g, mut want_l) = (vec![0.0; n * k], vec![0.0; 1]);
        cpu.bce_logits(&p, &logits, &targets, &mut want_g, &mut want_l).unwrap();
        let (mut gl, mut gt, mut gg, mut gloss) =
            (G::f32(&logits), G::f32(&targets), G::poisoned(n * k), G::poisoned(1));
        run("bce_logits", &launch::bce_logits(&p), &p, &mut [&mut gl, &mut gt, &mut gg, &mut gloss]);
        assert_close(&format!("bce_logits grad {p:?}"), &gg.to_f32(), &want_g);
        assert_close(&format!("bce_logits loss {p:?}"), &gloss.to_f32(), &want_l);
    }
}

#[test]
fn accuracy_classes_accumulates_like_cpu() {
    let mut r = rng("accuracy_classes");
    let cpu = CpuBackend::new();
    for (n, k) in [(1, 12), (53, 3), (70, 40)] {
        let p = LossParams::new(n, k);
        // Small integers: many ties, so the first-max rule matters.
        let logits: Vec<f32> = (0..n * k).map(|_| r.random_range(0..4) as f32).collect();
        let labels: Vec<i32> = (0..n).map(|_| r.random_range(0..k as i32)).collect();
        let start = vec![r.random_range(0..100) as f32];
        let mut want = start.clone();
        cpu.accuracy_classes(&p, &logits, &labels, &mut want).unwrap();
        let (mut gl, mut gy, mut gc) = (G::f32(&logits), G::i32(&labels), G::f32(&start));
        run("accuracy_classes", &launch::accuracy_classes(&p), &p, &mut [&mut gl, &mut gy, &mut gc]);
        assert_eq!(gc.to_f32(), want, "accuracy_classes {p:?} (started at {start:?})");
        assert!(want[0] >= start[0], "accuracy must accumulate");
    }
}

#[test]
fn accuracy_binary_accumulates_like_cpu() {
    let mut r = rng("accuracy_binary");
    let cpu = CpuBackend::new();
    for (n, k) in [(1, 1), (33, 5), (100, 40), (3, 70)] {
        let p = LossParams::new(n, k);
        let mut logits = randn(&mut r, n * k);
        logits[0] = 0.0; // exactly 0 counts as "negative"
        let targets: Vec<f32> = (0..n * k).map(|_| r.random_range(0..2) as f32).collect();
        let start: Vec<f32> = (0..k).map(|_| r.random_range(0..100) as f32).collect();
        let mut want = start.clone();
        cpu.accuracy_binary(&p, &logits, &targets, &mut want).unwrap();
        let (mut gl, mut gt, mut gc) = (G::f32(&logits), G::f32(&targets), G::f32(&start));
        run("accuracy_binary", &launch::accuracy_binary(&p), &p, &mut [&mut gl, &mut gt, &mut gc]);
        assert_eq!(gc.to_f32(), want, "accuracy_binary {p:?}");
    }
}

// ---- optimisers ---------------------------------------------------------------------------------------------

#[test]
fn sgd_step_matches_cpu() {
    let mut r = rng("sgd_step");
    let cpu = CpuBackend::new();
    for (len, momentum, wd) in [(1, 0.0f32, 0.0f32), (1000, 0.9, 1e-2), (513, 0.0, 5e-4)] {
        let p = SgdParams { len: len as i32, lr: 0.05, momentum, weight_decay: wd };
        let (w, g, m) = (randn(&mut r, len), randn(&mut r, len), randn(&mut r, len));
        let (mut want_w, mut want_m) = (w.clone(), m.clone());
        cpu.sgd_step(&p, &mut want_w, &g, &mut want_m).unwrap();
        let (mut gw, mut gg, mut gm) = (G::f32(&w), G::f32(&g), G::f32(&m));
        run("sgd_step", &launch::sgd_step(&p), &p, &mut [&mut gw, &mut gg, &mut gm]);
        assert_close(&format!("sgd_step w {p:?}"), &gw.to_f32(), &want_w);
        assert_close(&format!("sgd_step mom {p:?}"), &gm.to_f32(), &want_m);
    }
}

#[test]
fn adam_step_matches_cpu() {
    let mut r = rng("adam_step");
    let cpu = CpuBackend::new();
    for (len, wd, t) in [(1, 0.0f32, 1u64), (777, 1e-2, 1), (300, 0.0, 57)] {
        let p = AdamParams::at_step(len, 1e-3, wd, t);
        let (w, g, m) = (randn(&mut r, len), randn(&mut r, len), randn(&mut r, len));
        let v: Vec<f32> = (0..len).map(|_| r.random_range(0.0f32..1.0)).collect();
        let (mut want_w, mut want_m, mut want_v) = (w.clone(), m.clone(), v.clone());
        cpu.adam_step(&p, &mut want_w, &g, &mut want_m, &mut want_v).unwrap();
        let (mut gw, mut gg, mut gm, mut gv) = (G::f32(&w), G::f32(&g), G::f32(&m), G::f32(&v));
        run("adam_step", &launch::adam_step(&p), &p, &mut [&mut gw, &mut gg, &mut gm, &mut gv]);
        assert_close(&format!("adam_step w {p:?}"), &gw.to_f32(), &want_w);
        assert_close(&format!("adam_step m {p:?}"), &gm.to_f32(), &want_m);
        assert_close(&format!("adam_step v {p:?}"), &gv.to_f32(), &want_v);
    }
}

// ---- plans --------------------------------------------------------------------------------------------------

/// Every function a plan names exists in the kernels, and every op of KERNEL_NAMES has a kernel of its name.
#[test]
fn plans_name_existing_kernels() {
    let names = emu::kernel_names();
    for op in KERNEL_NAMES {
        assert!(names.iter().any(|n| n == op), "no kernel named {op} in kernels/*.cu");
    }
    let c = Conv2dParams::new(2, 27, 1, 256, 64, 1, 5, 0, 2);
    let pl = Pool2dParams::new(2, 64, 1, 256, 1, 2);
    let l = LossParams::new(64, 12);
    let mut plans = vec![
        launch::conv2d_forward(&c),
        launch::conv2d_backward_data(&c),
        launch::conv2d_backward_filter(&c),
        launch::maxpool2d_forward(&pl),
        launch::maxpool2d_backward(&pl),
        launch::avgpool2d_forward(&pl),
        launch::avgpool2d_backward(&pl),
        launch::gemm(&GemmParams::new(64, 128, 4096, false, true)),
        launch::bias_forward(&BiasParams::new(64, 128, 1)),
        launch::bias_backward(&BiasParams::new(64, 128, 1)),
        launch::bias_backward(&BiasParams::new(64, 128, 32)),
        launch::bias_backward(&BiasParams::new(512, 32, 4096)),
        launch::relu_forward(&EltwiseParams::new(1000)),
        launch::relu_backward(&EltwiseParams::new(1000)),
        launch::softmax_xent(&l),
        launch::bce_logits(&l),
        launch::accuracy_classes(&l),
        launch::accuracy_binary(&l),
        launch::sgd_step(&SgdParams { len: 1000, ..Default::default() }),
        launch::adam_step(&AdamParams::at_step(1000, 1e-3, 0.0, 1)),
        launch::fill(&FillParams { len: 1000, value: 0.0 }),
    ];
    // The protocol's layers at the largest batch: pamap2 [N, *, 1, 256/128/64] 1x5, celeba 64/32/16 3x3.
    for n in [1, 16, 512] {
        for (ci, h, w, co, kh, kw, ph, pw) in [
            (27, 1, 256, 64, 1, 5, 0, 2),
            (64, 1, 128, 64, 1, 5, 0, 2),
            (64, 1, 64, 128, 1, 5, 0, 2),
            (3, 64, 64, 32, 3, 3, 1, 1),
            (32, 32, 32, 64, 3, 3, 1, 1),
            (64, 16, 16, 128, 3, 3, 1, 1),
        ] {
            let c = Conv2dParams::new(n, ci, h, w, co, kh, kw, ph, pw);
            let bwf = launch::conv2d_backward_filter(&c);
            assert!(c.w_len() * bwf[0].grid.2 as usize <= launch::SPLIT_CAP, "{c:?}: split scratch overflow");
            if n == 512 {
                // The big reductions fill every one of the 132 SMs of an H100, at least twice for celeba.
                let blocks = bwf[0].grid.0 * bwf[0].grid.1 * bwf[0].grid.2;
                assert!(blocks >= if h > 1 { 260 } else { 132 }, "{c:?}: backward-filter on {blocks} blocks");
            }
            plans.extend([launch::conv2d_forward(&c), launch::conv2d_backward_data(&c), bwf]);
        }
        for (i, o) in [(4096, 128), (8192, 256), (128, 12), (256, 40)] {
            for g in [
                GemmParams::new(n, o, i, false, true),
                GemmParams::new(o, i, n, true, false),
                GemmParams::new(n, i, o, false, false),
            ] {
                let plan = launch::gemm(&g);
                assert!(
                    (g.m * g.n) as usize * plan[0].grid.2 as usize <= launch::SPLIT_CAP,
                    "{g:?}: split scratch overflow"
                );
                plans.push(plan);
            }
        }
    }
    for plan in plans.drain(..) {
        assert!(!plan.is_empty());
        for l in plan {
            assert!(names.iter().any(|n| n == l.func), "plan names unknown kernel {}", l.func);
            let threads = l.block.0 * l.block.1 * l.block.2;
            assert!(threads > 0 && threads <= 1024 && threads % 32 == 0, "{}: block {:?}", l.func, l.block);
            assert!(
                l.grid.0 >= 1 && l.grid.1 >= 1 && l.grid.1 <= 65535 && l.grid.2 >= 1 && l.grid.2 <= 65535,
                "{}: grid",
                l.func
            );
        }
    }
}

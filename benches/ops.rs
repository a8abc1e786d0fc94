//! `cargo bench --bench ops`: CPU op benchmarks at the protocol's shapes (pamap2 and celeba, batch 64 and 256).
//!
//! Each op is validated before it is timed (conv: the adjoint identities <y, dy> = <x, dx> = <w, dw> plus a
//! spot check of y against the defining sum; GEMM: spot checks against dot products), then run once to warm up
//! and timed as the median of repeats. Also times one whole training step of the model on the CPU backend
//! (forward, backward, SGD; the batch loaded once, no data loading) and the machine's single-GEMM peak (a large
//! square sgemm). The layer shapes come from the models' layer table (`powertrain::model`).
//! Optional argument: a filter substring of "<model> <conv|fc|step> n<batch>" or "peak" (e.g.
//! `cargo bench --bench ops -- celeba`, `-- "step n64"`).
use powertrain::model::{Arch, Layout, Model, Optimizer, CELEBA_K};
use powertrain::ops::conv2d::cpu as conv2d;
use powertrain::ops::cpu::CpuBackend;
use powertrain::ops::gemm::cpu as gemm;
use powertrain::ops::{Conv2dParams, GemmParams};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
                ((r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// Median wall time in ms of `reps` runs of `f` after one warm-up run.
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    powertrain::stats::median(&t)
}

/// CPU time of the whole process (all threads), seconds.
fn process_cpu_s() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime(2) on Linux x86_64/aarch64 takes a clockid_t (int) and a struct timespec of two
    // 64-bit fields, matching `Timespec`; the pointer is to a live local.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

fn row(name: &str, shape: &str, ms: f64, flops: f64) {
    let gf = if flops > 0.0 { format!("{:9.1}", flops / ms / 1e6) } else { format!("{:>9}", "-") };
    println!("{name:<26} {shape:<34} {ms:10.3} {gf}");
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-30)
}

/// Validate, then time conv forward / backward-data / backward-filter at `p`.
fn bench_conv(tag: &str, p: Conv2dParams, reps: usize) -> Result<(), String> {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ p.y_len() as u64);
    let (x, w, dy) = (rng.vec(p.x_len(), 1.0), rng.vec(p.w_len(), 0.1), rng.vec(p.y_len(), 1.0));
    let (mut y, mut dx, mut dw) = (vec![0.0; p.y_len()], vec![0.0; p.x_len()], vec![0.0; p.w_len()]);
    let e = |r: anyhow::Result<()>| r.map_err(|e| e.to_string());
    e(conv2d::conv2d_forward(&p, &x, &w, &mut y))?;
    e(conv2d::conv2d_backward_data(&p, &dy, &w, &mut dx))?;
    e(conv2d::conv2d_backward_filter(&p, &x, &dy, &mut dw))?;
    let (a, b, c) = (dot(&y, &dy), dot(&x, &dx), dot(&w, &dw));
    if !close(a, b, 1e-3) || !close(a, c, 1e-3) {
        return Err(format!("{tag}: adjoint check failed: <y,dy> {a} <x,dx> {b} <w,dw> {c}"));
    }
    let u = |v: i32| v as usize;
    for t in 0..32 {
        let o = (t * 7_919_993) % p.y_len();
        let (ox, oy) = (o % u(p.w_out), (o / u(p.w_out)) % u(p.h_out));
        let (co, n) = ((o / u(p.w_out * p.h_out)) % u(p.c_out), o / u(p.w_out * p.h_out * p.c_out));
        let mut s = 0.0f64;
        for ci in 0..u(p.c_in) {
            for ky in 0..u(p.kh) {
                for kx in 0..u(p.kw) {
                    let iy = (oy + ky) as i64 - p.pad_h as i64;
                    let ix = (ox + kx) as i64 - p.pad_w as i64;
                    if iy >= 0 && ix >= 0 && iy < p.h as i64 && ix < p.w as i64 {
                        let xi = ((n * u(p.c_in) + ci) * u(p.h) + iy as usize) * u(p.w) + ix as usize;
                        s += x[xi] as f64 * w[((co * u(p.c_in) + ci) * u(p.kh) + ky) * u(p.kw) + kx] as f64;
                    }
                }
            }
        }
        if (s - y[o] as f64).abs() > 1e-4 * (1.0 + s.abs()) {
            return Err(format!("{tag}: y[{o}] = {} but the defining sum is {s}", y[o]));
        }
    }
    let shape = format!("n{} {}x{}x{} ->{} k{}x{}", p.n, p.c_in, p.h, p.w, p.c_out, p.kh, p.kw);
    let ms = median_ms(reps, || conv2d::conv2d_forward(&p, &x, &w, &mut y).unwrap());
    row(&format!("{tag} fwd"), &shape, ms, p.flops());
    let ms = median_ms(reps, || conv2d::conv2d_backward_data(&p, &dy, &w, &mut dx).unwrap());
    row(&format!("{tag} bwd-data"), &shape, ms, p.flops());
    let ms = median_ms(reps, || conv2d::conv2d_backward_filter(&p, &x, &dy, &mut dw).unwrap());
    row(&format!("{tag} bwd-filter"), &shape, ms, p.flops());
    Ok(())
}

/// Validate (spot checks), then time one GEMM.
fn bench_gemm(tag: &str, p: GemmParams, reps: usize) -> Result<(), String> {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (m * n * k) as u64);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let mut c = vec![f32::NAN; m * n];
    gemm::gemm(&p, &a, &b, &mut c).map_err(|e| e.to_string())?;
    for t in 0..32 {
        let (i, j) = ((t * 7919) % m, (t * 104_729) % n);
        let s: f64 = (0..k)
            .map(|l| {
                let av = if p.trans_a != 0 { a[l * m + i] } else { a[i * k + l] };
                let bv = if p.trans_b != 0 { b[j * k + l] } else { b[l * n + j] };
                av as f64 * bv as f64
            })
            .sum();
        if (s - c[i * n + j] as f64).abs() > 1e-4 * (1.0 + s.abs()) * (k as f64).sqrt() {
            return Err(format!("{tag}: c[{i},{j}] = {} but the dot product is {s}", c[i * n + j]));
        }
    }
    let shape = format!("{m}x{n}x{k} ta{} tb{}", p.trans_a, p.trans_b);
    let ms = median_ms(reps, || gemm::gemm(&p, &a, &b, &mut c).unwrap());
    row(tag, &shape, ms, p.flops());
    Ok(())
}

/// Time a whole training step of `arch` at batch `n` on the CPU backend (forward, softmax cross-entropy or BCE,
/// backward, SGD) with the batch loaded once: what a model's step costs in compute, without data loading.
fn bench_step(arch: Arch, n: usize, reps: usize) {
    let tag = arch.name();
    let cpu = CpuBackend::new();
    let layout = Layout::new(arch);
    let mut model = match Model::new(&cpu, arch, n, &layout.init(42)) {
        Ok(m) => m,
        Err(e) => return println!("{tag}: step failed: {e:#}"),
    };
    let mut rng = Rng(42);
    let [c, h, w] = arch.input_shape();
    let k = arch.outputs();
    let x = rng.vec(n * c * h * w, 1.0);
    let labels: Vec<i32> = (0..n).map(|i| (i % k) as i32).collect();
    let targets: Vec<f32> = (0..n * k).map(|i| (i % 2) as f32).collect();
    let opt = Optimizer::Sgd { lr: 1e-3, momentum: 0.9, weight_decay: 0.0 };
    let first = model.load_batch(n, &x, &labels, &targets).and_then(|_| model.train_step(n, &opt));
    match first {
        Ok(loss) if loss.is_finite() => {}
        Ok(loss) => return println!("{tag}: step failed: loss {loss}"),
        Err(e) => return println!("{tag}: step failed: {e:#}"),
    }
    let cpu0 = process_cpu_s();
    let ms = median_ms(reps, || {
        model.train_step(n, &opt).unwrap();
    });
    let cpu_ms = (process_cpu_s() - cpu0) * 1e3 / (reps + 1) as f64;
    row(&format!("{tag} step"), &format!("n{n} (fwd+bwd+sgd, no data)"), ms, model.step_flops(n));
    // On a loaded machine the wall time overstates the cost; CPU time over all threads does not.
    println!("{:<26} {:<34} {cpu_ms:10.3}", format!("{tag} step cpu-time"), "(mean, all threads)");
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let want = |name: &str| name.contains(&filter);
    println!("cpu ops, {} rayon threads; median of repeats after one warm-up", rayon::current_num_threads());
    println!("{:<26} {:<34} {:>10} {:>9}", "op", "shape", "ms", "GFLOP/s");
    let mut failed = false;
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            println!("VALIDATION FAILED (not timed): {e}");
            failed = true;
        }
    };
    if want("peak") {
        check(bench_gemm("peak sgemm", GemmParams::new(2048, 2048, 2048, false, false), 5));
    }
    for n in [64, 256] {
        let reps = if n == 64 { 11 } else { 5 };
        for arch in [Arch::Pamap2, Arch::Celeba { k: CELEBA_K }] {
            let (model, layout) = (arch.name(), Layout::new(arch));
            let tag = |kind: &str| format!("{model} {kind} n{n}");
            for (i, l) in layout.conv_layers(n).iter().enumerate() {
                if want(&tag("conv")) {
                    check(bench_conv(&format!("{model} conv{}", i + 1), l.conv, reps));
                }
            }
            let fc1 = layout.fc_layers()[0];
            if want(&tag("fc")) {
                let (flat, hidden) = (fc1.fan_in, fc1.out);
                check(bench_gemm(&format!("{model} fc1 fwd"), GemmParams::new(n, hidden, flat, false, true), reps));
                check(bench_gemm(
                    &format!("{model} fc1 bwd-data"),
                    GemmParams::new(n, flat, hidden, false, false),
                    reps,
                ));
                check(bench_gemm(
                    &format!("{model} fc1 bwd-filter"),
                    GemmParams::new(hidden, flat, n, true, false),
                    reps,
                ));
            }
            if want(&tag("step")) {
                bench_step(arch, n, reps);
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

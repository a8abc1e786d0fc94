//! This machine's CPU ceilings, so that `bench kernels --device cpu` can say how far each kernel is from them:
//!
//! * **Peak FP32 FMA GFLOP/s**: every core (one rayon task per thread) runs a loop of fused multiply-adds on
//!   [`ACCS`] independent accumulators of [`LANES`] f32 lanes each (independent chains hide the FMA latency). On
//!   x86_64 with AVX2+FMA (detected at run time) they are 8 AVX2 registers and each step is one `vfmadd` instruction
//!   (`_mm256_fmadd_ps`); elsewhere the loop is a multiply and an add, still counted as 2 FLOPs per lane, so
//!   the figure is what plain compiled Rust reaches, not the vendor's datasheet peak. FLOPs = 2 x lanes x
//!   accumulators x iterations x threads.
//! * **Memory bandwidth**: the STREAM triad `a[i] = b[i] + s * c[i]` over three arrays of [`TRIAD_LEN`] f32
//!   (3 x 64 MiB, far beyond the caches), split over every thread, best of [`TRIAD_REPS`] passes; bytes = 3 x 4 x
//!   length per pass (two reads and one write, write-allocate traffic not counted, as STREAM counts).
//!
//! Both are measured once per `bench kernels` run (about a second); the figures are of this machine under its
//! current load (other processes lower them). The triad measures main memory: a kernel whose buffers fit in the
//! caches can show more than 100 % of it (%bw), and our blocked gemm can pass a loaded machine's FMA figure.
//! Only the arithmetic is unit-tested, not the speed.
use rayon::prelude::*;
use std::time::Instant;

/// f32 lanes per accumulator (one AVX2 register).
pub const LANES: usize = 8;
/// Independent accumulators per thread.
pub const ACCS: usize = 8;
/// Elements of each triad array (64 MiB of f32).
pub const TRIAD_LEN: usize = 16 << 20;
/// Triad passes; the best counts.
pub const TRIAD_REPS: usize = 5;

/// The measured CPU ceilings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CpuCeilings {
    pub fma_gflops: f64,
    pub triad_gbps: f64,
    pub threads: usize,
    /// Whether the FMA loop ran as fused multiply-add instructions (AVX2+FMA) or as separate multiply and add.
    pub fused: bool,
    /// What the two figures are, for the JSON and the report.
    pub what: String,
}

/// GFLOP/s of the FMA loop: 2 FLOPs per lane per iteration.
pub fn fma_gflops(iters: u64, threads: usize, secs: f64) -> f64 {
    2.0 * (LANES * ACCS) as f64 * iters as f64 * threads as f64 / secs / 1e9
}

/// GB/s of `reps` triad passes over arrays of `len` f32: 3 arrays x 4 bytes per element per pass.
pub fn triad_gbps(len: usize, reps: usize, secs: f64) -> f64 {
    3.0 * 4.0 * len as f64 * reps as f64 / secs / 1e9
}

/// A kernel's fraction of a ceiling (None for a missing or non-positive ceiling).
pub fn fraction(value: Option<f64>, ceiling: f64) -> Option<f64> {
    value.filter(|_| ceiling > 0.0 && ceiling.is_finite()).map(|v| v / ceiling)
}

/// The FMA chains of one thread: `iters` rounds over the accumulators; returns their sum so that nothing is
/// optimised away.
fn fma_chains(iters: u64, seed: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for (checked just above).
            return unsafe { fma_chains_avx2(iters, seed) };
        }
    }
    fma_chains_plain(iters, seed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_set1_ps, _mm256_storeu_ps};
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(seed); ACCS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut sum = 0.0;
    let mut lanes = [0f32; LANES];
    for x in acc {
        // `lanes` holds LANES = 8 f32, the width of one register.
        _mm256_storeu_ps(lanes.as_mut_ptr(), x);
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

fn fma_chains_plain(iters: u64, seed: f32) -> f32 {
    let (a, b) = (0.999_999_f32, 1e-7_f32);
    let mut acc = [seed; LANES * ACCS];
    for _ in 0..iters {
        for j in 0..LANES * ACCS {
            acc[j] = acc[j] * a + b;
        }
    }
    acc.iter().sum()
}

fn fused() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Peak FMA GFLOP/s over every rayon thread: iterations grow until one round takes at least 0.1 s, then the
/// best of [`FMA_ROUNDS`] rounds of that size (a peak: other processes only ever lower it).
pub fn measure_fma() -> f64 {
    let threads = rayon::current_num_threads();
    let round = |iters: u64| {
        let t = Instant::now();
        let sum: f32 = (0..threads).into_par_iter().map(|i| fma_chains(iters, 1.0 + i as f32)).sum();
        std::hint::black_box(sum);
        t.elapsed().as_secs_f64()
    };
    let mut iters: u64 = 1 << 20;
    while round(iters) < 0.1 && iters < 1 << 34 {
        iters *= 2;
    }
    let best = (0..FMA_ROUNDS).map(|_| round(iters)).fold(f64::MAX, f64::min);
    fma_gflops(iters, threads, best)
}

/// Timed rounds of the FMA loop; the fastest counts.
pub const FMA_ROUNDS: usize = 5;

/// STREAM triad GB/s over every rayon thread (best of [`TRIAD_REPS`] passes; the first touch is not timed).
pub fn measure_triad() -> f64 {
    let n = TRIAD_LEN;
    let b = vec![1.0f32; n];
    let c = vec![2.0f32; n];
    let mut a = vec![0.0f32; n];
    let chunk = n.div_ceil(rayon::current_num_threads() * 4);
    let s = 3.0f32;
    let mut best = f64::MAX;
    for _ in 0..=TRIAD_REPS {
        let t = Instant::now();
        a.par_chunks_mut(chunk).zip(b.par_chunks(chunk)).zip(c.par_chunks(chunk)).for_each(|((a, b), c)| {
            for ((x, y), z) in a.iter_mut().zip(b).zip(c) {
                *x = y + s * z;
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&a);
    triad_gbps(n, 1, best)
}

/// Measure both ceilings of this machine.
pub fn measure() -> CpuCeilings {
    let fused = fused();
    let fma_gflops = measure_fma();
    let triad_gbps = measure_triad();
    CpuCeilings {
        fma_gflops,
        triad_gbps,
        threads: rayon::current_num_threads(),
        fused,
        what: format!(
            "CPU ceilings of this machine: peak FP32 {} GFLOP/s from an FMA loop on all {} threads ({}), memory \
             bandwidth from the STREAM triad over 3 x 64 MiB arrays (best of {TRIAD_REPS})",
            if fused { "FMA" } else { "multiply+add" },
            rayon::current_num_threads(),
            if fused { "AVX2 vfmadd" } else { "no FMA instruction detected: multiply then add" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_and_byte_arithmetic() {
        // 2 FLOPs x 64 lanes x 1e6 iterations x 4 threads in 0.5 s = 1.024e9 FLOP/s = 1.024 GFLOP/s.
        assert!((fma_gflops(1_000_000, 4, 0.5) - 2.0 * 64.0 * 1e6 * 4.0 / 0.5 / 1e9).abs() < 1e-9);
        assert!((fma_gflops(1_000_000, 4, 0.5) - 1.024).abs() < 1e-12);
        // 16 Mi elements x 12 bytes = 201.3 MB per pass; 2 passes in 0.1 s = 4.027 GB/s.
        assert!((triad_gbps(16 << 20, 2, 0.1) - 4.026_531_84).abs() < 1e-6);
        assert_eq!(fraction(Some(50.0), 200.0), Some(0.25));
        assert_eq!(fraction(Some(50.0), 0.0), None);
        assert_eq!(fraction(None, 200.0), None);
    }

    #[test]
    fn the_fma_chains_compute_what_they_claim() {
        // One iteration from 1.0: 1.0 * a + b for each of the 64 lanes; both paths agree.
        let want = 64.0 * (0.999_999_f32 * 1.0 + 1e-7);
        assert!((fma_chains(1, 1.0) - want).abs() < 1e-3);
        assert!((fma_chains_plain(3, 2.0) - fma_chains(3, 2.0)).abs() < 1e-3);
    }
}

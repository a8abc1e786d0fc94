//! `powertrain bench kernels`: per-kernel timing at the protocol's layer shapes (both models, batch sizes 16, 64,
//! 256, 1024 unless given), in the style of llm.c's dev/cuda: validate, then time.
//!
//! Per case: check against the CPU backend first (on CUDA; a kernel that fails is printed as refused and not
//! timed), warm up, then the median of repeated calls timed by the backend's own kernel timing (CUDA events on
//! the GPU, the wall clock on the CPU). Reported: ms, GFLOP/s (conv and gemm), GB/s (every buffer read or
//! written once), and on CUDA the fraction of the device's measured ceilings: a large device-to-device copy
//! (GB/s, read + write) and a large FP32 GEMM through our own gemm kernel (GFLOP/s).

use super::cpu::CpuBackend;
use super::cuda::check::{compare, host_data, model_cases, prepare, Case, Op};
use super::cuda::CudaBackend;
use super::*;
use crate::cli::BenchArgs;
use anyhow::{bail, Result};

/// CPU work (flops, or bytes for the other ops) above which the check against the CPU backend runs at a smaller
/// batch of the same layer (the GPU is still timed at the requested batch).
const CHECK_BUDGET: f64 = 4e9;

/// One timed (or refused) case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub model: String,
    pub layer: String,
    pub kernel: &'static str,
    pub batch: usize,
    pub shape: String,
    /// "ok", "refused" (failed its check) or "error".
    pub status: String,
    /// Batch the correctness check ran at (None on the CPU, which is the reference).
    pub checked_at_batch: Option<usize>,
    pub max_rel_err: Option<f64>,
    pub iters: usize,
    pub median_ms: Option<f64>,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
    /// GFLOP/s over the GEMM ceiling (CUDA only).
    pub frac_peak_flops: Option<f64>,
    /// GB/s over the copy ceiling (CUDA only).
    pub frac_peak_bw: Option<f64>,
    pub note: String,
}

/// Measured ceilings of the device.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ceilings {
    pub copy_gbps: f64,
    pub gemm_gflops: f64,
    pub gemm_mnk: usize,
}

/// `powertrain bench kernels`.
pub fn run_bench_kernels(a: &BenchArgs) -> Result<()> {
    if a.energy {
        eprintln!("bench kernels: --energy (repeat-and-divide energy per launch) is not available yet; timing only");
    }
    let models: Vec<&str> = match a.model.as_deref() {
        None => vec!["pamap2", "celeba"],
        Some(m @ ("pamap2" | "celeba")) => vec![m],
        Some(other) => bail!("bench kernels --model {other}: use pamap2 or celeba (or leave it out for both)"),
    };
    let batches: Vec<usize> = match a.batch_size {
        Some(0) => bail!("bench kernels --batch-size 0: give a positive batch size"),
        Some(b) => vec![b],
        None => vec![16, 64, 256, 1024],
    };
    let mut cases = Vec::new();
    for m in &models {
        for (i, &b) in batches.iter().enumerate() {
            cases.extend(model_cases(m, b, i == 0)?);
        }
    }
    let device = match a.device.as_str() {
        "auto" => {
            if super::cuda::cuda_available() {
                DeviceKind::Cuda
            } else {
                DeviceKind::Cpu
            }
        }
        "cpu" => DeviceKind::Cpu,
        "cuda" => DeviceKind::Cuda,
        other => bail!("bench kernels --device {other}: use auto, cpu or cuda"),
    };
    let seed = 0x5eed;
    let (name, ceilings, rows) = match device {
        DeviceKind::Cpu => {
            let cpu = CpuBackend::new();
            let rows = cases.iter().map(|c| bench_case(&cpu, None, c, a.iters, seed, None)).collect();
            (cpu.device_name(), None, rows)
        }
        DeviceKind::Cuda => {
            let gpu = CudaBackend::new(0)?;
            let cpu = CpuBackend::new();
            let ceil = ceilings(&gpu)?;
            if !a.json {
                println!(
                    "{} ({}): ceilings {:.0} GB/s (device copy, read+write), {:.0} GFLOP/s (our FP32 gemm {n}x{n}x{n})",
                    gpu.device_name(),
                    gpu.image_summary(),
                    ceil.copy_gbps,
                    ceil.gemm_gflops,
                    n = ceil.gemm_mnk
                );
            }
            let rows = cases.iter().map(|c| bench_case(&gpu, Some(&cpu), c, a.iters, seed, Some(ceil))).collect();
            (gpu.device_name(), Some(ceil), rows)
        }
    };
    let rows: Vec<BenchRow> = rows;
    if a.json {
        let doc = serde_json::json!({
            "device": name,
            "kind": device.name(),
            "protocol": crate::PROTOCOL_VERSION,
            "ceilings": ceilings,
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&rows));
    }
    let refused = rows.iter().filter(|r| r.status != "ok").count();
    if refused > 0 {
        eprintln!("bench kernels: {refused} case(s) refused or failed; see the status column");
    }
    Ok(())
}

/// The device's ceilings: a 1 GiB device-to-device copy and a 4096^3 FP32 GEMM through our gemm kernel.
pub fn ceilings(gpu: &CudaBackend) -> Result<Ceilings> {
    let copy_gbps = gpu.measure_copy_gbps(1 << 30, 10)?;
    let n = 4096;
    let op = Op::Gemm(GemmParams::new(n, n, n, false, false));
    let h = host_data(&op, 1);
    let mut p = prepare(gpu, &h)?;
    let (ms, _) = time_op(gpu, &op, &mut p.f, &mut p.i, Some(5))?;
    Ok(Ceilings { copy_gbps, gemm_gflops: op.flops().unwrap_or(0.0) / (ms / 1e3) / 1e9, gemm_mnk: n })
}

/// Median milliseconds of `iters` calls (adaptive when None: about 0.3 s of calls, 3 to 200) after warm-up, timed
/// by the backend's kernel timing. Returns (median ms, iterations).
fn time_op<B: Backend>(
    b: &B,
    op: &Op,
    f: &mut [B::Buf],
    i: &mut [B::IBuf],
    iters: Option<usize>,
) -> Result<(f64, usize)> {
    let t0 = std::time::Instant::now();
    op.run(b, f, i)?;
    b.synchronize()?;
    let first = t0.elapsed().as_secs_f64();
    for _ in 0..2 {
        op.run(b, f, i)?;
    }
    b.synchronize()?;
    let warm = (t0.elapsed().as_secs_f64() - first) / 2.0;
    let n = iters.unwrap_or_else(|| ((0.3 / warm.max(1e-6)) as usize).clamp(3, 200)).max(1);
    b.set_kernel_timing(true);
    let res = (|| {
        b.take_kernel_timings()?;
        for _ in 0..n {
            op.run(b, f, i)?;
        }
        b.take_kernel_timings()
    })();
    b.set_kernel_timing(false);
    let mut d: Vec<f64> = res?.into_iter().filter(|t| t.name == op.kernel()).map(|t| t.dur_s * 1e3).collect();
    if d.len() != n {
        bail!("{}: expected {n} kernel timings, the backend recorded {}", op.kernel(), d.len());
    }
    d.sort_by(|a, b| a.total_cmp(b));
    Ok((d[n / 2], n))
}

/// Check (when a reference is given) and time one case.
fn bench_case<B: Backend>(
    b: &B,
    reference: Option<&CpuBackend>,
    case: &Case,
    iters: Option<usize>,
    seed: u64,
    ceil: Option<Ceilings>,
) -> BenchRow {
    let (model, layer) = case.label.split_once(' ').unwrap_or((&case.label, ""));
    let mut row = BenchRow {
        model: model.to_string(),
        layer: layer.to_string(),
        kernel: case.op.kernel(),
        batch: case.batch,
        shape: case.op.shape(),
        status: "ok".into(),
        checked_at_batch: None,
        max_rel_err: None,
        iters: 0,
        median_ms: None,
        gflops: None,
        gbps: None,
        frac_peak_flops: None,
        frac_peak_bw: None,
        note: String::new(),
    };
    if let Some(cpu) = reference {
        let check = check_case(model, case);
        let r = compare(b, cpu, &check, seed);
        row.checked_at_batch = Some(check.batch);
        row.max_rel_err = Some(r.max_rel_err);
        if !r.pass {
            row.status = "refused".into();
            row.note = format!(
                "failed its check against the CPU backend: max rel err {:.2e} > {:.0e} {}",
                r.max_rel_err, r.tolerance, r.note
            );
            return row;
        }
    }
    let res = (|| {
        let h = host_data(&case.op, seed);
        let mut p = prepare(b, &h)?;
        time_op(b, &case.op, &mut p.f, &mut p.i, iters)
    })();
    match res {
        Ok((ms, n)) => {
            let s = ms / 1e3;
            row.iters = n;
            row.median_ms = Some(ms);
            row.gflops = case.op.flops().map(|f| f / s / 1e9);
            row.gbps = Some(case.op.bytes() / s / 1e9);
            if let Some(c) = ceil {
                row.frac_peak_flops = row.gflops.map(|g| g / c.gemm_gflops);
                row.frac_peak_bw = row.gbps.map(|g| g / c.copy_gbps);
            }
        }
        Err(e) => {
            row.status = "error".into();
            row.note = format!("{e:#}");
        }
    }
    row
}

/// The case to check `case` with: the same layer at the largest batch (of the requested one, 256, 64, 16, 7, 1)
/// whose CPU work stays under `CHECK_BUDGET`. The batch-independent cases are checked as they are.
fn check_case(model: &str, case: &Case) -> Case {
    let cost = |c: &Case| c.op.flops().unwrap_or_else(|| c.op.bytes());
    if cost(case) <= CHECK_BUDGET {
        return case.clone();
    }
    for nb in [256usize, 64, 16, 7, 1] {
        if nb >= case.batch {
            continue;
        }
        let Ok(cases) = model_cases(model, nb, false) else { break };
        // The same layer and kernel, in the same position among that layer's cases of this kernel.
        let same = |c: &&Case| c.label == case.label && c.op.kernel() == case.op.kernel();
        let pos = model_cases(model, case.batch, false)
            .ok()
            .and_then(|v| v.iter().filter(same).position(|c| c.op == case.op));
        if let Some(c) = pos.and_then(|k| cases.iter().filter(same).nth(k)) {
            if cost(c) <= CHECK_BUDGET {
                return c.clone();
            }
        }
    }
    case.clone()
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}

/// The rows as a fixed-width table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<7} {:<7} {:<23} {:>5} {:<40} {:>10} {:>9} {:>8} {:>6} {:>6}  status\n",
        "model", "layer", "kernel", "batch", "shape", "ms", "GFLOP/s", "GB/s", "%flop", "%bw"
    );
    for r in rows {
        let pct = |v: Option<f64>| v.map(|x| format!("{:.1}", 100.0 * x)).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:<7} {:<7} {:<23} {:>5} {:<40} {:>10} {:>9} {:>8} {:>6} {:>6}  {}{}\n",
            r.model,
            r.layer,
            r.kernel,
            r.batch,
            r.shape,
            opt(r.median_ms, 4),
            opt(r.gflops, 1),
            opt(r.gbps, 1),
            pct(r.frac_peak_flops),
            pct(r.frac_peak_bw),
            r.status,
            if r.note.is_empty() { String::new() } else { format!(" ({})", r.note) }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_cases_are_checked_at_a_smaller_batch_of_the_same_layer() {
        let big = model_cases("celeba", 1024, false).unwrap();
        let conv2 = big.iter().find(|c| c.label == "celeba conv2" && c.op.kernel() == "conv2d_forward").unwrap();
        let chk = check_case("celeba", conv2);
        assert!(chk.batch < 1024, "checked at {}", chk.batch);
        assert_eq!(chk.label, "celeba conv2");
        match (chk.op, conv2.op) {
            (Op::Conv2dForward(a), Op::Conv2dForward(b)) => {
                assert_eq!((a.c_in, a.h, a.c_out, a.n), (b.c_in, b.h, b.c_out, chk.batch as i32))
            }
            other => panic!("{other:?}"),
        }
        // The second fc1 gemm (backward data) maps to the second fc1 gemm at the smaller batch.
        let gemms: Vec<&Case> = big.iter().filter(|c| c.label == "celeba fc1" && c.op.kernel() == "gemm").collect();
        let c = check_case("celeba", gemms[1]);
        assert_eq!(c.op, Op::Gemm(GemmParams::new(c.batch, 8192, 256, false, false)));
        // Small cases are checked as they are.
        let small = model_cases("pamap2", 16, false).unwrap();
        assert_eq!(check_case("pamap2", &small[0]).batch, 16);
    }
}

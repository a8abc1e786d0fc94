//! `powertrain check`: every kernel against the CPU backend on the one case list (`model::check_cases`, the
//! comparison in `ops::check`).
//!
//! `--device cuda` runs the GPU kernels; `--device emu` runs the same `.cu` sources under the g++ CPU emulation
//! with the CUDA launch plans (for an H100's 132 SMs), no GPU needed; `--device cpu` compares the CPU backend
//! with itself: a self-test of the harness, which checks no kernel.

use crate::cli::CheckArgs;
use crate::ops::check::{compare_each, table, Case, Row};
use crate::ops::cpu::CpuBackend;
use crate::ops::cuda::CudaBackend;
use crate::ops::emu::EmuBackend;
use crate::ops::prelude::*;
use anyhow::{bail, Result};

/// `powertrain check`: the table (or JSON), and an error when any case fails.
pub fn run(a: &CheckArgs) -> Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let cases = crate::model::check_cases();
    let cpu = CpuBackend::new();
    let say = |line: String| {
        if !a.json {
            println!("{line}");
        }
    };
    let (device, rows) = match a.device.as_str() {
        "cuda" => {
            let gpu = CudaBackend::new(0).map_err(|e| {
                e.context("check --device cuda (without a GPU, --device emu checks the same kernels on the CPU)")
            })?;
            say(format!("check: {} ({}) against the CPU backend, seed {seed}", gpu.device_name(), gpu.image_summary()));
            (gpu.device_name(), compare_all(&gpu, &cpu, &cases, seed, false))
        }
        "emu" => {
            let emu = EmuBackend::new();
            say(format!("check: {} against the CPU backend, seed {seed}", emu.device_name()));
            (emu.device_name(), compare_all(&emu, &cpu, &cases, seed, !a.json))
        }
        "cpu" => {
            say(format!(
                "check: the CPU backend against itself, seed {seed}. This is a SELF-TEST OF THE HARNESS: it checks \
                 no kernel (use --device emu for the .cu kernels on the CPU, --device cuda on a GPU)"
            ));
            (cpu.device_name(), compare_all(&cpu, &CpuBackend::new(), &cases, seed, false))
        }
        other => bail!(
            "check --device {other}: use --device cuda (the GPU), emu (the CUDA kernels under the CPU emulation) or \
             cpu (a self-test of the harness)"
        ),
    };
    output(a, &device, seed, &rows)
}

/// Compare every case, with a progress line per 20 cases on stderr when asked (the emulation takes minutes).
fn compare_all<T: Backend, R: Backend>(t: &T, r: &R, cases: &[Case], seed: u64, progress: bool) -> Vec<Row> {
    let t0 = std::time::Instant::now();
    compare_each(t, r, cases, seed, |j, _| {
        if progress && ((j + 1) % 20 == 0 || j + 1 == cases.len()) {
            eprintln!("check: {}/{} cases, {:.0} s", j + 1, cases.len(), t0.elapsed().as_secs_f64());
        }
    })
}

/// The table or JSON document, then an error naming the failed kernels when any case failed.
fn output(a: &CheckArgs, device: &str, seed: u64, rows: &[Row]) -> Result<()> {
    let failed = rows.iter().filter(|r| !r.pass).count();
    if a.json {
        let doc = serde_json::json!({
            "device": device,
            "self_test": a.device == "cpu",
            "seed": seed,
            "cases": rows.len(),
            "failed": failed,
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(rows));
        println!("{} cases, {} failed, seed {seed}", rows.len(), failed);
    }
    if failed > 0 {
        let kernels: std::collections::BTreeSet<&str> = rows.iter().filter(|r| !r.pass).map(|r| r.kernel).collect();
        bail!("check: {failed} of {} cases FAILED ({kernels:?}); rerun with --seed {seed} to reproduce", rows.len());
    }
    Ok(())
}

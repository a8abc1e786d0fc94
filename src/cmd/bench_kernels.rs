//! `powertrain bench kernels`: the command line turned into `bench::kernels::KernelBenchOptions`.

use crate::bench::kernels::{self, KernelBenchOptions};
use crate::cli::BenchArgs;
use anyhow::{bail, Result};

/// Check the flags that belong to `bench step`, resolve the device, run the benchmark.
pub fn run(a: &BenchArgs) -> Result<()> {
    if a.kernel_timing.is_some() {
        bail!("bench kernels: --kernel-timing belongs to 'bench step' (the cost of per-kernel timing)");
    }
    kernels::run(&options(a)?)
}

fn options(a: &BenchArgs) -> Result<KernelBenchOptions> {
    Ok(KernelBenchOptions {
        model: a.model.clone(),
        batch_size: a.batch_size,
        device: crate::cmd::device::resolve_device(&a.device)?,
        iters: a.iters,
        kernel: a.kernel.clone(),
        energy: a.energy,
        energy_source: a.energy_source.clone(),
        watts: a.watts,
        windows: a.windows,
        window_s: a.window_s,
        compare: a.compare.clone(),
        out: a.out.clone(),
        json: a.json,
    })
}

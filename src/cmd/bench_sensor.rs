//! `powertrain bench sensor`: characterise the energy counter (`bench::sensor`), print the verdict, store it in
//! the cache folder (`POWERTRAIN_CACHE`) so that `powertrain info` and every run's summary.json show it.

use crate::bench::sensor::{characterise_gpu, characterise_sim};
use crate::cli::BenchArgs;
use anyhow::{bail, Result};

pub fn run(a: &BenchArgs) -> Result<()> {
    let other = [
        (a.model.is_some(), "--model"),
        (a.batch_size.is_some(), "--batch-size"),
        (a.kernel.is_some(), "--kernel"),
        (a.compare.is_some(), "--compare"),
        (a.kernel_timing.is_some(), "--kernel-timing"),
        (a.watts.is_some(), "--watts"),
        (a.windows.is_some() || a.window_s.is_some(), "--windows/--window-s"),
    ];
    if let Some((_, flag)) = other.iter().find(|(set, _)| *set) {
        bail!(
            "bench sensor: {flag} does not apply (it takes --energy-source auto|nvml|sim, --sim-sensor, --json, --out)"
        );
    }
    let v = match a.energy_source.as_str() {
        "sim" => {
            let spec = a.sim_sensor.as_deref().unwrap_or("continuous");
            characterise_sim(&crate::energy::twin::SensorModel::parse(spec)?)?
        }
        "auto" | "nvml" => {
            if a.sim_sensor.is_some() {
                bail!("bench sensor: --sim-sensor needs --energy-source sim");
            }
            if crate::cmd::device::resolve_device(&a.device)? != crate::ops::DeviceKind::Cuda {
                bail!(
                    "bench sensor: --energy-source {} needs a GPU with an NVML energy counter; without one use \
                     --energy-source sim (the sensor twin)",
                    a.energy_source
                );
            }
            let be = crate::ops::cuda::CudaBackend::new(0)?;
            characterise_gpu(&be)?
        }
        other => bail!("bench sensor: --energy-source {other}: use auto, nvml or sim"),
    };
    let stored = v.store();
    if let Some(out) = &a.out {
        crate::util::write_json(std::path::Path::new(out), &v)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v.verdict);
    }
    match stored {
        Ok(p) => eprintln!("stored: {}", p.display()),
        Err(e) => eprintln!("note: the verdict was not stored ({e:#})"),
    }
    Ok(())
}

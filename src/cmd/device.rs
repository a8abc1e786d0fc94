//! The device a command runs on: `--device` resolved once, and the one place a backend is picked for it.

use crate::ops::DeviceKind;
use anyhow::{bail, Result};

/// Resolve `--device`: `auto` picks CUDA when a GPU is usable and otherwise says why it uses the CPU.
pub fn resolve_device(device: &str) -> Result<DeviceKind> {
    match device {
        "cpu" => Ok(DeviceKind::Cpu),
        "cuda" if crate::ops::cuda::cuda_available() => Ok(DeviceKind::Cuda),
        "cuda" => bail!("--device cuda: no usable GPU ({})", crate::ops::cuda::NO_DRIVER),
        "auto" => {
            if crate::ops::cuda::cuda_available() {
                Ok(DeviceKind::Cuda)
            } else {
                eprintln!("note: --device auto: no usable GPU (no CUDA driver found); using the CPU");
                Ok(DeviceKind::Cpu)
            }
        }
        other => bail!("unknown --device '{other}': use auto, cpu or cuda"),
    }
}

/// Check that `--energy` can be read before any work: `nvml` needs an NVML power reading of GPU 0, `rapl` a
/// readable RAPL counter; `auto` falls back to no reading, as the meter says; `estimate` and `none` need no
/// sensor (their flags are checked by `TrainConfig::validate`).
pub fn check_energy_source(energy: &str) -> Result<()> {
    match energy {
        "nvml" => {
            crate::energy::nvml::NvmlSensor::open(0, crate::energy::nvml::Want::Best)
                .map_err(|e| anyhow::anyhow!("--energy nvml: {e:#}"))?;
        }
        "rapl" => {
            crate::energy::rapl::RaplSensor::open().map_err(|e| anyhow::anyhow!("--energy rapl: {e:#}"))?;
        }
        "auto" | "sim" | "estimate" | "none" => {}
        other => bail!("unknown --energy '{other}': use auto, nvml, rapl, sim, estimate or none"),
    }
    Ok(())
}

/// Evaluate `body` with `be` bound to the backend for `kind` (the generic code in `body` is instantiated once
/// per backend).
macro_rules! with_backend_impl {
    ($kind:expr, |$be:ident| $body:expr) => {
        match $kind {
            $crate::ops::DeviceKind::Cpu => {
                let $be = &$crate::ops::cpu::CpuBackend::new();
                $body
            }
            $crate::ops::DeviceKind::Cuda => {
                let $be = &$crate::ops::cuda::CudaBackend::new(0)?;
                $body
            }
        }
    };
}
pub(crate) use with_backend_impl as with_backend;

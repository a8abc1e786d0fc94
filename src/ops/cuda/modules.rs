//! The kernel images build.rs embedded (CUBIN per architecture, PTX, the source) and how a module is loaded:
//! the CUBIN for the device's architecture, else the PTX (JIT by the driver), else the source compiled now by
//! NVRTC. Also what `powertrain info` shows about them.
use super::nvrtc;
use anyhow::{anyhow, Result};
use cudarc::driver::{CudaContext, CudaModule};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

/// One kernel file (`src/ops/<family>/<family>.cu`) as embedded by build.rs.
pub struct EmbeddedModule {
    /// File name, e.g. `conv2d.cu` (the NVRTC program name).
    pub file: &'static str,
    /// Its path in the repository, e.g. `src/ops/conv2d/conv2d.cu`.
    pub path: &'static str,
    /// The source text (compiled by NVRTC at run time when no image fits).
    pub source: &'static str,
    /// `(arch, image)`: CUBIN for `sm_<arch>`, e.g. `(90, ..)`.
    pub cubins: &'static [(u32, &'static [u8])],
    /// `(arch, text)`: PTX for `compute_<arch>`.
    pub ptx: Option<(u32, &'static str)>,
}

mod embedded {
    use super::EmbeddedModule;
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}
pub use embedded::{HEADERS, MODULES, NVRTC_BUILD_VERSION, PTXAS_REPORT};

/// The ptxas report of the embedded CUBINs (registers, shared memory, spills), written by build.rs.
pub fn ptxas_report() -> &'static str {
    PTXAS_REPORT
}

/// What build.rs embedded, per kernel file (no GPU needed): for `powertrain info` and the tests.
pub fn embedded_kernels_info() -> serde_json::Value {
    let modules: Vec<serde_json::Value> = MODULES
        .iter()
        .map(|m| {
            serde_json::json!({
                "file": m.file,
                "path": m.path,
                "source_bytes": m.source.len(),
                "cubins": m.cubins.iter().map(|(a, b)| serde_json::json!({"arch": format!("sm_{a}"), "bytes": b.len()})).collect::<Vec<_>>(),
                "ptx": m.ptx.map(|(a, t)| serde_json::json!({"arch": format!("compute_{a}"), "bytes": t.len()})),
            })
        })
        .collect();
    serde_json::json!({
        "nvrtc_at_build": NVRTC_BUILD_VERSION.map(|(a, b)| format!("{a}.{b}")),
        "headers": HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "modules": modules,
    })
}

/// Load module `m`: CUBIN for the device's architecture (same major, highest minor not above the device's),
/// else PTX (JIT), else the source compiled now by NVRTC. Returns the module and which image it is.
pub(super) fn load_module(
    ctx: &Arc<CudaContext>,
    m: &EmbeddedModule,
    cc: (i32, i32),
) -> Result<(Arc<CudaModule>, String)> {
    let dev = (cc.0 * 10 + cc.1) as u32;
    let mut tried = Vec::new();
    let mut cubins: Vec<&(u32, &[u8])> = m.cubins.iter().filter(|(a, _)| *a / 10 == dev / 10 && *a <= dev).collect();
    cubins.sort_by_key(|(a, _)| std::cmp::Reverse(*a));
    for (arch, image) in cubins {
        match ctx.load_module(Ptx::from_binary(image.to_vec())) {
            Ok(module) => return Ok((module, format!("cubin sm_{arch}"))),
            Err(e) => tried.push(format!("cubin sm_{arch}: {e}")),
        }
    }
    if let Some((arch, text)) = m.ptx {
        if arch <= dev {
            match ctx.load_module(Ptx::from_src(text)) {
                Ok(module) => return Ok((module, format!("ptx compute_{arch}"))),
                Err(e) => tried.push(format!("ptx compute_{arch}: {e}")),
            }
        }
    }
    let arch = format!("sm_{dev}");
    if nvrtc::nvrtc_present() {
        let headers: Vec<(&str, &str)> = HEADERS.to_vec();
        match nvrtc::compile(m.source, m.file, &headers, &nvrtc::options(&arch), nvrtc::Output::Cubin) {
            Ok(c) => match ctx.load_module(Ptx::from_binary(c.image)) {
                Ok(module) => return Ok((module, format!("nvrtc {arch}"))),
                Err(e) => tried.push(format!("nvrtc {arch}: loading the CUBIN failed: {e}")),
            },
            Err(log) => tried.push(format!("nvrtc {arch}: {log}")),
        }
    } else {
        tried.push(format!(
            "nvrtc {arch}: libnvrtc not found (pip install nvidia-cuda-nvrtc==13.0.88 and add its nvidia/cu13/lib to \
             LD_LIBRARY_PATH, or rebuild with NVRTC so that CUBINs are embedded)"
        ));
    }
    Err(anyhow!("no kernel image of {} could be loaded on this sm_{dev} device:\n  {}", m.path, tried.join("\n  ")))
}

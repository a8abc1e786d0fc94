//! What of the CUDA side can be tested without a GPU: the embedded kernel table (build.rs + NVRTC), run-time
//! NVRTC, the clear errors on a machine without a driver, and the check harness (CPU against itself).
//!
//! Under `POWERTRAIN_REQUIRE_NVRTC=1` (set by .ci/run) the NVRTC parts must have run; elsewhere they are
//! checked when NVRTC was present.

use powertrain::ops::check::{awkward_cases, compare_all};
use powertrain::ops::cpu::CpuBackend;
use powertrain::ops::cuda::{self, nvrtc, CudaBackend, HEADERS, MODULES, NVRTC_BUILD_VERSION};
use powertrain::ops::prelude::*;
use powertrain::ops::KERNEL_NAMES;
use std::path::Path;

fn require_nvrtc() -> bool {
    std::env::var("POWERTRAIN_REQUIRE_NVRTC").map(|v| v == "1").unwrap_or(false)
}

fn libcuda_present() -> bool {
    // SAFETY: only tries to dlopen libcuda.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The .cu files on disk (`src/ops/<family>/*.cu`, repository-relative), sorted.
fn kernel_files() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<String> = Vec::new();
    for family in std::fs::read_dir(root.join("src/ops")).unwrap().filter_map(|e| e.ok()) {
        if family.path().is_dir() {
            for f in std::fs::read_dir(family.path()).unwrap().filter_map(|e| e.ok()) {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".cu") {
                    v.push(format!("src/ops/{}/{name}", family.file_name().to_string_lossy()));
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_kernel_file_is_embedded_with_cubins_and_ptx() {
    let files = kernel_files();
    let embedded: Vec<&str> = MODULES.iter().map(|m| m.path).collect();
    assert_eq!(embedded, files, "build.rs must embed exactly src/ops/*/*.cu");
    assert!(HEADERS.iter().any(|(n, t)| *n == "common.cuh" && t.contains("#include \"params.cuh\"")));
    assert!(HEADERS.iter().any(|(n, t)| *n == "params.cuh" && t.contains("struct Conv2dParams")));
    for m in MODULES {
        let on_disk = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(m.path)).unwrap();
        assert_eq!(m.source, on_disk, "{}: embedded source is stale", m.path);
        assert!(m.path.ends_with(m.file), "{} is {}", m.path, m.file);
    }
    if require_nvrtc() {
        assert!(NVRTC_BUILD_VERSION.is_some(), "POWERTRAIN_REQUIRE_NVRTC=1 but the build embedded no NVRTC output");
    }
    if NVRTC_BUILD_VERSION.is_none() {
        eprintln!("NVRTC was not present at build time: only sources are embedded (nothing more to check)");
        for m in MODULES {
            assert!(m.cubins.is_empty() && m.ptx.is_none());
        }
        return;
    }
    for m in MODULES {
        let archs: Vec<u32> = m.cubins.iter().map(|(a, _)| *a).collect();
        assert_eq!(archs, vec![90, 80], "{}: CUBINs for sm_90 and sm_80", m.file);
        for (a, bin) in m.cubins {
            assert_eq!(&bin[..4], b"\x7fELF", "{} sm_{a}: a CUBIN is an ELF image", m.file);
        }
        let (arch, ptx) = m.ptx.expect("PTX embedded");
        assert_eq!(arch, 80);
        assert!(ptx.contains(".target sm_80"), "{}: PTX for compute_80", m.file);
        // PTX ISA 9.0 is what NVRTC 13.0 emits and what a CUDA 13.0 driver can JIT (toolchain.md).
        assert!(ptx.contains(".version 9.0"), "{}: PTX ISA must be 9.0 (pin NVRTC 13.0.x)", m.file);
        assert!(!ptx.contains('\0'), "{}: PTX text has no NUL bytes", m.file);
    }
    // Every kernel of the Backend trait is an entry of some module's PTX.
    let all_ptx: String = MODULES.iter().filter_map(|m| m.ptx.map(|p| p.1)).collect();
    let missing: Vec<&&str> = KERNEL_NAMES.iter().filter(|k| !all_ptx.contains(&format!(".entry {k}("))).collect();
    if MODULES.len() >= 6 {
        assert!(missing.is_empty(), "kernels without an entry point in the PTX: {missing:?}");
    }
    // The ptxas report covers every CUBIN build.
    let report = cuda::ptxas_report();
    for m in MODULES {
        for a in [90, 80] {
            assert!(report.contains(&format!("## {} sm_{a}", m.path)), "report lacks {} sm_{a}", m.path);
        }
    }
    assert!(report.contains("registers"), "ptxas -v output in the report");
}

#[test]
fn runtime_nvrtc_compiles_an_embedded_source() {
    if !nvrtc::nvrtc_present() {
        assert!(!require_nvrtc(), "POWERTRAIN_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded at test time");
        eprintln!("libnvrtc not loadable: run-time compile not tested");
        return;
    }
    let headers: Vec<(&str, &str)> = HEADERS.to_vec();
    // The smallest kernel file (NVRTC takes seconds per large file on 2 cores); build.rs compiled them all.
    if let Some(m) = MODULES.iter().min_by_key(|m| m.source.len()) {
        let c = nvrtc::compile(m.source, m.file, &headers, &nvrtc::options("sm_90"), nvrtc::Output::Cubin)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&c.image[..4], b"\x7fELF");
    }
    // A broken source is an error carrying the NVRTC log, not a panic.
    let err = nvrtc::compile(
        "extern \"C\" __global__ void k( {",
        "bad.cu",
        &[],
        &nvrtc::options("sm_90"),
        nvrtc::Output::Cubin,
    )
    .err()
    .expect("a syntax error must fail");
    assert!(err.contains("bad.cu") && err.contains("error"), "{err}");
}

#[test]
fn spill_report_parsing() {
    let log = "ptxas info    : Function properties for k\n    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
               ptxas info    : Function properties for j\n    0 bytes stack frame, 0 bytes spill stores, 4 bytes spill loads\n";
    assert_eq!(nvrtc::spill_bytes(log), (8, 16));
    assert_eq!(nvrtc::spill_bytes("ptxas info : Used 10 registers"), (0, 0));
}

#[test]
fn cuda_backend_without_a_gpu_is_an_error_not_a_panic() {
    match CudaBackend::new(0) {
        Ok(b) => assert!(libcuda_present(), "a CUDA backend without libcuda: {}", b.device_name()),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains("--device cpu"), "{msg}");
            if !libcuda_present() {
                assert_eq!(msg, cuda::NO_DRIVER);
                assert!(!cuda::cuda_available());
                assert!(cuda::device_info().is_err());
            }
        }
    }
}

#[test]
fn check_command_without_a_gpu_exits_nonzero_with_the_message() {
    if libcuda_present() {
        eprintln!("libcuda present: this machine may have a GPU; the no-GPU path is not tested here");
        return;
    }
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_powertrain")).args(["check", "--seed", "1"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no CUDA driver found") && stderr.contains("--device cpu"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_harness_passes_the_cpu_backend_against_itself() {
    let cases = awkward_cases();
    let rows = compare_all(&CpuBackend::new(), &CpuBackend::new(), &cases, 42);
    assert_eq!(rows.len(), cases.len());
    let failed: Vec<_> = rows.iter().filter(|r| !r.pass).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for r in &rows {
        assert!(r.max_rel_err.is_finite() && r.max_rel_err <= r.tolerance, "{r:?}");
    }
}

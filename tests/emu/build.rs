//! Compiles ../../kernels/*.cu as C++20 with g++ under src/emu.h (force-included), plus the scheduler and
//! launcher table src/emu.cpp, into a static library. The .cu files are the same ones NVRTC compiles.
use std::path::PathBuf;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let kernels = here.join("../../kernels");
    let emu_h = here.join("src/emu.h");
    let mut cus: Vec<PathBuf> = std::fs::read_dir(&kernels)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", kernels.display()))
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu" || x == "cuh"))
        .collect();
    cus.sort();
    for p in &cus {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed={}", emu_h.display());
    println!("cargo:rerun-if-changed={}", here.join("src/emu.cpp").display());
    println!("cargo:rerun-if-changed={}", kernels.display());

    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++20")
        .opt_level(2)
        .debug(false)
        .warnings(true)
        .flag("-Wno-unknown-pragmas")
        .flag("-Wno-unused-parameter")
        .flag("-include")
        .flag(emu_h.to_str().expect("utf-8 path"))
        .file(here.join("src/emu.cpp"));
    // The .cu files: `-x c++` so g++ reads them as C++ (it would otherwise hand them to the linker).
    b.flag("-x").flag("c++");
    for p in cus.iter().filter(|p| p.extension().is_some_and(|x| x == "cu")) {
        b.file(p);
    }
    b.compile("powertrain_emu");
}

// build.rs: compiles kernels/*.cu with NVRTC (filled in by the CUDA work).
fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=POWERTRAIN_REQUIRE_NVRTC");
}

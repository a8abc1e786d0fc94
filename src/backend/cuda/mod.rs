//! CUDA backend: the kernels of `kernels/*.cu` (compiled by NVRTC in build.rs, embedded), launched through
//! cudarc on one context and stream. File for file the same names as `src/backend/cpu/`.

pub mod check;
pub mod launch;

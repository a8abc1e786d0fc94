//! Launch plans: which kernel function(s) of `kernels/*.cu` an op runs, with which grid, block and shared
//! memory. Shared by the CUDA backend and by the CPU emulation tests, so both launch the kernels the same way.
//! Every launch of an op receives the op's full argument list (params by value, then the pointers in the
//! trait's order).

/// One kernel launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// `extern "C"` function name in the kernels.
    pub func: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

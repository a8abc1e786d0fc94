//! The commands: the only code that sees the command line (`cli.rs`).

pub mod bench_kernels;
pub mod check;
pub mod device;

//! The benchmarks behind `powertrain bench`: per kernel (kernels.rs, validate then time, optionally energy per
//! launch) and per training step. Configured by plain option structs; the command line is src/cmd's.

pub mod kernels;

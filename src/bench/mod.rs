//! The benchmarks behind `powertrain bench`: per kernel (`kernels.rs`: validate then time, optionally energy per
//! launch), the energy counter itself (`sensor.rs`: update period, integration, lag) and per training step (`step.rs`: whole steps, and what per-kernel timing and metering add to them).
//! Configured by plain option structs; the command line is src/cmd's.

pub mod kernels;
pub mod sensor;
pub mod step;

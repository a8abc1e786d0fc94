//! Benchmarks behind `powertrain bench`: `step.rs` times whole training steps (and what per-kernel timing and
//! metering add to them).

pub mod step;

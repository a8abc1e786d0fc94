//! The benchmarks behind `powertrain bench`: per kernel (`kernels.rs`: validate then time, optionally energy per
//! launch), the energy counter itself (`sensor.rs`: update period, integration, lag) and per training step (`step.rs`: whole steps, and what per-kernel timing and metering add to them).
//! `ceilings.rs` measures this CPU's peak FP32 FMA GFLOP/s and STREAM-triad bandwidth for the CPU rows.
//! Configured by plain option structs; the command line is src/cmd's.

pub mod ceilings;
pub mod inplace;
pub mod kernels;
pub mod sensor;
pub mod step;

/// A progress bar on stderr when it is a terminal (hidden otherwise, so that pipes and --json stay clean).
pub(crate) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:40} {pos}/{len} {msg} (eta {eta})")
    {
        pb.set_style(style);
    }
    pb.set_prefix(what.to_string());
    pb
}

//! The commands: the only code that sees the command line (`cli.rs`). Each one turns its flags into the
//! library's types, calls the library, and prints for people.
//!
//! - `device.rs`: `--device` resolved once, and the one place a backend is picked for it;
//! - `train.rs`: `powertrain train` (and the trainer the studies call), `eval.rs`, `info.rs`, `data.rs`;
//! - `study.rs`: `sweep`, `pretrain-study`, `multitask-study`; `report.rs`; `bench.rs`: `bench kernels|step|sensor`
//!   (`bench_kernels.rs`, `bench_sensor.rs`).

pub mod bench;
pub mod bench_kernels;
pub mod bench_sensor;
pub mod check;
pub mod data;
pub mod device;
pub mod eval;
pub mod info;
pub mod report;
pub mod study;
pub mod train;

use crate::cli::{Cli, Command, DataCommand};
use anyhow::Result;

/// Run the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Data(d) => match d.cmd {
            DataCommand::Synth(a) => data::synth(&a),
            DataCommand::Pamap2(a) => data::convert_pamap2(&a),
            DataCommand::Celeba(a) => data::convert_celeba(&a),
        },
        Command::Train(a) => train::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Sweep(a) => study::sweep(&a),
        Command::PretrainStudy(a) => study::pretrain(&a),
        Command::MultitaskStudy(a) => study::multitask(&a),
        Command::Report(a) => report::run(&a),
        Command::Check(a) => check::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Info(a) => info::run(&a),
    }
}

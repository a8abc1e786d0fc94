//! `powertrain` command line: parses arguments (src/cli.rs) and calls the library. Thin by design.

use powertrain::cli::{BenchArgs, Cli, Command, DataCommand};

fn main() {
    let cli: Cli = argh::from_env();
    if let Err(e) = run(cli) {
        // One line for the user: the context chain, outermost first.
        let msg = format!("{e:#}");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Command::Data(d) => match d.cmd {
            DataCommand::Synth(a) => powertrain::data::cli::synth(&a),
            DataCommand::Pamap2(a) => powertrain::data::cli::convert_pamap2(&a),
            DataCommand::Celeba(a) => powertrain::data::cli::convert_celeba(&a),
        },
        Command::Train(a) => powertrain::train::run_train(&a).map(|_| ()),
        Command::Eval(a) => powertrain::train::run_eval(&a),
        Command::Sweep(a) => powertrain::study::run_sweep(&a),
        Command::PretrainStudy(a) => powertrain::study::run_pretrain_study(&a),
        Command::MultitaskStudy(a) => powertrain::study::run_multitask_study(&a),
        Command::Report(a) => powertrain::report::run_report(&a),
        Command::Check(a) => powertrain::cmd::check::run(&a),
        Command::Bench(a) => bench(&a),
        Command::Info(a) => powertrain::train::run_info(&a),
    }
}

fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    match a.what.as_str() {
        "kernels" => powertrain::cmd::bench_kernels::run(a),
        "step" => {
            let kernel_only = [
                (a.kernel.is_some(), "--kernel"),
                (a.compare.is_some(), "--compare"),
                (a.windows.is_some() || a.window_s.is_some(), "--windows/--window-s"),
                (a.out.is_some(), "--out"),
            ];
            if let Some((_, flag)) = kernel_only.iter().find(|(set, _)| *set) {
                anyhow::bail!(
                    "bench step: {flag} belongs to 'bench kernels' (per-step energy comes from 'powertrain train')"
                );
            }
            powertrain::train::run_bench_step(a)
        }
        other => {
            anyhow::bail!("unknown benchmark '{other}': use 'powertrain bench kernels' or 'powertrain bench step'")
        }
    }
}

//! `powertrain` command line: parses the arguments (`src/cli.rs`) and runs the command (`src/cmd/`).

fn main() {
    let cli: powertrain::cli::Cli = argh::from_env();
    if let Err(e) = powertrain::cmd::run(cli) {
        // One line for the user: the context chain, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

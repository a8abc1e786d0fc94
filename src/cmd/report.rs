//! `powertrain report STUDY_DIR|RUN_DIR ..`.
use crate::cli::ReportArgs;
use anyhow::Result;

pub fn run(a: &ReportArgs) -> Result<()> {
    let r = crate::report::write_report(&a.dirs, a.out.as_deref())?;
    println!("wrote {} and {} ({} plots)", r.html.display(), r.md.display(), r.plots.len());
    Ok(())
}

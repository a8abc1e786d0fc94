//! Reports: report.html / report.md with SVG plots (plotters).
use crate::cli::ReportArgs;
use anyhow::Result;

pub fn run_report(_a: &ReportArgs) -> Result<()> {
    anyhow::bail!("report: not implemented yet")
}

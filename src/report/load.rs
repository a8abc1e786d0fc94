//! Reading study and run directories for a report, through their typed owners (`crate::rundir`,
//! `crate::study::dir`).
use crate::energy::KernelRow;
use crate::rundir::{EpochRow, RunDir, RunSummary};
use crate::study::{load_record, Machine, StudyFiles};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// One finished run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The run directory's name (its configuration id in a study).
    pub id: String,
    pub dir: PathBuf,
    pub summary: RunSummary,
    pub machine: Machine,
    /// The study kind ("sweep", "pretrain", "multitask") or None for a plain run directory.
    pub kind: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub studies: Vec<StudyFiles>,
    pub runs: Vec<Run>,
    /// (id, last error) of failed runs.
    pub failed: Vec<(String, String)>,
}

/// Read every directory: a study (study.json or runs/) or a run (summary.json).
pub fn load(dirs: &[PathBuf]) -> Result<Inputs> {
    let mut inp = Inputs::default();
    if dirs.is_empty() {
        bail!("report: give at least one study or run directory (powertrain report STUDY_DIR|RUN_DIR ..)");
    }
    let mut seen = Vec::new();
    for d in dirs {
        // The same directory given twice is read once (its runs would be counted twice).
        let key = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if RunDir::new(d).is_finished() {
            let id = RunDir::new(d).id();
            if let Some(rec) = load_record(d, &id)? {
                if let Some(s) = rec.summary {
                    inp.runs.push(Run { id, dir: d.clone(), summary: s, machine: rec.machine, kind: None });
                }
            }
        } else if StudyFiles::is_study(d) {
            let study = StudyFiles::read(d)?;
            let kind = study.manifest.as_ref().map(|m| m.kind.clone());
            for (id, rd) in study.run_dirs() {
                let Some(rec) = load_record(&rd, &id)? else { continue };
                match rec.summary {
                    Some(s) => inp.runs.push(Run { id, dir: rd, summary: s, machine: rec.machine, kind: kind.clone() }),
                    None => inp.failed.push((id, rec.errors.last().cloned().unwrap_or_default())),
                }
            }
            inp.studies.push(study);
        } else {
            bail!(
                "{}: not a study or run directory (no study.json, runs/ or summary.json); give the --out of \
                 a sweep/study or of `powertrain train`",
                d.display()
            );
        }
    }
    Ok(inp)
}

/// Steps of a run: (t_s, seconds the energy covers, energy_j) from steps.jsonl (none without the file; an
/// error naming the line when it is damaged).
pub fn steps(dir: &Path) -> Result<Vec<(f64, f64, Option<f64>)>> {
    let mut t = 0.0;
    Ok(RunDir::new(dir)
        .steps()?
        .unwrap_or_default()
        .iter()
        .map(|s| {
            t = s.t_s.unwrap_or(t + s.wall_s);
            (t, s.covered_s(), s.energy_j)
        })
        .collect())
}

/// epochs.csv's rows of a run (none without the file; an error naming the line when it is damaged).
pub fn epochs(dir: &Path) -> Result<Vec<EpochRow>> {
    Ok(RunDir::new(dir).epochs()?.unwrap_or_default())
}

/// kernels.csv's rows of a run; none when the run has no kernels.csv (trained without --per-kernel), an error
/// naming the file and line when it is malformed.
pub fn kernels(dir: &Path) -> Result<Vec<KernelRow>> {
    Ok(RunDir::new(dir).kernels()?.map(|k| k.rows).unwrap_or_default())
}

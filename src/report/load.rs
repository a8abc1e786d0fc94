//! Reading study and run directories for a report.
use crate::energy::{window_s, KernelRow, KernelsCsv};
use crate::study::{load_record, Machine, StudyManifest};
use crate::train::RunSummary;
use anyhow::{bail, Context, Result};
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

/// A study directory's own files.
#[derive(Clone, Debug)]
pub struct StudyInfo {
    pub dir: PathBuf,
    pub manifest: Option<StudyManifest>,
    pub sweep: Option<serde_json::Value>,
    pub pretrain: Option<serde_json::Value>,
    pub multitask: Option<serde_json::Value>,
    /// The study's table (sweep.md, pretrain.md or multitask.md).
    pub tables: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub studies: Vec<StudyInfo>,
    pub runs: Vec<Run>,
    /// (id, last error) of failed runs.
    pub failed: Vec<(String, String)>,
}

fn read_json(p: &Path) -> Result<Option<serde_json::Value>> {
    if !p.exists() {
        return Ok(None);
    }
    let t = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    Ok(Some(serde_json::from_str(&t).with_context(|| format!("{}: not valid JSON", p.display()))?))
}

/// Read every directory: a study (study.json or runs/) or a run (summary.json).
pub fn load(dirs: &[PathBuf]) -> Result<Inputs> {
    let mut inp = Inputs::default();
    if dirs.is_empty() {
        bail!("report: give at least one study or run directory (powertrain report STUDY_DIR|RUN_DIR ..)");
    }
    for d in dirs {
        if d.join("summary.json").exists() {
            let id = d.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| d.display().to_string());
            if let Some(rec) = load_record(d, &id)? {
                if let Some(s) = rec.summary {
                    inp.runs.push(Run { id, dir: d.clone(), summary: s, machine: rec.machine, kind: None });
                }
            }
        } else if d.join("study.json").exists() || d.join("runs").is_dir() {
            let manifest: Option<StudyManifest> = match read_json(&d.join("study.json"))? {
                Some(v) => Some(
                    serde_json::from_value(v)
                        .with_context(|| format!("{}: not a study manifest", d.join("study.json").display()))?,
                ),
                None => None,
            };
            let kind = manifest.as_ref().map(|m| m.kind.clone());
            let runs_dir = d.join("runs");
            let mut names: Vec<PathBuf> = match std::fs::read_dir(&runs_dir) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
                Err(_) => vec![],
            };
            names.sort();
            for rd in names {
                let id = rd.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                if id.starts_with('.') || !rd.is_dir() {
                    continue;
                }
                match load_record(&rd, &id)? {
                    Some(rec) => match rec.summary {
                        Some(s) => inp.runs.push(Run {
                            id,
                            dir: rd.clone(),
                            summary: s,
                            machine: rec.machine,
                            kind: kind.clone(),
                        }),
                        None => inp.failed.push((id, rec.errors.last().cloned().unwrap_or_default())),
                    },
                    None => {}
                }
            }
            let mut tables = Vec::new();
            for t in ["sweep.md", "pretrain.md", "multitask.md"] {
                if let Ok(s) = std::fs::read_to_string(d.join(t)) {
                    tables.push(s);
                }
            }
            inp.studies.push(StudyInfo {
                dir: d.clone(),
                manifest,
                sweep: read_json(&d.join("sweep.json"))?,
                pretrain: read_json(&d.join("pretrain.json"))?,
                multitask: read_json(&d.join("multitask.json"))?,
                tables,
            });
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

/// Steps of a run: (t_s, seconds the energy covers (`energy::window_s`), energy_j) from steps.jsonl.
pub fn steps(dir: &Path) -> Vec<(f64, f64, Option<f64>)> {
    let Ok(text) = std::fs::read_to_string(dir.join("steps.jsonl")) else { return vec![] };
    let mut t = 0.0;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
            t = f("t_s").unwrap_or(t + f("wall_s").unwrap_or(0.0));
            (t, window_s(&v), f("energy_j"))
        })
        .collect()
}

/// kernels.csv's rows of a run; none when the run has no kernels.csv (trained without --per-kernel), an error
/// naming the file and line when it is malformed.
pub fn kernels(dir: &Path) -> Result<Vec<KernelRow>> {
    let path = dir.join("kernels.csv");
    if !path.exists() {
        return Ok(vec![]);
    }
    Ok(KernelsCsv::read(&path)?.rows)
}

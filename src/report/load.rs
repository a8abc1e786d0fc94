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
    /// `bench kernels --json` outputs given as a file or found in a folder.
    pub benches: Vec<KernelBench>,
}

/// A `bench kernels --json` document (or its `--out` file), as the report reads it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct KernelBench {
    #[serde(skip)]
    pub path: PathBuf,
    pub device: String,
    /// "cpu" or "cuda".
    pub kind: String,
    /// Measured ceilings (absent in documents of older versions on the CPU).
    pub ceilings: Option<BenchCeilings>,
    /// The calibration's sensor context with `--energy` (its `source` names how joules were obtained).
    #[serde(default)]
    pub energy: Option<serde_json::Value>,
    pub rows: Vec<BenchRowIn>,
}

#[derive(Clone, Debug, serde::Deserialize)]
pub struct BenchCeilings {
    pub copy_gbps: f64,
    pub gemm_gflops: f64,
    /// How they were measured (older documents: the CUDA copy and gemm).
    #[serde(default)]
    pub what: String,
}

/// One case of a kernel benchmark.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BenchRowIn {
    pub model: String,
    pub layer: String,
    pub kernel: String,
    pub batch: usize,
    #[serde(default)]
    pub shape: String,
    pub status: String,
    pub median_ms: Option<f64>,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
    pub frac_peak_flops: Option<f64>,
    pub frac_peak_bw: Option<f64>,
    pub energy: Option<crate::energy::Calibration>,
}

impl BenchRowIn {
    /// FLOPs per byte moved (GFLOP/s over GB/s); None for ops without FLOPs.
    pub fn intensity(&self) -> Option<f64> {
        Some(self.gflops? / self.gbps.filter(|b| *b > 0.0)?)
    }
}

/// The `bench kernels --json` documents at `p`: the file itself, or every `*.json` in the folder that is one.
/// None when `p` holds none (an error naming the file when a file given directly is not one).
pub fn benches(p: &Path) -> Result<Option<Vec<KernelBench>>> {
    let read = |f: &Path| -> Result<Option<KernelBench>> {
        let t = crate::util::read_text_file(f)?;
        let v: serde_json::Value = match serde_json::from_str(&t) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        if !(v.get("rows").is_some_and(|r| r.is_array()) && v.get("kind").is_some() && v.get("device").is_some()) {
            return Ok(None);
        }
        let mut b: KernelBench = serde_json::from_value(v).map_err(|e| {
            anyhow::anyhow!("{}: not a `bench kernels --json` output this version can read ({e})", f.display())
        })?;
        b.path = f.to_path_buf();
        Ok(Some(b))
    };
    if p.is_file() {
        return match read(p)? {
            Some(b) => Ok(Some(vec![b])),
            None => bail!(
                "{}: not a `bench kernels --json` output (no device, kind and rows); give a study, run or kernel                  benchmark",
                p.display()
            ),
        };
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir(p) {
        Ok(rd) => {
            rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|f| f.extension().is_some_and(|x| x == "json")).collect()
        }
        Err(_) => return Ok(None),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.is_file()) {
        if let Some(b) = read(f)? {
            out.push(b);
        }
    }
    Ok((!out.is_empty()).then_some(out))
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
        } else if let Some(b) = benches(d)? {
            inp.benches.extend(b);
        } else {
            bail!(
                "{}: not a study or run directory (no study.json, runs/ or summary.json) nor a `bench kernels \
                 --json` output; give the --out of a sweep/study or of `powertrain train`, or a bench JSON file",
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

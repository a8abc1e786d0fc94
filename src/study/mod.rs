//! The study: sweep, pretraining reuse, multi-task (`../shared/docs/protocol.md`, "Study grids").
//!
//! `dir.rs` owns the study directory's files (study.json, runs/, runs.jsonl, partial/, the tables); `sweep.rs`,
//! `pretrain.rs` and `multitask.rs` resolve their grids, run them and write their tables; this file holds what
//! they share (the metric, table helpers, list parsing).
//!
//! Every study takes the trainer as a parameter (`Trainer`), so tests inject a fake one; `powertrain sweep`
//! and the other commands pass `crate::cmd::train::train_run`. Each run's settings start from
//! `TrainConfig::new` (the protocol's defaults, the same as `powertrain train`'s).

pub mod dir;
pub mod finding;
pub mod multitask;
pub mod paper;
pub mod pretrain;
pub mod sweep;

pub use dir::{data_key, load_record, Access, Machine, RunRecord, Study, StudyFiles, StudyManifest};
pub use finding::{BreakEven, Cost, Mean, Ratio};
pub use multitask::{multitask_study_with, MultitaskOptions, MultitaskResult};
pub use pretrain::{pretrain_study_with, PretrainOptions};
pub use sweep::{slurm_script, sweep_with, SweepOptions, SweepResult};

use crate::rundir::RunSummary;
use crate::train::TrainConfig;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

/// The trainer a study calls: `crate::cmd::train::train_run` in production, a fake in tests.
pub type Trainer<'a> = &'a dyn Fn(&TrainConfig) -> Result<RunSummary>;

/// What a study compares: joules, or seconds when no run has an energy reading.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// Joules; `estimate` when any run's energy source is `estimate`, `sim` when any is the sensor twin's
    /// (`--energy sim`): neither is ever presented as measured.
    Energy { estimate: bool, sim: bool },
    /// Seconds of wall time (energy source `none`).
    Time,
}

impl Metric {
    /// Energy when every summary has an energy reading, else time.
    pub fn of<'a>(summaries: impl IntoIterator<Item = &'a RunSummary>) -> Metric {
        let mut estimate = false;
        let mut sim = false;
        let mut any = false;
        for s in summaries {
            any = true;
            if s.energy_source == "none" || s.total_energy_j.is_none() {
                return Metric::Time;
            }
            estimate |= s.energy_source == "estimate";
            sim |= s.energy_source == "sim";
        }
        if any {
            Metric::Energy { estimate, sim }
        } else {
            Metric::Time
        }
    }
    pub fn unit(&self) -> &'static str {
        match self {
            Metric::Energy { .. } => "J",
            Metric::Time => "s",
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Energy { .. } => "energy",
            Metric::Time => "time",
        }
    }
    /// A visible note for tables and plots ("" for measured energy).
    pub fn note(&self) -> &'static str {
        match self {
            Metric::Energy { estimate: true, .. } => "ESTIMATE (not measured)",
            Metric::Energy { sim: true, .. } => "SIM: the sensor twin's counter (--energy sim), not a measurement",
            Metric::Energy { .. } => "",
            Metric::Time => "no energy readings (source none): time shown instead of energy",
        }
    }
    /// Cost to the target (None when the target was not reached).
    pub fn to_target(&self, s: &RunSummary) -> Option<f64> {
        if !s.target_reached {
            return None;
        }
        match self {
            Metric::Energy { .. } => s.energy_to_target_j,
            Metric::Time => s.time_to_target_s,
        }
    }
    /// Cost of the whole run.
    pub fn total(&self, s: &RunSummary) -> Option<f64> {
        match self {
            Metric::Energy { .. } => s.total_energy_j,
            Metric::Time => Some(s.wall_s),
        }
    }
    /// Cost per epoch (training only for energy).
    pub fn per_epoch(&self, s: &RunSummary) -> Option<f64> {
        match self {
            Metric::Energy { .. } => s.energy_per_epoch_j,
            Metric::Time => (s.epochs > 0).then(|| s.wall_s / s.epochs as f64),
        }
    }
}

/// The energy sources of `summaries` when they differ (a warning for tables), else None.
pub fn mixed_sources<'a>(summaries: impl IntoIterator<Item = &'a RunSummary>) -> Option<String> {
    let mut set: Vec<String> = summaries.into_iter().map(|s| s.energy_source.clone()).collect();
    set.sort();
    set.dedup();
    (set.len() > 1).then(|| format!("WARNING: runs use different energy sources ({})", set.join(", ")))
}

/// A warning line when the records come from more than one machine, else None.
pub fn mixed_machines<'a>(recs: impl IntoIterator<Item = &'a RunRecord>) -> Option<String> {
    let mut ms: Vec<Machine> = recs.into_iter().filter(|r| r.is_ok()).map(|r| r.machine.clone()).collect();
    ms.sort();
    ms.dedup();
    (ms.len() > 1).then(|| {
        format!(
            "WARNING: runs were measured on {} different machines ({}); compare them with care",
            ms.len(),
            ms.iter().map(|m| m.label()).collect::<Vec<_>>().join("; ")
        )
    })
}

/// A number for a table: 3 significant digits, or "n/a".
pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if !x.is_finite() => "n/a".into(),
        Some(0.0) => "0".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) => {
            let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
            format!("{x:.digits$}")
        }
    }
}

/// "FAILED id: error" lines for a study's table (with the energy the failed attempts used, when known).
pub fn failed_lines<'a>(recs: impl IntoIterator<Item = &'a RunRecord>) -> String {
    let mut s = String::new();
    for r in recs {
        let used = r.used_energy_j.map(|j| format!(" (the failed attempts used {} J)", fmt_num(Some(j))));
        let err = r.errors.last().map(String::as_str).unwrap_or("(no message)");
        s += &format!("\nFAILED {}: {err}{}\n", r.id, used.unwrap_or_default());
    }
    s
}

/// A markdown table.
pub fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s =
        format!("| {} |\n|{}|\n", header.join(" | "), header.iter().map(|_| " --- ").collect::<Vec<_>>().join("|"));
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

/// Parse a comma-separated list for `flag`.
pub fn parse_list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>> {
    let v: Vec<T> = s
        .split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<T>()
                .map_err(|_| anyhow!("{flag}: cannot read '{t}' (expected a comma-separated list of numbers)"))
        })
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("{flag}: the list is empty; give at least one value");
    }
    Ok(v)
}

/// Check `--model`.
pub fn check_model(m: &str, allowed: &[&str]) -> Result<()> {
    if !allowed.contains(&m) {
        bail!("--model {m}: this study takes --model {}", allowed.join(" or "));
    }
    Ok(())
}

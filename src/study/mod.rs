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

/// The energy flags every run of a study carries beside `--energy`/`--watts`: the sensor twin's settings
/// (`--sim-model`, `--sim-sensor`, with `--energy sim` only) and carbon (`--carbon-intensity` with `--pue`).
/// They are validated by `TrainConfig::validate` exactly as `powertrain train` validates them (the first run's
/// settings are checked before the study directory is touched), are part of the study's grid in study.json
/// (a study on another sensor or carbon setting is another study) and travel into `--emit-slurm` job lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_model: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_sensor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_intensity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pue: Option<f64>,
}

impl RunExtras {
    /// `cfg` with these settings.
    pub fn apply(&self, cfg: TrainConfig) -> TrainConfig {
        TrainConfig {
            sim_model: self.sim_model.clone(),
            sim_sensor: self.sim_sensor.clone(),
            carbon_intensity: self.carbon_intensity,
            pue: self.pue,
            ..cfg
        }
    }
}

/// The study's carbon: the sum over its finished runs of each summary.json's `carbon.co2e_g`, with the energy
/// method behind it ("measured" only for nvml-counter, nvml-power or rapl; an estimate or the sensor twin is
/// named as such). None when no run carries a carbon block.
pub fn carbon_text<'a>(summaries: impl IntoIterator<Item = &'a RunSummary>) -> Option<String> {
    let (mut g, mut kwh, mut n, mut without) = (0.0, 0.0, 0usize, 0usize);
    let mut inputs: Vec<(String, String)> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    for s in summaries {
        match s.carbon.get("co2e_g").and_then(|v| v.as_f64()) {
            Some(c) => {
                g += c;
                kwh += s.carbon.get("facility_energy_kwh").and_then(|v| v.as_f64()).unwrap_or(0.0);
                n += 1;
                let num = |k: &str| s.carbon.get(k).and_then(|v| v.as_f64()).map(|v| v.to_string()).unwrap_or_default();
                inputs.push((num("carbon_intensity_g_per_kwh"), num("pue")));
                sources.push(s.energy_source.clone());
            }
            None => without += 1,
        }
    }
    if n == 0 {
        return None;
    }
    inputs.sort();
    inputs.dedup();
    sources.sort();
    sources.dedup();
    let method = sources.iter().map(|s| energy_method(s)).collect::<Vec<_>>().join("; ");
    let given = inputs.iter().map(|(ci, p)| format!("{ci} gCO2e/kWh at PUE {p}")).collect::<Vec<_>>().join(", ");
    let missing = match without {
        0 => String::new(),
        k => format!(" {k} run(s) without an energy reading or carbon block are not counted."),
    };
    Some(format!(
        "Carbon: {} g CO2e over {n} run(s) ({} kWh at the facility) = each run's energy x PUE x carbon intensity \
         ({given}, as given on the command line); energy method: {method}.{missing}\n",
        fmt_num(Some(g)),
        fmt_num(Some(kwh))
    ))
}

/// How the energy of `source` was obtained, in words for a report.
pub fn energy_method(source: &str) -> String {
    match source {
        "nvml-counter" | "nvml-power" | "rapl" => format!("measured ({source})"),
        "estimate" => "ESTIMATE (--energy estimate: assumed watts x time, not measured)".into(),
        "sim" => "SIM (the sensor twin's counter, --energy sim: a model, not a measurement)".into(),
        other => format!("{other} (not a measurement)"),
    }
}

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
    /// Whether an energy cost of `s` over `span_s` seconds (None: its cost's own span, the time to target or
    /// the whole run) is below the resolution of the run's counter (`summary.json`'s `resolution.sensor`):
    /// fewer than `COMPARISON_MIN_UPDATES` effective updates. Never for time, and not when the counter's
    /// character is unknown (an estimate has no counter; the run's `resolution.note` says when it is unknown).
    pub fn below_resolution(&self, s: &RunSummary, span_s: Option<f64>) -> bool {
        use crate::energy::resolution::Span;
        let Metric::Energy { .. } = self else { return false };
        let Some(sensor) = s.resolution.as_ref().and_then(|r| r.sensor.as_ref()) else { return false };
        let own = if s.target_reached { s.time_to_target_s.unwrap_or(s.wall_s) } else { s.wall_s };
        !sensor.label(span_s.unwrap_or(own), Span::Comparison).resolved
    }
    /// The cost to the target (exact) or the whole run's (a lower bound), marked when below resolution.
    pub fn cost(&self, s: &RunSummary) -> Option<Cost> {
        let c = match self.to_target(s) {
            Some(v) => Cost::exact(v),
            None => Cost::lower_bound(self.total(s)?),
        };
        Some(c.below_resolution(self.below_resolution(s, None)))
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

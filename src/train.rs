//! The training loop, evaluation, `info` and `bench step`.
//!
//! A run directory (`--out`) holds:
//! - `config.json`: every flag, protocol version, host, device name, GPU UUID/driver when on a GPU;
//! - `steps.jsonl`: one object per optimiser step: `step` (1-based), `epoch` (1-based), `loss`, `batch_size`,
//!   `wall_s` (this step's duration), `t_s` (since the run started), `energy_j` (null with source none),
//!   `energy_source`, `energy_uncertainty_j`, and with `--per-kernel` `kernels`: [{name, launches, time_s,
//!   energy_j}];
//! - `epochs.csv`: epoch,steps,train_loss,val_loss,val_acc,epoch_wall_s,epoch_energy_j,eval_energy_j,
//!   cum_energy_j,cum_wall_s (val columns empty when there is no validation split);
//! - `summary.json`: `RunSummary` below;
//! - `kernels.csv` with `--per-kernel`; the checkpoint with `--save`.
use crate::cli::{BenchArgs, EvalArgs, InfoArgs, TrainArgs};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `summary.json` of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub protocol: u32,
    pub model: String,
    pub device: String,
    pub device_name: String,
    pub optimizer: String,
    pub lr: f32,
    pub batch_size: usize,
    pub seed: u64,
    /// "target_reached", "epoch_limit", "max_steps"
    pub stop_reason: String,
    pub epochs: usize,
    pub steps: u64,
    pub final_train_loss: Option<f64>,
    pub final_val_acc: Option<f64>,
    pub best_val_acc: Option<f64>,
    /// Validation accuracy per task (CelebA attributes; the single class task is "class").
    pub final_val_acc_per_task: BTreeMap<String, f64>,
    /// First epoch at which each task reached the target (multi-task study).
    pub task_epoch_reached: BTreeMap<String, usize>,
    pub target_acc: Option<f64>,
    pub target_reached: bool,
    pub epochs_to_target: Option<usize>,
    /// Every joule up to and including the evaluation of the epoch that reached the target.
    pub energy_to_target_j: Option<f64>,
    pub time_to_target_s: Option<f64>,
    pub total_energy_j: Option<f64>,
    /// Mean training energy per epoch (evaluation excluded).
    pub energy_per_epoch_j: Option<f64>,
    pub wall_s: f64,
    pub mean_step_s: f64,
    pub energy_source: String,
    pub idle_j: Option<f64>,
    pub active_j: Option<f64>,
    pub idle_power_w: Option<f64>,
    /// Sensor and device context (GPU name, UUID, driver, power limit, update period, ...).
    pub energy_context: serde_json::Value,
    /// Energy/time prediction made after the first epochs, and how it compared with the outcome.
    pub prediction: serde_json::Value,
    pub host: String,
    /// Carbon, only with --carbon-intensity (and --pue).
    pub carbon: serde_json::Value,
}

pub fn run_train(_a: &TrainArgs) -> Result<RunSummary> {
    anyhow::bail!("train: not implemented yet")
}
pub fn run_eval(_a: &EvalArgs) -> Result<()> {
    anyhow::bail!("eval: not implemented yet")
}
pub fn run_info(_a: &InfoArgs) -> Result<()> {
    anyhow::bail!("info: not implemented yet")
}
pub fn run_bench_step(_a: &BenchArgs) -> Result<()> {
    anyhow::bail!("bench step: not implemented yet")
}

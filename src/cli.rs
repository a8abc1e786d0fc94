//! The command line (the public interface of `../shared/docs/protocol.md`: flag and file names are fixed).
//! `main.rs` parses these and `crate::cmd` runs them; nothing here computes, and nothing but `cmd` uses it.
//! `powertrain train`'s defaults come from `TrainConfig::default()` (`defaults()` below), the one place the
//! protocol's training defaults are written.

use argh::FromArgs;
use std::path::PathBuf;

/// The training defaults (`crate::train::TrainConfig`), for the flags' `default = ..` below.
fn defaults() -> crate::train::TrainConfig {
    crate::train::TrainConfig::default()
}

#[derive(FromArgs, Debug)]
/// powertrain: train small CNNs with hand-written CUDA kernels and measure the energy of every step and kernel.
pub struct Cli {
    #[argh(subcommand)]
    pub cmd: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Data(DataArgs),
    Train(TrainArgs),
    Eval(EvalArgs),
    Sweep(SweepArgs),
    PretrainStudy(PretrainStudyArgs),
    MultitaskStudy(MultitaskStudyArgs),
    Report(ReportArgs),
    Check(CheckArgs),
    Bench(BenchArgs),
    Info(InfoArgs),
}

// ---- data ---------------------------------------------------------------------------------------------

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "data")]
/// convert real datasets, or synthesise data in their raw formats
pub struct DataArgs {
    #[argh(subcommand)]
    pub cmd: DataCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum DataCommand {
    Synth(SynthArgs),
    Pamap2(ConvertPamap2Args),
    Celeba(ConvertCelebaArgs),
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "synth")]
/// write synthetic data in the ORIGINAL raw format (PAMAP2 .dat files, CelebA JPEGs + annotation files)
pub struct SynthArgs {
    #[argh(positional)]
    /// pamap2 or celeba
    pub dataset: String,
    #[argh(option)]
    /// output directory for the raw files
    pub out: PathBuf,
    #[argh(option, default = "0")]
    /// random seed (default 0)
    pub seed: u64,
    #[argh(option, default = "String::from(\"small\")")]
    /// small or medium (default small)
    pub scale: String,
    #[argh(switch)]
    /// write into a non-empty --out (refused otherwise: it may hold real data)
    pub force: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pamap2")]
/// convert PAMAP2_Dataset (Protocol/subject10x.dat) into a dataset directory
pub struct ConvertPamap2Args {
    #[argh(option)]
    /// the PAMAP2_Dataset directory (holding Protocol/)
    pub src: PathBuf,
    #[argh(option)]
    /// output dataset directory
    pub out: PathBuf,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "celeba")]
/// convert CelebA (img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt) into a dataset directory
pub struct ConvertCelebaArgs {
    #[argh(option)]
    /// the CelebA directory
    pub src: PathBuf,
    #[argh(option)]
    /// output dataset directory
    pub out: PathBuf,
    #[argh(option, default = "64")]
    /// image side after crop and resize (default 64)
    pub size: u32,
}

// ---- train / eval -------------------------------------------------------------------------------------

#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "train")]
/// train a model, writing a run directory with per-step energy records
pub struct TrainArgs {
    #[argh(option)]
    /// pamap2 or celeba
    pub model: String,
    #[argh(option)]
    /// dataset directory or a .safetensors file with x and y
    pub data: PathBuf,
    #[argh(option)]
    /// validation .safetensors file (with a single-file --data)
    pub val: Option<PathBuf>,
    #[argh(option)]
    /// comma-separated CelebA attribute names (default Smiling)
    pub tasks: Option<String>,
    #[argh(option, default = "defaults().device")]
    /// auto, cpu or cuda (default auto)
    pub device: String,
    #[argh(option, default = "defaults().optimizer")]
    /// sgd or adam (default adam)
    pub optimizer: String,
    #[argh(option, default = "defaults().lr")]
    /// learning rate (default 1e-3)
    pub lr: f32,
    #[argh(option, default = "defaults().momentum")]
    /// momentum for sgd (default 0)
    pub momentum: f32,
    #[argh(option, default = "defaults().weight_decay")]
    /// weight decay, coupled (default 0)
    pub weight_decay: f32,
    #[argh(option, default = "defaults().batch_size")]
    /// batch size (default 64)
    pub batch_size: usize,
    #[argh(option, default = "defaults().epochs")]
    /// maximum number of epochs (default 10)
    pub epochs: usize,
    #[argh(option)]
    /// stop after this many optimiser steps
    pub max_steps: Option<usize>,
    #[argh(option)]
    /// stop at the first epoch whose validation accuracy reaches this
    pub target_acc: Option<f64>,
    #[argh(switch)]
    /// take rows in file order (batch i = rows [i*B, (i+1)*B))
    pub no_shuffle: bool,
    #[argh(option, default = "defaults().seed")]
    /// random seed for initialisation and shuffling (default 0)
    pub seed: u64,
    #[argh(option)]
    /// initial weights (.safetensors, PyTorch names)
    pub init: Option<PathBuf>,
    #[argh(option)]
    /// write the final weights here (.safetensors, loads in PyTorch)
    pub save: Option<PathBuf>,
    #[argh(switch)]
    /// train only the head (fc1, fc2); the encoder (conv1..conv3) stays fixed
    pub freeze_encoder: bool,
    #[argh(option, default = "defaults().energy")]
    /// energy source: auto, nvml, rapl, sim (the sensor twin: a model, never a measurement), estimate or none
    /// (default auto)
    pub energy: String,
    #[argh(option)]
    /// with --energy sim: the twin's power table (JSON: idle_w, busy_w, hold_s, kernels [{prefix, dyn_w}],
    /// default_dyn_w; default: a built-in H100-like table)
    pub sim_model: Option<PathBuf>,
    #[argh(option)]
    /// with --energy sim: the twin's counter, continuous or part-time, optionally :period=,window=,lag=,
    /// quantum=,gain=,offset=,noise=,seed= (default continuous, 100 ms)
    pub sim_sensor: Option<String>,
    #[argh(option)]
    /// with --per-kernel: a calibration file (bench kernels --energy writes them), or none (split by time);
    /// default: the cache's file for this device (calibrated in place on sim)
    pub calibration: Option<String>,
    #[argh(option)]
    /// watts for --energy estimate
    pub watts: Option<f64>,
    #[argh(switch)]
    /// attribute energy to every kernel launch (kernels.csv, per-kernel rows in steps.jsonl)
    pub per_kernel: bool,
    #[argh(option, default = "defaults().kernel_sample")]
    /// with --per-kernel: time the launches of every Nth training step (and the first two of each batch size,
    /// and every evaluation); the others take the latest timed step's kernel times, labelled (default 1: all)
    pub kernel_sample: u64,
    #[argh(option, default = "defaults().kernel_timing")]
    /// with --per-kernel on cuda: events (a CUDA event before and after every op) or stamps (the kernels write
    /// %globaltimer stamps, no host call per launch) (default events)
    pub kernel_timing: crate::ops::KernelClock,
    #[argh(option)]
    /// carbon intensity in gCO2e/kWh (carbon is reported only when given)
    pub carbon_intensity: Option<f64>,
    #[argh(option)]
    /// power usage effectiveness of the site (with --carbon-intensity)
    pub pue: Option<f64>,
    #[argh(option)]
    /// run directory (config.json, steps.jsonl, epochs.csv, summary.json)
    pub out: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "eval")]
/// evaluate a checkpoint: loss and accuracy on a dataset
pub struct EvalArgs {
    #[argh(option)]
    /// pamap2 or celeba
    pub model: String,
    #[argh(option)]
    /// dataset directory (its test split) or a .safetensors file
    pub data: PathBuf,
    #[argh(option)]
    /// weights (.safetensors)
    pub init: PathBuf,
    #[argh(option)]
    /// comma-separated CelebA attribute names (default Smiling)
    pub tasks: Option<String>,
    #[argh(option, default = "String::from(\"auto\")")]
    /// auto, cpu or cuda (default auto)
    pub device: String,
    #[argh(option, default = "256")]
    /// batch size (default 256)
    pub batch_size: usize,
    #[argh(option)]
    /// split of a dataset directory: train, val or test (default test)
    pub split: Option<String>,
}

// ---- studies ------------------------------------------------------------------------------------------

#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "sweep")]
/// batch size x learning rate sweep: energy per epoch and energy to the target accuracy
pub struct SweepArgs {
    #[argh(option)]
    /// pamap2 or celeba
    pub model: String,
    #[argh(option)]
    /// dataset directory
    pub data: PathBuf,
    #[argh(option)]
    /// comma-separated batch sizes (default 16,32,64,128,256,512,1024)
    pub batch_sizes: Option<String>,
    #[argh(option)]
    /// comma-separated learning rates (default 1e-4,3e-4,1e-3,3e-3,1e-2)
    pub lrs: Option<String>,
    #[argh(option, default = "3")]
    /// repeats with seeds 0..N (default 3: every table shows a 95 % interval over seeds)
    pub seeds: u64,
    #[argh(option)]
    /// validation accuracy target (default: pamap2 0.80, celeba 0.88)
    pub target_acc: Option<f64>,
    #[argh(option, default = "20")]
    /// epoch limit per run (default 20)
    pub epochs: usize,
    #[argh(option, default = "String::from(\"adam\")")]
    /// sgd or adam (default adam)
    pub optimizer: String,
    #[argh(option)]
    /// comma-separated CelebA attribute names (default Smiling)
    pub tasks: Option<String>,
    #[argh(option, default = "String::from(\"auto\")")]
    /// auto, cpu or cuda (default auto)
    pub device: String,
    #[argh(option, default = "String::from(\"auto\")")]
    /// energy source (default auto)
    pub energy: String,
    #[argh(option)]
    /// watts for --energy estimate
    pub watts: Option<f64>,
    #[argh(option)]
    /// with --energy sim: the twin's power table for every run (JSON, as train --sim-model)
    pub sim_model: Option<PathBuf>,
    #[argh(option)]
    /// with --energy sim: the twin's counter for every run (as train --sim-sensor, e.g. part-time:period=2)
    pub sim_sensor: Option<String>,
    #[argh(option)]
    /// carbon intensity in gCO2e/kWh for every run (with --pue; the study states the sum over its runs)
    pub carbon_intensity: Option<f64>,
    #[argh(option)]
    /// power usage effectiveness of the site (with --carbon-intensity)
    pub pue: Option<f64>,
    #[argh(switch)]
    /// a reduced grid that finishes in minutes on 2 CPU cores
    pub quick: bool,
    #[argh(switch)]
    /// energy-aware sweep: seed 0 of every configuration capped at the best cost so far (adaptive capping),
    /// further seeds only for configurations within 25 % of the best (racing); reports the sweep's own energy
    pub prune: bool,
    #[argh(option)]
    /// write a Slurm job-array script here instead of running
    pub emit_slurm: Option<PathBuf>,
    #[argh(option)]
    /// run only this configuration index (used by Slurm array tasks)
    pub only: Option<usize>,
    #[argh(option)]
    /// study directory
    pub out: PathBuf,
}

#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "pretrain-study")]
/// pretraining reuse: scratch vs fine-tune vs frozen encoder, break-even reuse counts
pub struct PretrainStudyArgs {
    #[argh(option)]
    /// pamap2
    pub model: String,
    #[argh(option)]
    /// the PAMAP2 dataset directory
    pub data: PathBuf,
    #[argh(option, default = "3")]
    /// seeds (default 3)
    pub seeds: u64,
    #[argh(option, default = "64")]
    /// batch size (default 64)
    pub batch_size: usize,
    #[argh(option, default = "1e-3")]
    /// learning rate (default 1e-3)
    pub lr: f32,
    #[argh(option, default = "20")]
    /// epoch limit per run (default 20)
    pub epochs: usize,
    #[argh(option)]
    /// downstream validation accuracy target (default 0.80)
    pub target_acc: Option<f64>,
    #[argh(option, default = "String::from(\"auto\")")]
    /// auto, cpu or cuda
    pub device: String,
    #[argh(option, default = "String::from(\"auto\")")]
    /// energy source
    pub energy: String,
    #[argh(option)]
    /// watts for --energy estimate
    pub watts: Option<f64>,
    #[argh(option)]
    /// with --energy sim: the twin's power table for every run (JSON, as train --sim-model)
    pub sim_model: Option<PathBuf>,
    #[argh(option)]
    /// with --energy sim: the twin's counter for every run (as train --sim-sensor, e.g. part-time:period=2)
    pub sim_sensor: Option<String>,
    #[argh(option)]
    /// carbon intensity in gCO2e/kWh for every run (with --pue; the study states the sum over its runs)
    pub carbon_intensity: Option<f64>,
    #[argh(option)]
    /// power usage effectiveness of the site (with --carbon-intensity)
    pub pue: Option<f64>,
    #[argh(switch)]
    /// reduced settings for 2 CPU cores
    pub quick: bool,
    #[argh(option)]
    /// study directory
    pub out: PathBuf,
}

#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "multitask-study")]
/// one K-output network vs K single-output networks on CelebA attributes
pub struct MultitaskStudyArgs {
    #[argh(option)]
    /// celeba
    pub model: String,
    #[argh(option)]
    /// the CelebA dataset directory
    pub data: PathBuf,
    #[argh(option)]
    /// comma-separated attributes (default Smiling,Male,Young,Attractive,Heavy_Makeup)
    pub tasks: Option<String>,
    #[argh(option, default = "64")]
    /// batch size (default 64)
    pub batch_size: usize,
    #[argh(option, default = "1e-3")]
    /// learning rate (default 1e-3)
    pub lr: f32,
    #[argh(option, default = "20")]
    /// epoch limit per run (default 20)
    pub epochs: usize,
    #[argh(option)]
    /// per-attribute validation accuracy target (default 0.85)
    pub target_acc: Option<f64>,
    #[argh(option, default = "3")]
    /// seeds (default 3: the table shows a 95 % interval over seeds)
    pub seeds: u64,
    #[argh(option, default = "String::from(\"auto\")")]
    /// auto, cpu or cuda
    pub device: String,
    #[argh(option, default = "String::from(\"auto\")")]
    /// energy source
    pub energy: String,
    #[argh(option)]
    /// watts for --energy estimate
    pub watts: Option<f64>,
    #[argh(option)]
    /// with --energy sim: the twin's power table for every run (JSON, as train --sim-model)
    pub sim_model: Option<PathBuf>,
    #[argh(option)]
    /// with --energy sim: the twin's counter for every run (as train --sim-sensor, e.g. part-time:period=2)
    pub sim_sensor: Option<String>,
    #[argh(option)]
    /// carbon intensity in gCO2e/kWh for every run (with --pue; the study states the sum over its runs)
    pub carbon_intensity: Option<f64>,
    #[argh(option)]
    /// power usage effectiveness of the site (with --carbon-intensity)
    pub pue: Option<f64>,
    #[argh(switch)]
    /// reduced settings for 2 CPU cores
    pub quick: bool,
    #[argh(option)]
    /// study directory
    pub out: PathBuf,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "report")]
/// write report.html and report.md (SVG plots) for study or run directories
pub struct ReportArgs {
    #[argh(positional)]
    /// study or run directories
    pub dirs: Vec<PathBuf>,
    #[argh(option)]
    /// where to write the report (default: the first directory)
    pub out: Option<PathBuf>,
}

// ---- check / bench / info -----------------------------------------------------------------------------

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
/// every GPU kernel against the CPU backend on fresh random inputs; exits non-zero on any failure
pub struct CheckArgs {
    #[argh(option, default = "String::from(\"cuda\")")]
    /// cuda (default), emu (the same kernels under the CPU emulation) or cpu (a self-test of the harness)
    pub device: String,
    #[argh(option)]
    /// random seed (default: from the clock, printed)
    pub seed: Option<u64>,
    #[argh(switch)]
    /// print JSON instead of a table
    pub json: bool,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
/// benchmarks: kernels, whole training steps, or the energy sensor
pub struct BenchArgs {
    #[argh(positional)]
    /// kernels, step or sensor (update period, integration, lag of the energy counter)
    pub what: String,
    #[argh(option)]
    /// pamap2 or celeba (step; default both for kernels)
    pub model: Option<String>,
    #[argh(option)]
    /// batch size (default: 64 for step; 16..1024 for kernels)
    pub batch_size: Option<usize>,
    #[argh(option, default = "String::from(\"auto\")")]
    /// auto, cpu or cuda (default auto)
    pub device: String,
    #[argh(option, default = "String::from(\"adam\")")]
    /// optimiser for step (default adam)
    pub optimizer: String,
    #[argh(option)]
    /// number of timed repetitions (default: adaptive)
    pub iters: Option<usize>,
    #[argh(option)]
    /// step: also time steps with per-kernel timing on, side by side with it off: events, stamps (cuda) or
    /// all (each the device has); with --energy, the clocks of the per-kernel metering (default events)
    pub kernel_timing: Option<String>,
    #[argh(switch)]
    /// with kernels: repeat-and-divide energy per launch (calibration mode); with step: also time steps
    /// metered as train meters them (per-step, per-kernel), side by side with metering off
    pub energy: bool,
    #[argh(option, default = "String::from(\"auto\")")]
    /// with --energy: auto, nvml, rapl, sim (the sensor twin) or estimate (default auto: nvml on cuda, rapl on cpu)
    pub energy_source: String,
    #[argh(option)]
    /// with --energy estimate: the watts to assume while busy
    pub watts: Option<f64>,
    #[argh(option)]
    /// with --energy: windows per kernel (default 3)
    pub windows: Option<usize>,
    #[argh(option)]
    /// with --energy: seconds per window (default 1.0)
    pub window_s: Option<f64>,
    #[argh(option)]
    /// only these kernels (comma-separated names, e.g. gemm,conv2d_forward)
    pub kernel: Option<String>,
    #[argh(option)]
    /// with --energy: a run directory trained with --per-kernel; calibrate at its model and batch size and
    /// compare with its kernels.csv
    pub compare: Option<String>,
    #[argh(option)]
    /// write the JSON result to this file as well (atomically)
    pub out: Option<String>,
    #[argh(switch)]
    /// print JSON
    pub json: bool,
    #[argh(option)]
    /// sensor with --energy-source sim: the twin's counter to characterise (continuous|part-time[:k=v,...],
    /// as train's --sim-sensor; default continuous)
    pub sim_sensor: Option<String>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "info")]
/// devices, drivers, energy sensors found, kernels embedded
pub struct InfoArgs {
    #[argh(switch)]
    /// print JSON
    pub json: bool,
}

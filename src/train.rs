//! The training loop, evaluation, `info` and `bench step`.
//!
//! A run directory (`--out`) holds:
//! - `config.json`: every flag, protocol version, host, device name, GPU UUID/driver when on a GPU;
//! - `steps.jsonl`: one object per optimiser step: `step` (1-based), `epoch` (1-based), `loss`, `batch_size`,
//!   `wall_s` (this step's duration), `t_s` (since the run started), `energy_j` (null with source none),
//!   `energy_source`, `energy_method`, `energy_uncertainty_j`, `window_s`, `gap_s`, `gap_energy_j`, and with
//!   `--per-kernel` `kernels`: [{name, launches, time_s, energy_j, uncertainty_j}] and `kernels_timed` (false:
//!   the kernel times are the latest timed step's, `--kernel-sample`);
//! - `epochs.csv`: epoch,steps,train_loss,val_loss,val_acc,epoch_wall_s,epoch_energy_j,eval_energy_j,
//!   cum_energy_j,cum_wall_s (val columns empty when there is no validation split);
//! - `summary.json`: `RunSummary` below;
//! - `kernels.csv` with `--per-kernel`; the checkpoint with `--save`.
use crate::cli::{BenchArgs, EvalArgs, InfoArgs, TrainArgs};
use crate::cmd::device::{resolve_device, with_backend};
use crate::data::{open_dataset, Dataset, Loader, Split, TargetKind};
use crate::energy::{Meter, MeterConfig, StepKernels};
use crate::model::{checkpoint, Arch, Layout, Model, Optimizer};
use crate::ops::cpu::CpuBackend;
use crate::ops::{Backend, Device, DeviceKind, KernelClock};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

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

/// How the dataset's targets map onto the model: the architecture and the target columns to gather.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub arch: Arch,
    /// Columns of y to use (binary targets).
    pub cols: Vec<usize>,
    /// Task names ("class" for the class task; attribute names or "y[j]" for binary targets).
    pub names: Vec<String>,
}

/// Check that `split` fits `model` and pick the target columns (`--tasks`).
pub fn task_spec(model: &str, split: &Split, tasks: Option<&str>) -> Result<TaskSpec> {
    let file = split.path.display();
    match (model, &split.target) {
        ("pamap2", TargetKind::Classes { k }) => {
            if tasks.is_some() {
                bail!("--tasks applies to the celeba model only");
            }
            if *k > 12 {
                bail!("{file}: labels go up to {}, the pamap2 model has 12 classes", k - 1);
            }
            check_row_shape(split, Arch::Pamap2)?;
            Ok(TaskSpec { arch: Arch::Pamap2, cols: vec![], names: vec!["class".into()] })
        }
        ("celeba", TargetKind::Binary { k, names }) => {
            let (cols, task_names) = match tasks {
                Some(t) => {
                    let mut cols = vec![];
                    let mut out = vec![];
                    for name in t.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let j = names.iter().position(|n| n == name).with_context(|| {
                            if names.is_empty() {
                                format!("{file}: --tasks names attributes, but y has no attribute names")
                            } else {
                                format!("{file}: no attribute '{name}' (known: {})", names.join(", "))
                            }
                        })?;
                        cols.push(j);
                        out.push(name.to_string());
                    }
                    if cols.is_empty() {
                        bail!("--tasks is empty");
                    }
                    (cols, out)
                }
                None if names.iter().any(|n| n == "Smiling") && *k > 1 => {
                    (vec![names.iter().position(|n| n == "Smiling").unwrap_or(0)], vec!["Smiling".to_string()])
                }
                None => {
                    let task_names =
                        (0..*k).map(|j| names.get(j).cloned().unwrap_or_else(|| format!("y[{j}]"))).collect();
                    ((0..*k).collect(), task_names)
                }
            };
            let arch = Arch::Celeba { k: cols.len() };
            check_row_shape(split, arch)?;
            Ok(TaskSpec { arch, cols, names: task_names })
        }
        ("pamap2", TargetKind::Binary { .. }) => {
            bail!("{file}: y holds binary targets [N, K]; the pamap2 model needs class ids [N]")
        }
        ("celeba", TargetKind::Classes { .. }) => {
            bail!("{file}: y holds class ids [N]; the celeba model needs binary targets [N, K]")
        }
        (other, _) => bail!("unknown --model '{other}': use pamap2 or celeba"),
    }
}

fn check_row_shape(split: &Split, arch: Arch) -> Result<()> {
    if split.row_shape != arch.input_shape() {
        bail!(
            "{}: x rows have shape {:?}, the {} model needs {:?}",
            split.path.display(),
            split.row_shape,
            arch.name(),
            arch.input_shape()
        );
    }
    Ok(())
}

/// Train as `a` says; returns the run's summary (also written to `--out`/summary.json).
pub fn run_train(a: &TrainArgs) -> Result<RunSummary> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if a.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if a.kernel_sample == 0 {
        bail!("--kernel-sample must be at least 1 (1: time every step's launches)");
    }
    if a.kernel_sample > 1 && !a.per_kernel {
        bail!("--kernel-sample applies to per-kernel attribution: add --per-kernel");
    }
    if a.kernel_timing != KernelClock::Events && !a.per_kernel {
        bail!("--kernel-timing applies to per-kernel attribution: add --per-kernel");
    }
    let optimizer = Optimizer::parse(&a.optimizer, a.lr, a.momentum, a.weight_decay)?;
    let ds = open_dataset(&a.data, a.val.as_deref())?;
    let spec = task_spec(&a.model, &ds.train, a.tasks.as_deref())?;
    if let Some(v) = &ds.val {
        let vs = task_spec(&a.model, v, a.tasks.as_deref())?;
        if vs.cols != spec.cols || vs.arch != spec.arch {
            bail!("{}: validation targets do not match the training targets", v.path.display());
        }
    }
    let layout = Layout::new(spec.arch);
    let init = match &a.init {
        Some(p) => checkpoint::load(p, &layout)?,
        None => layout.init(a.seed),
    };
    if a.freeze_encoder && a.init.is_none() {
        eprintln!("note: --freeze-encoder without --init trains the head on a randomly initialised encoder");
    }
    // The run directory is staged and renamed into place only when the run completes.
    let staging = match &a.out {
        Some(out) => Some(crate::util::StagingDir::new(out, false)?),
        None => None,
    };
    let kind = resolve_device(&a.device)?;
    let summary = with_backend!(kind, |be| train_on(
        be,
        a,
        &ds,
        &spec,
        &layout,
        &init,
        optimizer,
        staging.as_ref().map(|s| s.path())
    ))?;
    if let Some(s) = staging {
        let dir = s.commit()?;
        eprintln!("run written to {}", dir.display());
    }
    print_summary(&summary);
    Ok(summary)
}

fn print_summary(s: &RunSummary) {
    let e = |v: Option<f64>| v.map(|j| format!("{j:.1} J")).unwrap_or_else(|| "n/a".into());
    let acc = s.final_val_acc.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into());
    println!(
        "{} on {}: {} epochs, {} steps, stop: {}, final train loss {:.4}, val acc {acc}, energy {} ({}), {:.1} s",
        s.model,
        s.device_name,
        s.epochs,
        s.steps,
        s.stop_reason,
        s.final_train_loss.unwrap_or(f64::NAN),
        e(s.total_energy_j),
        s.energy_source,
        s.wall_s
    );
    if let Some(line) = energy_detail(s) {
        println!("{line}");
    }
    let k = &s.energy_context["kernel_timing"];
    if let (Some(clock), Some(l), Some(t)) = (k["clock"].as_str(), k["launches"].as_u64(), k["timed_launches"].as_u64())
    {
        let every = match k["sample"].as_u64() {
            Some(n) if n > 1 => format!(", 1 step in {n} timed, the others from the latest timed step"),
            _ => String::new(),
        };
        println!("kernels: {clock}{every}: {t} of {l} launches timed in their own step (kernels.csv)");
    }
    if s.target_acc.is_some() {
        match (s.epochs_to_target, s.energy_to_target_j) {
            (Some(ep), en) => {
                println!("target {:.3} reached at epoch {ep}, energy to target {}", s.target_acc.unwrap_or(0.0), e(en))
            }
            _ => println!("target {:.3} not reached", s.target_acc.unwrap_or(0.0)),
        }
    }
}

/// One steps.jsonl record: the step (number, epoch, loss, batch size, `(wall_s, t_s)`: its duration and its
/// end since the run started) and its energy; with --per-kernel (`kernels_timed` set) also its kernel rows.
/// One `json!` for the whole record: it is written on every step.
pub fn step_record(
    step: u64,
    epoch: usize,
    loss: f32,
    batch_size: usize,
    (wall_s, t_s): (f64, f64),
    source: crate::energy::EnergySource,
    se: &crate::energy::StepEnergy,
) -> Result<serde_json::Value> {
    let mut rec = serde_json::json!({
        "step": step, "epoch": epoch, "loss": loss, "batch_size": batch_size, "wall_s": wall_s, "t_s": t_s,
        "energy_j": se.energy_j, "energy_source": source.as_str(),
        "energy_method": se.method, "energy_uncertainty_j": se.uncertainty_j,
        "window_s": se.window_s, "gap_s": se.gap_s, "gap_energy_j": se.gap_energy_j,
    });
    if let Some(timed) = se.kernels_timed {
        rec["kernels"] = serde_json::to_value(&se.kernels)?;
        rec["kernels_timed"] = serde_json::json!(timed);
    }
    Ok(rec)
}

/// For measured runs: idle/active split, how well the windows close on the total, and the counter's gap to
/// integrated power.
fn energy_detail(s: &RunSummary) -> Option<String> {
    let c = &s.energy_context;
    if !matches!(s.energy_source.as_str(), "nvml-counter" | "nvml-power" | "rapl") {
        return None;
    }
    let mut parts = Vec::new();
    if let (Some(p), Some(i), Some(a)) = (s.idle_power_w, s.idle_j, s.active_j) {
        parts.push(format!("idle {p:.1} W -> {i:.1} J static + {a:.1} J active"));
    }
    if let Some(cl) = c["closure"].as_f64() {
        parts.push(format!("steps and evaluations hold {:.2} % of the total", 100.0 * cl));
    }
    for r in c["power_check"]["readings"].as_array().into_iter().flatten() {
        if let (Some(g), Some(name)) = (r["gap_rel"].as_f64(), r["reading"].as_str()) {
            parts.push(format!("{name}: {:+.1} % vs the counter", 100.0 * g));
        }
    }
    (!parts.is_empty()).then(|| format!("energy: {}", parts.join("; ")))
}

#[allow(clippy::too_many_arguments)]
fn train_on<B: Backend>(
    be: &B,
    a: &TrainArgs,
    ds: &Dataset,
    spec: &TaskSpec,
    layout: &Layout,
    init: &[f32],
    optimizer: Optimizer,
    out: Option<&Path>,
) -> Result<RunSummary> {
    let arch = spec.arch;
    let k = arch.outputs();
    let mut model = Model::new(be, arch, a.batch_size.min(ds.train.n.max(1)), init)?;
    model.freeze_encoder = a.freeze_encoder;
    let mut meter = Meter::open(MeterConfig {
        source: a.energy.clone(),
        watts: a.watts,
        per_kernel: a.per_kernel,
        device: be.kind(),
        gpu_ordinal: 0,
    })?;
    let source = meter.source();
    meter.measure_idle(if source.is_measurement() { 1.0 } else { 0.0 })?;
    if a.per_kernel {
        be.set_kernel_clock(a.kernel_timing)?;
        be.set_kernel_timing(true);
    }
    let device_name = be.device_name();
    let host = crate::util::hostname();

    // config.json
    let config = serde_json::json!({
        "protocol": crate::PROTOCOL_VERSION,
        "powertrain_version": env!("CARGO_PKG_VERSION"),
        "model": arch.name(), "outputs": k, "tasks": spec.names,
        "data": a.data, "val": a.val, "train_rows": ds.train.n,
        "val_rows": ds.val.as_ref().map(|v| v.n),
        "device": be.kind().name(), "device_name": device_name, "host": host,
        "optimizer": a.optimizer, "lr": a.lr, "momentum": a.momentum, "weight_decay": a.weight_decay,
        "batch_size": a.batch_size, "epochs": a.epochs, "max_steps": a.max_steps, "target_acc": a.target_acc,
        "shuffle": !a.no_shuffle, "seed": a.seed, "init": a.init, "save": a.save,
        "freeze_encoder": a.freeze_encoder, "energy": a.energy, "energy_source": source.as_str(),
        "watts": a.watts, "per_kernel": a.per_kernel, "kernel_sample": a.kernel_sample,
        "kernel_timing": a.per_kernel.then_some(a.kernel_timing.name()),
        "carbon_intensity": a.carbon_intensity, "pue": a.pue,
        "parameters": layout.total,
    });
    let mut steps_out = match out {
        Some(dir) => {
            crate::util::write_json(&dir.join("config.json"), &config)?;
            Some(std::io::BufWriter::new(
                std::fs::File::create(dir.join("steps.jsonl"))
                    .with_context(|| format!("cannot write in {}", dir.display()))?,
            ))
        }
        None => None,
    };
    let mut epochs_csv = String::from(
        "epoch,steps,train_loss,val_loss,val_acc,epoch_wall_s,epoch_energy_j,eval_energy_j,cum_energy_j,cum_wall_s\n",
    );

    let progress = if std::io::stderr().is_terminal() {
        let steps_per_epoch = ds.train.n.div_ceil(a.batch_size) as u64;
        let total = a.max_steps.map(|m| m as u64).unwrap_or(u64::MAX).min(steps_per_epoch * a.epochs as u64);
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };

    let t_start = be.clock_s();
    let mut step: u64 = 0;
    let mut cum_energy: Option<f64> =
        if source.is_measurement() || source == crate::energy::EnergySource::Estimate { Some(0.0) } else { None };
    let mut train_energy_total = 0.0;
    let mut summary = RunSummary {
        protocol: crate::PROTOCOL_VERSION,
        model: arch.name().into(),
        device: be.kind().name().into(),
        device_name: device_name.clone(),
        optimizer: a.optimizer.clone(),
        lr: a.lr,
        batch_size: a.batch_size,
        seed: a.seed,
        target_acc: a.target_acc,
        energy_source: source.as_str().into(),
        host: host.clone(),
        stop_reason: "epoch_limit".into(),
        ..Default::default()
    };
    let mut step_times = Vec::new();
    // (batch size, training step or evaluation batch) -> count, for the FLOPs behind J/GFLOP in kernels.csv.
    let mut batches: BTreeMap<(usize, bool), u64> = BTreeMap::new();
    let mut predictor = crate::energy::predict::Predictor::new(1, a.epochs, a.target_acc);
    'epochs: for epoch in 1..=a.epochs {
        let ep_t0 = be.clock_s();
        let mut ep_energy: Option<f64> = cum_energy.map(|_| 0.0);
        let mut loss_sum = 0.0;
        let mut ep_steps = 0u64;
        let loader =
            Loader::new(ds.train.clone(), a.batch_size, !a.no_shuffle, a.seed, epoch as u64, spec.cols.clone())?;
        for batch in loader {
            let b = batch?;
            if let Some(m) = a.max_steps {
                if step >= m as u64 {
                    summary.stop_reason = "max_steps".into();
                    break;
                }
            }
            let n = b.n;
            model.load_batch(n, &b.x, &b.y_class, &b.y_bin)?;
            // With --kernel-sample N, time every Nth step's launches (and the first two of each batch size,
            // so that a profile and its spread exist); the others use the latest timed profile.
            let key = n as u64;
            let timed = a.per_kernel
                && (a.kernel_sample <= 1
                    || step.is_multiple_of(a.kernel_sample)
                    || meter.kernel_profile_samples(key) < 2);
            if a.per_kernel && a.kernel_sample > 1 {
                be.set_kernel_timing(timed);
            }
            let t0 = be.clock_s();
            meter.begin_step(t0);
            let loss = model.train_step(n, &optimizer)?;
            let t1 = be.clock_s();
            let se = if timed {
                let timings = be.take_kernel_timings()?;
                // A profile is kept only when some steps will need it.
                meter.end_step_with(t1, StepKernels::Timed(&timings, (a.kernel_sample > 1).then_some(key)))
            } else if a.per_kernel {
                meter.end_step_with(t1, StepKernels::Profiled(key))
            } else {
                meter.end_step(t1, &[])
            };
            step += 1;
            ep_steps += 1;
            step_times.push(t1 - t0);
            loss_sum += loss as f64;
            if let (Some(e), Some(c)) = (se.energy_j, ep_energy.as_mut()) {
                *c += e;
            }
            if a.per_kernel {
                // FLOPs per kernel depend on the batch size only: counted here, added once at the end.
                *batches.entry((n, true)).or_insert(0) += 1;
            }
            if let Some(w) = steps_out.as_mut() {
                writeln!(w, "{}", step_record(step, epoch, loss, n, (t1 - t0, t1 - t_start), source, &se)?)?;
            }
            progress.inc(1);
            progress.set_message(format!("epoch {epoch} loss {loss:.4}"));
            if !loss.is_finite() {
                summary.stop_reason = "diverged".into();
                summary.final_train_loss = Some(loss as f64);
                eprintln!("note: the loss became {loss} at step {step}: stopping (lr {} too large?)", a.lr);
                summary.epochs = epoch;
                break 'epochs;
            }
        }
        let ep_wall = be.clock_s() - ep_t0;
        if ep_steps == 0 {
            break;
        }
        summary.epochs = epoch;
        summary.final_train_loss = Some(loss_sum / ep_steps as f64);
        if let Some(e) = ep_energy {
            train_energy_total += e;
        }
        // Evaluation on the validation split, metered like a step.
        let mut val_loss = None;
        let mut val_acc = None;
        let mut eval_energy = None;
        if let Some(v) = &ds.val {
            if a.per_kernel {
                be.set_kernel_timing(true);
            }
            let t0 = be.clock_s();
            meter.begin_step(t0);
            let eval_batch = model.max_batch;
            let (l, acc, per_task) = evaluate(&mut model, v, &spec.cols, eval_batch)?;
            if a.per_kernel {
                // evaluate's batches: full ones of eval_batch, then the rest.
                *batches.entry((eval_batch, false)).or_insert(0) += (v.n / eval_batch) as u64;
                if v.n % eval_batch > 0 {
                    *batches.entry((v.n % eval_batch, false)).or_insert(0) += 1;
                }
            }
            let t1 = be.clock_s();
            let timings = if a.per_kernel { be.take_kernel_timings()? } else { vec![] };
            let se = meter.end_step(t1, &timings);
            eval_energy = se.energy_j;
            val_loss = Some(l);
            val_acc = Some(acc);
            summary.final_val_acc = Some(acc);
            summary.best_val_acc = Some(summary.best_val_acc.map_or(acc, |b: f64| b.max(acc)));
            summary.final_val_acc_per_task = spec.names.iter().cloned().zip(per_task.iter().cloned()).collect();
            if let Some(t) = a.target_acc {
                for (name, &acc_j) in spec.names.iter().zip(&per_task) {
                    if acc_j >= t {
                        summary.task_epoch_reached.entry(name.clone()).or_insert(epoch);
                    }
                }
            }
        }
        if let (Some(c), Some(e)) = (cum_energy.as_mut(), ep_energy) {
            *c += e + eval_energy.unwrap_or(0.0);
        }
        let cum_wall = be.clock_s() - t_start;
        let f = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
        epochs_csv.push_str(&format!(
            "{epoch},{ep_steps},{},{},{},{ep_wall},{},{},{},{cum_wall}\n",
            summary.final_train_loss.unwrap_or(f64::NAN),
            f(val_loss),
            f(val_acc),
            f(ep_energy),
            f(eval_energy),
            f(cum_energy)
        ));
        if let Some(w) = steps_out.as_mut() {
            w.flush()?;
        }
        if let Some(p) =
            predictor.observe_epoch(epoch, ep_energy.map(|e| e + eval_energy.unwrap_or(0.0)), ep_wall, val_acc)
        {
            let e = p
                .energy_j
                .map(|e| format!("{e:.1} J [{:.1}, {:.1}]", p.energy_lo_j.unwrap_or(e), p.energy_hi_j.unwrap_or(e)))
                .unwrap_or_else(|| "n/a".into());
            progress.println(format!(
                "prediction after epoch {epoch}: {} epochs [{}, {}], energy {e}, time {:.1} s [{:.1}, {:.1}]",
                p.predicted_epochs, p.epochs_lo, p.epochs_hi, p.wall_s, p.wall_lo_s, p.wall_hi_s
            ));
        }
        // Target: every task (attribute) reaches it.
        if let (Some(t), Some(_)) = (a.target_acc, val_acc) {
            let reached = summary.final_val_acc_per_task.values().all(|&acc| acc >= t);
            if reached {
                summary.target_reached = true;
                summary.epochs_to_target = Some(epoch);
                summary.energy_to_target_j = cum_energy;
                summary.time_to_target_s = Some(cum_wall);
                summary.stop_reason = "target_reached".into();
                break;
            }
        }
        if summary.stop_reason == "max_steps" {
            break;
        }
    }
    progress.finish_and_clear();
    be.set_kernel_timing(false);
    for (&(n, train), &count) in &batches {
        let flops = if train { model.kernel_flops(n) } else { model.forward_kernel_flops(n) };
        for (name, f) in flops {
            meter.add_flops(name, f * count as f64);
        }
    }
    let kernels_csv = if a.per_kernel { Some(meter.kernels_csv()) } else { None };
    let kernel_timing = a.per_kernel.then(|| {
        let (launches, timed) =
            meter.kernel_table().rows().fold((0, 0), |(l, t), (_, k)| (l + k.launches, t + k.timed_launches));
        serde_json::json!({
            "clock": if be.kind() == DeviceKind::Cuda { a.kernel_timing.name() } else { "wall clock" },
            "sample": a.kernel_sample, "launches": launches, "timed_launches": timed,
        })
    });
    let run_energy = meter.finish();
    summary.steps = step;
    summary.wall_s = be.clock_s() - t_start;
    summary.mean_step_s =
        if step_times.is_empty() { 0.0 } else { step_times.iter().sum::<f64>() / step_times.len() as f64 };
    // The meter's total covers the first step to the last evaluation, host gaps between steps included; the
    // epoch and target figures sum the metered steps and evaluations.
    summary.total_energy_j = run_energy.total_j.or(cum_energy);
    summary.energy_per_epoch_j = cum_energy.map(|_| train_energy_total / summary.epochs.max(1) as f64);
    summary.idle_j = run_energy.idle_j;
    summary.active_j = run_energy.active_j;
    summary.idle_power_w = run_energy.idle_power_w;
    summary.energy_context = run_energy.context.clone();
    if let Some(k) = kernel_timing {
        summary.energy_context["kernel_timing"] = k;
    }
    summary.prediction = predictor.compare(summary.total_energy_j, summary.wall_s, summary.epochs);
    summary.carbon = crate::energy::records::carbon_block(summary.total_energy_j, a.carbon_intensity, a.pue)?;

    if let Some(p) = &a.save {
        let meta = std::collections::HashMap::from([
            ("model".to_string(), arch.name().to_string()),
            ("tasks".to_string(), spec.names.join(",")),
            ("protocol".to_string(), crate::PROTOCOL_VERSION.to_string()),
        ]);
        checkpoint::save(p, layout, &model.parameters()?, Some(meta))?;
    }
    if let Some(dir) = out {
        if let Some(mut w) = steps_out.take() {
            w.flush()?;
        }
        crate::util::write_atomic(&dir.join("epochs.csv"), epochs_csv.as_bytes())?;
        if let Some(csv) = kernels_csv {
            crate::util::write_atomic(&dir.join("kernels.csv"), csv.as_bytes())?;
        }
        crate::util::write_json(&dir.join("summary.json"), &summary)?;
    }
    Ok(summary)
}

/// Mean loss, accuracy (mean over tasks) and per-task accuracy of `model` on `split`.
pub fn evaluate<B: Backend>(
    model: &mut Model<'_, B>,
    split: &Arc<Split>,
    cols: &[usize],
    batch: usize,
) -> Result<(f64, f64, Vec<f64>)> {
    let batch = batch.min(model.max_batch).max(1);
    model.reset_correct()?;
    let mut loss_sum = 0.0;
    let loader = Loader::new(split.clone(), batch, false, 0, 0, cols.to_vec())?;
    for b in loader {
        let b = b?;
        model.load_batch(b.n, &b.x, &b.y_class, &b.y_bin)?;
        loss_sum += model.eval_batch(b.n)? as f64 * b.n as f64;
    }
    let n = split.n.max(1) as f64;
    let per_task: Vec<f64> = model.correct_counts()?.iter().map(|&c| c as f64 / n).collect();
    let acc = per_task.iter().sum::<f64>() / per_task.len().max(1) as f64;
    Ok((loss_sum / n, acc, per_task))
}

/// `powertrain eval`: loss and accuracy of a checkpoint.
pub fn run_eval(a: &EvalArgs) -> Result<()> {
    let ds = open_dataset(&a.data, None)?;
    let split = match (a.split.as_deref(), a.data.is_dir()) {
        (None | Some("test"), true) => ds.test.clone().context("the dataset has no test split")?,
        (Some("val"), true) => ds.val.clone().context("the dataset has no validation split")?,
        (Some("train"), _) | (None, false) => ds.train.clone(),
        (Some(s), _) => bail!("unknown --split '{s}': use train, val or test (with a dataset directory)"),
    };
    let spec = task_spec(&a.model, &split, a.tasks.as_deref())?;
    let layout = Layout::new(spec.arch);
    let params = checkpoint::load(&a.init, &layout)?;
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let kind = resolve_device(&a.device)?;
    let (loss, acc, per_task) = with_backend!(kind, |be| {
        let mut model = Model::new(be, spec.arch, a.batch_size.min(split.n.max(1)), &params)?;
        evaluate(&mut model, &split, &spec.cols, a.batch_size)?
    });
    println!("{}: {} rows, loss {loss:.6}, accuracy {acc:.4}", split.path.display(), split.n);
    if spec.names.len() > 1 {
        for (n, v) in spec.names.iter().zip(per_task) {
            println!("  {n}: {v:.4}");
        }
    }
    Ok(())
}

/// `powertrain info`: devices, drivers, energy sensors found (and why others are missing), kernels embedded.
pub fn run_info(a: &InfoArgs) -> Result<()> {
    let cuda = if crate::ops::cuda::cuda_available() {
        crate::ops::cuda::device_info().unwrap_or_else(|e| serde_json::json!({"error": format!("{e:#}")}))
    } else {
        serde_json::json!({"available": false, "reason": crate::ops::cuda::NO_DRIVER})
    };
    let info = serde_json::json!({
        "powertrain": env!("CARGO_PKG_VERSION"),
        "protocol": crate::PROTOCOL_VERSION,
        "host": crate::util::hostname(),
        "cpu": {"threads": rayon::current_num_threads(), "name": CpuBackend::new().device_name()},
        "cuda": cuda,
        "energy": crate::energy::probe_report(),
        "kernels": crate::ops::cuda::embedded_kernels_info(),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "powertrain {} (protocol {}) on {}",
            env!("CARGO_PKG_VERSION"),
            crate::PROTOCOL_VERSION,
            info["host"].as_str().unwrap_or("")
        );
        println!("cpu:     {}", info["cpu"]["name"].as_str().unwrap_or(""));
        println!("cuda:    {}", serde_json::to_string(&info["cuda"])?);
        println!("energy:  {}", serde_json::to_string(&info["energy"])?);
        println!("kernels: {}", serde_json::to_string(&info["kernels"])?);
    }
    Ok(())
}
/// `powertrain bench step`: median training-step time of a model at a batch size, on random data of the
/// protocol's shapes (upload of the batch excluded, as in the PyTorch baseline, which keeps its batch on the
/// device), the same Adam/SGD step the training loop runs.
pub fn run_bench_step(a: &BenchArgs) -> Result<()> {
    let model_name = a.model.as_deref().unwrap_or("pamap2");
    let batch = a.batch_size.unwrap_or(64);
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    let arch = Arch::parse(model_name, 1)?;
    let optimizer = Optimizer::parse(&a.optimizer, 1e-3, 0.0, 0.0)?;
    let kind = resolve_device(&a.device)?;
    if !a.energy && (a.watts.is_some() || a.energy_source != "auto") {
        bail!("bench step: --energy-source/--watts need --energy (time the steps metered as `train` meters them)");
    }
    let clocks: Vec<KernelClock> = match a.kernel_timing.as_deref() {
        None if a.energy => vec![KernelClock::Events],
        None => vec![],
        Some("all") if kind == DeviceKind::Cuda => vec![KernelClock::Events, KernelClock::Stamps],
        Some("all") => vec![KernelClock::Events],
        Some(s) => vec![s.parse::<KernelClock>().map_err(|e| anyhow::anyhow!("{e}, or all"))?],
    };
    // --energy: per-step metering and per-kernel metering with each clock; otherwise each clock alone.
    let (key, modes): (&str, Vec<BenchMode>) = if a.energy {
        ("metering", std::iter::once(None).chain(clocks.iter().copied().map(Some)).map(BenchMode::Meter).collect())
    } else {
        ("kernel_timing", clocks.iter().copied().map(BenchMode::Timing).collect())
    };
    let r = with_backend!(kind, |be| {
        let mut r = bench_step_on(be, arch, batch, &optimizer, a.iters)?;
        if !modes.is_empty() {
            r[key] = bench_metering(be, arch, batch, &optimizer, &modes, &a.energy_source, a.watts, a.iters)?;
        }
        r
    });
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} batch {} on {}: median {:.3} ms/step (p10 {:.3}, p90 {:.3}; {} steps), {:.0} samples/s, {:.1} GFLOP/s",
            r["model"].as_str().unwrap_or(""),
            batch,
            r["device_name"].as_str().unwrap_or(""),
            r["median_ms"].as_f64().unwrap_or(f64::NAN),
            r["p10_ms"].as_f64().unwrap_or(f64::NAN),
            r["p90_ms"].as_f64().unwrap_or(f64::NAN),
            r["iters"],
            r["samples_per_s"].as_f64().unwrap_or(f64::NAN),
            r["gflops"].as_f64().unwrap_or(f64::NAN),
        );
        if let Some(t) = r[key].as_object() {
            let off = t["off_ms"].as_f64().unwrap_or(f64::NAN);
            let what = match t["energy_source"].as_str() {
                Some(s) => {
                    format!("metering ({s}{})", if s == "estimate" { ": an estimate, not measured" } else { "" })
                }
                None => "per-kernel timing".into(),
            };
            println!(
                "{what}, {} interleaved rounds of {} steps, each step timed all in: off {off:.4} ms/step",
                t["rounds"], t["steps_per_round"]
            );
            for c in t["modes"].as_array().into_iter().flatten() {
                let ops = c["ops_per_step"].as_u64().unwrap_or(0);
                let power = c["mean_power_w"].as_f64().map(|w| format!(", {w:.1} W")).unwrap_or_default();
                println!(
                    "  {:<18} {:.4} ms/step  {:+.2} % vs off  ({}{power})",
                    c["mode"].as_str().unwrap_or(""),
                    c["median_ms"].as_f64().unwrap_or(f64::NAN),
                    c["overhead_pct"].as_f64().unwrap_or(f64::NAN),
                    if ops > 0 { format!("{ops} ops timed per step") } else { "no op timed".into() },
                );
            }
        }
    }
    Ok(())
}

/// One mode of `bench step`'s side-by-side timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BenchMode {
    /// Training steps only: nothing metered, no launch timed.
    Off,
    /// Per-kernel timing alone, without a meter (`--kernel-timing`): the clock's own cost.
    Timing(KernelClock),
    /// The meter as `train` runs it (`--energy`): per-step, or per-kernel with a clock; each step is begun,
    /// ended and written as a steps.jsonl record.
    Meter(Option<KernelClock>),
}

impl BenchMode {
    /// The kernel clock this mode times launches with (none: no launch is timed).
    pub fn clock(self) -> Option<KernelClock> {
        match self {
            BenchMode::Timing(c) | BenchMode::Meter(Some(c)) => Some(c),
            BenchMode::Off | BenchMode::Meter(None) => None,
        }
    }

    pub fn label(self) -> String {
        match self {
            BenchMode::Off => "off".into(),
            BenchMode::Timing(c) => c.name().into(),
            BenchMode::Meter(None) => "per-step".into(),
            BenchMode::Meter(Some(c)) => format!("per-kernel/{}", c.name()),
        }
    }
}

/// The cost of per-kernel timing or of metering: training steps with `BenchMode::Off` and with each of
/// `modes`, in interleaved rounds so that clock and thermal drift hit every mode alike. Each step is timed all
/// in, as the training loop pays for it: the step, reading its kernel timings, and with a meter its begin and
/// end and its record. A meter mode opens its meter (`source`, `watts`) once, characterised as in training, and
/// pauses its sampler thread outside its own rounds. Median step time per mode and its overhead against off.
/// `iters`: steps per mode and round (default: about 6 s in all).
#[allow(clippy::too_many_arguments)]
pub fn bench_metering<B: Backend>(
    be: &B,
    arch: Arch,
    batch: usize,
    opt: &Optimizer,
    modes: &[BenchMode],
    source: &str,
    watts: Option<f64>,
    iters: Option<usize>,
) -> Result<serde_json::Value> {
    let (mut model, per) = bench_model(be, arch, batch, opt)?;
    // About 6 s in all: rounds x (1 + modes) x steps.
    let rounds = 5usize;
    let steps = iters
        .map(|n| n.max(1))
        .unwrap_or_else(|| ((6.0 / per.max(1e-6)) as usize / (rounds * (1 + modes.len()))).clamp(3, 400));
    let modes: Vec<BenchMode> = std::iter::once(BenchMode::Off).chain(modes.iter().copied()).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut ops = vec![0usize; modes.len()];
    // Meter modes: (energy, window seconds) over their timed steps.
    let mut energy = vec![(0.0f64, 0.0f64); modes.len()];
    // One meter per metered mode, opened (and characterised) once; its sampler runs only in its own rounds.
    let mut meters: Vec<Option<Meter>> = Vec::new();
    for m in &modes {
        meters.push(match m {
            BenchMode::Meter(pk) => {
                let cfg = MeterConfig {
                    source: source.to_string(),
                    watts,
                    per_kernel: pk.is_some(),
                    device: be.kind(),
                    gpu_ordinal: 0,
                };
                let mut meter = Meter::open(cfg).context("bench step --energy")?;
                if meter.source() == crate::energy::EnergySource::None {
                    let why = meter.context()["auto_fallback"].as_str().unwrap_or("no energy source").to_string();
                    bail!(
                        "bench step --energy: {why}. Use --energy-source estimate --watts W to time the meter with \
                         a labelled estimate"
                    );
                }
                meter.pause_sampler();
                Some(meter)
            }
            _ => None,
        });
    }
    let measured_by = meters.iter().flatten().next().map(|m| m.source());
    // steps.jsonl records go to a real file, as in training.
    let records = tempfile::tempfile().context("bench step: cannot create a temporary file for the records")?;
    let mut records = std::io::BufWriter::new(records);
    for _ in 0..rounds {
        for (i, &m) in modes.iter().enumerate() {
            let clock = m.clock();
            be.set_kernel_clock(clock.unwrap_or(KernelClock::Events))?;
            be.set_kernel_timing(clock.is_some());
            if let Some(meter) = meters[i].as_mut() {
                meter.resume_sampler();
                meter.break_window();
            }
            // Let a resumed sampler take its first reads, so that step edges find a recent one. Every mode
            // waits alike, so that whatever an idle pause does to the clocks (GPU or CPU) hits all of them.
            std::thread::sleep(std::time::Duration::from_millis(30));
            // One untimed step per switch (metered like the others): the first timed step after a switch may
            // anchor the clock.
            for s in 0..=steps {
                let t = std::time::Instant::now();
                match meters[i].as_mut() {
                    None => {
                        model.train_step(batch, opt)?;
                        if clock.is_some() {
                            ops[i] = be.take_kernel_timings()?.len();
                        }
                    }
                    Some(meter) => {
                        let t0 = be.clock_s();
                        meter.begin_step(t0);
                        let loss = model.train_step(batch, opt)?;
                        let t1 = be.clock_s();
                        let se = if clock.is_some() {
                            let timings = be.take_kernel_timings()?;
                            ops[i] = timings.len();
                            meter.end_step_with(t1, StepKernels::Timed(&timings, None))
                        } else {
                            meter.end_step(t1, &[])
                        };
                        let rec = step_record(0, 0, loss, batch, (t1 - t0, t1), meter.source(), &se)?;
                        writeln!(records, "{rec}").context("bench step: writing a record")?;
                        if let (Some(e), true) = (se.energy_j, s > 0) {
                            energy[i].0 += e;
                            energy[i].1 += se.window_s;
                        }
                    }
                }
                if s > 0 {
                    times[i].push(t.elapsed().as_secs_f64());
                }
            }
            if let Some(meter) = meters[i].as_mut() {
                meter.pause_sampler();
            }
        }
    }
    be.set_kernel_timing(false);
    be.set_kernel_clock(KernelClock::Events)?;
    let off = crate::stats::median(&times[0]);
    let rows: Vec<serde_json::Value> = modes
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, m)| {
            let med = crate::stats::median(&times[i]);
            let (e, w) = energy[i];
            serde_json::json!({
                "mode": m.label(), "timing": m.clock().map(KernelClock::name),
                "median_ms": med * 1e3, "overhead_pct": 100.0 * (med / off - 1.0), "ops_per_step": ops[i],
                "mean_power_w": (w > 0.0).then(|| e / w),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "rounds": rounds, "steps_per_round": steps, "off_ms": off * 1e3, "modes": rows,
        "energy_source": measured_by.map(|s| s.as_str()),
    }))
}

/// A model of `arch` at `batch` holding a random batch of the protocol's shapes, warmed up by three training
/// steps (the first launches load modules, fill caches and size scratch buffers); also the mean warm-up step
/// time (s), to size the timed loops.
fn bench_model<'b, B: Backend>(be: &'b B, arch: Arch, batch: usize, opt: &Optimizer) -> Result<(Model<'b, B>, f64)> {
    use rand::Rng;
    let mut model = Model::new(be, arch, batch, &Layout::new(arch).init(1))?;
    let mut rng = crate::util::rng(7);
    let [c, h, w] = arch.input_shape();
    let x: Vec<f32> = (0..batch * c * h * w).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let k = arch.outputs();
    let yc: Vec<i32> = (0..batch).map(|_| rng.random_range(0..k as i32)).collect();
    let yb: Vec<f32> = (0..batch * k).map(|_| rng.random_range(0..2) as f32).collect();
    model.load_batch(batch, &x, &yc, &yb)?;
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        model.train_step(batch, opt)?;
    }
    Ok((model, t0.elapsed().as_secs_f64() / 3.0))
}

/// Time training steps of `arch` at `batch` on `be`; returns the JSON record `bench step` prints.
pub fn bench_step_on<B: Backend>(
    be: &B,
    arch: Arch,
    batch: usize,
    opt: &Optimizer,
    iters: Option<usize>,
) -> Result<serde_json::Value> {
    let (mut model, per) = bench_model(be, arch, batch, opt)?;
    let k = arch.outputs();
    let n_iters = iters.unwrap_or_else(|| ((3.0 / per.max(1e-6)) as usize).clamp(5, 500));
    let mut times = Vec::with_capacity(n_iters);
    for _ in 0..n_iters {
        let t0 = std::time::Instant::now();
        let loss = model.train_step(batch, opt)?;
        times.push(t0.elapsed().as_secs_f64());
        if !loss.is_finite() {
            bail!("bench step: the loss became {loss}");
        }
    }
    let sorted = crate::stats::sorted(&times);
    let q = |f: f64| crate::stats::quantile_sorted(&sorted, f);
    let med = crate::stats::median_sorted(&sorted);
    Ok(serde_json::json!({
        "bench": "step", "model": arch.name(), "outputs": k, "batch_size": batch,
        "device": be.kind().name(), "device_name": be.device_name(),
        "optimizer": match opt { Optimizer::Adam { .. } => "adam", Optimizer::Sgd { .. } => "sgd" },
        "iters": n_iters, "median_ms": med * 1e3, "p10_ms": q(0.1) * 1e3, "p90_ms": q(0.9) * 1e3,
        "samples_per_s": batch as f64 / med, "gflops": model.step_flops(batch) / med / 1e9,
        "threads": rayon::current_num_threads(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_detail_reports_split_closure_and_power_gap_for_measured_runs_only() {
        let mut s = RunSummary {
            energy_source: "nvml-counter".into(),
            idle_power_w: Some(70.0),
            idle_j: Some(700.0),
            active_j: Some(300.0),
            energy_context: serde_json::json!({
                "closure": 0.9987,
                "power_check": { "readings": [
                    { "reading": "field NVML_FI_DEV_POWER_INSTANT (186), polled every 50 ms", "gap_rel": -0.031 },
                    { "reading": "nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)", "gap_rel": null },
                ]},
            }),
            ..Default::default()
        };
        let line = energy_detail(&s).unwrap();
        assert!(line.contains("idle 70.0 W -> 700.0 J static + 300.0 J active"), "{line}");
        assert!(line.contains("99.87 %"), "{line}");
        assert!(line.contains("(186), polled every 50 ms: -3.1 % vs the counter"), "{line}");
        assert!(!line.contains("Samples"), "no gap, no claim: {line}");
        s.energy_source = "estimate".into();
        assert!(energy_detail(&s).is_none(), "an estimate has nothing measured to detail");
    }
}

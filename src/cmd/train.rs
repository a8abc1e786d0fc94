//! `powertrain train`, and [`train_run`]: one training from a `TrainConfig` start to finish (the trainer the
//! studies call).
use crate::cli::TrainArgs;
use crate::cmd::device::{check_energy_source, resolve_device, with_backend};
use crate::ops::{DeviceKind, KernelClock};
use crate::rundir::{RunSummary, RunWriter};
use crate::train::{Setup, TrainConfig};
use anyhow::{bail, Result};

/// The flags, one to one.
impl From<&TrainArgs> for TrainConfig {
    fn from(a: &TrainArgs) -> TrainConfig {
        TrainConfig {
            model: a.model.clone(),
            data: a.data.clone(),
            val: a.val.clone(),
            tasks: a.tasks.clone(),
            device: a.device.clone(),
            optimizer: a.optimizer.clone(),
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            batch_size: a.batch_size,
            epochs: a.epochs,
            max_steps: a.max_steps,
            target_acc: a.target_acc,
            no_shuffle: a.no_shuffle,
            seed: a.seed,
            init: a.init.clone(),
            save: a.save.clone(),
            freeze_encoder: a.freeze_encoder,
            energy: a.energy.clone(),
            sim_model: a.sim_model.clone(),
            sim_sensor: a.sim_sensor.clone(),
            calibration: a.calibration.clone(),
            watts: a.watts,
            per_kernel: a.per_kernel,
            kernel_sample: a.kernel_sample,
            kernel_timing: a.kernel_timing,
            carbon_intensity: a.carbon_intensity,
            pue: a.pue,
            cap: None,
            out: a.out.clone(),
        }
    }
}

pub fn run(a: &TrainArgs) -> Result<()> {
    train_run(&TrainConfig::from(a)).map(|_| ())
}

/// Everything a run needs checked before any work, in one place (`train` and, once per study, the studies):
/// every flag and combination, the files it names (dataset, `--init`, `--save`), the device and the energy
/// source. Nothing is written.
pub fn preflight(cfg: &TrainConfig) -> Result<(Setup, DeviceKind)> {
    let setup = Setup::new(cfg)?;
    let kind = resolve_device(&cfg.device)?;
    check_energy_source(&cfg.energy)?;
    if cfg.per_kernel && kind == DeviceKind::Cpu && cfg.kernel_timing == KernelClock::Stamps {
        bail!("--kernel-timing stamps needs the kernels' %globaltimer stamps: use --device cuda, or events");
    }
    Ok((setup, kind))
}

/// Train as `cfg` says: everything checked before any work ([`preflight`]), the run directory locked and
/// staged, the loop run, the run directory renamed into place; prints the summary. A run whose records are
/// complete is committed even when what follows them fails (`--save`): the error then says where they are.
pub fn train_run(cfg: &TrainConfig) -> Result<RunSummary> {
    let (setup, kind) = preflight(cfg)?;
    let mut out = RunWriter::create(cfg.out.as_deref())?;
    let res = with_backend!(kind, |be| crate::train::train(be, &setup, &mut out));
    let summary = match res {
        Ok(s) => s,
        Err(e) if out.is_finished() => {
            return Err(match out.commit() {
                Ok(Some(dir)) => e.context(format!("the run's records are complete and kept in {}", dir.display())),
                Ok(None) => e,
                Err(c) => e.context(format!("{c:#}")),
            });
        }
        Err(e) => return Err(e),
    };
    if let Some(dir) = out.commit()? {
        // A study trains into its staging folder and names the run itself when it moves it into place.
        if !dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".staging-")) {
            eprintln!("run written to {}", dir.display());
        }
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
    if let Some(k) = &s.energy_context.kernel_timing {
        let every = match k.sample {
            n if n > 1 => format!(", 1 step in {n} timed, the others from the latest timed step"),
            _ => String::new(),
        };
        println!(
            "kernels: {}{every}: {} of {} launches timed in their own step (kernels.csv)",
            k.clock, k.timed_launches, k.launches
        );
    }
    for line in split_lines(s) {
        println!("{line}");
    }
    if let Some(t) = s.target_acc {
        match (s.epochs_to_target, s.energy_to_target_j) {
            (Some(ep), en) => println!("target {t:.3} reached at epoch {ep}, energy to target {}", e(en)),
            _ => println!("target {t:.3} not reached"),
        }
    }
}

/// The per-kernel split's method and additivity check, and with --energy sim the error against the truth.
fn split_lines(s: &RunSummary) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(k) = &s.kernel_split {
        out.push(format!("per-kernel split: {} ({})", k.method, k.calibration));
        if let Some(a) = &k.additivity {
            out.push(format!(
                "additivity: calibrated power x time + gaps {:.1} J vs the counter's {:.1} J over the same {} windows                  ({:+.2} %)",
                a.model_j,
                a.measured_j,
                a.windows,
                100.0 * a.gap_rel.unwrap_or(f64::NAN)
            ));
        }
    }
    if let Some(e) = &s.attribution_error {
        out.push(format!(
            "sim truth: steps' median error {:.1} % (p95 {:.1} %), steps' sum {:+.2} % vs the truth, {:.4} of the              counter{}",
            100.0 * e.step_rel_err_median.unwrap_or(f64::NAN),
            100.0 * e.step_rel_err_p95.unwrap_or(f64::NAN),
            100.0 * e.steps_vs_truth.unwrap_or(f64::NAN),
            e.closure_counter.unwrap_or(f64::NAN),
            e.kernel_max_rel_err
                .map(|m| format!("; kernels >= 5 % of the energy within {:.1} % of the truth", 100.0 * m))
                .unwrap_or_default()
        ));
    }
    out
}

/// For measured runs: idle/active split, how well the windows close on the total, and the counter's gap to
/// integrated power.
fn energy_detail(s: &RunSummary) -> Option<String> {
    if !matches!(s.energy_source.as_str(), "nvml-counter" | "nvml-power" | "rapl") {
        return None;
    }
    let mut parts = Vec::new();
    if let (Some(p), Some(i), Some(a)) = (s.idle_power_w, s.idle_j, s.active_j) {
        parts.push(format!("idle {p:.1} W -> {i:.1} J static + {a:.1} J active"));
    }
    if let Some(cl) = s.energy_context.closure() {
        parts.push(format!("steps and evaluations hold {:.2} % of the total", 100.0 * cl));
    }
    let readings = s.energy_context.totals().and_then(|t| t.power_check.as_ref()).map(|p| p.readings.as_slice());
    for r in readings.unwrap_or_default() {
        if let Some(g) = r.gap_rel {
            parts.push(format!("{}: {:+.1} % vs the counter", r.reading, 100.0 * g));
        }
    }
    (!parts.is_empty()).then(|| format!("energy: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{EnergyContext, PowerCheck, PowerReading, RunAccounting};
    use argh::FromArgs;

    #[test]
    fn train_flags_default_to_the_library_defaults_and_map_one_to_one() {
        let a = TrainArgs::from_args(&["train"], &["--model", "pamap2", "--data", "d"]).unwrap();
        assert_eq!(TrainConfig::from(&a), TrainConfig::new("pamap2", std::path::Path::new("d")));
        let a = TrainArgs::from_args(
            &["train"],
            &["--model", "celeba", "--data", "d", "--lr", "0.01", "--per-kernel", "--kernel-timing", "stamps"],
        )
        .unwrap();
        let c = TrainConfig::from(&a);
        assert_eq!((c.lr, c.per_kernel, c.kernel_timing.name(), c.batch_size), (0.01, true, "stamps", 64));
    }

    #[test]
    fn energy_detail_reports_split_closure_and_power_gap_for_measured_runs_only() {
        let reading = |r: &str, g: Option<f64>| PowerReading { reading: r.into(), gap_rel: g, ..Default::default() };
        let mut s = RunSummary {
            energy_source: "nvml-counter".into(),
            idle_power_w: Some(70.0),
            idle_j: Some(700.0),
            active_j: Some(300.0),
            energy_context: EnergyContext {
                totals: Some(RunAccounting {
                    closure: Some(0.9987),
                    power_check: Some(PowerCheck {
                        readings: vec![
                            reading("field NVML_FI_DEV_POWER_INSTANT (186), polled every 50 ms", Some(-0.031)),
                            reading("nvmlDeviceGetSamples(NVML_TOTAL_POWER_SAMPLES)", None),
                        ],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
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

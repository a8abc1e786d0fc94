//! `powertrain bench kernels|step|sensor`.
use crate::bench::step::{bench_metering, bench_step_on, BenchMode};
use crate::cli::BenchArgs;
use crate::cmd::device::{resolve_device, with_backend};
use crate::model::{Arch, Optimizer};
use crate::ops::{DeviceKind, KernelClock};
use anyhow::{bail, Result};

pub fn run(a: &BenchArgs) -> Result<()> {
    if a.sim_sensor.is_some() && a.what != "sensor" {
        bail!("--sim-sensor belongs to 'bench sensor' (the twin's counter to characterise)");
    }
    match a.what.as_str() {
        "kernels" => super::bench_kernels::run(a),
        "step" => {
            let kernel_only = [
                (a.kernel.is_some(), "--kernel"),
                (a.compare.is_some(), "--compare"),
                (a.windows.is_some() || a.window_s.is_some(), "--windows/--window-s"),
                (a.out.is_some(), "--out"),
            ];
            if let Some((_, flag)) = kernel_only.iter().find(|(set, _)| *set) {
                bail!("bench step: {flag} belongs to 'bench kernels' (per-step energy comes from 'powertrain train')");
            }
            step(a)
        }
        "sensor" => super::bench_sensor::run(a),
        other => bail!(
            "unknown benchmark '{other}': use 'powertrain bench kernels', 'powertrain bench step' or 'powertrain bench \
             sensor'"
        ),
    }
}

/// `powertrain bench step`: the median training-step time (`crate::bench::step`), and with --kernel-timing or
/// --energy the cost of per-kernel timing or of metering beside it.
fn step(a: &BenchArgs) -> Result<()> {
    let model_name = a.model.as_deref().unwrap_or("pamap2");
    let batch = a.batch_size.unwrap_or(64);
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    if batch > crate::train::MAX_BATCH {
        bail!("--batch-size {batch}: at most {} rows per step", crate::train::MAX_BATCH);
    }
    match a.iters {
        Some(0) => bail!("--iters 0: give at least 1 timed step (or leave it out: adaptive)"),
        Some(n) if n > MAX_ITERS => bail!("--iters {n}: at most {MAX_ITERS} timed steps"),
        _ => {}
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
        print_step(&r, batch, key);
    }
    Ok(())
}

/// The most timed steps `bench step --iters` takes.
const MAX_ITERS: usize = 1_000_000;

fn print_step(r: &serde_json::Value, batch: usize, key: &str) {
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
    let Some(t) = r[key].as_object() else { return };
    let off = t["off_ms"].as_f64().unwrap_or(f64::NAN);
    let what = match t["energy_source"].as_str() {
        Some(s) => format!("metering ({s}{})", if s == "estimate" { ": an estimate, not measured" } else { "" }),
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

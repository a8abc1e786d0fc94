//! A fake trainer for the study and report tests: writes a run directory in the documented format
//! (config.json, steps.jsonl with per-kernel rows, epochs.csv, kernels.csv, summary.json, the --save file)
//! with energies chosen so that the tests know every expected number.
//!
//! Modes (decided from the arguments, as the studies pass them):
//! - sweep (`--target-acc`, no `--val`, one task): energy per epoch 6400/batch + 10 J; the target is reached
//!   at epoch 2 for lr 1e-3, 3 for lr 1e-2, never for other lrs;
//! - pretraining (`--save`, no target): `--epochs` epochs of 100 + 25*seed J;
//! - downstream (`--val`): scratch reaches the target at epoch 3, `--init` at epoch 1; 100 J per epoch, 50 J
//!   with `--freeze-encoder`;
//! - CelebA (`--tasks`): 60 + 20*K J per epoch; alone, Male reaches the target at epoch 1, Young at 3,
//!   others at 2; in a K>1 network one epoch earlier (at least 1). A K>1 network runs to the epoch limit.
//!
//! Wall time = energy / 100 W. Kernel busy fraction = batch / (batch + 64). A `cap` (sweep --prune) stops the
//! run after the epoch in which its energy (or, without energy, its time) went over the cap, as the real
//! loop does (it ends the epoch with its evaluation).
#![allow(dead_code)]
use anyhow::{Context, Result};
use powertrain::rundir::RunSummary;
use powertrain::train::TrainConfig;
use std::collections::BTreeMap;
use std::io::Write;

pub fn reach_epoch(a: &TrainConfig, task: &str, k: usize) -> Option<usize> {
    if a.val.is_some() {
        return Some(if a.init.is_some() { 1 } else { 3 });
    }
    if a.tasks.is_some() {
        let alone = match task {
            "Male" => 1,
            "Young" => 3,
            _ => 2,
        };
        return Some(if k > 1 { (alone - 1).max(1) } else { alone });
    }
    if a.save.is_some() && a.target_acc.is_none() {
        return None;
    }
    if (a.lr - 1e-3).abs() < 1e-9 {
        Some(2)
    } else if (a.lr - 1e-2).abs() < 1e-9 {
        Some(3)
    } else {
        None
    }
}

pub fn per_epoch_j(a: &TrainConfig, k: usize) -> f64 {
    if a.val.is_some() {
        if a.freeze_encoder {
            50.0
        } else {
            100.0
        }
    } else if a.tasks.is_some() {
        60.0 + 20.0 * k as f64
    } else if a.save.is_some() {
        100.0 + 25.0 * a.seed as f64
    } else {
        6400.0 / a.batch_size as f64 + 10.0
    }
}

pub fn fake_train(a: &TrainConfig) -> Result<RunSummary> {
    let out = a.out.clone().context("fake trainer: no --out")?;
    std::fs::create_dir_all(&out)?;
    let tasks: Vec<String> = match &a.tasks {
        Some(t) => t.split(',').map(|s| s.to_string()).collect(),
        None => vec!["class".to_string()],
    };
    let k = tasks.len();
    let target = a.target_acc.unwrap_or(0.8);
    let pe = per_epoch_j(a, k);
    let source = match a.energy.as_str() {
        "estimate" => "estimate",
        "none" => "none",
        _ => "nvml-counter",
    };
    let has_e = source != "none";
    let busy = a.batch_size as f64 / (a.batch_size as f64 + 64.0);
    let mut steps = std::fs::File::create(out.join("steps.jsonl"))?;
    let mut epochs_csv = String::from(
        "epoch,steps,train_loss,val_loss,val_acc,epoch_wall_s,epoch_energy_j,eval_energy_j,cum_energy_j,cum_wall_s\n",
    );
    let mut task_epoch_reached = BTreeMap::new();
    let (mut cum_e, mut cum_t, mut step) = (0.0, 0.0, 0u64);
    let mut ran = 0;
    let mut reached_at = None;
    let mut acc_now = BTreeMap::new();
    let mut capped = false;
    for epoch in 1..=a.epochs {
        ran = epoch;
        for _ in 0..2 {
            step += 1;
            let (w, e) = (pe / 200.0, pe / 2.0);
            cum_t += w;
            cum_e += e;
            let energy = if has_e { serde_json::json!(e) } else { serde_json::Value::Null };
            let line = serde_json::json!({"step": step, "epoch": epoch, "loss": 1.0 / step as f64,
                "batch_size": a.batch_size, "wall_s": w, "t_s": cum_t, "energy_j": energy,
                "energy_source": source, "energy_uncertainty_j": 0.0,
                "kernels": [{"name": "conv2d_forward", "launches": 3, "time_s": w * busy * 0.75, "energy_j": e * 0.6},
                            {"name": "gemm", "launches": 2, "time_s": w * busy * 0.25, "energy_j": e * 0.3},
                            {"name": "(between kernels)", "launches": 0, "time_s": w * (1.0 - busy), "energy_j": e * 0.1}]});
            writeln!(steps, "{line}")?;
        }
        for t in &tasks {
            let r = reach_epoch(a, t, k);
            let acc = if r.is_some_and(|r| epoch >= r) { target + 0.05 } else { 0.5 };
            acc_now.insert(t.clone(), acc);
            if a.target_acc.is_some() && acc >= target && !task_epoch_reached.contains_key(t) {
                task_epoch_reached.insert(t.clone(), epoch);
            }
        }
        let mean_acc = acc_now.values().sum::<f64>() / k as f64;
        epochs_csv += &format!(
            "{epoch},2,{:.3},{:.3},{mean_acc},{},{},0,{},{}\n",
            1.0 / epoch as f64,
            1.1 / epoch as f64,
            pe / 100.0,
            if has_e { pe.to_string() } else { String::new() },
            if has_e { cum_e.to_string() } else { String::new() },
            cum_t
        );
        let all = tasks.iter().all(|t| task_epoch_reached.contains_key(t));
        if all && reached_at.is_none() && a.target_acc.is_some() {
            reached_at = Some(epoch);
            if k == 1 {
                break;
            }
        }
        if a.cap.is_some_and(|c| if has_e { cum_e > c } else { cum_t > c }) {
            capped = true;
            break;
        }
    }
    std::fs::write(out.join("epochs.csv"), epochs_csv)?;
    std::fs::write(
        out.join("kernels.csv"),
        format!(
            "name,launches,gpu_time_s,energy_j\nconv2d_forward,{},{},{}\ngemm,{},{},{}\n",
            3 * step,
            cum_t * busy * 0.75,
            cum_e * 0.6,
            2 * step,
            cum_t * busy * 0.25,
            cum_e * 0.3
        ),
    )?;
    std::fs::write(
        out.join("config.json"),
        serde_json::json!({"protocol": 1, "model": a.model, "host": "fakehost",
            "device": {"name": "Fake GPU", "uuid": "GPU-fake-0", "driver": "580.00"}})
        .to_string(),
    )?;
    if let Some(p) = &a.save {
        std::fs::write(p, b"fake weights")?;
    }
    let e_at = |ep: usize| pe * ep as f64;
    let s = RunSummary {
        protocol: 1,
        model: a.model.clone(),
        device: "cuda".into(),
        device_name: "Fake GPU".into(),
        optimizer: a.optimizer.clone(),
        lr: a.lr,
        batch_size: a.batch_size,
        seed: a.seed,
        stop_reason: if reached_at.is_some() && k == 1 {
            "target_reached"
        } else if capped {
            "capped"
        } else {
            "epoch_limit"
        }
        .into(),
        epochs: ran,
        steps: step,
        final_train_loss: Some(1.0 / step as f64),
        final_val_acc: Some(acc_now.values().sum::<f64>() / k as f64),
        best_val_acc: Some(acc_now.values().sum::<f64>() / k as f64),
        final_val_acc_per_task: acc_now.clone(),
        task_epoch_reached,
        target_acc: a.target_acc,
        target_reached: reached_at.is_some(),
        epochs_to_target: reached_at,
        energy_to_target_j: reached_at.filter(|_| has_e).map(e_at),
        time_to_target_s: reached_at.map(|ep| e_at(ep) / 100.0),
        total_energy_j: has_e.then_some(cum_e),
        energy_per_epoch_j: has_e.then_some(pe),
        wall_s: cum_t,
        mean_step_s: pe / 200.0,
        energy_source: source.into(),
        energy_context: serde_json::from_value(serde_json::json!({"gpu_uuid": "GPU-fake-0", "driver": "580.00"}))?,
        host: "fakehost".into(),
        ..Default::default()
    };
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&s)?)?;
    Ok(s)
}

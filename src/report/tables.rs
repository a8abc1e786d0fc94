//! The report's tables: machines, the studies' own tables, every run, the energy accounting, failed runs.
use super::load::{Inputs, Run};
use super::Block;
use crate::study::{fmt_num, md_table, Machine, Metric};
use std::collections::BTreeMap;

/// Machines, then the studies' own tables, then every run, the energy accounting and the failed runs.
pub(super) fn table_blocks(inp: &Inputs, metric: Metric, machines: &BTreeMap<Machine, Vec<String>>) -> Vec<Block> {
    let mrows: Vec<Vec<String>> = machines
        .iter()
        .map(|(m, ids)| {
            vec![
                if m.host.is_empty() { "?".into() } else { m.host.clone() },
                m.gpu_name.clone(),
                m.gpu_uuid.clone(),
                m.driver.clone(),
                ids.len().to_string(),
            ]
        })
        .collect();
    let mut blocks = vec![Block::Md(format!(
        "## Machines\n\n{}\n",
        md_table(&["host", "device", "GPU UUID", "driver", "runs"], &mrows)
    ))];
    for s in &inp.studies {
        for t in &s.tables {
            let demoted: String =
                t.lines().map(|l| if l.starts_with('#') { format!("#{l}\n") } else { format!("{l}\n") }).collect();
            blocks.push(Block::Md(demoted + "\n"));
        }
    }
    blocks.push(Block::Md(runs_table(inp, metric, machines)));
    if let Some(t) = energy_table(&inp.runs) {
        blocks.push(Block::Md(t));
    }
    if let Some(t) = carbon_table(&inp.runs) {
        blocks.push(Block::Md(t));
    }
    if !inp.failed.is_empty() {
        let mut s = String::from("## Failed runs\n\n");
        for (id, e) in &inp.failed {
            s += &format!("- {id}: {e}\n");
        }
        blocks.push(Block::Md(s + "\n"));
    }
    blocks
}

pub(super) fn runs_table(inp: &Inputs, metric: Metric, machines: &BTreeMap<Machine, Vec<String>>) -> String {
    let mut s = String::from("## Runs\n\n");
    let u = metric.unit();
    let h_to = format!("{} to target ({u})", metric.name());
    let h_total = format!("total {} ({u})", metric.name());
    for m in machines.keys() {
        if machines.len() > 1 {
            s += &format!("### {}\n\n", m.label());
        }
        let rows: Vec<Vec<String>> = inp
            .runs
            .iter()
            .filter(|r| &r.machine == m)
            .map(|r| {
                let x = &r.summary;
                vec![
                    r.id.clone(),
                    x.model.clone(),
                    x.batch_size.to_string(),
                    x.lr.to_string(),
                    x.seed.to_string(),
                    x.epochs.to_string(),
                    x.stop_reason.clone(),
                    fmt_num(x.final_val_acc),
                    if x.target_acc.is_some() && !x.target_reached {
                        "not reached".into()
                    } else {
                        fmt_num(metric.to_target(x))
                    },
                    fmt_num(metric.total(x)),
                    super::source_label(&x.energy_source),
                ]
            })
            .collect();
        s += &md_table(
            &[
                "run",
                "model",
                "batch",
                "lr",
                "seed",
                "epochs",
                "stop",
                "final val acc",
                &h_to,
                &h_total,
                "energy source",
            ],
            &rows,
        );
        s += "\n";
    }
    s
}

/// How each metered run's energy is accounted for: source, total, idle (static) and active split, how much of
/// the total the step and evaluation windows hold (closure), host time folded into them, the counter's gap to
/// integrated power, the sensor's update period, and the first prediction's error. None without such runs.
fn energy_table(runs: &[Run]) -> Option<String> {
    let f = crate::util::fmt_fixed;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r.summary.energy_source != "none")
        .map(|r| {
            let s = &r.summary;
            let c = s.energy_context.totals();
            let readings = c.and_then(|c| c.power_check.as_ref()).map(|p| p.readings.as_slice()).unwrap_or_default();
            let gaps: Vec<String> = readings
                .iter()
                .filter_map(|x| {
                    let g = x.gap_rel?;
                    let what = if x.reading.contains("186") { "instant" } else { "samples" };
                    Some(format!("{what} {:+.1} %", 100.0 * g))
                })
                .collect();
            let label = if s.energy_source == "estimate" { " (no sensor)" } else { "" };
            vec![
                r.id.clone(),
                format!("{}{label}", s.energy_source),
                f(s.total_energy_j, 1),
                f(s.idle_power_w, 1),
                f(s.idle_j, 1),
                f(s.active_j, 1),
                f(c.and_then(|c| c.closure).map(|x| 100.0 * x), 2),
                f(c.map(|c| c.gap_s), 2),
                if gaps.is_empty() { "-".into() } else { gaps.join(", ") },
                f(c.and_then(|c| c.update_period_s).map(|x| 1e3 * x), 0),
                f(s.prediction["energy_error_pct"].as_f64(), 1),
            ]
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "## Energy accounting\n\nTotal = the sensor's run total (first step to last evaluation). Static = idle power \
         measured before the run x run time; active = total - static. Windows = the share of the total that the step \
         and evaluation windows hold (contiguous windows: 100 % up to the counter's last update); host gaps = host \
         time folded into those windows. Power check = integrated power readings vs the counter over the same \
         window. Prediction = the first prediction's energy error.\n\n{}\n",
        crate::study::md_table(
            &[
                "run",
                "source",
                "total (J)",
                "idle (W)",
                "static (J)",
                "active (J)",
                "windows (%)",
                "host gaps (s)",
                "power check",
                "update (ms)",
                "prediction err (%)",
            ],
            &rows
        )
    ))
}

/// Each run's carbon block (summary.json, only with --carbon-intensity and --pue): CO2e, the inputs, and how
/// the energy behind it was obtained (an estimate or sim is never called measured). None when no run has one.
fn carbon_table(runs: &[Run]) -> Option<String> {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter_map(|r| {
            let c = r.summary.carbon.as_object()?;
            let n = |k: &str| fmt_num(c.get(k).and_then(|v| v.as_f64()));
            let source = c.get("energy_source").and_then(|v| v.as_str()).unwrap_or(&r.summary.energy_source);
            Some(vec![
                r.id.clone(),
                n("co2e_g"),
                n("carbon_intensity_g_per_kwh"),
                n("pue"),
                n("energy_kwh"),
                super::source_label(source),
            ])
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "## Carbon\n\nCO2e = the run's energy x PUE x carbon intensity, both given on the command line \
         (`--carbon-intensity`, `--pue`); it is as good as the energy behind it (last column).\n\n{}\n",
        md_table(&["run", "CO2e (g)", "intensity (gCO2e/kWh)", "PUE", "energy (kWh)", "energy method"], &rows)
    ))
}

//! The energy roofline of a run (teaching view): per kernel, joules per FLOP against arithmetic intensity
//! (FLOPs per byte moved). kernels.csv records each kernel's energy and launches; the FLOPs and bytes of a
//! kernel come from the model's layer shapes at the run's batch size (the same cases `bench kernels` and
//! `check` run: `model::cases`), summed per kernel over one training step. With a calibrated per-kernel split
//! (kernels.csv `method` = calibrated) the device model E = P_static x t + J/FLOP x FLOPs + J/byte x bytes is fitted
//! to the kernels (least squares on the dynamic energy, the static watts measured before the run); without
//! one, the page says there is none.
use crate::model::Arch;
use crate::ops::check::StepCases;
use crate::rundir::{KernelRow, RunSummary};
use std::collections::BTreeMap;

/// Per kernel name: (FLOPs, bytes) of one training step of `summary`'s model at its batch size.
pub fn step_work(summary: &RunSummary) -> BTreeMap<String, (f64, f64)> {
    let arch = match summary.model.as_str() {
        "pamap2" => Arch::Pamap2,
        "celeba" => Arch::Celeba { k: summary.final_val_acc_per_task.len().max(1) },
        _ => return BTreeMap::new(),
    };
    let mut m: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for c in arch.step_cases(summary.batch_size.max(1), true) {
        let e = m.entry(c.op.kernel().to_string()).or_default();
        e.0 += c.op.flops().unwrap_or(0.0);
        e.1 += c.op.bytes();
    }
    m
}

/// One kernel on the energy roofline.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub name: String,
    /// FLOPs per byte.
    pub intensity: f64,
    /// Joules per FLOP (its attributed energy over the FLOPs of its launches).
    pub j_per_flop: f64,
    /// FLOPs and bytes over the run (per step x steps), and the kernel's time and energy.
    pub flops: f64,
    pub bytes: f64,
    pub time_s: f64,
    pub energy_j: f64,
}

/// The kernels with FLOPs, energy and launches: intensity from the step's shapes, J/FLOP from kernels.csv's
/// J/GFLOP.
pub fn points(rows: &[KernelRow], work: &BTreeMap<String, (f64, f64)>, steps: u64) -> Vec<Point> {
    rows.iter()
        .filter_map(|r| {
            let &(f, b) = work.get(&r.name)?;
            if !(f > 0.0 && b > 0.0) {
                return None;
            }
            Some(Point {
                name: r.name.clone(),
                intensity: f / b,
                j_per_flop: r.j_per_gflop? * 1e-9,
                flops: f * steps as f64,
                bytes: b * steps as f64,
                time_s: r.gpu_time_s.unwrap_or(0.0),
                energy_j: r.energy_j?,
            })
        })
        .collect()
}

/// The fitted device model (dynamic joules per FLOP and per byte, with the static watts it used).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceModel {
    pub static_w: f64,
    pub j_per_flop: f64,
    pub j_per_byte: f64,
    /// How well it describes the kernels: sqrt(sum of squared residuals / sum of squared dynamic energies).
    pub rel_residual: f64,
}

/// Least squares of the kernels' dynamic energy E - P_static t = a FLOPs + b bytes (no intercept), None with
/// fewer than two kernels or a singular system. Negative coefficients are clipped to 0 and the other refitted.
pub fn fit(points: &[Point], static_w: f64) -> Option<DeviceModel> {
    if points.len() < 2 {
        return None;
    }
    let y: Vec<f64> = points.iter().map(|p| p.energy_j - static_w * p.time_s).collect();
    let (mut sff, mut sbb, mut sfb, mut sfy, mut sby) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (p, y) in points.iter().zip(&y) {
        sff += p.flops * p.flops;
        sbb += p.bytes * p.bytes;
        sfb += p.flops * p.bytes;
        sfy += p.flops * y;
        sby += p.bytes * y;
    }
    let det = sff * sbb - sfb * sfb;
    if !(det.abs() > 1e-12 * sff * sbb) {
        return None;
    }
    let (mut a, mut b) = ((sfy * sbb - sby * sfb) / det, (sby * sff - sfy * sfb) / det);
    if a < 0.0 {
        (a, b) = (0.0, (sby / sbb).max(0.0));
    } else if b < 0.0 {
        (a, b) = ((sfy / sff).max(0.0), 0.0);
    }
    let (mut rss, mut yy) = (0.0, 0.0);
    for (p, y) in points.iter().zip(&y) {
        rss += (y - a * p.flops - b * p.bytes).powi(2);
        yy += y * y;
    }
    let rel_residual = if yy > 0.0 { (rss / yy).sqrt() } else { f64::INFINITY };
    Some(DeviceModel { static_w, j_per_flop: a, j_per_byte: b, rel_residual })
}

/// The model's dynamic J/FLOP at intensity `x`: J/FLOP + J/byte / x.
pub fn model_line(m: &DeviceModel, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    (0..=40)
        .map(|i| {
            let x = lo * (hi / lo).powf(i as f64 / 40.0);
            (x, m.j_per_flop + m.j_per_byte / x)
        })
        .collect()
}

/// True when the run's per-kernel split was calibrated (kernels.csv's method column).
pub fn calibrated(rows: &[KernelRow]) -> bool {
    rows.iter().any(|r| r.method.as_deref().is_some_and(|m| m.starts_with("calibrated")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, flops: f64, bytes: f64, t: f64, e: f64) -> Point {
        Point {
            name: name.into(),
            intensity: flops / bytes,
            j_per_flop: e / flops,
            flops,
            bytes,
            time_s: t,
            energy_j: e,
        }
    }

    #[test]
    fn the_fit_recovers_a_known_device() {
        // 50 W static, 2 pJ per FLOP, 30 pJ per byte: three kernels generated from it.
        let (s, a, b) = (50.0, 2e-12, 3e-11);
        let k = |f: f64, by: f64, t: f64| p("k", f, by, t, s * t + a * f + b * by);
        let pts = vec![k(1e12, 1e10, 0.5), k(1e11, 4e10, 0.2), k(5e12, 2e11, 2.0)];
        let m = fit(&pts, s).unwrap();
        assert!((m.j_per_flop - a).abs() < 1e-18 && (m.j_per_byte - b).abs() < 1e-17, "{m:?}");
        assert!(m.rel_residual < 1e-9, "{m:?}");
        // A kernel that draws far more than the model says: the residual shows it.
        let mut off = pts.clone();
        off[1].energy_j += 40.0;
        assert!(fit(&off, s).unwrap().rel_residual > 0.3);
        let line = model_line(&m, 1.0, 100.0);
        assert!((line[0].1 - (a + b)).abs() < 1e-20 && (line[40].1 - (a + b / 100.0)).abs() < 1e-20);
        assert!(fit(&pts[..1], s).is_none());
    }

    #[test]
    fn pamap2_step_work_has_flops_only_for_conv_and_gemm() {
        let s = RunSummary { model: "pamap2".into(), batch_size: 32, ..Default::default() };
        let w = step_work(&s);
        assert!(w["gemm"].0 > 0.0 && w["gemm"].1 > 0.0);
        assert!(w.iter().filter(|(k, _)| k.starts_with("conv2d")).all(|(_, v)| v.0 > 0.0));
        assert_eq!(w["relu_forward"].0, 0.0);
        // Twice the batch: about twice the work.
        let s2 = RunSummary { batch_size: 64, ..s };
        assert!(step_work(&s2)["gemm"].0 > 1.9 * w["gemm"].0);
    }
}

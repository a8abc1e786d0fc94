//! Calibration for `powertrain bench kernels --energy`: repeat-and-divide over windows of at least a second,
//! each started at a random phase relative to the sensor's update period, giving joules per launch with an
//! interval (Student t over windows, quantile from `statrs` through `crate::stats::t_quantile`, plus the
//! sensor's own per-window uncertainty).

use super::{EnergySource, Meter};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct CalibrateOpts {
    /// Length of each window in seconds (>= 1 s for real measurements; tests may use less).
    pub window_s: f64,
    /// Number of windows (>= 2 for an interval).
    pub windows: usize,
    pub seed: u64,
}

impl Default for CalibrateOpts {
    fn default() -> Self {
        CalibrateOpts { window_s: 1.0, windows: 5, seed: 0 }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Joules per launch: the device energy of all windows over all their launches.
    pub j_per_launch: f64,
    /// Half-width of the ~95 % interval of `j_per_launch`.
    pub ci95_j: f64,
    /// Joules per launch above the measured idle power, when `measure_idle` ran.
    pub dynamic_j_per_launch: Option<f64>,
    pub windows: usize,
    pub launches: u64,
    pub seconds: f64,
    pub source: String,
    pub method: String,
}

/// Run `batch` (which enqueues some launches, waits for them to finish, and returns how many it ran)
/// repeatedly over `opts.windows` windows of `opts.window_s`, each after a random delay within the
/// sensor's update period, and return joules per launch. The meter must have a source that gives energy
/// (a sensor, or an estimate, which is labelled as such).
pub fn calibrate_per_launch(
    meter: &mut Meter,
    opts: &CalibrateOpts,
    mut batch: impl FnMut() -> Result<u64>,
) -> Result<Calibration> {
    if meter.source() == EnergySource::None {
        bail!("calibration needs an energy source: use --energy nvml|rapl, or --energy estimate --watts W");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let period = meter.period_s().unwrap_or(0.1).clamp(0.0, 1.0);
    let idle = meter.idle_power_w();
    let mut per: Vec<f64> = Vec::new();
    let mut unc_sum = 0.0;
    let mut energy_sum = 0.0;
    let mut dynamic_sum = 0.0;
    let (mut launches, mut seconds) = (0u64, 0.0);
    let mut method = String::new();
    for _ in 0..opts.windows.max(1) {
        std::thread::sleep(Duration::from_secs_f64(rng.random_range(0.0..=period)));
        // Each window stands alone: the random-phase pause belongs to none of them.
        meter.break_window();
        let a = meter.now_s();
        meter.begin_step(a);
        let mut n = 0u64;
        loop {
            n += batch()?;
            if meter.now_s() - a >= opts.window_s {
                break;
            }
        }
        let b = meter.now_s();
        let se = meter.end_step(b, &[]);
        let Some(e) = se.energy_j else {
            bail!("calibration window without energy ({}): the sensor gave no value", se.method);
        };
        if n == 0 {
            bail!("calibration: the batch closure ran no launches");
        }
        per.push(e / n as f64);
        energy_sum += e;
        if let Some(p) = idle {
            dynamic_sum += (e - p * (b - a)).max(0.0);
        }
        unc_sum += se.uncertainty_j.unwrap_or(0.0) / n as f64;
        launches += n;
        seconds += b - a;
        method = se.method;
    }
    let k = per.len() as f64;
    // Ratio estimator: all the windows' energy over all their launches (a window that ran fewer launches,
    // e.g. one slowed by other work, weighs less than in a plain mean of per-window values).
    let mean = energy_sum / launches as f64;
    let per_mean = per.iter().sum::<f64>() / k;
    let sd =
        if per.len() > 1 { (per.iter().map(|x| (x - per_mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt() } else { 0.0 };
    let ci = if per.len() > 1 {
        crate::stats::t_quantile((per.len() - 1) as f64, 0.95) * sd / k.sqrt()
    } else {
        f64::INFINITY
    } + unc_sum / k;
    Ok(Calibration {
        j_per_launch: mean,
        ci95_j: ci,
        dynamic_j_per_launch: idle.map(|_| dynamic_sum / launches as f64),
        windows: per.len(),
        launches,
        seconds,
        source: meter.source().as_str().into(),
        method: format!("repeat-and-divide over {} windows, random start phase; {method}", per.len()),
    })
}

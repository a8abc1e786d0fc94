//! Prediction of a run's total energy and time from its first epochs (warm-up excluded), with an interval,
//! and its comparison with the outcome.
//!
//! An epoch here is everything the run spends on it: its training steps, its evaluation and the host time
//! between them (the training loop feeds the difference of the run's cumulative wall time and energy), so
//! the epochs' sum is the run's total.
//!
//! No prediction is made before `min_epochs` (at least 2) post-warm-up epochs, nor at or after the epoch
//! limit (nothing is left to predict; a 3-epoch run with one warm-up epoch makes none).
//!
//! Epochs to go: to the epoch limit, or, with a target accuracy, where a least-squares fit
//! `val_acc = a + b ln(epoch)` reaches the target (interval from b ± t(n-2) standard errors, capped at the
//! limit; with two points there is no residual and a crude ±50 % on the slope stands in).
//! Per-epoch energy and time: mean m and sample standard deviation s over the n post-warm-up epochs. The
//! remaining R epochs' sum is predicted as R m with the 95 % prediction interval
//! `R m ± t(n-1) s sqrt(R²/n + R)` (the mean's uncertainty, R² s²/n, plus the spread of R new epochs, R s²),
//! t the two-sided 95 % Student-t quantile from `statrs` (12.7 at n = 2, 4.3 at n = 3): an interval at its
//! stated rate for independent epochs of equal expected cost (tested on synthetic series).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    /// The prediction uses epochs 1..=made_after_epoch.
    pub made_after_epoch: usize,
    pub predicted_epochs: usize,
    pub epochs_lo: usize,
    pub epochs_hi: usize,
    /// With a target: whether the fit says it is reached within the epoch limit.
    pub reaches_target: Option<bool>,
    pub energy_j: Option<f64>,
    pub energy_lo_j: Option<f64>,
    pub energy_hi_j: Option<f64>,
    pub wall_s: f64,
    pub wall_lo_s: f64,
    pub wall_hi_s: f64,
    pub method: String,
}

#[derive(Clone, Debug)]
struct Epoch {
    epoch: usize,
    energy_j: Option<f64>,
    wall_s: f64,
    val_acc: Option<f64>,
}

/// Fed once per epoch by the training loop.
#[derive(Clone, Debug)]
pub struct Predictor {
    pub warmup_epochs: usize,
    /// Post-warm-up epochs needed before the first prediction (at least 2).
    pub min_epochs: usize,
    pub epoch_limit: usize,
    pub target_acc: Option<f64>,
    obs: Vec<Epoch>,
    first: Option<Prediction>,
    latest: Option<Prediction>,
}

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// Least squares y = a + b x: (a, b, standard error of b).
fn fit_line(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64)> {
    let n = x.len();
    if n < 2 {
        return None;
    }
    let (mx, _) = mean_sd(x);
    let (my, _) = mean_sd(y);
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let se = if n > 2 {
        let rss: f64 = x.iter().zip(y).map(|(xi, yi)| (yi - a - b * xi).powi(2)).sum();
        (rss / (n as f64 - 2.0) / sxx).sqrt()
    } else {
        0.5 * b.abs() // two points: no residual; a crude ±50 % on the slope
    };
    Some((a, b, se))
}

impl Predictor {
    pub fn new(warmup_epochs: usize, epoch_limit: usize, target_acc: Option<f64>) -> Predictor {
        Predictor {
            warmup_epochs,
            min_epochs: 2,
            epoch_limit: epoch_limit.max(1),
            target_acc,
            obs: Vec::new(),
            first: None,
            latest: None,
        }
    }

    /// Record epoch `epoch` (1-based): its energy (None without a sensor), wall time (training plus
    /// evaluation) and validation accuracy. Returns a prediction once enough post-warm-up epochs are seen.
    pub fn observe_epoch(
        &mut self,
        epoch: usize,
        energy_j: Option<f64>,
        wall_s: f64,
        val_acc: Option<f64>,
    ) -> Option<Prediction> {
        self.obs.push(Epoch { epoch, energy_j, wall_s, val_acc });
        let p = self.predict()?;
        if self.first.is_none() {
            self.first = Some(p.clone());
        }
        self.latest = Some(p.clone());
        Some(p)
    }

    /// The first prediction made (the one compared with the outcome).
    pub fn first(&self) -> Option<&Prediction> {
        self.first.as_ref()
    }
    pub fn latest(&self) -> Option<&Prediction> {
        self.latest.as_ref()
    }

    fn predict(&self) -> Option<Prediction> {
        let now = self.obs.last()?.epoch;
        let steady: Vec<&Epoch> = self.obs.iter().filter(|e| e.epoch > self.warmup_epochs).collect();
        if steady.len() < self.min_epochs.max(2) || now >= self.epoch_limit {
            return None;
        }
        // Epochs to go.
        let limit = self.epoch_limit.max(now);
        let (n, lo, hi, reaches, how) = match self.target_acc {
            None => (limit, limit, limit, None, "to the epoch limit".to_string()),
            Some(t) => {
                if let Some(e) = self.obs.iter().find(|e| e.val_acc.is_some_and(|a| a >= t)) {
                    (e.epoch, e.epoch, e.epoch, Some(true), "target already reached".into())
                } else {
                    let pts: Vec<(f64, f64)> =
                        self.obs.iter().filter_map(|e| e.val_acc.map(|a| ((e.epoch as f64).ln(), a))).collect();
                    let x: Vec<f64> = pts.iter().map(|p| p.0).collect();
                    let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
                    match fit_line(&x, &y) {
                        Some((a, b, se)) => {
                            let at = |slope: f64| -> usize {
                                if slope <= 0.0 {
                                    return limit;
                                }
                                let e = ((t - a) / slope).exp();
                                if !e.is_finite() || e > limit as f64 {
                                    limit
                                } else {
                                    // At the last epoch now + 1 > limit: the limit wins (no panic).
                                    (e.ceil() as usize).max(now + 1).min(limit)
                                }
                            };
                            let reach = b > 0.0 && ((t - a) / b).exp() <= limit as f64;
                            let tq = crate::stats::t_quantile(x.len().saturating_sub(2).max(1) as f64, 0.95);
                            (
                                at(b),
                                at(b + tq * se).min(at(b)),
                                at(b - tq * se).max(at(b)),
                                Some(reach),
                                "val_acc = a + b ln(epoch) fit to the target".into(),
                            )
                        }
                        None => (limit, limit, limit, None, "no accuracy to fit: to the epoch limit".into()),
                    }
                }
            }
        };
        let rem = |k: usize| k.saturating_sub(now) as f64;
        let total_wall_so_far: f64 = self.obs.iter().map(|e| e.wall_s).sum();
        let walls: Vec<f64> = steady.iter().map(|e| e.wall_s).collect();
        let (mw, sw) = mean_sd(&walls);
        let nn = walls.len() as f64;
        let tq = crate::stats::t_quantile(nn - 1.0, 0.95);
        let half = |r: f64, s: f64| tq * (r * r * s * s / nn + r * s * s).sqrt();
        let wall = total_wall_so_far + rem(n) * mw;
        let wall_lo = (total_wall_so_far + rem(lo) * mw - half(rem(lo), sw)).max(total_wall_so_far);
        let wall_hi = total_wall_so_far + rem(hi) * mw + half(rem(hi), sw);
        let energies: Option<Vec<f64>> = steady.iter().map(|e| e.energy_j).collect();
        let so_far: Option<f64> = self.obs.iter().map(|e| e.energy_j).sum();
        let (energy, elo, ehi) = match (energies, so_far) {
            (Some(es), Some(sf)) => {
                let (me, se) = mean_sd(&es);
                (
                    Some(sf + rem(n) * me),
                    Some((sf + rem(lo) * me - half(rem(lo), se)).max(sf)),
                    Some(sf + rem(hi) * me + half(rem(hi), se)),
                )
            }
            _ => (None, None, None),
        };
        Some(Prediction {
            made_after_epoch: now,
            predicted_epochs: n,
            epochs_lo: lo,
            epochs_hi: hi,
            reaches_target: reaches,
            energy_j: energy,
            energy_lo_j: elo,
            energy_hi_j: ehi,
            wall_s: wall,
            wall_lo_s: wall_lo,
            wall_hi_s: wall_hi,
            method: format!(
                "mean of {} post-warm-up epochs (warm-up {} excluded) x epochs {how}",
                steady.len(),
                self.warmup_epochs
            ),
        })
    }

    /// The first prediction against the outcome (for summary.json `prediction`).
    pub fn compare(&self, energy_j: Option<f64>, wall_s: f64, epochs: usize) -> serde_json::Value {
        let Some(p) = &self.first else {
            return serde_json::json!({
                "made": false,
                "reason": format!(
                    "too few epochs to predict: at least {} after the {} warm-up epoch(s), with epochs still to go",
                    self.min_epochs.max(2),
                    self.warmup_epochs
                )
            });
        };
        let pct = |pred: f64, act: f64| if act > 0.0 { Some(100.0 * (pred - act) / act) } else { None };
        let energy_err = match (p.energy_j, energy_j) {
            (Some(pe), Some(ae)) => pct(pe, ae),
            _ => None,
        };
        let energy_in = match (p.energy_lo_j, p.energy_hi_j, energy_j) {
            (Some(lo), Some(hi), Some(a)) => Some(a >= lo && a <= hi),
            _ => None,
        };
        serde_json::json!({
            "made": true,
            "prediction": p,
            "actual": { "energy_j": energy_j, "wall_s": wall_s, "epochs": epochs },
            "energy_error_pct": energy_err,
            "energy_within_interval": energy_in,
            "wall_error_pct": pct(p.wall_s, wall_s),
            "wall_within_interval": wall_s >= p.wall_lo_s && wall_s <= p.wall_hi_s,
            "epochs_error": p.predicted_epochs as i64 - epochs as i64,
        })
    }
}

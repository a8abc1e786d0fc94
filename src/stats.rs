//! The one home of statistics: order statistics (medians, quantiles) for benches, the meter and the sensor
//! probes, and every interval powertrain prints (Student-t intervals over repeats, seed bootstraps).
//!
//! Every median in powertrain is `median` below: the middle value of the sorted sample, the mean of the two
//! middle values for an even count, NaN for an empty sample (a table shows it as unknown, never as 0).
//! NaN samples sort last (`f64::total_cmp`), so one NaN shifts a median rather than poisoning it.

/// Sorted copy of `xs` (NaN last).
pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Median of `xs`; NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    median_sorted(&sorted(xs))
}

/// Median of an already sorted sample; NaN when empty.
pub fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Median of `xs`, or None when empty.
pub fn median_opt(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| median(xs))
}

/// Quantile `q` in [0, 1] of a sorted sample by linear interpolation between order statistics (the
/// definition numpy and R's type 7 use); NaN when empty.
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Quantile `q` of `xs` (see `quantile_sorted`).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    quantile_sorted(&sorted(xs), q)
}

/// Arithmetic mean; NaN when empty.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Sample standard deviation (n - 1 in the denominator); NaN for fewer than two values.
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// The two-sided Student-t quantile for `df` degrees of freedom at confidence `conf` (e.g. 0.95 -> 12.71 at
/// df 1, 2.262 at df 9, 1.96 as df grows): `statrs`'s inverse CDF, never a hand-made table.
pub fn t_quantile(df: f64, conf: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) if conf > 0.0 && conf < 1.0 => t.inverse_cdf(0.5 + conf / 2.0),
        _ => f64::NAN,
    }
}

/// A mean with the half-width of its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub mean: f64,
    /// Half-width at `conf` (None for a single value: no spread is known).
    pub half_width: Option<f64>,
    pub conf: f64,
    pub n: usize,
}

impl Interval {
    pub fn lo(&self) -> Option<f64> {
        self.half_width.map(|h| self.mean - h)
    }
    pub fn hi(&self) -> Option<f64> {
        self.half_width.map(|h| self.mean + h)
    }
    /// "12.3 +- 0.4" (with `prec` decimals), or "12.3 (n=1)" when no spread is known.
    pub fn fmt(&self, prec: usize) -> String {
        match self.half_width {
            Some(h) => format!("{:.prec$} ± {h:.prec$}", self.mean),
            None => format!("{:.prec$} (n={})", self.mean, self.n),
        }
    }
}

/// The Student-t interval of the mean of `xs` at confidence `conf`: mean +- t(n-1) * s / sqrt(n).
/// None for an empty sample; no half-width for a single value.
pub fn t_interval(xs: &[f64], conf: f64) -> Option<Interval> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len();
    let half_width = (n >= 2).then(|| t_quantile((n - 1) as f64, conf) * std_dev(xs) / (n as f64).sqrt());
    Some(Interval { mean: mean(xs), half_width, conf, n })
}

/// Percentile bootstrap interval of `stat` over resamples (with replacement) of `n` items, `reps` times,
/// seeded; items are indices 0..n, so several aligned samples (e.g. per-seed costs of two arms) resample
/// together. Returns (lo, hi) at confidence `conf`, from the resamples whose statistic is finite; None when
/// fewer than half are.
pub fn bootstrap_interval(
    n: usize,
    reps: usize,
    conf: f64,
    seed: u64,
    mut stat: impl FnMut(&[usize]) -> f64,
) -> Option<(f64, f64)> {
    use rand::{Rng, SeedableRng};
    if n == 0 || reps == 0 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut idx = vec![0usize; n];
    let mut vals = Vec::with_capacity(reps);
    for _ in 0..reps {
        for i in idx.iter_mut() {
            *i = rng.random_range(0..n);
        }
        let v = stat(&idx);
        if v.is_finite() {
            vals.push(v);
        }
    }
    if vals.len() * 2 < reps {
        return None;
    }
    let v = sorted(&vals);
    let a = (1.0 - conf) / 2.0;
    Some((quantile_sorted(&v, a), quantile_sorted(&v, 1.0 - a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles_follow_the_stated_definitions() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[1.0, f64::NAN, 2.0]), 2.0, "NaN sorts last");
        let v = sorted(&[10.0, 0.0, 5.0]);
        assert_eq!(quantile_sorted(&v, 0.0), 0.0);
        assert_eq!(quantile_sorted(&v, 0.25), 2.5);
        assert_eq!(quantile_sorted(&v, 1.0), 10.0);
        assert_eq!(median_opt(&[]), None);
        assert!((mean(&[1.0, 2.0, 6.0]) - 3.0).abs() < 1e-15);
    }

    #[test]
    fn t_quantiles_and_intervals_match_published_values() {
        // Published two-sided 95 % t values.
        for (df, t) in [(1.0, 12.706), (2.0, 4.303), (4.0, 2.776), (9.0, 2.262), (30.0, 2.042)] {
            assert!((t_quantile(df, 0.95) - t).abs() < 1e-3, "df {df}: {}", t_quantile(df, 0.95));
        }
        assert!((t_quantile(1e6, 0.95) - 1.95996).abs() < 1e-3);
        let i = t_interval(&[1.0, 2.0, 3.0], 0.95).unwrap();
        assert_eq!(i.mean, 2.0);
        assert!((i.half_width.unwrap() - 4.303 * 1.0 / 3f64.sqrt()).abs() < 1e-3);
        assert_eq!(t_interval(&[5.0], 0.95).unwrap().half_width, None);
        assert!(t_interval(&[], 0.95).is_none());
        assert_eq!(i.fmt(1), "2.0 ± 2.5");
    }

    #[test]
    fn bootstrap_covers_the_mean_and_is_reproducible() {
        let xs: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let stat = |idx: &[usize]| idx.iter().map(|&i| xs[i]).sum::<f64>() / idx.len() as f64;
        let (lo, hi) = bootstrap_interval(xs.len(), 2000, 0.95, 7, stat).unwrap();
        assert!(lo < 9.5 && hi > 9.5 && hi - lo < 6.0, "{lo} {hi}");
        assert_eq!(bootstrap_interval(xs.len(), 2000, 0.95, 7, stat), Some((lo, hi)));
        assert!(bootstrap_interval(3, 100, 0.95, 1, |_| f64::NAN).is_none());
    }
}

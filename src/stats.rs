//! The one home of order statistics (medians, quantiles) used by benches, the meter and the sensor probes.
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
}

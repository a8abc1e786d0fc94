//! Losses and accuracies on the CPU. Batches are small (n*k at most a few thousand), so these run on one
//! thread; every reduction is in a fixed row order.
use crate::ops::cpu::{check_len, dim, Float};
use crate::ops::LossParams;
use anyhow::{ensure, Result};

fn dims(op: &str, p: &LossParams) -> Result<(usize, usize)> {
    Ok((dim(op, "n", p.n, 0)?, dim(op, "k", p.k, 1)?))
}

/// Labels as row indices: `Err` naming the op, row and value for one outside 0..k. `labels` may be longer
/// than n (a buffer sized for a larger batch); only the first n are read.
fn check_labels(op: &str, labels: &[i32], n: usize, k: usize) -> Result<()> {
    ensure!(labels.len() >= n, "cpu {op}: labels has {} elements, fewer than the batch n = {n}", labels.len());
    if let Some((row, &l)) = labels[..n].iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= k) {
        anyhow::bail!("cpu {op}: label {l} of row {row} is outside 0..{k}; the data's class ids must be < k")
    }
    Ok(())
}

/// Index of the first maximum of `row` (NaN never wins unless it is first).
fn argmax<T: Float>(row: &[T]) -> usize {
    let mut at = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        if v > row[at] {
            at = j;
        }
    }
    at
}

/// logits [n, k], labels i32 [n] in 0..k -> grad [n, k] = (softmax - onehot) / n, loss[0] = mean over rows of
/// logsumexp(row) - row[label] (max-shifted, so large logits do not overflow).
pub fn softmax_xent<T: Float>(
    p: &LossParams,
    logits: &[T],
    labels: &[i32],
    grad: &mut [T],
    loss: &mut [T],
) -> Result<()> {
    const OP: &str = "softmax_xent";
    let (n, k) = dims(OP, p)?;
    check_len(OP, "logits", logits.len(), n * k, "n*k")?;
    check_len(OP, "grad", grad.len(), n * k, "n*k")?;
    ensure!(!loss.is_empty(), "cpu {OP}: loss must hold at least 1 element");
    check_labels(OP, labels, n, k)?;
    let inv_n = if n == 0 { T::ZERO } else { T::ONE / T::from_usize(n) };
    let mut total = T::ZERO;
    for ((row, g), &label) in logits.chunks_exact(k).zip(grad.chunks_exact_mut(k)).zip(labels) {
        let m = row.iter().fold(T::NEG_INFINITY, |a, &v| a.max(v));
        let mut s = T::ZERO;
        for (gj, &v) in g.iter_mut().zip(row) {
            *gj = (v - m).exp();
            s += *gj;
        }
        let label = label as usize;
        total += m + s.ln() - row[label];
        let scale = inv_n / s;
        for gj in g.iter_mut() {
            *gj *= scale;
        }
        g[label] -= inv_n;
    }
    loss[0] = total * inv_n;
    Ok(())
}

/// logits [n, k], targets [n, k] (0/1) -> grad [n, k] = (sigmoid(l) - t) / (n*k), loss[0] = mean of
/// max(l, 0) - l*t + log1p(exp(-|l|)).
pub fn bce_logits<T: Float>(p: &LossParams, logits: &[T], targets: &[T], grad: &mut [T], loss: &mut [T]) -> Result<()> {
    const OP: &str = "bce_logits";
    let (n, k) = dims(OP, p)?;
    check_len(OP, "logits", logits.len(), n * k, "n*k")?;
    check_len(OP, "targets", targets.len(), n * k, "n*k")?;
    check_len(OP, "grad", grad.len(), n * k, "n*k")?;
    ensure!(!loss.is_empty(), "cpu {OP}: loss must hold at least 1 element");
    let inv = if n == 0 { T::ZERO } else { T::ONE / T::from_usize(n * k) };
    let mut total = T::ZERO;
    for ((g, &l), &t) in grad.iter_mut().zip(logits).zip(targets) {
        let e = (-l.abs()).exp(); // in (0, 1]: never overflows
        total += l.max(T::ZERO) - l * t + e.ln_1p();
        let sig = if l >= T::ZERO { T::ONE / (T::ONE + e) } else { e / (T::ONE + e) };
        *g = (sig - t) * inv;
    }
    loss[0] = total * inv;
    Ok(())
}

/// logits [n, k], labels [n] -> correct[0] += number of rows whose first argmax equals the label.
pub fn accuracy_classes<T: Float>(p: &LossParams, logits: &[T], labels: &[i32], correct: &mut [T]) -> Result<()> {
    const OP: &str = "accuracy_classes";
    let (n, k) = dims(OP, p)?;
    check_len(OP, "logits", logits.len(), n * k, "n*k")?;
    ensure!(!correct.is_empty(), "cpu {OP}: correct must hold at least 1 element");
    check_labels(OP, labels, n, k)?;
    let hits = logits.chunks_exact(k).zip(labels).filter(|(row, &l)| argmax(row) == l as usize).count();
    correct[0] += T::from_usize(hits);
    Ok(())
}

/// logits [n, k], targets [n, k] -> correct[j] += #{i : (logits[i, j] > 0) == (targets[i, j] > 0.5)}, j < k.
pub fn accuracy_binary<T: Float>(p: &LossParams, logits: &[T], targets: &[T], correct: &mut [T]) -> Result<()> {
    const OP: &str = "accuracy_binary";
    let (n, k) = dims(OP, p)?;
    check_len(OP, "logits", logits.len(), n * k, "n*k")?;
    check_len(OP, "targets", targets.len(), n * k, "n*k")?;
    ensure!(correct.len() >= k, "cpu {OP}: correct has {} elements, fewer than k = {k}", correct.len());
    let half = T::from_f32(0.5);
    for (row, trow) in logits.chunks_exact(k).zip(targets.chunks_exact(k)) {
        for ((c, &l), &t) in correct.iter_mut().zip(row).zip(trow) {
            if (l > T::ZERO) == (t > half) {
                *c += T::ONE;
            }
        }
    }
    Ok(())
}

impl crate::ops::LossOps for crate::ops::cpu::CpuBackend {
    fn softmax_xent(
        &self,
        p: &LossParams,
        logits: &[f32],
        labels: &Vec<i32>,
        grad: &mut [f32],
        loss: &mut [f32],
    ) -> Result<()> {
        self.timed("softmax_xent", || softmax_xent(p, logits, labels, grad, loss))
    }
    fn bce_logits(
        &self,
        p: &LossParams,
        logits: &[f32],
        targets: &[f32],
        grad: &mut [f32],
        loss: &mut [f32],
    ) -> Result<()> {
        self.timed("bce_logits", || bce_logits(p, logits, targets, grad, loss))
    }
    fn accuracy_classes(&self, p: &LossParams, logits: &[f32], labels: &Vec<i32>, correct: &mut [f32]) -> Result<()> {
        self.timed("accuracy_classes", || accuracy_classes(p, logits, labels, correct))
    }
    fn accuracy_binary(&self, p: &LossParams, logits: &[f32], targets: &[f32], correct: &mut [f32]) -> Result<()> {
        self.timed("accuracy_binary", || accuracy_binary(p, logits, targets, correct))
    }
}

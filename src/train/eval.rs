//! Evaluation: loss and accuracy of a model on a split (each epoch's validation, and `powertrain eval`).
use crate::data::{Dataset, Loader, Split};
use crate::model::Model;
use crate::ops::Backend;
use anyhow::{bail, Context, Result};
use std::sync::Arc;

/// Mean loss, accuracy (mean over tasks) and per-task accuracy of `model` on `split`, in batches of `batch`
/// (at most the model's).
pub fn evaluate<B: Backend>(
    model: &mut Model<'_, B>,
    split: &Arc<Split>,
    cols: &[usize],
    batch: usize,
) -> Result<(f64, f64, Vec<f64>)> {
    let batch = batch.min(model.max_batch).max(1);
    model.reset_correct()?;
    let mut loss_sum = 0.0;
    let loader = Loader::new(split.clone(), batch, false, 0, 0, cols.to_vec())?;
    for b in loader {
        let b = b?;
        model.load_batch(b.n, &b.x, &b.y_class, &b.y_bin)?;
        loss_sum += model.eval_batch(b.n)? as f64 * b.n as f64;
    }
    let n = split.n.max(1) as f64;
    let per_task: Vec<f64> = model.correct_counts()?.iter().map(|&c| c as f64 / n).collect();
    let acc = per_task.iter().sum::<f64>() / per_task.len().max(1) as f64;
    Ok((loss_sum / n, acc, per_task))
}

/// The split `powertrain eval --split` names: a dataset directory's test split by default; a single file is
/// its own (train) split.
pub fn eval_split(ds: &Dataset, split: Option<&str>, is_dir: bool) -> Result<Arc<Split>> {
    Ok(match (split, is_dir) {
        (None | Some("test"), true) => ds.test.clone().context("the dataset has no test split")?,
        (Some("val"), true) => ds.val.clone().context("the dataset has no validation split")?,
        (Some("train"), _) | (None, false) => ds.train.clone(),
        (Some(s), _) => bail!("unknown --split '{s}': use train, val or test (with a dataset directory)"),
    })
}

//! Datasets: formats, memory-mapped loaders, converters of the real PAMAP2 / CelebA files, synthetic
//! generators in the real raw formats.
//!
//! The training loop uses only this module's top-level API: `open_dataset`, `Split`, `Loader`, `Batch`.

pub mod cli;

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `y` holds.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetKind {
    /// Integer class ids in 0..k, shape [N] (softmax cross-entropy).
    Classes { k: usize },
    /// 0/1 targets, shape [N, k] (BCE); `names` are the column names when known (CelebA attributes).
    Binary { k: usize, names: Vec<String> },
}

/// One split (a `.safetensors` file with `x` and `y`), memory-mapped.
pub struct Split {
    /// The file it was read from (for error messages).
    pub path: PathBuf,
    /// Number of rows.
    pub n: usize,
    /// Shape of one row of x, e.g. [27, 1, 256] or [3, 64, 64].
    pub row_shape: Vec<usize>,
    pub target: TargetKind,
}

impl Split {
    /// Open and validate a split file (names, shapes, dtypes; NaN in f32 x is an error naming the file).
    pub fn open(path: &Path) -> Result<Split> {
        anyhow::bail!("{}: loading datasets is not implemented yet", path.display())
    }
    /// Elements of one row of x.
    pub fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }
    /// Gather rows `idx` into `x` (len idx.len() * row_len, normalised f32) and the targets:
    /// class ids into `y_class` (Classes), or the columns `cols` of y as 0/1 f32 into `y_bin`
    /// (Binary; len idx.len() * cols.len()).
    pub fn gather(&self, idx: &[usize], cols: &[usize], x: &mut [f32], y_class: &mut [i32], y_bin: &mut [f32]) -> Result<()> {
        let _ = (idx, cols, x, y_class, y_bin);
        anyhow::bail!("gather: not implemented yet")
    }
}

/// A dataset: a directory (train/val/test.safetensors + dataset.json) or a single file (train only, plus an
/// optional `--val` file).
pub struct Dataset {
    pub train: Arc<Split>,
    pub val: Option<Arc<Split>>,
    pub test: Option<Arc<Split>>,
    /// dataset.json of a directory (null for a single file).
    pub manifest: serde_json::Value,
}

/// Open `--data` (directory or file) and `--val`.
pub fn open_dataset(data: &Path, val: Option<&Path>) -> Result<Dataset> {
    let _ = val;
    anyhow::bail!("{}: loading datasets is not implemented yet", data.display())
}

/// One batch on the host, ready to upload.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Rows in this batch (the last batch of an epoch may be partial).
    pub n: usize,
    /// [n, row_len] normalised f32.
    pub x: Vec<f32>,
    /// [n] class ids (Classes targets), empty otherwise.
    pub y_class: Vec<i32>,
    /// [n, cols.len()] 0/1 (Binary targets), empty otherwise.
    pub y_bin: Vec<f32>,
}

/// Batches of one epoch of a split, prefetched on a background thread.
/// Order: file order with `shuffle = false` (batch i = rows [i*B, (i+1)*B), last partial batch kept);
/// otherwise a permutation drawn from (seed, epoch).
pub struct Loader {
    _private: (),
}

impl Loader {
    pub fn new(split: Arc<Split>, batch_size: usize, shuffle: bool, seed: u64, epoch: u64, cols: Vec<usize>) -> Result<Loader> {
        let _ = (split, batch_size, shuffle, seed, epoch, cols);
        anyhow::bail!("loader: not implemented yet")
    }
    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        0
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        None
    }
}

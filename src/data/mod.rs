//! Datasets: formats, memory-mapped loaders, converters of the real PAMAP2 / CelebA files, synthetic
//! generators in the real raw formats.
//!
//! The training loop uses only this module's top-level API: `open_dataset`, `Split`, `Loader`, `Batch`.
//!
//! Split files are `.safetensors` with two tensors, `x` [N, ...] (f32 used as is, or u8 normalised at gather
//! time to (v/255 - mean[c]) / std[c], c = index along dim 1) and `y` (integer [N] = class ids, or u8/f32
//! [N, K] 0/1 = binary targets). String metadata keys read here (all optional):
//! `protocol` (must equal `crate::PROTOCOL_VERSION` when present), `mean` / `std` (JSON arrays, one per
//! channel; u8 x without them is just v/255), `names` (JSON array: attribute or class names),
//! `num_classes` (class count when some classes are absent from a split), `synthetic` ("true" when the
//! file was converted from `powertrain data synth` output).
//!
//! Hostile input: every size in a file's header is checked against the file's real length (the
//! `safetensors` crate's validation) and against the bounds below before anything is allocated from it; a
//! FIFO, device or directory given as a file is refused at once ([`files::open_regular`]). Loaders hold an
//! advisory shared lock on the files they map, and converters only ever write new files and rename them into
//! place, so a dataset being read is never rewritten in place by powertrain. The one case left: another
//! program that ignores the lock and truncates a mapped file in place makes the reader die of SIGBUS on its
//! next access to the lost pages (see `files` and data/README.md).

pub mod celeba;
pub mod files;
pub mod pamap2;
pub mod st;
pub mod synth;

use anyhow::{Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use files::open_regular;

/// Most elements in one row of x (2^28: 1 GiB of f32 per row).
pub const MAX_ROW_LEN: usize = 1 << 28;
/// Most channels (dim 1) of a u8 x: each gets a 1 KiB normalisation table.
pub const MAX_U8_CHANNELS: usize = 65_536;
/// Most classes (y [N]) or binary targets (y [N, K]) a dataset may have.
pub const MAX_TARGETS: usize = 100_000;

/// A progress bar on stderr when it is a terminal, hidden otherwise (logs and tests stay clean).
pub(crate) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What `y` holds.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetKind {
    /// Integer class ids in 0..k, shape [N] (softmax cross-entropy).
    Classes { k: usize },
    /// 0/1 targets, shape [N, k] (BCE); `names` are the column names when known (CelebA attributes).
    Binary { k: usize, names: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum XType {
    F32,
    U8,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum YType {
    I64,
    I32,
    U8,
    F32,
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
    /// The file's string metadata (`__metadata__`), empty when it has none.
    pub metadata: HashMap<String, String>,
    mmap: memmap2::Mmap,
    /// The open file: it holds the advisory shared lock for as long as the mapping lives.
    _file: std::fs::File,
    x_off: usize,
    x_type: XType,
    y_off: usize,
    y_type: YType,
    /// u8 x only: [channels][256] lookup table of (v/255 - mean[c]) / std[c].
    lut: Vec<[f32; 256]>,
}

fn meta_f32_list(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<Option<Vec<f32>>> {
    match meta.get(key) {
        None => Ok(None),
        Some(s) => serde_json::from_str::<Vec<f32>>(s).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{}: metadata '{key}' is not a JSON list of numbers ({e}): re-create the file",
                path.display()
            )
        }),
    }
}

/// What the header of a split file says about `x` and `y`, checked against each other.
struct Header {
    metadata: HashMap<String, String>,
    n: usize,
    row_shape: Vec<usize>,
    x_type: XType,
    x_off: usize,
    y_type: YType,
    y_off: usize,
    /// y's shape: [N] or [N, K].
    y_shape: Vec<usize>,
    y_dtype: Dtype,
}

impl Header {
    /// Parse and check the header of the mapped file `bytes` (names, dtypes, shapes, protocol).
    fn read(path: &Path, bytes: &[u8]) -> Result<Header> {
        let p = path.display();
        let (hlen, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
            anyhow::anyhow!("{p}: not a valid .safetensors file (truncated or corrupt: {e:?}): re-create it")
        })?;
        let data_start = 8 + hlen;
        let metadata = meta.metadata().clone().unwrap_or_default();
        if let Some(v) = metadata.get("protocol") {
            if v.trim() != crate::PROTOCOL_VERSION.to_string() {
                anyhow::bail!(
                    "{p}: written for protocol {v}, this build uses protocol {}: convert the dataset again",
                    crate::PROTOCOL_VERSION
                );
            }
        }
        let names: Vec<String> = meta.tensors().keys().cloned().collect();
        let (xi, yi) = match (meta.info("x"), meta.info("y")) {
            (Some(x), Some(y)) => (x.clone(), y.clone()),
            _ => anyhow::bail!("{p}: expected tensors named 'x' and 'y', found {names:?}"),
        };
        if names.len() != 2 {
            anyhow::bail!("{p}: expected exactly the tensors 'x' and 'y', found {names:?}");
        }
        let x_type = match xi.dtype {
            Dtype::F32 => XType::F32,
            Dtype::U8 => XType::U8,
            d => anyhow::bail!("{p}: x has dtype {d:?}, expected F32 or U8"),
        };
        if xi.shape.len() < 2 {
            anyhow::bail!("{p}: x has shape {:?}, expected [N, ...] with at least 2 dimensions", xi.shape);
        }
        let n = xi.shape[0];
        let row_shape = xi.shape[1..].to_vec();
        // The data's size was checked against the file by `read_metadata`, but a split with no rows has no
        // data: the row shape alone must stay within bounds.
        let row_len = row_shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        if row_len == 0 {
            anyhow::bail!("{p}: x has shape {:?}: rows are empty", xi.shape);
        }
        if row_len > MAX_ROW_LEN {
            anyhow::bail!(
                "{p}: x has shape {:?}: rows of more than {MAX_ROW_LEN} values are not supported (corrupt header?): re-create the file",
                xi.shape
            );
        }
        if xi.dtype == Dtype::U8 && row_shape[0] > MAX_U8_CHANNELS {
            anyhow::bail!(
                "{p}: u8 x has {} channels (dim 1 of shape {:?}), more than the {MAX_U8_CHANNELS} supported (each \
                 gets a normalisation table): store x as F32, or put the channels in dim 1",
                row_shape[0],
                xi.shape
            );
        }
        if let Some(&k) = yi.shape.get(1) {
            if k == 0 || k > MAX_TARGETS {
                anyhow::bail!("{p}: y has shape {:?}: between 1 and {MAX_TARGETS} target columns expected", yi.shape);
            }
        }
        if yi.shape.first() != Some(&n) || yi.shape.len() > 2 {
            anyhow::bail!("{p}: y has shape {:?}, expected [{n}] (class ids) or [{n}, K] (0/1 targets)", yi.shape);
        }
        let y_type = match yi.dtype {
            Dtype::I64 => YType::I64,
            Dtype::I32 => YType::I32,
            Dtype::U8 => YType::U8,
            Dtype::F32 => YType::F32,
            d => anyhow::bail!("{p}: y has dtype {d:?}, expected I64, I32 or U8 (class ids) or U8/F32 (0/1 targets)"),
        };
        Ok(Header {
            metadata,
            n,
            row_shape,
            x_type,
            x_off: data_start + xi.data_offsets.0,
            y_type,
            y_off: data_start + yi.data_offsets.0,
            y_shape: yi.shape.clone(),
            y_dtype: yi.dtype,
        })
    }
}

impl Split {
    /// Open and validate a split file (names, shapes, dtypes; NaN in f32 x is an error naming the file).
    pub fn open(path: &Path) -> Result<Split> {
        let p = path.display();
        let file = open_regular(path, "")?;
        files::lock_shared(&file, path)?;
        let len = file.metadata().with_context(|| format!("cannot stat {p}"))?.len();
        if len < 8 {
            anyhow::bail!("{p}: truncated .safetensors file ({len} bytes): re-create it");
        }
        // SAFETY: the file is opened read-only and this crate never writes into an existing dataset file (its
        // writers make new files and rename them into place); the shared lock held while mapped keeps our own
        // writers out. A program that ignores the lock and truncates the file in place can still cause SIGBUS
        // (documented in the module doc).
        let mmap = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot memory-map {p}"))?;
        let h = Header::read(path, &mmap)?;
        let names_meta: Vec<String> = match h.metadata.get("names") {
            Some(s) => serde_json::from_str(s).map_err(|e| {
                anyhow::anyhow!("{p}: metadata 'names' is not a JSON list of strings ({e}): re-create the file")
            })?,
            None => Vec::new(),
        };
        let mut split = Split {
            path: path.to_path_buf(),
            n: h.n,
            row_shape: h.row_shape,
            target: TargetKind::Classes { k: 0 },
            metadata: h.metadata,
            mmap,
            _file: file,
            x_off: h.x_off,
            x_type: h.x_type,
            y_off: h.y_off,
            y_type: h.y_type,
            lut: Vec::new(),
        };
        split.target = if h.y_shape.len() == 1 {
            split.class_targets()?
        } else {
            split.binary_targets(h.y_shape[1], h.y_dtype, names_meta)?
        };
        match split.x_type {
            XType::F32 => split.check_finite_x()?,
            XType::U8 => split.lut = split.normalisation_lut()?,
        }
        Ok(split)
    }

    /// Class ids (y [N]): integers >= 0, fewer than the metadata's `num_classes` when it has one.
    fn class_targets(&self) -> Result<TargetKind> {
        let p = self.path.display();
        if self.y_type == YType::F32 {
            anyhow::bail!("{p}: y is F32 [N]: class ids must be integers (I64, I32 or U8)");
        }
        let mut max = -1i64;
        for i in 0..self.n {
            let v = self.y_int(i);
            if v < 0 {
                anyhow::bail!("{p}: y[{i}] = {v}: class ids must be >= 0");
            }
            max = max.max(v);
        }
        let k = match self.metadata.get("num_classes") {
            Some(s) => {
                let k: usize = s.trim().parse().map_err(|_| {
                    anyhow::anyhow!("{p}: metadata 'num_classes' = '{s}' is not a count: re-create the file")
                })?;
                if max >= k as i64 {
                    anyhow::bail!("{p}: y holds class id {max} but metadata says num_classes = {k}");
                }
                k
            }
            None => (max + 1) as usize,
        };
        if k > MAX_TARGETS {
            anyhow::bail!(
                "{p}: {k} classes (largest class id {max}): more than the {MAX_TARGETS} supported: class ids must \
                 be 0..K-1; re-create the file"
            );
        }
        Ok(TargetKind::Classes { k })
    }

    /// 0/1 targets (y [N, K], U8 or F32); `names` are kept when there is one per column.
    fn binary_targets(&self, k: usize, dtype: Dtype, names: Vec<String>) -> Result<TargetKind> {
        let p = self.path.display();
        if !matches!(self.y_type, YType::U8 | YType::F32) {
            anyhow::bail!("{p}: y is {dtype:?} [N, K]: 0/1 targets must be U8 or F32");
        }
        for i in 0..self.n * k {
            let v = self.y_bin_flat(i);
            if v != 0.0 && v != 1.0 {
                anyhow::bail!("{p}: y[{}, {}] = {v}: binary targets must be 0 or 1", i / k, i % k);
            }
        }
        let names = if names.len() == k { names } else { Vec::new() };
        Ok(TargetKind::Binary { k, names })
    }

    /// f32 x: every value finite.
    fn check_finite_x(&self) -> Result<()> {
        let row_len = self.row_len();
        let bytes = &self.mmap[self.x_off..self.x_off + self.n * row_len * 4];
        if let Some(pos) = bytes.chunks_exact(4).position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
        {
            anyhow::bail!(
                "{}: x row {} holds NaN or infinity (element {}): fix the converter or the data",
                self.path.display(),
                pos / row_len,
                pos % row_len
            );
        }
        Ok(())
    }

    /// u8 x: the [channels][256] table of (v/255 - mean[c]) / std[c] from the metadata's mean/std.
    fn normalisation_lut(&self) -> Result<Vec<[f32; 256]>> {
        let p = self.path.display();
        let c = self.row_shape[0];
        let mean = meta_f32_list(&self.path, &self.metadata, "mean")?.unwrap_or_else(|| vec![0.0; c]);
        let std = meta_f32_list(&self.path, &self.metadata, "std")?.unwrap_or_else(|| vec![1.0; c]);
        if mean.len() != c || std.len() != c {
            anyhow::bail!(
                "{p}: metadata mean/std have {}/{} values, x has {c} channels (dim 1): re-create the file",
                mean.len(),
                std.len()
            );
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            anyhow::bail!("{p}: metadata std must be positive and mean finite, found mean {mean:?} std {std:?}");
        }
        let lut: Vec<[f32; 256]> = (0..c)
            .map(|ch| {
                let mut t = [0f32; 256];
                for (v, o) in t.iter_mut().enumerate() {
                    *o = (v as f32 / 255.0 - mean[ch]) / std[ch];
                }
                t
            })
            .collect();
        // A std so small (or a mean so large) that a normalised pixel overflows f32 (found by fuzzing).
        if let Some(ch) = lut.iter().position(|t| t.iter().any(|v| !v.is_finite())) {
            anyhow::bail!(
                "{p}: metadata mean {} / std {} of channel {ch} make normalised pixels overflow to infinity: \
                 re-create the file with the real pixel statistics",
                mean[ch],
                std[ch]
            );
        }
        Ok(lut)
    }

    /// Whether the file says it was converted from synthetic raw data (`powertrain data synth`).
    pub fn synthetic(&self) -> bool {
        self.metadata.get("synthetic").is_some_and(|v| v.trim() == "true")
    }

    /// Elements of one row of x.
    pub fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }

    /// Class id of row i (integer y [N]); the caller checked the dtype.
    fn y_int(&self, i: usize) -> i64 {
        let m = &self.mmap;
        match self.y_type {
            YType::I64 => {
                let o = self.y_off + 8 * i;
                i64::from_le_bytes(m[o..o + 8].try_into().unwrap_or([0; 8]))
            }
            YType::I32 => {
                let o = self.y_off + 4 * i;
                i32::from_le_bytes(m[o..o + 4].try_into().unwrap_or([0; 4])) as i64
            }
            YType::U8 => m[self.y_off + i] as i64,
            YType::F32 => 0,
        }
    }

    /// Element i of a binary y [N, K] in row-major order.
    fn y_bin_flat(&self, i: usize) -> f32 {
        let m = &self.mmap;
        match self.y_type {
            YType::U8 => m[self.y_off + i] as f32,
            YType::F32 => {
                let o = self.y_off + 4 * i;
                f32::from_le_bytes(m[o..o + 4].try_into().unwrap_or([0; 4]))
            }
            _ => 0.0,
        }
    }

    /// Gather rows `idx` into `x` (len idx.len() * row_len, normalised f32) and the targets:
    /// class ids into `y_class` (Classes), or the columns `cols` of y as 0/1 f32 into `y_bin`
    /// (Binary; len idx.len() * cols.len()).
    pub fn gather(
        &self,
        idx: &[usize],
        cols: &[usize],
        x: &mut [f32],
        y_class: &mut [i32],
        y_bin: &mut [f32],
    ) -> Result<()> {
        let rl = self.row_len();
        let p = self.path.display();
        if x.len() != idx.len() * rl {
            anyhow::bail!(
                "gather from {p}: x buffer holds {} values, {} rows need {}",
                x.len(),
                idx.len(),
                idx.len() * rl
            );
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.n) {
            anyhow::bail!("gather from {p}: row {bad} out of range (the split has {} rows)", self.n);
        }
        match &self.target {
            TargetKind::Classes { .. } => {
                if y_class.len() != idx.len() {
                    anyhow::bail!("gather from {p}: y_class holds {} values for {} rows", y_class.len(), idx.len());
                }
                for (o, &i) in y_class.iter_mut().zip(idx) {
                    *o = self.y_int(i) as i32;
                }
            }
            TargetKind::Binary { k, .. } => {
                if let Some(&c) = cols.iter().find(|&&c| c >= *k) {
                    anyhow::bail!("gather from {p}: target column {c} out of range (y has {k} columns)");
                }
                if y_bin.len() != idx.len() * cols.len() {
                    anyhow::bail!(
                        "gather from {p}: y_bin holds {} values, expected {}",
                        y_bin.len(),
                        idx.len() * cols.len()
                    );
                }
                for (r, &i) in idx.iter().enumerate() {
                    for (j, &c) in cols.iter().enumerate() {
                        y_bin[r * cols.len() + j] = self.y_bin_flat(i * k + c);
                    }
                }
            }
        }
        match self.x_type {
            XType::F32 => {
                for (dst, &i) in x.chunks_exact_mut(rl).zip(idx) {
                    let o = self.x_off + i * rl * 4;
                    let src = &self.mmap[o..o + rl * 4];
                    match bytemuck::try_cast_slice::<u8, f32>(src) {
                        Ok(s) => dst.copy_from_slice(s),
                        Err(_) => {
                            for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            }
                        }
                    }
                }
            }
            XType::U8 => {
                let c = self.lut.len();
                let per = rl / c;
                for (dst, &i) in x.chunks_exact_mut(rl).zip(idx) {
                    let o = self.x_off + i * rl;
                    let src = &self.mmap[o..o + rl];
                    for ch in 0..c {
                        let t = &self.lut[ch];
                        for (d, &v) in dst[ch * per..(ch + 1) * per].iter_mut().zip(&src[ch * per..(ch + 1) * per]) {
                            *d = t[v as usize];
                        }
                    }
                }
            }
        }
        Ok(())
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

impl Dataset {
    /// True when the data was made by `powertrain data synth` (dataset.json's `synthetic`, or the training
    /// file's metadata): summaries and reports should say so next to any result.
    pub fn synthetic(&self) -> bool {
        self.manifest.get("synthetic").and_then(|v| v.as_bool()).unwrap_or(false) || self.train.synthetic()
    }
}

/// Open `--data` (directory or file) and `--val`. In a directory, an empty val or test split (e.g. a
/// conversion of a handful of images that all belong to the training partition) becomes `None`.
pub fn open_dataset(data: &Path, val: Option<&Path>) -> Result<Dataset> {
    let d = data.display();
    if std::fs::metadata(data).is_err() {
        anyhow::bail!("--data {d}: no such file or directory");
    }
    let val_override = match val {
        Some(v) => Some(Arc::new(Split::open(v).with_context(|| format!("--val {}", v.display()))?)),
        None => None,
    };
    if data.is_dir() {
        let mpath = data.join("dataset.json");
        let bytes = files::read_regular(&mpath, "").with_context(|| {
            format!("--data {d}: a dataset directory written by `powertrain data ...` (with dataset.json) or a .safetensors file is expected")
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text: convert the dataset again", mpath.display()))?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: invalid JSON ({e}): convert the dataset again", mpath.display()))?;
        match manifest.get("protocol").and_then(|v| v.as_u64()) {
            Some(v) if v == crate::PROTOCOL_VERSION as u64 => {}
            Some(v) => anyhow::bail!(
                "{}: dataset written for protocol {v}, this build uses protocol {}: convert the dataset again",
                mpath.display(),
                crate::PROTOCOL_VERSION
            ),
            None => anyhow::bail!("{}: no \"protocol\" version: convert the dataset again", mpath.display()),
        }
        let train = Arc::new(Split::open(&data.join("train.safetensors"))?);
        if train.n == 0 {
            anyhow::bail!("{}: the training split is empty", data.join("train.safetensors").display());
        }
        let open_opt = |name: &str| -> Result<Option<Arc<Split>>> {
            let s = Split::open(&data.join(name))?;
            check_compatible(&train, &s)?;
            Ok(if s.n == 0 { None } else { Some(Arc::new(s)) })
        };
        let val = match val_override {
            Some(v) => {
                check_compatible(&train, &v)?;
                Some(v)
            }
            None => open_opt("val.safetensors")?,
        };
        let test = open_opt("test.safetensors")?;
        Ok(Dataset { train, val, test, manifest })
    } else {
        let train = Arc::new(Split::open(data).with_context(|| format!("--data {d}"))?);
        if train.n == 0 {
            anyhow::bail!("{d}: x has no rows");
        }
        if let Some(v) = &val_override {
            check_compatible(&train, v)?;
        }
        Ok(Dataset { train, val: val_override, test: None, manifest: serde_json::Value::Null })
    }
}

/// Two splits must have the same row shape and the same kind/width of targets.
fn check_compatible(train: &Split, other: &Split) -> Result<()> {
    if train.row_shape != other.row_shape {
        anyhow::bail!(
            "{}: rows of x have shape {:?}, but {} has {:?}: use splits of the same dataset",
            other.path.display(),
            other.row_shape,
            train.path.display(),
            train.row_shape
        );
    }
    let same = match (&train.target, &other.target) {
        (TargetKind::Classes { .. }, TargetKind::Classes { .. }) => true,
        (TargetKind::Binary { k: a, .. }, TargetKind::Binary { k: b, .. }) => a == b,
        _ => false,
    };
    if !same {
        anyhow::bail!(
            "{}: targets {:?} do not match {} ({:?}): use splits of the same dataset",
            other.path.display(),
            other.target,
            train.path.display(),
            train.target
        );
    }
    Ok(())
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

/// The row order of one epoch: file order, or a permutation drawn from (seed, epoch).
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        use rand::seq::SliceRandom;
        // Distinct, well-mixed stream per (seed, epoch).
        let s = seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut crate::util::rng(s));
    }
    order
}

/// Batches of one epoch of a split, prefetched on a background thread.
/// Order: file order with `shuffle = false` (batch i = rows [i*B, (i+1)*B), last partial batch kept);
/// otherwise a permutation drawn from (seed, epoch).
/// `cols` selects the target columns of a Binary split; empty means all of them. Ignored for Classes.
pub struct Loader {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    num_batches: usize,
}

/// Batches the worker may run ahead of the consumer (besides the one being built).
const PREFETCH: usize = 2;

impl Loader {
    pub fn new(
        split: Arc<Split>,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
        epoch: u64,
        cols: Vec<usize>,
    ) -> Result<Loader> {
        if batch_size == 0 {
            anyhow::bail!("--batch-size must be at least 1");
        }
        let cols = match &split.target {
            TargetKind::Classes { .. } => Vec::new(),
            TargetKind::Binary { k, .. } => {
                if let Some(&c) = cols.iter().find(|&&c| c >= *k) {
                    anyhow::bail!("{}: target column {c} out of range (y has {k} columns)", split.path.display());
                }
                if cols.is_empty() {
                    (0..*k).collect()
                } else {
                    cols
                }
            }
        };
        let n = split.n;
        let num_batches = n.div_ceil(batch_size);
        let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH);
        let worker = std::thread::Builder::new()
            .name("powertrain-loader".into())
            .spawn(move || loader_worker(split, batch_size, shuffle, seed, epoch, cols, tx))
            .context("cannot start the data loader thread")?;
        Ok(Loader { rx: Some(rx), worker: Some(worker), num_batches })
    }
    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
}

fn loader_worker(
    split: Arc<Split>,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
    cols: Vec<usize>,
    tx: SyncSender<Result<Batch>>,
) {
    let order = epoch_order(split.n, shuffle, seed, epoch);
    let rl = split.row_len();
    let binary = matches!(split.target, TargetKind::Binary { .. });
    for idx in order.chunks(batch_size) {
        let m = idx.len();
        let mut b = Batch {
            n: m,
            x: vec![0.0; m * rl],
            y_class: if binary { Vec::new() } else { vec![0; m] },
            y_bin: if binary { vec![0.0; m * cols.len()] } else { Vec::new() },
        };
        let r = split.gather(idx, &cols, &mut b.x, &mut b.y_class, &mut b.y_bin).map(|_| b);
        let failed = r.is_err();
        // A send error means the Loader was dropped: stop quietly.
        if tx.send(r).is_err() || failed {
            return;
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        let r = self.rx.as_ref()?.recv().ok();
        if r.is_none() {
            self.rx = None;
        }
        r
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver makes the worker's next send fail, so it exits; then join it.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::st::{f32_bytes, i64_bytes, write_file, TensorDecl};
    use super::*;
    use std::collections::BTreeMap;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// x f32 [n, 2, 3] with x[i] = i*10 + j, y i64 [n] = i % 3.
    fn write_f32_classes(path: &Path, n: usize) {
        let x: Vec<f32> = (0..n * 6).map(|v| (v / 6 * 10 + v % 6) as f32).collect();
        let y: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        write_file(
            path,
            &[
                (TensorDecl::new("x", "F32", &[n, 2, 3]), f32_bytes(&x)),
                (TensorDecl::new("y", "I64", &[n]), i64_bytes(&y)),
            ],
            &BTreeMap::new(),
        )
        .unwrap();
    }

    #[test]
    fn f32_classes_open_and_gather() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        write_f32_classes(&p, 5);
        let s = Split::open(&p).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(s.row_shape, vec![2, 3]);
        assert_eq!(s.target, TargetKind::Classes { k: 3 });
        let mut x = vec![0.0; 12];
        let mut y = vec![0; 2];
        s.gather(&[4, 1], &[], &mut x, &mut y, &mut []).unwrap();
        assert_eq!(&x[..6], &[40.0, 41.0, 42.0, 43.0, 44.0, 45.0]);
        assert_eq!(&x[6..], &[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]);
        assert_eq!(y, vec![1, 1]);
        let err = s.gather(&[5], &[], &mut x[..6], &mut y[..1], &mut []).unwrap_err().to_string();
        assert!(err.contains("row 5 out of range"), "{err}");
    }

    #[test]
    fn u8_binary_normalised_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.safetensors");
        // x u8 [2, 2, 1, 2]: channel 0 = [0, 255], channel 1 = [51, 102]; y u8 [2, 3].
        let x: Vec<u8> = vec![0, 255, 51, 102, 255, 0, 102, 51];
        let y: Vec<u8> = vec![1, 0, 1, 0, 0, 1];
        let m =
            meta(&[("mean", "[0.5, 0.2]"), ("std", "[0.5, 0.1]"), ("names", "[\"A\",\"B\",\"C\"]"), ("protocol", "1")]);
        write_file(
            &p,
            &[(TensorDecl::new("x", "U8", &[2, 2, 1, 2]), &x), (TensorDecl::new("y", "U8", &[2, 3]), &y)],
            &m,
        )
        .unwrap();
        let s = Split::open(&p).unwrap();
        assert_eq!(s.target, TargetKind::Binary { k: 3, names: vec!["A".into(), "B".into(), "C".into()] });
        let mut xb = vec![0.0; 4];
        let mut yb = vec![0.0; 2];
        s.gather(&[0], &[2, 1], &mut xb, &mut [], &mut yb).unwrap();
        let want = [-1.0, 1.0, 0.0, 2.0]; // (0-0.5)/0.5, (1-0.5)/0.5, (0.2-0.2)/0.1, (0.4-0.2)/0.1
        for (a, b) in xb.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{xb:?}");
        }
        assert_eq!(yb, vec![1.0, 0.0]);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, tensors: &[(TensorDecl, &[u8])], m: &[(&str, &str)], want: &str| {
            let p = dir.path().join(name);
            write_file(&p, tensors, &meta(m)).unwrap();
            let e = format!("{:#}", Split::open(&p).err().expect(name));
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        };
        let x4 = [0f32; 4];
        let xb = f32_bytes(&x4);
        let y2 = [0i64, 1];
        let yb = i64_bytes(&y2);
        check(
            "names.safetensors",
            &[(TensorDecl::new("inputs", "F32", &[2, 2]), xb), (TensorDecl::new("y", "I64", &[2]), yb)],
            &[],
            "'x' and 'y'",
        );
        check(
            "yshape.safetensors",
            &[(TensorDecl::new("x", "F32", &[2, 2]), xb), (TensorDecl::new("y", "I64", &[1, 2]), yb)],
            &[],
            "shape",
        );
        check(
            "dtype.safetensors",
            &[
                (TensorDecl::new("x", "F32", &[2, 2]), xb),
                (TensorDecl::new("y", "F32", &[2]), f32_bytes(&[0.0f32, 1.0])),
            ],
            &[],
            "integers",
        );
        let nan = [0.0f32, f32::NAN, 0.0, 0.0];
        check(
            "nan.safetensors",
            &[(TensorDecl::new("x", "F32", &[2, 2]), f32_bytes(&nan)), (TensorDecl::new("y", "I64", &[2]), yb)],
            &[],
            "NaN",
        );
        check(
            "neg.safetensors",
            &[(TensorDecl::new("x", "F32", &[2, 2]), xb), (TensorDecl::new("y", "I64", &[2]), i64_bytes(&[0, -3]))],
            &[],
            "y[1] = -3",
        );
        check(
            "bin.safetensors",
            &[(TensorDecl::new("x", "F32", &[2, 2]), xb), (TensorDecl::new("y", "U8", &[2, 2]), &[0, 1, 2, 0])],
            &[],
            "0 or 1",
        );
        check(
            "proto.safetensors",
            &[(TensorDecl::new("x", "F32", &[2, 2]), xb), (TensorDecl::new("y", "I64", &[2]), yb)],
            &[("protocol", "0")],
            "protocol",
        );
        check(
            "ncls.safetensors",
            &[(TensorDecl::new("x", "F32", &[2, 2]), xb), (TensorDecl::new("y", "I64", &[2]), yb)],
            &[("num_classes", "1")],
            "num_classes",
        );
        // Truncated: cut the last 3 bytes of a valid file.
        let p = dir.path().join("trunc.safetensors");
        write_f32_classes(&p, 4);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = format!("{:#}", Split::open(&p).err().unwrap());
        assert!(e.contains("trunc.safetensors") && e.contains("truncated"), "{e}");
        std::fs::write(&p, b"abc").unwrap();
        assert!(Split::open(&p).is_err());
    }

    /// A file with header `json` whose data part is `data_len` bytes of holes (sparse: no disk space used).
    fn write_sparse(path: &Path, json: &str, data_len: u64) {
        let mut h = json.as_bytes().to_vec();
        h.resize(h.len().div_ceil(8) * 8, b' ');
        let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
        bytes.extend(&h);
        std::fs::write(path, &bytes).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(bytes.len() as u64 + data_len).unwrap();
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, json: &str, data_len: u64, want: &str| {
            let p = dir.path().join(name);
            write_sparse(&p, json, data_len);
            let e = format!("{:#}", Split::open(&p).err().expect(name));
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        };
        // u8 x [1, 2^26, 1]: a 64 MiB sparse file whose 2^26 "channels" would need a 64 GiB table.
        let m = 1u64 << 26;
        check(
            "channels.safetensors",
            &format!(
                r#"{{"x":{{"dtype":"U8","shape":[1,{m},1],"data_offsets":[0,{m}]}},"y":{{"dtype":"U8","shape":[1],"data_offsets":[{m},{}]}}}}"#,
                m + 1
            ),
            m + 1,
            "channels",
        );
        // No rows, so no data to check the shape against: rows of 2^40 values.
        check(
            "rows.safetensors",
            r#"{"x":{"dtype":"F32","shape":[0,1048576,1048576],"data_offsets":[0,0]},"y":{"dtype":"I64","shape":[0],"data_offsets":[0,0]}}"#,
            0,
            "rows of more than",
        );
        check(
            "cols.safetensors",
            r#"{"x":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"y":{"dtype":"U8","shape":[0,1099511627776],"data_offsets":[0,0]}}"#,
            0,
            "target columns",
        );
        check(
            "nocols.safetensors",
            r#"{"x":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},"y":{"dtype":"U8","shape":[1,0],"data_offsets":[16,16]}}"#,
            16,
            "target columns",
        );
        // A class id of 2^40 would make a model with 2^40 outputs.
        let p = dir.path().join("classes.safetensors");
        write_file(
            &p,
            &[
                (TensorDecl::new("x", "F32", &[1, 2]), f32_bytes(&[0.0, 1.0])),
                (TensorDecl::new("y", "I64", &[1]), i64_bytes(&[1 << 40])),
            ],
            &BTreeMap::new(),
        )
        .unwrap();
        let e = format!("{:#}", Split::open(&p).err().unwrap());
        assert!(e.contains("classes.safetensors") && e.contains("classes"), "{e}");
        // A std so small that normalised pixels overflow (found by fuzzing: it used to load as infinities).
        let p = dir.path().join("tinystd.safetensors");
        write_file(
            &p,
            &[(TensorDecl::new("x", "U8", &[1, 1, 2]), &[0, 255]), (TensorDecl::new("y", "U8", &[1]), &[0])],
            &meta(&[("mean", "[0]"), ("std", "[1e-40]")]),
        )
        .unwrap();
        let e = format!("{:#}", Split::open(&p).err().unwrap());
        assert!(e.contains("tinystd.safetensors") && e.contains("overflow"), "{e}");
        // The header's sizes against the file's real length (a missing byte).
        write_sparse(
            &dir.path().join("short.safetensors"),
            r#"{"x":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},"y":{"dtype":"U8","shape":[1],"data_offsets":[16,17]}}"#,
            16,
        );
        let e = format!("{:#}", Split::open(&dir.path().join("short.safetensors")).err().unwrap());
        assert!(e.contains("short.safetensors") && e.contains("truncated or corrupt"), "{e}");
    }

    #[test]
    fn synthetic_flag_from_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.safetensors");
        let tensors = [
            (TensorDecl::new("x", "F32", &[1, 2]), f32_bytes(&[0.0, 1.0])),
            (TensorDecl::new("y", "I64", &[1]), i64_bytes(&[0])),
        ];
        write_file(&p, &tensors, &meta(&[("synthetic", "true")])).unwrap();
        let ds = open_dataset(&p, None).unwrap();
        assert!(ds.synthetic() && ds.train.synthetic());
        write_file(&p, &tensors, &meta(&[("synthetic", "false")])).unwrap();
        assert!(!open_dataset(&p, None).unwrap().synthetic());
    }

    #[test]
    fn loader_file_order_and_partial_last_batch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        write_f32_classes(&p, 7);
        let s = Arc::new(Split::open(&p).unwrap());
        let l = Loader::new(s.clone(), 3, false, 0, 0, vec![]).unwrap();
        assert_eq!(l.num_batches(), 3);
        let bs: Vec<Batch> = l.map(|b| b.unwrap()).collect();
        assert_eq!(bs.iter().map(|b| b.n).collect::<Vec<_>>(), vec![3, 3, 1]);
        assert_eq!(bs[1].x[0], 30.0); // row 3
        assert_eq!(bs[2].x[0], 60.0); // row 6
        assert_eq!(bs[2].y_class, vec![0]);
        assert!(bs[0].y_bin.is_empty());
    }

    #[test]
    fn loader_shuffle_is_a_permutation_fixed_by_seed_and_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        write_f32_classes(&p, 50);
        let s = Arc::new(Split::open(&p).unwrap());
        let rows = |seed, epoch| -> Vec<usize> {
            Loader::new(s.clone(), 8, true, seed, epoch, vec![])
                .unwrap()
                .flat_map(|b| b.unwrap().x.chunks(6).map(|r| r[0] as usize / 10).collect::<Vec<_>>())
                .collect()
        };
        let a = rows(1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        assert_eq!(a, rows(1, 0));
        assert_ne!(a, rows(1, 1));
        assert_ne!(a, rows(2, 0));
        // Dropping a loader mid-epoch stops its worker (no hang).
        let mut l = Loader::new(s.clone(), 1, true, 0, 0, vec![]).unwrap();
        assert!(l.next().is_some());
        drop(l);
    }

    #[test]
    fn open_dataset_directory_and_single_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("ds");
        std::fs::create_dir(&d).unwrap();
        for (name, n) in [("train", 6), ("val", 2), ("test", 0)] {
            write_f32_classes(&d.join(format!("{name}.safetensors")), n);
        }
        std::fs::write(d.join("dataset.json"), format!("{{\"protocol\": {}}}", crate::PROTOCOL_VERSION)).unwrap();
        let ds = open_dataset(&d, None).unwrap();
        assert_eq!(ds.train.n, 6);
        assert_eq!(ds.val.as_ref().map(|v| v.n), Some(2));
        assert!(ds.test.is_none());
        std::fs::write(d.join("dataset.json"), "{\"protocol\": 999}").unwrap();
        let e = format!("{:#}", open_dataset(&d, None).err().unwrap());
        assert!(e.contains("dataset.json") && e.contains("protocol 999"), "{e}");
        let single = open_dataset(&d.join("train.safetensors"), Some(&d.join("val.safetensors"))).unwrap();
        assert_eq!(single.val.map(|v| v.n), Some(2));
        assert!(single.manifest.is_null());
        assert!(open_dataset(&dir.path().join("missing"), None).is_err());
    }
}

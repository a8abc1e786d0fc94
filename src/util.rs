//! Small shared helpers: atomic writes, JSON files, a seeded RNG.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically: a temporary file in the same directory, then a rename. A failure
/// leaves nothing at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!("cannot write in {}: check that the directory exists and is writable", dir.display())
    })?;
    tmp.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Pretty JSON, written atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// A directory built under a temporary name beside `final_path` and renamed into place by `commit`.
/// Dropped without `commit`, it removes itself: a failed job leaves nothing that looks like a result.
pub struct StagingDir {
    tmp: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// Refuses when `final_path` exists and is not empty (unless `replace`).
    pub fn new(final_path: &Path, replace: bool) -> Result<Self> {
        if final_path.exists() {
            let empty =
                final_path.is_dir() && std::fs::read_dir(final_path).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !empty && !replace {
                anyhow::bail!("{} already exists: choose another --out or remove it", final_path.display());
            }
        }
        let parent = final_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}: check the path and its permissions", parent.display()))?;
        let name = final_path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        let tmp = parent.join(format!(".{}.partial-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)
            .with_context(|| format!("cannot create {}: check that {} is writable", tmp.display(), parent.display()))?;
        Ok(StagingDir { tmp, final_path: final_path.to_path_buf(), committed: false })
    }
    pub fn path(&self) -> &Path {
        &self.tmp
    }
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }
    /// Rename into place (replacing an empty or `replace`d directory).
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.final_path.exists() {
            std::fs::remove_dir_all(&self.final_path)
                .with_context(|| format!("cannot replace {}", self.final_path.display()))?;
        }
        std::fs::rename(&self.tmp, &self.final_path)
            .with_context(|| format!("cannot move {} to {}", self.tmp.display(), self.final_path.display()))?;
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The seeded RNG used everywhere (ChaCha8: same seed, same stream, on every platform).
pub fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// `v` with `prec` decimals for a table cell, "-" when unknown.
pub fn fmt_fixed(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}

/// `v` in scientific notation with `prec` decimals for a table cell, "-" when unknown.
pub fn fmt_sci(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$e}")).unwrap_or_else(|| "-".into())
}

/// Median of a slice (sorted copy); NaN for an empty slice.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

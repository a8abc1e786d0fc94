//! Small shared helpers: atomic writes, JSON files, a seeded RNG.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically: a new temporary file beside it (created with the ordinary, umask-respecting
/// mode, like any file the user writes), flushed to disk, then renamed over `path`. A failure leaves `path` as it
/// was and removes the temporary file. The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::anyhow!(
            "cannot write {}: {e} (check that {} exists and is writable)",
            path.display(),
            dir.display()
        ));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

/// This machine's host name (for run records): the kernel's, else $HOSTNAME, else "unknown".
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
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

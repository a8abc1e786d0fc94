//! Small shared helpers: atomic writes, JSON files, a seeded RNG.

use anyhow::{Context, Result};
use std::fs::File;
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

/// What kind of file `ft` is, in words, when it is not a regular file.
fn special_kind(ft: &std::fs::FileType) -> Option<&'static str> {
    if ft.is_file() {
        return None;
    }
    if ft.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if ft.is_socket() {
            return Some("a socket");
        }
        if ft.is_block_device() {
            return Some("a block device");
        }
        if ft.is_char_device() {
            return Some("a character device");
        }
    }
    Some("not a regular file")
}

/// `what path` for messages (`what` may be empty).
fn named(path: &Path, what: &str) -> String {
    if what.is_empty() {
        path.display().to_string()
    } else {
        format!("{what} {}", path.display())
    }
}

/// Open `path` for reading if it is a regular file (symlinks followed). A FIFO, socket, device or directory
/// is refused at once with an error naming `what path` (e.g. `what` = "--data"), never blocking: the open is
/// non-blocking and the opened file is checked again. A missing or unreadable file is an error naming it.
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    let name = named(path, what);
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {name}: check the path"))?;
    if let Some(kind) = special_kind(&meta.file_type()) {
        anyhow::bail!("{name} is {kind}, not a regular file: give the path of a regular file");
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A regular file ignores O_NONBLOCK; a FIFO put in its place after the check does not block the open.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).with_context(|| format!("cannot open {name}: check its permissions"))?;
    let meta = file.metadata().with_context(|| format!("cannot stat {name}"))?;
    if let Some(kind) = special_kind(&meta.file_type()) {
        anyhow::bail!("{name} is {kind}, not a regular file: give the path of a regular file");
    }
    Ok(file)
}

/// The whole content of the regular file `path` (see [`open_regular`]).
pub fn read_regular(path: &Path, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = open_regular(path, what)?;
    let mut buf = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
    f.read_to_end(&mut buf).with_context(|| format!("cannot read {}", named(path, what)))?;
    Ok(buf)
}

/// Read a whole text file that must be a regular file (see [`open_regular`]). Errors name the file.
pub fn read_text_file(path: &Path) -> Result<String> {
    let bytes = read_regular(path, "")?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        anyhow::anyhow!("cannot read {}: not UTF-8 text at line {line}", path.display())
    })
}

/// `path` must exist and be a regular file (symbolic links followed); the error names it.
pub fn check_regular_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {}: check the path", path.display()))?;
    if let Some(kind) = special_kind(&meta.file_type()) {
        anyhow::bail!("{} is {kind}, not a regular file: give the path of a regular file", path.display());
    }
    Ok(())
}

/// Open (creating it when missing, never truncating it) a lock file: the one way every advisory lock in
/// powertrain opens its file.
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

/// The holder a lock file names ("pid N on HOST").
fn holder_text() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

/// An advisory lock (`flock`, through std's `File::lock`) on a directory that may not exist yet: the lock file
/// `.NAME.lock` beside it, so that a run directory (which appears only when it is renamed into place) and a
/// study directory are locked by the same file. An exclusive holder is the only writer; shared holders (the
/// array tasks of one Slurm sweep) exclude exclusive ones but not each other. A second writer gets "in use by
/// pid N on HOST" naming the directory, before any work. The lock file is removed by the last holder (the
/// inode is checked after locking, so a holder of a removed lock file retries on the new one). When the
/// parent is not writable but the directory exists, the lock file is `DIR/.powertrain.lock` instead.
///
/// On NFS, `flock` is carried by the server's byte-range locks (Linux clients since 2.6.12).
pub struct DirLock {
    file: std::fs::File,
    path: PathBuf,
}

impl DirLock {
    /// The only writer of `dir`.
    pub fn exclusive(dir: &Path) -> Result<DirLock> {
        Self::acquire(dir, true)
    }

    /// One of several cooperating writers of `dir` (array tasks of one sweep); excludes exclusive writers.
    pub fn shared(dir: &Path) -> Result<DirLock> {
        Self::acquire(dir, false)
    }

    /// The lock file for `dir`: `PARENT/.NAME.lock` (the parent is created when missing).
    fn lock_path(dir: &Path) -> Result<PathBuf> {
        let (parent, name) = match dir.file_name() {
            Some(n) => (
                dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
                n.to_string_lossy().to_string(),
            ),
            None => {
                let c = std::fs::canonicalize(dir).with_context(|| format!("{}: cannot resolve", dir.display()))?;
                let n = c.file_name().map(|n| n.to_string_lossy().to_string()).with_context(|| {
                    format!("{}: give a directory with a name (not the root directory)", dir.display())
                })?;
                (c.parent().unwrap_or(Path::new("/")).to_path_buf(), n)
            }
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}: check the path and its permissions", parent.display()))?;
        let sidecar = parent.join(format!(".{name}.lock"));
        match open_lock_file(&sidecar) {
            Ok(_) => Ok(sidecar),
            Err(_) if dir.is_dir() => Ok(dir.join(".powertrain.lock")),
            Err(e) => Err(anyhow::anyhow!(
                "cannot create {} ({e}): check that {} is writable",
                sidecar.display(),
                parent.display()
            )),
        }
    }

    fn acquire(dir: &Path, exclusive: bool) -> Result<DirLock> {
        use std::fs::TryLockError;
        use std::os::unix::fs::MetadataExt;
        let path = Self::lock_path(dir)?;
        // A few rounds: a holder may remove the lock file between our open and our lock.
        for _ in 0..20 {
            let file =
                open_lock_file(&path).with_context(|| format!("cannot create the lock file {}", path.display()))?;
            let locked = if exclusive { file.try_lock() } else { file.try_lock_shared() };
            match locked {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    anyhow::bail!(
                        "{} is in use by {} (another powertrain command is writing it; lock file {}): wait for it \
                         to finish, or choose another --out",
                        dir.display(),
                        if holder.is_empty() { "another process" } else { holder },
                        path.display()
                    );
                }
                Err(TryLockError::Error(e)) => {
                    anyhow::bail!("cannot lock {} ({e}): the file system must support file locks", path.display())
                }
            }
            let ours = file.metadata().map(|m| (m.dev(), m.ino()));
            let named = std::fs::metadata(&path).map(|m| (m.dev(), m.ino()));
            if let (Ok(a), Ok(b)) = (ours, named) {
                if a == b {
                    use std::io::Seek;
                    let mut f = &file;
                    let _ = f.set_len(0).and_then(|_| f.seek(std::io::SeekFrom::Start(0)).map(|_| ()));
                    let _ = f.write_all(format!("{}\n", holder_text()).as_bytes());
                    return Ok(DirLock { file, path });
                }
            }
        }
        anyhow::bail!("cannot lock {}: its lock file keeps changing; try again", path.display())
    }
}

impl Drop for DirLock {
    /// The last holder removes the lock file (a shared holder only when it can take the lock exclusively).
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.file.try_lock().is_ok() {
            let ours = self.file.metadata().map(|m| (m.dev(), m.ino()));
            let named = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
            if matches!((ours, named), (Ok(a), Ok(b)) if a == b) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        let _ = self.file.unlock();
    }
}

/// A directory built under a temporary name beside `final_path` and renamed into place by `commit`.
/// Dropped without `commit`, it removes itself (it made it): a failed job leaves nothing that looks like a
/// result. `final_path` is locked ([`DirLock::exclusive`]) from `new` until the staging directory is dropped,
/// and nothing already there is ever removed: `commit` renames onto a missing or empty directory only.
pub struct StagingDir {
    tmp: PathBuf,
    final_path: PathBuf,
    committed: bool,
    _lock: DirLock,
}

impl StagingDir {
    /// Locks `final_path`, then refuses when it exists and is not an empty directory. (`replace` is kept for
    /// callers of the earlier interface; nothing is replaced either way.)
    pub fn new(final_path: &Path, replace: bool) -> Result<Self> {
        let _ = replace;
        let lock = DirLock::exclusive(final_path)?;
        if final_path.exists() || final_path.is_symlink() {
            let empty =
                final_path.is_dir() && std::fs::read_dir(final_path).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !empty {
                anyhow::bail!("{} already exists: choose another --out or remove it", final_path.display());
            }
        }
        let parent = final_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = final_path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        // A name nobody else uses: an existing one (a killed writer's) is left alone.
        let mut n = 0u32;
        let tmp = loop {
            let tmp = parent.join(format!(".{}.partial-{}-{n}", name, std::process::id()));
            match std::fs::create_dir(&tmp) {
                Ok(()) => break tmp,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot create {} ({e}): check that {} is writable",
                        tmp.display(),
                        parent.display()
                    ))
                }
            }
        };
        Ok(StagingDir { tmp, final_path: final_path.to_path_buf(), committed: false, _lock: lock })
    }
    pub fn path(&self) -> &Path {
        &self.tmp
    }
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }
    /// Rename into place, onto a missing or empty directory. When something else appeared under the final
    /// name meanwhile, nothing is removed: the error says where the finished directory was kept.
    pub fn commit(mut self) -> Result<PathBuf> {
        if let Err(e) = std::fs::rename(&self.tmp, &self.final_path) {
            self.committed = true; // keep what was written
            anyhow::bail!(
                "cannot move {} to {} ({e}); nothing was removed: the finished directory is kept at {}",
                self.tmp.display(),
                self.final_path.display(),
                self.tmp.display()
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_locks_exclude_writers_and_leave_no_lock_file() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("study");
        let lock_file = d.path().join(".study.lock");
        let a = DirLock::exclusive(&dir).unwrap();
        let e = format!("{:#}", DirLock::exclusive(&dir).err().unwrap());
        assert!(e.contains("study is in use by pid") && e.contains(&std::process::id().to_string()), "{e}");
        assert!(DirLock::shared(&dir).is_err());
        drop(a);
        assert!(!lock_file.exists(), "the last holder removes the lock file");
        // Array tasks share; a whole study is refused while they run.
        let s1 = DirLock::shared(&dir).unwrap();
        let s2 = DirLock::shared(&dir).unwrap();
        assert!(DirLock::exclusive(&dir).is_err());
        drop(s1);
        assert!(lock_file.exists(), "a shared holder is still there");
        assert!(DirLock::exclusive(&dir).is_err());
        drop(s2);
        assert!(!lock_file.exists());
        let _again = DirLock::exclusive(&dir).unwrap();
    }

    #[test]
    fn a_staging_dir_never_removes_what_it_did_not_make() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("run");
        let s = StagingDir::new(&out, false).unwrap();
        std::fs::write(s.path().join("summary.json"), "{}").unwrap();
        // Someone else's files appear under the final name meanwhile: they stay, and so does the finished run.
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("theirs.txt"), "keep").unwrap();
        let staged = s.path().to_path_buf();
        let e = format!("{:#}", s.commit().unwrap_err());
        assert!(e.contains("nothing was removed") && e.contains(&staged.display().to_string()), "{e}");
        assert_eq!(std::fs::read_to_string(out.join("theirs.txt")).unwrap(), "keep");
        assert!(staged.join("summary.json").is_file());
        // An empty folder under the final name is taken (renamed onto), and the lock file is gone.
        let out2 = d.path().join("empty");
        std::fs::create_dir(&out2).unwrap();
        let s = StagingDir::new(&out2, false).unwrap();
        std::fs::write(s.path().join("a"), "1").unwrap();
        assert_eq!(s.commit().unwrap(), out2);
        assert!(out2.join("a").is_file() && !d.path().join(".empty.lock").exists());
    }

    #[test]
    fn special_files_are_refused_before_they_are_opened() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = format!("{:#}", read_text_file(&fifo).unwrap_err());
        assert!(e.contains("fifo is a FIFO (named pipe), not a regular file"), "{e}");
        let e = format!("{:#}", read_text_file(d.path()).unwrap_err());
        assert!(e.contains("is a directory"), "{e}");
    }
}

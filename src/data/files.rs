//! Opening, locking and replacing the data module's files, so that hostile or careless paths fail at once
//! with a message naming the file, and a dataset being read is never rewritten underneath its reader.
//!
//! * [`open_regular`] opens a file for reading only when it is a regular file: a FIFO, socket, device or
//!   directory is refused before anything blocks on it (the open itself is non-blocking, so a FIFO swapped in
//!   between the check and the open cannot hang either). Every file the data module reads goes through it;
//!   other modules can use it the same way for their inputs (`--init`, `--val`, a run directory's files).
//! * Loaders hold an advisory shared lock ([`lock_shared`]) on every file they memory-map, for as long as the
//!   mapping lives; writers of `.safetensors` files hold an exclusive one while they write
//!   ([`super::st::StWriter`]).
//! * Converters never write into an existing file: they build the dataset in a fresh staging directory beside
//!   `--out` ([`Staging`]) and rename it into place (new inodes), refusing an `--out` that is not empty, and
//!   never removing a directory they did not create.
//!
//! What remains: a program that ignores advisory locks and truncates a mapped dataset file *in place* (e.g.
//! `truncate -s 0 train.safetensors` or `cat x > train.safetensors`) while it is being read makes the reader's
//! next access to the vanished pages raise SIGBUS, which kills the process. No mmap-based reader can prevent
//! that; replace dataset files with `powertrain data ...` (or `mv`), never by writing into them.

use anyhow::{Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::util::{open_regular, read_regular};

/// Take an advisory shared lock on `file` (released when it is closed). A file that another process holds
/// an exclusive lock on (a writer) is refused rather than waited for.
pub fn lock_shared(file: &File, path: &Path) -> Result<()> {
    match file.try_lock_shared() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{}: another process is writing this file (it holds an exclusive lock): wait until it has finished",
            path.display()
        ),
        // Locks unsupported (some network file systems): read without one, as before.
        Err(std::fs::TryLockError::Error(_)) => Ok(()),
    }
}

/// Refuse `out` when it exists and is not an empty directory (`flag` names the option, e.g. "--out").
pub fn refuse_non_empty(out: &Path, flag: &str, advice: &str) -> Result<()> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("{flag} {}: cannot inspect it ({e})", out.display()),
    };
    if !meta.is_dir() {
        anyhow::bail!("{flag} {} already exists and is not a directory: {advice}", out.display());
    }
    let mut entries = std::fs::read_dir(out).with_context(|| format!("{flag} {}: cannot list it", out.display()))?;
    if entries.next().is_some() {
        anyhow::bail!("{flag} {} already exists and is not empty: {advice}", out.display());
    }
    Ok(())
}

/// A dataset directory built under a fresh hidden name beside its final path and renamed into place by
/// [`Staging::commit`]. Dropped without a commit, it removes itself (and only itself).
pub struct Staging {
    tmp: Option<tempfile::TempDir>,
    final_path: PathBuf,
}

impl Staging {
    /// Refuses an `out` that exists and is not an empty directory, before anything is written.
    pub fn new(out: &Path) -> Result<Staging> {
        refuse_non_empty(out, "--out", "choose another --out or remove it")?;
        let parent = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}: check the path and its permissions", parent.display()))?;
        let name = out.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a staging directory in {}: is it writable?", parent.display()))?;
        Ok(Staging { tmp: Some(tmp), final_path: out.to_path_buf() })
    }

    /// Where to write the files.
    pub fn path(&self) -> &Path {
        self.tmp.as_ref().map(|t| t.path()).unwrap_or(&self.final_path)
    }

    /// Rename the staging directory to the final path. An empty directory there is replaced (atomically);
    /// anything else, e.g. a dataset another process finished meanwhile, is kept and this one is dropped.
    pub fn commit(mut self) -> Result<PathBuf> {
        let Some(tmp) = self.tmp.take() else { return Ok(self.final_path.clone()) };
        let staged = tmp.keep();
        if let Err(e) = std::fs::rename(&staged, &self.final_path) {
            let _ = std::fs::remove_dir_all(&staged);
            anyhow::bail!(
                "cannot move the converted dataset to {} ({e}): something else was written there meanwhile; \
                 it was left untouched and this conversion discarded: choose another --out",
                self.final_path.display()
            );
        }
        Ok(self.final_path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", open_regular(dir.path(), "--data").unwrap_err());
        assert!(e.contains("--data") && e.contains("a directory"), "{e}");
        let e = format!("{:#}", open_regular(&dir.path().join("missing"), "--init").unwrap_err());
        assert!(e.contains("--init") && e.contains("missing") && e.contains("check the path"), "{e}");
        #[cfg(unix)]
        {
            let fifo = dir.path().join("pipe");
            let st = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(st.success());
            let e = format!("{:#}", open_regular(&fifo, "").unwrap_err());
            assert!(e.contains("pipe") && e.contains("FIFO"), "{e}");
            let e = format!("{:#}", open_regular(Path::new("/dev/null"), "--val").unwrap_err());
            assert!(e.contains("/dev/null") && e.contains("character device"), "{e}");
        }
        let f = dir.path().join("a.txt");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(read_regular(&f, "").unwrap(), b"abc");
    }

    #[test]
    fn staging_refuses_non_empty_and_never_removes_what_it_did_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ds");
        std::fs::create_dir(&out).unwrap();
        // An empty directory is replaced.
        let s = Staging::new(&out).unwrap();
        std::fs::write(s.path().join("f"), b"1").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"1");
        // A non-empty one is refused up front.
        let e = format!("{:#}", Staging::new(&out).err().unwrap());
        assert!(e.contains("--out") && e.contains("already exists") && e.contains("not empty"), "{e}");
        // Two writers: the second to finish leaves the first's result alone.
        let other = dir.path().join("ds2");
        let a = Staging::new(&other).unwrap();
        let b = Staging::new(&other).unwrap();
        std::fs::write(a.path().join("who"), b"a").unwrap();
        std::fs::write(b.path().join("who"), b"b").unwrap();
        a.commit().unwrap();
        let e = format!("{:#}", b.commit().unwrap_err());
        assert!(e.contains("ds2") && e.contains("left untouched"), "{e}");
        assert_eq!(std::fs::read(other.join("who")).unwrap(), b"a");
        // Nothing staged is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        // A file in the way is refused too.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(Staging::new(&dir.path().join("file")).is_err());
    }

    #[test]
    fn shared_lock_is_refused_while_a_writer_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        w.lock().unwrap();
        let r = open_regular(&p, "").unwrap();
        let e = format!("{:#}", lock_shared(&r, &p).unwrap_err());
        assert!(e.contains("another process is writing"), "{e}");
        drop(w);
        lock_shared(&r, &p).unwrap();
    }
}

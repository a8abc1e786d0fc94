//! A streaming `.safetensors` writer: the header is written first (with room reserved for metadata that is
//! only known at the end, such as the training split's pixel statistics), then each tensor's bytes in order.
//! The layout is exactly what the `safetensors` crate reads: u64 LE header length, JSON header padded with
//! spaces to a multiple of 8, then the data of the tensors in header order.
//!
//! A file is never written in place: the bytes go to a new hidden file beside the target (held under an
//! exclusive advisory lock while it is written), which `finish` renames over the target. A reader that has
//! the old file mapped keeps the old inode; a failed write leaves the target as it was.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One tensor's declaration: name, safetensors dtype string ("F32", "U8", "I64", ...), shape.
#[derive(Clone, Debug)]
pub struct TensorDecl {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
}

impl TensorDecl {
    pub fn new(name: &str, dtype: &'static str, shape: &[usize]) -> TensorDecl {
        TensorDecl { name: name.to_string(), dtype, shape: shape.to_vec() }
    }
    fn elem_bytes(&self) -> usize {
        match self.dtype {
            "U8" | "I8" | "BOOL" => 1,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "F32" | "I32" | "U32" => 4,
            _ => 8,
        }
    }
    pub fn nbytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.elem_bytes()
    }
}

fn header_json(decls: &[TensorDecl], metadata: &BTreeMap<String, String>) -> String {
    let mut h = serde_json::Map::new();
    if !metadata.is_empty() {
        h.insert("__metadata__".into(), serde_json::to_value(metadata).unwrap_or_default());
    }
    let mut off = 0usize;
    for d in decls {
        let n = d.nbytes();
        h.insert(
            d.name.clone(),
            serde_json::json!({ "dtype": d.dtype, "shape": d.shape, "data_offsets": [off, off + n] }),
        );
        off += n;
    }
    serde_json::Value::Object(h).to_string()
}

/// Writes one file: `begin` (header with `reserve` spare bytes), `write` the tensors' bytes in declaration
/// order, then `finish` with the final metadata (which must fit in the reserved room). Dropped unfinished, it
/// removes its temporary file.
pub struct StWriter {
    path: PathBuf,
    /// The temporary file being written (renamed to `path` by `finish`).
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    decls: Vec<TensorDecl>,
    header_len: usize,
    expected: usize,
    written: usize,
}

impl StWriter {
    pub fn begin(
        path: &Path,
        decls: Vec<TensorDecl>,
        metadata: &BTreeMap<String, String>,
        reserve: usize,
    ) -> Result<StWriter> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let h = header_json(&decls, metadata);
        let header_len = (h.len() + reserve).div_ceil(8) * 8;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}: is {} writable?", path.display(), dir.display()))?;
        // Uncontended (a new file); it tells a reader that finds the file before `finish` that it is not done.
        let _ = file.try_lock();
        let expected = decls.iter().map(|d| d.nbytes()).sum();
        let mut w = StWriter {
            path: path.to_path_buf(),
            tmp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            decls,
            header_len,
            expected,
            written: 0,
        };
        // Placeholder header (rewritten by finish) so the data lands at its final offset.
        let mut buf = vec![b' '; 8 + header_len];
        buf[..8].copy_from_slice(&(header_len as u64).to_le_bytes());
        buf[8..8 + h.len()].copy_from_slice(h.as_bytes());
        w.out()?.write_all(&buf).with_context(|| format!("writing {}", w.path.display()))?;
        Ok(w)
    }

    fn out(&mut self) -> Result<&mut BufWriter<File>> {
        let p = &self.path;
        self.file.as_mut().ok_or_else(|| anyhow::anyhow!("{}: internal error: writer already finished", p.display()))
    }

    /// Append raw little-endian tensor bytes (tensors back to back, in declaration order).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len();
        if self.written > self.expected {
            anyhow::bail!("{}: internal error: more tensor bytes than declared", self.path.display());
        }
        let p = self.path.display().to_string();
        self.out()?.write_all(bytes).with_context(|| format!("writing {p}"))
    }

    pub fn finish(mut self, metadata: &BTreeMap<String, String>) -> Result<()> {
        if self.written != self.expected {
            anyhow::bail!(
                "{}: internal error: wrote {} tensor bytes, declared {}",
                self.path.display(),
                self.written,
                self.expected
            );
        }
        let h = header_json(&self.decls, metadata);
        if h.len() > self.header_len {
            anyhow::bail!("{}: internal error: metadata larger than the reserved header", self.path.display());
        }
        let mut buf = vec![b' '; self.header_len];
        buf[..h.len()].copy_from_slice(h.as_bytes());
        let p = self.path.display().to_string();
        let file = self.file.take().ok_or_else(|| anyhow::anyhow!("{p}: internal error: writer already finished"))?;
        let mut f = file.into_inner().map_err(|e| anyhow::anyhow!("writing {p}: {}", e.error()))?;
        f.seek(SeekFrom::Start(8)).and_then(|_| f.write_all(&buf)).with_context(|| format!("writing {p}"))?;
        f.sync_all().ok();
        drop(f);
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("cannot move the new {p} into place"))?;
        Ok(())
    }
}

impl Drop for StWriter {
    fn drop(&mut self) {
        // Unfinished (an error on the way) or a failed rename: the temporary file goes.
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write a whole file from in-memory tensors: (declaration, little-endian bytes).
pub fn write_file(path: &Path, tensors: &[(TensorDecl, &[u8])], metadata: &BTreeMap<String, String>) -> Result<()> {
    let decls: Vec<TensorDecl> = tensors.iter().map(|(d, _)| d.clone()).collect();
    let mut w = StWriter::begin(path, decls, metadata, 0)?;
    for (_, b) in tensors {
        w.write(b)?;
    }
    w.finish(metadata)
}

/// f32 slice as little-endian bytes (the only byte order this crate targets).
pub fn f32_bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// i64 slice as little-endian bytes.
pub fn i64_bytes(v: &[i64]) -> &[u8] {
    bytemuck::cast_slice(v)
}

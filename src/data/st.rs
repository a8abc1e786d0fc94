//! A streaming `.safetensors` writer: the header is written first (with room reserved for metadata that is
//! only known at the end, such as the training split's pixel statistics), then each tensor's bytes in order.
//! The layout is exactly what the `safetensors` crate reads: u64 LE header length, JSON header padded with
//! spaces to a multiple of 8, then the data of the tensors in header order.

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
/// order, then `finish` with the final metadata (which must fit in the reserved room).
pub struct StWriter {
    path: PathBuf,
    file: BufWriter<File>,
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
        let h = header_json(&decls, metadata);
        let header_len = (h.len() + reserve).div_ceil(8) * 8;
        let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        // Placeholder header (rewritten by finish) so the data lands at its final offset.
        let mut buf = vec![b' '; 8 + header_len];
        buf[..8].copy_from_slice(&(header_len as u64).to_le_bytes());
        buf[8..8 + h.len()].copy_from_slice(h.as_bytes());
        file.write_all(&buf).with_context(|| format!("writing {}", path.display()))?;
        let expected = decls.iter().map(|d| d.nbytes()).sum();
        Ok(StWriter { path: path.to_path_buf(), file, decls, header_len, expected, written: 0 })
    }

    /// Append raw little-endian tensor bytes (tensors back to back, in declaration order).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len();
        if self.written > self.expected {
            anyhow::bail!("{}: internal error: more tensor bytes than declared", self.path.display());
        }
        self.file.write_all(bytes).with_context(|| format!("writing {}", self.path.display()))
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
        self.file.flush().with_context(|| format!("writing {}", self.path.display()))?;
        let mut f = self.file.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", self.path.display(), e))?;
        f.seek(SeekFrom::Start(8))
            .and_then(|_| f.write_all(&buf))
            .with_context(|| format!("writing {}", self.path.display()))?;
        f.sync_all().ok();
        Ok(())
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

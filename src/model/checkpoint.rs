//! Checkpoints as safetensors with PyTorch's state_dict names and shapes (f32), so they load in PyTorch
//! unchanged (`model.load_state_dict(safetensors.torch.load_file(path))`) and back.

use super::Layout;
use anyhow::{bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Read `path` into a flat parameter vector in `layout` order. Every tensor of the layout must be present
/// with its exact shape and dtype F32; extra tensors are an error too (a different model).
pub fn load(path: &Path, layout: &Layout) -> Result<Vec<f32>> {
    // A FIFO or device given as --init is refused at once (never a hang); see data::files.
    let bytes = crate::data::files::read_regular(path, "--init")?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e}); is it truncated?", path.display()))?;
    let mut out = vec![0f32; layout.total];
    for p in &layout.params {
        let t = st.tensor(&p.name).map_err(|_| {
            anyhow::anyhow!(
                "{}: tensor '{}' is missing (a {} checkpoint needs {})",
                path.display(),
                p.name,
                layout.arch.name(),
                names(layout)
            )
        })?;
        if t.dtype() != Dtype::F32 {
            bail!("{}: tensor '{}' has dtype {:?}, expected F32", path.display(), p.name, t.dtype());
        }
        if t.shape() != p.shape.as_slice() {
            bail!(
                "{}: tensor '{}' has shape {:?}, the {} model needs {:?}",
                path.display(),
                p.name,
                t.shape(),
                layout.arch.name(),
                p.shape
            );
        }
        let dst = &mut out[p.offset..p.offset + p.len()];
        for (d, c) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
            *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        if dst.iter().any(|v| !v.is_finite()) {
            bail!("{}: tensor '{}' contains NaN or infinite values", path.display(), p.name);
        }
    }
    let extra: Vec<String> =
        st.names().into_iter().filter(|n| layout.params.iter().all(|p| p.name != **n)).map(|n| n.to_string()).collect();
    if !extra.is_empty() {
        bail!(
            "{}: unexpected tensors {:?} for the {} model (expected {})",
            path.display(),
            extra,
            layout.arch.name(),
            names(layout)
        );
    }
    Ok(out)
}

fn names(layout: &Layout) -> String {
    layout.params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Write the flat parameters as a safetensors file (atomically). `metadata` goes into the header.
pub fn save(path: &Path, layout: &Layout, flat: &[f32], metadata: Option<HashMap<String, String>>) -> Result<()> {
    anyhow::ensure!(flat.len() == layout.total, "checkpoint: {} values for a model of {}", flat.len(), layout.total);
    let bytes: Vec<Vec<u8>> =
        layout.params.iter().map(|p| bytemuck::cast_slice(&flat[p.offset..p.offset + p.len()]).to_vec()).collect();
    let views: Vec<(String, TensorView)> = layout
        .params
        .iter()
        .zip(&bytes)
        .map(|(p, b)| Ok((p.name.clone(), TensorView::new(Dtype::F32, p.shape.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let data = safetensors::serialize(views, metadata).context("serialising the checkpoint")?;
    crate::util::write_atomic(path, &data).with_context(|| format!("cannot write --save {}", path.display()))
}

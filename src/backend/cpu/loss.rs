//! Losses and accuracies on the CPU.
use crate::backend::LossParams;
use anyhow::Result;

pub fn softmax_xent(
    _p: &LossParams,
    _logits: &[f32],
    _labels: &[i32],
    _grad: &mut [f32],
    _loss: &mut [f32],
) -> Result<()> {
    anyhow::bail!("cpu softmax_xent: not implemented yet")
}
pub fn bce_logits(
    _p: &LossParams,
    _logits: &[f32],
    _targets: &[f32],
    _grad: &mut [f32],
    _loss: &mut [f32],
) -> Result<()> {
    anyhow::bail!("cpu bce_logits: not implemented yet")
}
pub fn accuracy_classes(_p: &LossParams, _logits: &[f32], _labels: &[i32], _correct: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu accuracy_classes: not implemented yet")
}
pub fn accuracy_binary(_p: &LossParams, _logits: &[f32], _targets: &[f32], _correct: &mut [f32]) -> Result<()> {
    anyhow::bail!("cpu accuracy_binary: not implemented yet")
}

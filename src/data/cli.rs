//! `powertrain data ...` commands.
use crate::cli::{ConvertCelebaArgs, ConvertPamap2Args, SynthArgs};
use anyhow::Result;

pub fn synth(_a: &SynthArgs) -> Result<()> {
    anyhow::bail!("data synth: not implemented yet")
}
pub fn convert_pamap2(_a: &ConvertPamap2Args) -> Result<()> {
    anyhow::bail!("data pamap2: not implemented yet")
}
pub fn convert_celeba(_a: &ConvertCelebaArgs) -> Result<()> {
    anyhow::bail!("data celeba: not implemented yet")
}

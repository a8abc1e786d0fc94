//! Datasets: formats, memory-mapped loaders, converters of the real PAMAP2 / CelebA files, synthetic
//! generators in the real raw formats.
pub mod cli;

//! `powertrain data ...` commands.
use crate::cli::{ConvertCelebaArgs, ConvertPamap2Args, SynthArgs};
use anyhow::Result;

/// `powertrain data synth pamap2|celeba --out RAW_DIR [--seed N] [--scale small|medium]`.
pub fn synth(a: &SynthArgs) -> Result<()> {
    let scale = crate::data::synth::Scale::parse(&a.scale)?;
    let t0 = std::time::Instant::now();
    match a.dataset.as_str() {
        "pamap2" => {
            crate::data::synth::synth_pamap2(&a.out, a.seed, scale, a.force)?;
            eprintln!(
                "wrote {} in {:.1} s; convert with: powertrain data pamap2 --src {} --out DATASET_DIR",
                a.out.join("PAMAP2_Dataset/Protocol").display(),
                t0.elapsed().as_secs_f64(),
                a.out.join("PAMAP2_Dataset").display()
            );
        }
        "celeba" => {
            crate::data::synth::synth_celeba(&a.out, a.seed, scale, a.force)?;
            eprintln!(
                "wrote {} (images, list_attr_celeba.txt, list_eval_partition.txt) in {:.1} s; convert with: powertrain data celeba --src {} --out DATASET_DIR",
                a.out.display(),
                t0.elapsed().as_secs_f64(),
                a.out.display()
            );
        }
        o => anyhow::bail!("data synth {o}: unknown dataset, use pamap2 or celeba"),
    }
    Ok(())
}

/// `powertrain data pamap2 --src PAMAP2_DIR --out DATASET_DIR`.
pub fn convert_pamap2(a: &ConvertPamap2Args) -> Result<()> {
    let s = crate::data::pamap2::convert(&a.src, &a.out)?;
    eprintln!(
        "wrote {}: train {} / val {} / test {} windows from {} rows in {:.1} s ({:.0} rows/s)",
        s.out.display(),
        s.counts[0],
        s.counts[1],
        s.counts[2],
        s.rows,
        s.seconds,
        s.rows as f64 / s.seconds.max(1e-9)
    );
    Ok(())
}

/// `powertrain data celeba --src CELEBA_DIR --out DATASET_DIR [--size 64]`.
pub fn convert_celeba(a: &ConvertCelebaArgs) -> Result<()> {
    let s = crate::data::celeba::convert(&a.src, &a.out, a.size)?;
    let n: usize = s.counts.iter().sum();
    if s.missing_rows > 0 {
        eprintln!(
            "note: list_attr_celeba.txt announces {} more images than it lists; converted the {n} listed",
            s.missing_rows
        );
    }
    eprintln!(
        "wrote {}: train {} / val {} / test {} images in {:.1} s ({:.0} images/s)",
        s.out.display(),
        s.counts[0],
        s.counts[1],
        s.counts[2],
        s.seconds,
        n as f64 / s.seconds.max(1e-9)
    );
    Ok(())
}

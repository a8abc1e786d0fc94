//! The progress bar on a terminal (hidden otherwise) and the prediction lines printed above it.
use super::TrainConfig;
use crate::energy::predict::Prediction;
use std::io::IsTerminal;

pub struct Progress(indicatif::ProgressBar);

impl Progress {
    /// A bar over the run's steps (the epoch limit or --max-steps, whichever comes first).
    pub fn new(cfg: &TrainConfig, train_rows: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(indicatif::ProgressBar::hidden());
        }
        let steps_per_epoch = train_rows.div_ceil(cfg.batch_size) as u64;
        let total = cfg.max_steps.map(|m| m as u64).unwrap_or(u64::MAX).min(steps_per_epoch * cfg.epochs as u64);
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress(pb)
    }

    pub fn step(&self, epoch: usize, loss: f32) {
        self.0.inc(1);
        self.0.set_message(format!("epoch {epoch} loss {loss:.4}"));
    }

    pub fn prediction(&self, epoch: usize, p: &Prediction) {
        let e = p
            .energy_j
            .map(|e| format!("{e:.1} J [{:.1}, {:.1}]", p.energy_lo_j.unwrap_or(e), p.energy_hi_j.unwrap_or(e)))
            .unwrap_or_else(|| "n/a".into());
        self.0.println(format!(
            "prediction after epoch {epoch}: {} epochs [{}, {}], energy {e}, time {:.1} s [{:.1}, {:.1}]",
            p.predicted_epochs, p.epochs_lo, p.epochs_hi, p.wall_s, p.wall_lo_s, p.wall_hi_s
        ));
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

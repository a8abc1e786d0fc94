//! The paper this study reproduces, and its numbers, so every report can put ours beside them.
//!
//! Geißler, Zhou, Liu, Suh, Lukowicz: "The Power of Training: How Different Neural Network Setups Influence the
//! Energy Demand", AAAI-24 Sustainable AI workshop, arXiv:2401.01851 (2024). The paper's exact architectures and
//! grids are not public in a form we could read; our protocol (protocol.md) is our own, so the comparison is of
//! findings, not of joules.

/// The citation every report prints.
pub const CITATION: &str = "Geißler, Zhou, Liu, Suh, Lukowicz (2024), \"The Power of Training: How Different Neural \
Network Setups Influence the Energy Demand\", AAAI-24 Sustainable AI workshop, arXiv:2401.01851";

/// Why our numbers may differ from the paper's, whatever the study.
pub const DIFFERENCES: &str = "Our models are small protocol-fixed CNNs (protocol.md), not the paper's; the data may \
be synthetic (generated in the real raw formats, see data/README.md) and is smaller; the hardware, the energy \
source and the grids differ. Agreement in direction and order of magnitude is what can be checked, not the joules.";

/// One finding of the paper with its number as stated there.
pub struct Finding {
    pub what: &'static str,
    pub paper: &'static str,
}

/// Hyperparameters: worst vs best setting reaching the same accuracy.
pub const SWEEP: Finding = Finding {
    what: "energy to the target accuracy, worst vs best batch size x learning rate",
    paper: "up to 5x the energy of the best setting (about 80 % saving)",
};

/// Pretraining reuse break-even.
pub const PRETRAIN: Finding = Finding {
    what: "reuses of a pretrained encoder until pretraining pays off in energy",
    paper: "about 10-13 reuses on average; a frozen encoder saves more per reuse",
};

/// Multi-task vs single-task.
pub const MULTITASK: Finding = Finding {
    what: "one multi-task network vs separate single-task networks, energy until the targets are reached",
    paper: "multi-task needs less energy than the sum of the single-task models (fewer epochs)",
};

/// A markdown section "The paper side by side" with one row: the paper's number, ours, and what to keep in mind.
pub fn section(f: &Finding, ours: &str, notes: &[String]) -> String {
    let mut s = String::from("\n## The paper side by side\n\n");
    s += &super::md_table(&["finding", "paper", "ours"], &[vec![f.what.into(), f.paper.into(), ours.into()]]);
    s += "\n";
    for n in notes {
        s += &format!("- {n}\n");
    }
    s += &format!("- {DIFFERENCES}\n\nPaper: {CITATION}.\n");
    s
}

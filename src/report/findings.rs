//! The report's first screen: each study's finding (ours beside the paper's, with the interval or bound the
//! study computed), read from what the study wrote (its table's "The paper side by side" row, else its
//! "**Finding: ...**" line), and the carbon of the runs.
use super::load::{Inputs, Run};
use crate::study::StudyFiles;

/// One study's finding as its table states it.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyFinding {
    /// The study kind (sweep, pretrain, multitask) or the table's file stem.
    pub kind: String,
    /// What is compared (the paper's wording).
    pub what: String,
    /// Ours, with the interval or bound as `study::finding` formatted it.
    pub ours: String,
    /// The paper's number, when the table has the side-by-side row.
    pub paper: Option<String>,
}

impl StudyFinding {
    /// One markdown line: "**sweep** — what: ours X; the paper: Y."
    pub fn line(&self) -> String {
        let mut s = format!("**{}**: {}: ours {}", self.kind, self.what, self.ours.trim_end_matches('.'));
        if let Some(p) = &self.paper {
            s += &format!("; the paper: {p}");
        }
        s + "."
    }
}

/// The findings of one study table (markdown as the study wrote it): the row of its "The paper side by side"
/// table, else its bold "Finding:" line. None when the table has neither.
pub fn from_table(kind: &str, table: &str) -> Option<StudyFinding> {
    let lines: Vec<&str> = table.lines().collect();
    if let Some(i) = lines.iter().position(|l| l.trim() == "## The paper side by side") {
        // Header, separator, then the row: | what | paper | ours |
        let row = lines[i + 1..].iter().filter(|l| l.trim_start().starts_with('|')).nth(2);
        if let Some(row) = row {
            let cells: Vec<&str> = row.trim().trim_matches('|').split(" | ").map(str::trim).collect();
            if cells.len() == 3 {
                return Some(StudyFinding {
                    kind: kind.into(),
                    what: cells[0].into(),
                    paper: Some(cells[1].into()),
                    ours: cells[2].into(),
                });
            }
        }
    }
    let l = lines.iter().find(|l| l.trim_start().starts_with("**Finding:"))?;
    let text = l.trim().trim_start_matches("**Finding:").split("**").next()?.trim().trim_end_matches('.');
    Some(StudyFinding { kind: kind.into(), what: "finding".into(), ours: text.into(), paper: None })
}

/// Every study's findings, in the order of the studies and their tables.
pub fn of_studies(studies: &[StudyFiles]) -> Vec<StudyFinding> {
    let mut out = Vec::new();
    for s in studies {
        let kind = s.manifest.as_ref().map(|m| m.kind.clone()).unwrap_or_else(|| "study".into());
        out.extend(s.tables.iter().filter_map(|t| from_table(&kind, t)));
    }
    out
}

/// A run's carbon block as a reader should see it: "12.3 g CO2e (300 gCO2e/kWh, PUE 1.2; from energy: estimate
/// (no sensor))". None without a carbon block.
pub fn carbon_text(r: &Run) -> Option<String> {
    let c = r.summary.carbon.as_object()?;
    let num = |k: &str| c.get(k).and_then(|v| v.as_f64());
    let source = c.get("energy_source").and_then(|v| v.as_str()).unwrap_or(&r.summary.energy_source);
    let co2 =
        num("co2e_g").map(|g| format!("{} g CO2e", super::svg::fmt(g))).unwrap_or_else(|| "no CO2e (no energy)".into());
    Some(format!(
        "{co2} ({} gCO2e/kWh, PUE {}; from energy: {})",
        num("carbon_intensity_g_per_kwh").map(super::svg::fmt).unwrap_or_else(|| "?".into()),
        num("pue").map(super::svg::fmt).unwrap_or_else(|| "?".into()),
        super::source_label(source)
    ))
}

/// The runs' carbon together: the sum when every run carries a carbon block with a CO2e figure, else what is
/// missing. None when no run carries one.
pub fn carbon_total(inp: &Inputs) -> Option<String> {
    let with: Vec<&Run> = inp.runs.iter().filter(|r| r.summary.carbon.is_object()).collect();
    if with.is_empty() {
        return None;
    }
    let g: Vec<f64> = with.iter().filter_map(|r| r.summary.carbon["co2e_g"].as_f64()).collect();
    let mut sources: Vec<String> = with.iter().map(|r| super::source_label(&r.summary.energy_source)).collect();
    sources.sort();
    sources.dedup();
    let n = inp.runs.len();
    if g.len() == n {
        Some(format!(
            "{} g CO2e over all {n} run(s) (the sum of each run's co2e_g; energy: {})",
            super::svg::fmt(g.iter().sum()),
            sources.join(" + ")
        ))
    } else {
        Some(format!(
            "not summed: only {} of {n} run(s) carry a CO2e figure (train with --carbon-intensity and --pue on \
             every run); those {} sum to {} g CO2e (energy: {})",
            g.len(),
            g.len(),
            super::svg::fmt(g.iter().sum()),
            sources.join(" + ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_row_is_the_finding() {
        let t = "# Sweep\n\n**Finding: worst / best energy to target 2x.**\n\n## The paper side by side\n\n\
                 | finding | paper | ours |\n| --- | --- | --- |\n| energy, worst vs best | up to 5x | 2.5x (95 % CI 2.1-3.0) |\n\n- note\n";
        let f = from_table("sweep", t).unwrap();
        assert_eq!(f.what, "energy, worst vs best");
        assert_eq!(f.paper.as_deref(), Some("up to 5x"));
        assert_eq!(f.ours, "2.5x (95 % CI 2.1-3.0)");
        assert_eq!(f.line(), "**sweep**: energy, worst vs best: ours 2.5x (95 % CI 2.1-3.0); the paper: up to 5x.");
    }

    #[test]
    fn without_the_paper_row_the_bold_finding_line() {
        let f = from_table("multitask", "# M\n\n**Finding: ≥ 1.2x (a lower bound)**\n\nmore").unwrap();
        assert_eq!(f.ours, "≥ 1.2x (a lower bound)");
        assert_eq!(f.paper, None);
        assert!(from_table("x", "# nothing here\n").is_none());
    }
}

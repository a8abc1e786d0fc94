//! The house rules of ARCHITECTURE.md, checked on the source text so that they cannot rot:
//! - only `src/cmd/` (and `main.rs`, `cli.rs` itself) sees the command line (`crate::cli`);
//! - `src/ops/` (the kernels and backends) imports none of model, train, study, report, energy, bench, cmd, cli:
//!   data flows one way, and the ops know nothing of what uses them;
//! - `src/energy/` (the meter) knows nothing of training, studies, reports or commands;
//! - no function in `src/` is longer than 100 lines.
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every top-level module of the crate a file refers to: `crate::x`, `powertrain::x`, and the first-level
/// names of `use crate::{x, y::z}` groups.
fn crate_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    for prefix in ["crate::", "powertrain::"] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.push(name);
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn violations(under: &str, forbidden: &[&str]) -> Vec<String> {
    let root = src();
    let files: Vec<PathBuf> = if under.is_empty() { rust_files(&root) } else { rust_files(&root.join(under)) };
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for r in crate_refs(&text) {
            if forbidden.contains(&r.as_str()) {
                bad.push(format!("src/{rel} uses crate::{r}"));
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn only_the_commands_see_the_command_line() {
    let bad: Vec<String> = violations("", &["cli"])
        .into_iter()
        .filter(|v| !v.starts_with("src/cmd/") && !v.starts_with("src/main.rs") && !v.starts_with("src/cli.rs"))
        .collect();
    assert!(bad.is_empty(), "the command line leaks below src/cmd:\n{}", bad.join("\n"));
}

#[test]
fn ops_know_nothing_of_what_uses_them() {
    let bad = violations("ops", &["model", "train", "study", "report", "energy", "bench", "cmd", "cli", "rundir"]);
    assert!(bad.is_empty(), "src/ops imports a layer above it:\n{}", bad.join("\n"));
}

#[test]
fn the_meter_knows_nothing_of_training_studies_reports_or_commands() {
    let bad = violations("energy", &["train", "study", "report", "cmd", "cli", "model"]);
    assert!(bad.is_empty(), "src/energy imports a layer above it:\n{}", bad.join("\n"));
}

#[test]
fn the_scanner_sees_each_kind_of_reference() {
    let refs = crate_refs("use crate::{cli::X, ops::Backend};\nfn f() { crate::train::go(); }\n// crate::study\n");
    assert_eq!(refs, ["cli", "ops", "train"]);
}

/// (file, fn line, length) of every function longer than `max` lines (rustfmt puts a function's closing brace
/// alone on a line at the function's indentation).
fn long_functions(max: usize) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for f in rust_files(&src()) {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            let is_fn =
                ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn ", "const fn ", "pub const fn ", "unsafe fn "]
                    .iter()
                    .any(|p| t.starts_with(p));
            if !is_fn || t.ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            if let Some(len) = lines[i + 1..].iter().position(|x| *x == close) {
                if len + 2 > max {
                    out.push((f.strip_prefix(src()).unwrap().display().to_string(), i + 1, len + 2));
                }
            }
        }
    }
    out
}

#[test]
fn no_function_in_src_is_over_100_lines() {
    let long = long_functions(100);
    let list: Vec<String> = long.iter().map(|(f, l, n)| format!("src/{f}:{l}: {n} lines")).collect();
    assert!(long.is_empty(), "functions over 100 lines:\n{}", list.join("\n"));
    assert!(!long_functions(20).is_empty(), "the scanner finds functions at all");
}

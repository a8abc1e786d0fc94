//! Whole-model parity with PyTorch: 4 optimiser steps of each reference CNN from a given init on given
//! tensors (fixtures written by scripts/make_fixtures.py, see tests/fixtures/README.md), run through the real
//! command line exactly as a user would, then the saved weights and the per-step losses compared with
//! PyTorch's. Tolerances (issue 2): weights rel. L2 error < 1e-3, losses within 1e-4.

use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read_f32(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("tensor {name} missing"));
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Run `powertrain train` with the fixture command and compare with PyTorch's result.
fn parity(model: &str, opt_args: &[&str], final_name: &str, weight_tol: f64) {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("O.safetensors");
    let run = dir.path().join("RUN");
    let data = fixture(&format!("{model}_data.safetensors"));
    let init = fixture(&format!("{model}_init.safetensors"));
    let mut args: Vec<String> = ["train", "--model", model, "--data"].iter().map(|s| s.to_string()).collect();
    args.push(data.display().to_string());
    args.extend(["--init".to_string(), init.display().to_string()]);
    args.extend(opt_args.iter().map(|s| s.to_string()));
    args.extend(
        ["--batch-size", "16", "--epochs", "1", "--no-shuffle", "--device", "cpu", "--energy", "none"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.extend(["--save".to_string(), save.display().to_string(), "--out".to_string(), run.display().to_string()]);
    let out = Command::new(env!("CARGO_BIN_EXE_powertrain")).args(&args).output().unwrap();
    assert!(out.status.success(), "powertrain {:?} failed: {}", args, String::from_utf8_lossy(&out.stderr));

    let expected_bytes = std::fs::read(fixture(final_name)).unwrap();
    let expected = SafeTensors::deserialize(&expected_bytes).unwrap();
    let got_bytes = std::fs::read(&save).unwrap();
    let got = SafeTensors::deserialize(&got_bytes).unwrap();
    let mut names: Vec<String> = expected.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    assert_eq!(names.len(), 10, "a reference CNN has 10 parameter tensors");
    for name in &names {
        let (e, g) = (read_f32(&expected, name), read_f32(&got, name));
        assert_eq!(e.len(), g.len(), "{name}: length");
        let err = rel_l2(&g, &e);
        eprintln!("{model} {name}: rel. L2 error {err:.3e}");
        assert!(err < weight_tol, "{model} {name}: weights after 4 steps differ from PyTorch, rel. L2 error {err:.3e}");
    }

    // Per-step losses from steps.jsonl vs PyTorch's.
    let (_, meta) = SafeTensors::read_metadata(&expected_bytes).unwrap();
    let losses: Vec<f64> = serde_json::from_str(
        meta.metadata().as_ref().and_then(|m| m.get("losses")).expect("losses in fixture metadata"),
    )
    .unwrap();
    let steps = std::fs::read_to_string(run.join("steps.jsonl")).unwrap();
    let got_losses: Vec<f64> = steps
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(got_losses.len(), 4, "4 steps of batch 16 over 64 rows");
    assert_eq!(losses.len(), 4);
    for (i, (g, e)) in got_losses.iter().zip(&losses).enumerate() {
        assert!((g - e).abs() < 1e-4, "{model} step {}: loss {g} vs PyTorch {e}", i + 1);
    }
    // The run directory is complete.
    for f in ["config.json", "steps.jsonl", "epochs.csv", "summary.json"] {
        assert!(run.join(f).is_file(), "{f} missing from the run directory");
    }
}

#[test]
fn pamap2_sgd_momentum_matches_pytorch() {
    parity(
        "pamap2",
        &["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"],
        "pamap2_sgd_final.safetensors",
        1e-3,
    );
}

/// Adam divides by sqrt(v): gradient entries that are zero up to rounding get updates of +-lr whose sign is
/// noise, so after 4 steps even PyTorch's own float32 run differs from its float64 run by up to 1.1e-2 (fc1.bias;
/// 6.3e-3 fc1.weight, 1.8e-3 conv2.weight: scripts/make_grad_fixtures.py prints these). The weights are therefore
/// held to 1e-2 here, while the losses (1e-4) and the step-1 gradients (`*_gradients_match_pytorch`, 1e-4) are
/// held tightly.
#[test]
fn celeba_adam_matches_pytorch() {
    parity("celeba", &["--optimizer", "adam", "--lr", "0.001"], "celeba_adam_final.safetensors", 1e-2);
}

/// First-step gradients of every parameter vs PyTorch's float64 reference (from the same float32 inputs):
/// rel. L2 error < max(1e-4, 2 x PyTorch's own float32 error), per tensor. Max-pooling after ReLU routes
/// gradients by an argmax that rounding can flip, so for the celeba fixture even PyTorch float32 is 3e-3..5e-3
/// off the exact conv gradients (stored in the fixture's metadata); a real bug is off by O(1).
fn gradients(model: &str) {
    use powertrain::model::{checkpoint, Arch, Layout, Model, Optimizer};
    use powertrain::ops::cpu::CpuBackend;
    let arch = if model == "pamap2" { Arch::Pamap2 } else { Arch::Celeba { k: 3 } };
    let layout = Layout::new(arch);
    let init = checkpoint::load(&fixture(&format!("{model}_init.safetensors")), &layout).unwrap();
    let data_bytes = std::fs::read(fixture(&format!("{model}_data.safetensors"))).unwrap();
    let data = SafeTensors::deserialize(&data_bytes).unwrap();
    let row: usize = arch.input_shape().iter().product();
    let x = &read_f32(&data, "x")[..16 * row];
    let y = data.tensor("y").unwrap();
    let (yc, yb): (Vec<i32>, Vec<f32>) = if model == "pamap2" {
        (y.data().chunks_exact(8).take(16).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as i32).collect(), vec![])
    } else {
        (vec![], read_f32(&data, "y")[..16 * 3].to_vec())
    };
    let be = CpuBackend::new();
    let mut m = Model::new(&be, arch, 16, &init).unwrap();
    m.load_batch(16, x, &yc, &yb).unwrap();
    m.train_step(16, &Optimizer::Sgd { lr: 1e-3, momentum: 0.0, weight_decay: 0.0 }).unwrap();
    let g = m.gradients().unwrap();
    let exp_bytes = std::fs::read(fixture(&format!("{model}_grads_step1.safetensors"))).unwrap();
    let exp = SafeTensors::deserialize(&exp_bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&exp_bytes).unwrap();
    let torch32: std::collections::HashMap<String, f64> =
        serde_json::from_str(meta.metadata().as_ref().and_then(|m| m.get("torch_f32_rel_l2")).unwrap()).unwrap();
    for p in &layout.params {
        let e = read_f32(&exp, &p.name);
        let err = rel_l2(&g[p.offset..p.offset + p.len()], &e);
        let tol = (2.0 * torch32[&p.name]).max(1e-4);
        eprintln!("{model} grad {}: rel. L2 error {err:.3e} (PyTorch float32: {:.3e})", p.name, torch32[&p.name]);
        assert!(err < tol, "{model} grad {}: rel. L2 error {err:.3e} vs PyTorch (tolerance {tol:.1e})", p.name);
    }
}

#[test]
fn pamap2_gradients_match_pytorch() {
    gradients("pamap2");
}

#[test]
fn celeba_gradients_match_pytorch() {
    gradients("celeba");
}

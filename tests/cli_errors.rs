//! Bad input through the real command line: a one-line error naming the file and the problem, a non-zero
//! exit code, no panic, and no partial run directory.

use safetensors::{tensor::TensorView, Dtype};
use std::path::{Path, PathBuf};
use std::process::Command;

fn write_st(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A valid pamap2 dataset file of `n` rows with labels `labels`.
fn pamap2_file(dir: &Path, name: &str, n: usize, labels: &[i64], nan: bool) -> PathBuf {
    let mut x: Vec<f32> = (0..n * 27 * 256).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    if nan {
        x[1234] = f32::NAN;
    }
    let y: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = dir.join(name);
    write_st(&p, &[("x", Dtype::F32, vec![n, 27, 1, 256], f32s(&x)), ("y", Dtype::I64, vec![n], y)]);
    p
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_powertrain")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "powertrain panicked: {err}");
    (out.status.success(), err)
}

/// The error is one line (plus optional notes) and mentions every `needles`.
fn assert_error(args: &[&str], needles: &[&str]) {
    let (ok, err) = run(args);
    assert!(!ok, "expected failure for {args:?}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line in {err:?}"));
    for n in needles {
        assert!(line.contains(n), "error {line:?} should mention {n:?}");
    }
}

fn train_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train", "--model", "pamap2", "--data", data, "--device", "cpu", "--energy", "none", "--epochs", "1", "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn bad_inputs_fail_cleanly_and_leave_no_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("RUN");
    let out = run_dir.to_str().unwrap();
    let good = pamap2_file(d, "good.safetensors", 8, &[0, 1, 2, 3, 4, 5, 6, 7], false);
    let good_s = good.to_str().unwrap();

    // Wrong tensor names.
    let wrong = d.join("wrong_names.safetensors");
    write_st(&wrong, &[("a", Dtype::F32, vec![2], f32s(&[1.0, 2.0]))]);
    assert_error(&train_args(wrong.to_str().unwrap(), out, &[]), &["wrong_names.safetensors"]);

    // Wrong shape for the model.
    let shape = d.join("wrong_shape.safetensors");
    write_st(
        &shape,
        &[
            ("x", Dtype::F32, vec![2, 3, 64, 64], f32s(&vec![0.5; 2 * 3 * 64 * 64])),
            ("y", Dtype::I64, vec![2], vec![0; 16]),
        ],
    );
    assert_error(&train_args(shape.to_str().unwrap(), out, &[]), &["wrong_shape.safetensors"]);

    // Wrong dtype of x.
    let dtype = d.join("wrong_dtype.safetensors");
    write_st(
        &dtype,
        &[("x", Dtype::I32, vec![1, 27, 1, 256], vec![0; 27 * 256 * 4]), ("y", Dtype::I64, vec![1], vec![0; 8])],
    );
    assert_error(&train_args(dtype.to_str().unwrap(), out, &[]), &["wrong_dtype.safetensors"]);

    // NaN in x.
    let nan = pamap2_file(d, "nan.safetensors", 4, &[0, 1, 2, 3], true);
    assert_error(&train_args(nan.to_str().unwrap(), out, &[]), &["nan.safetensors", "NaN"]);

    // Labels out of range for the 12-class model.
    let lab = pamap2_file(d, "labels.safetensors", 4, &[0, 1, 12, 3], false);
    assert_error(&train_args(lab.to_str().unwrap(), out, &[]), &["labels.safetensors"]);

    // Truncated file.
    let bytes = std::fs::read(&good).unwrap();
    let trunc = d.join("truncated.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(&train_args(trunc.to_str().unwrap(), out, &[]), &["truncated.safetensors"]);

    // Batch size 0.
    assert_error(&train_args(good_s, out, &["--batch-size", "0"]), &["--batch-size"]);

    // An --init of the other model (wrong shapes).
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/celeba_init.safetensors");
    assert_error(&train_args(good_s, out, &["--init", init.to_str().unwrap()]), &["celeba_init.safetensors"]);

    // Per-kernel flags that do not fit: launch stamps on the CPU, clock or sampling without --per-kernel.
    assert_error(
        &train_args(good_s, out, &["--per-kernel", "--kernel-timing", "stamps"]),
        &["stamps", "--device cuda"],
    );
    assert_error(&train_args(good_s, out, &["--kernel-timing", "stamps"]), &["--kernel-timing", "--per-kernel"]);
    // An unknown clock is refused while the command line is parsed (argh's line, like any bad flag value).
    let (ok, err) = run(&train_args(good_s, out, &["--per-kernel", "--kernel-timing", "tsc"]));
    let line = err.lines().next().unwrap_or_default();
    assert!(
        !ok && line.contains("--kernel-timing") && line.contains("'tsc'") && line.contains("events or stamps"),
        "{err}"
    );
    assert_error(
        &["bench", "kernels", "--device", "cpu", "--kernel-timing", "all"],
        &["--kernel-timing", "bench step"],
    );
    assert_error(&["bench", "step", "--device", "cpu", "--kernel-timing", "stamps"], &["stamps", "--device cuda"]);
    assert_error(&["bench", "step", "--device", "cpu", "--kernel-timing", "x"], &["'x'", "or all"]);

    // Unwritable --out (a path below a regular file).
    let blocker = d.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad_out = blocker.join("RUN");
    assert_error(&train_args(good_s, bad_out.to_str().unwrap(), &[]), &["file"]);

    assert!(!run_dir.exists(), "a failed run must not leave a run directory");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("RUN"))
        .collect();
    assert!(leftovers.is_empty(), "staging leftovers: {leftovers:?}");

    // And the good file trains, writing a complete run directory.
    let (ok, err) = run(&train_args(good_s, out, &["--batch-size", "4"]));
    assert!(ok, "{err}");
    for f in ["config.json", "steps.jsonl", "epochs.csv", "summary.json"] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    // An existing run directory is not overwritten.
    assert_error(&train_args(good_s, out, &["--batch-size", "4"]), &["already exists"]);
}

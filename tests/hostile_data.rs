//! Hostile and careless uses of the data commands, through the real binary: each must end with a non-zero
//! exit and a message that names the file or flag and says what to do, come before any work (no output
//! directory appears), never hang, and leave everything that existed before exactly as it was (a digest of
//! the whole scratch directory, file types included, is compared before and after).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_powertrain");
/// A refusal comes before any work: far below this. Past it the command counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

struct Outcome {
    code: Option<i32>,
    stderr: String,
    seconds: f64,
}

/// Run the binary with `args` in `dir`, killing it (and failing) when it runs past [`LIMIT`].
fn run(dir: &Path, args: &[&str]) -> Outcome {
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("powertrain {args:?} still running after {LIMIT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// A refusal: exit status 1 and a message holding every one of `words`.
fn refused(dir: &Path, args: &[&str], words: &[&str]) -> Outcome {
    let o = run(dir, args);
    assert_eq!(o.code, Some(1), "powertrain {args:?} should be refused; stderr: {}", o.stderr);
    assert!(o.stderr.starts_with("error: "), "{}", o.stderr);
    for w in words {
        assert!(o.stderr.contains(w), "powertrain {args:?}: message lacks '{w}': {}", o.stderr);
    }
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    o
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

fn ok(dir: &Path, args: &[&str]) -> Outcome {
    let o = run(dir, args);
    assert_eq!(o.code, Some(0), "powertrain {args:?} failed: {}", o.stderr);
    o
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything under `dir`: path, kind, and for files the SHA-256 of the content, for links the target.
fn digest(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            if ft.is_symlink() {
                out.push(format!("{rel} -> {}", std::fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else if ft.is_file() {
                out.push(format!("{rel} {}", sha256_hex(&std::fs::read(&p).unwrap())));
            } else {
                out.push(format!("{rel} (special)"));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// A tiny synthetic PAMAP2 raw folder and its converted dataset, made once per test in `dir`.
fn pamap2_raw_and_dataset(dir: &Path) -> (PathBuf, PathBuf) {
    ok(dir, &["data", "synth", "pamap2", "--out", "raw", "--scale", "tiny", "--seed", "3"]);
    ok(dir, &["data", "pamap2", "--src", "raw/PAMAP2_Dataset", "--out", "ds"]);
    (dir.join("raw"), dir.join("ds"))
}

#[test]
fn synth_never_writes_into_a_folder_that_holds_something() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // "Real" raw data where a user keeps it.
    std::fs::create_dir_all(d.join("real/PAMAP2_Dataset/Protocol")).unwrap();
    std::fs::write(d.join("real/PAMAP2_Dataset/Protocol/subject101.dat"), "8.38 0 104 …real rows…\n").unwrap();
    std::fs::write(d.join("notes.txt"), "x").unwrap();
    let before = digest(d);
    for ds in ["pamap2", "celeba"] {
        let o = refused(
            d,
            &["data", "synth", ds, "--out", "real", "--scale", "tiny"],
            &["--out real", "not empty", "--force"],
        );
        assert!(o.seconds < 10.0, "the refusal took {} s", o.seconds);
        // A file in the way.
        refused(d, &["data", "synth", ds, "--out", "notes.txt", "--scale", "tiny"], &["notes.txt", "not a directory"]);
    }
    assert_eq!(digest(d), before, "a refused synth changed something");
    // With --force: written, marked, and what had other names is still there.
    std::fs::write(d.join("real/keep.txt"), "mine").unwrap();
    ok(d, &["data", "synth", "pamap2", "--out", "real", "--scale", "tiny", "--force"]);
    assert_eq!(std::fs::read_to_string(d.join("real/keep.txt")).unwrap(), "mine");
    let marker = d.join("real/PAMAP2_Dataset/Protocol/powertrain-synthetic.json");
    assert!(std::fs::read_to_string(marker).unwrap().contains("\"synthetic\": true"));
    // Converting it says so.
    ok(d, &["data", "pamap2", "--src", "real/PAMAP2_Dataset", "--out", "ds"]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("ds/dataset.json")).unwrap()).unwrap();
    assert_eq!(m["synthetic"], true);
}

#[test]
fn converters_refuse_an_existing_out_and_special_files_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (_raw, _ds) = pamap2_raw_and_dataset(d);
    // Converting over an existing dataset (or any non-empty folder, or a file).
    std::fs::write(d.join("file"), "x").unwrap();
    let before = digest(d);
    refused(d, &["data", "pamap2", "--src", "raw/PAMAP2_Dataset", "--out", "ds"], &["--out ds", "already exists"]);
    refused(d, &["data", "pamap2", "--src", "raw/PAMAP2_Dataset", "--out", "file"], &["--out file", "not a directory"]);
    assert_eq!(digest(d), before);

    // A FIFO as a source file: refused at once, naming it (it used to block forever).
    std::fs::create_dir_all(d.join("fifo-src/Protocol")).unwrap();
    for id in 101..=109 {
        let from = d.join(format!("raw/PAMAP2_Dataset/Protocol/subject{id}.dat"));
        std::os::unix::fs::symlink(from, d.join(format!("fifo-src/Protocol/subject{id}.dat"))).unwrap();
    }
    std::fs::remove_file(d.join("fifo-src/Protocol/subject104.dat")).unwrap();
    mkfifo(&d.join("fifo-src/Protocol/subject104.dat"));
    let before = digest(d);
    let o = refused(
        d,
        &["data", "pamap2", "--src", "fifo-src", "--out", "o1"],
        &["subject104.dat", "FIFO", "regular file"],
    );
    assert!(o.seconds < 10.0, "{} s", o.seconds);
    // A directory where a file belongs.
    std::fs::remove_file(d.join("fifo-src/Protocol/subject104.dat")).unwrap();
    std::fs::create_dir(d.join("fifo-src/Protocol/subject104.dat")).unwrap();
    refused(d, &["data", "pamap2", "--src", "fifo-src", "--out", "o1"], &["subject104.dat", "a directory"]);
    std::fs::remove_dir(d.join("fifo-src/Protocol/subject104.dat")).unwrap();
    mkfifo(&d.join("fifo-src/Protocol/subject104.dat"));
    assert_eq!(digest(d), before);
    assert!(!d.join("o1").exists());

    // CelebA: the attribute file as a FIFO, an image as a FIFO, --size out of range.
    ok(d, &["data", "synth", "celeba", "--out", "craw", "--scale", "tiny"]);
    std::fs::rename(d.join("craw/list_attr_celeba.txt"), d.join("attr.txt")).unwrap();
    mkfifo(&d.join("craw/list_attr_celeba.txt"));
    let before = digest(d);
    refused(d, &["data", "celeba", "--src", "craw", "--out", "o2"], &["list_attr_celeba.txt", "FIFO"]);
    std::fs::remove_file(d.join("craw/list_attr_celeba.txt")).unwrap();
    std::fs::rename(d.join("attr.txt"), d.join("craw/list_attr_celeba.txt")).unwrap();
    std::fs::rename(d.join("craw/img_align_celeba/000003.jpg"), d.join("img3.jpg")).unwrap();
    mkfifo(&d.join("craw/img_align_celeba/000003.jpg"));
    let before2 = digest(d);
    refused(d, &["data", "celeba", "--src", "craw", "--out", "o2"], &["000003.jpg", "FIFO", "line 5"]);
    for size in ["0", "100000", "179"] {
        refused(d, &["data", "celeba", "--src", "craw", "--out", "o2", "--size", size], &[&format!("--size {size}")]);
    }
    assert_eq!(digest(d), before2);
    assert!(!d.join("o2").exists());
    drop(before);
}

#[test]
fn damaged_sources_are_refused_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["data", "synth", "pamap2", "--out", "raw", "--scale", "tiny", "--seed", "4"]);
    let f = d.join("raw/PAMAP2_Dataset/Protocol/subject102.dat");
    let text = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // An infinite value (it used to convert into a dataset full of NaN that training then refused).
    let mut toks: Vec<String> = lines[9].split(' ').map(String::from).collect();
    toks[4] = "inf".into();
    lines[9] = toks.join(" ");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    let before = digest(d);
    refused(
        d,
        &["data", "pamap2", "--src", "raw/PAMAP2_Dataset", "--out", "o"],
        &["subject102.dat:10", "'inf'", "finite"],
    );
    // An empty subject file (a failed copy).
    std::fs::write(&f, "").unwrap();
    let before_empty = digest(d);
    refused(d, &["data", "pamap2", "--src", "raw/PAMAP2_Dataset", "--out", "o"], &["subject102.dat", "no data rows"]);
    assert_eq!(digest(d), before_empty);
    assert!(!d.join("o").exists());
    drop(before);

    // CelebA: a truncated image (it used to convert with its lower part grey), a path in the attribute file.
    ok(d, &["data", "synth", "celeba", "--out", "craw", "--scale", "tiny"]);
    let img = d.join("craw/img_align_celeba/000010.jpg");
    let b = std::fs::read(&img).unwrap();
    std::fs::write(&img, &b[..b.len() / 2]).unwrap();
    let before = digest(d);
    refused(d, &["data", "celeba", "--src", "craw", "--out", "o"], &["000010.jpg", "end marker", "truncated"]);
    std::fs::write(&img, &b).unwrap();
    let attr = d.join("craw/list_attr_celeba.txt");
    let t = std::fs::read_to_string(&attr).unwrap();
    std::fs::write(&attr, t.replacen("000002.jpg", "../../etc/hostname", 1)).unwrap();
    refused(
        d,
        &["data", "celeba", "--src", "craw", "--out", "o"],
        &["list_attr_celeba.txt:4", "not an image file name"],
    );
    std::fs::write(&attr, &t).unwrap();
    assert!(!d.join("o").exists());
    drop(before);
}

#[test]
fn bad_dataset_files_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (_raw, _ds) = pamap2_raw_and_dataset(d);
    let train = |data: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--model", "pamap2", "--data", data, "--device", "cpu", "--energy", "none"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--epochs", "1", "--out", "run"].iter().map(|s| s.to_string()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // --data is a FIFO: it used to block forever.
    mkfifo(&d.join("pipe.safetensors"));
    // A 64 MiB sparse file whose u8 x claims 2^26 channels: it used to build a 64 GiB normalisation table.
    let m = 1u64 << 26;
    let json = format!(
        r#"{{"x":{{"dtype":"U8","shape":[1,{m},1],"data_offsets":[0,{m}]}},"y":{{"dtype":"U8","shape":[1],"data_offsets":[{m},{}]}}}}"#,
        m + 1
    );
    let mut h = json.into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(&h);
    std::fs::write(d.join("sparse.safetensors"), &bytes).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("sparse.safetensors"))
        .unwrap()
        .set_len(bytes.len() as u64 + m + 1)
        .unwrap();
    // dataset.json of a dataset directory replaced by a FIFO.
    std::fs::create_dir(d.join("ds-fifo")).unwrap();
    for f in ["train", "val", "test"] {
        std::fs::copy(d.join(format!("ds/{f}.safetensors")), d.join(format!("ds-fifo/{f}.safetensors"))).unwrap();
    }
    mkfifo(&d.join("ds-fifo/dataset.json"));
    let before = digest(d);

    let o = refused(d, &args(&train("pipe.safetensors", &[])), &["pipe.safetensors", "FIFO"]);
    assert!(o.seconds < 20.0, "{} s", o.seconds);
    let o = refused(d, &args(&train("sparse.safetensors", &[])), &["sparse.safetensors", "channels"]);
    assert!(o.seconds < 20.0, "{} s", o.seconds);
    refused(d, &args(&train("ds-fifo", &[])), &["dataset.json", "FIFO"]);
    refused(
        d,
        &args(&train("ds/train.safetensors", &["--val", "pipe.safetensors"])),
        &["--val", "pipe.safetensors", "FIFO"],
    );
    refused(d, &args(&train("/dev/null", &[])), &["/dev/null", "character device"]);
    refused(
        d,
        &[
            "eval",
            "--model",
            "pamap2",
            "--data",
            "pipe.safetensors",
            "--init",
            "nothing.safetensors",
            "--device",
            "cpu",
        ],
        &["pipe.safetensors", "FIFO"],
    );
    // Nothing that existed was touched (a run directory that a refusal may have created is not checked
    // here: the run-directory rules belong to `train`).
    let _ = std::fs::remove_dir_all(d.join("run"));
    assert_eq!(digest(d), before);
}

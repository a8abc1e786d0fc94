//! Dataset pipeline end to end: synthetic raw files (tiny scale) -> converters -> memory-mapped loaders, the
//! converters' errors on bad inputs, and the real CelebA sample when the shared fixtures are present.

use powertrain::data::synth::{synth_celeba, synth_pamap2, Scale};
use powertrain::data::{celeba, open_dataset, pamap2, Loader, TargetKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn pamap2_synth_convert_load_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    synth_pamap2(&raw, 5, Scale::Tiny, false).unwrap();
    let first = std::fs::read_to_string(raw.join("PAMAP2_Dataset/Protocol/subject101.dat")).unwrap();
    let line = first.lines().next().unwrap();
    assert_eq!(line.split_whitespace().count(), 54, "{line}");
    assert!(first.contains("NaN"));
    let out = tmp.path().join("ds");
    let s = pamap2::convert(&raw.join("PAMAP2_Dataset"), &out).unwrap();
    // Tiny: every activity run is 260 rows = 1 window. Train subjects: 101, 102, 107, 108 do all 14 protocol
    // runs, 103 does 10, 104 does 12, 109 only rope jumping (1); val 105 and test 106 do 14.
    assert_eq!(s.counts, [4 * 14 + 10 + 12 + 1, 14, 14]);
    assert!(!tmp.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("partial")));
    let ds = open_dataset(&out, None).unwrap();
    assert_eq!(ds.train.row_shape, vec![27, 1, 256]);
    assert_eq!(ds.train.target, TargetKind::Classes { k: 12 });
    assert_eq!(ds.manifest["splits"]["val"]["per_class"]["rope jumping"], 1);
    assert_eq!(ds.manifest["source"]["files"].as_array().unwrap().len(), 9);
    // Made from synthetic raw files: marked so in dataset.json, in every file's metadata, and on the Dataset.
    assert!(ds.synthetic());
    assert_eq!(ds.manifest["synthetic"], true);
    assert_eq!(ds.manifest["synthetic_source"]["seed"], 5);
    assert_eq!(ds.train.metadata["synthetic"], "true");
    assert_eq!(ds.test.as_ref().unwrap().metadata["synthetic"], "true");
    // Training windows are normalised with their own statistics: per-channel mean ~0, std ~1.
    let tr = &ds.train;
    let rows: Vec<Vec<f32>> = Loader::new(tr.clone(), 32, false, 0, 0, vec![]).unwrap().map(|b| b.unwrap().x).collect();
    let all: Vec<f32> = rows.concat();
    let c0: Vec<f32> = all.chunks(27 * 256).flat_map(|w| w[..256].to_vec()).collect();
    let m = c0.iter().sum::<f32>() / c0.len() as f32;
    let sd = (c0.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / c0.len() as f32).sqrt();
    assert!(m.abs() < 0.15 && (sd - 1.0).abs() < 0.15, "mean {m} std {sd}");
    // Learnable: nearest centroid on per-channel window means and spreads classifies unseen subjects well.
    let feats = |split: &Arc<powertrain::data::Split>| -> Vec<(Vec<f32>, i32)> {
        Loader::new(split.clone(), 64, false, 0, 0, vec![])
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                (0..b.n)
                    .map(|i| {
                        let w = &b.x[i * 27 * 256..(i + 1) * 27 * 256];
                        let f = w
                            .chunks(256)
                            .flat_map(|c| {
                                let m = c.iter().sum::<f32>() / 256.0;
                                [m, (c.iter().map(|v| (v - m).powi(2)).sum::<f32>() / 256.0).sqrt()]
                            })
                            .collect();
                        (f, b.y_class[i])
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let train = feats(&ds.train);
    let mut cent = vec![(vec![0f32; 54], 0usize); 12];
    for (f, y) in &train {
        let c = &mut cent[*y as usize];
        c.0.iter_mut().zip(f).for_each(|(a, b)| *a += b);
        c.1 += 1;
    }
    let test: Vec<(Vec<f32>, i32)> =
        feats(ds.val.as_ref().unwrap()).into_iter().chain(feats(ds.test.as_ref().unwrap())).collect();
    let correct = test
        .iter()
        .filter(|(f, y)| {
            let best = (0..12)
                .filter(|&k| cent[k].1 > 0)
                .min_by(|&a, &b| {
                    let d = |k: usize| {
                        f.iter().zip(&cent[k].0).map(|(x, s)| (x - s / cent[k].1 as f32).powi(2)).sum::<f32>()
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            best as i32 == *y
        })
        .count();
    let acc = correct as f64 / test.len() as f64;
    // Learnable (chance is 1/12) but not trivial: the magnetometers carry the heading of each bout, not the
    // activity, and each class is blended with a similar one, so hyperparameters matter in the sweep.
    assert!(acc > 0.25 && acc < 0.9, "nearest-centroid accuracy on unseen subjects {acc}");
    // Converting again into the same place is refused.
    assert!(err_of(pamap2::convert(&raw.join("PAMAP2_Dataset"), &out)).contains("already exists"));
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            let mut perm = std::fs::metadata(&to).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&to, perm).unwrap();
        }
    }
}

#[test]
fn pamap2_bad_inputs_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    synth_pamap2(&raw, 1, Scale::Tiny, false).unwrap();
    let f = raw.join("PAMAP2_Dataset/Protocol/subject104.dat");
    let text = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let short: Vec<&str> = lines[6].split(' ').take(53).collect();
    lines[6] = short.join(" ");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let e = err_of(pamap2::convert(&raw.join("PAMAP2_Dataset"), &tmp.path().join("o1")));
    assert!(e.contains("subject104.dat:7") && e.contains("53 fields"), "{e}");
    assert!(!tmp.path().join("o1").exists());
    lines[6] = text.lines().nth(6).unwrap().replacen(' ', " abc ", 1);
    std::fs::write(&f, lines.join("\n")).unwrap();
    let e = err_of(pamap2::convert(&raw.join("PAMAP2_Dataset"), &tmp.path().join("o2")));
    assert!(e.contains("subject104.dat:7") && e.contains("'abc'"), "{e}");
    std::fs::remove_file(&f).unwrap();
    let e = err_of(pamap2::convert(&raw.join("PAMAP2_Dataset"), &tmp.path().join("o3")));
    assert!(e.contains("subject104.dat"), "{e}");
    let e = err_of(pamap2::convert(tmp.path(), &tmp.path().join("o4")));
    assert!(e.contains("Protocol"), "{e}");
}

#[test]
fn celeba_synth_convert_load_roundtrip_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    synth_celeba(&raw, 2, Scale::Tiny, false).unwrap();
    let attr = std::fs::read(raw.join("list_attr_celeba.txt")).unwrap();
    assert!(attr.starts_with(b"40\r\n5_o_Clock_Shadow Arched_Eyebrows"));
    assert!(attr.windows(9).any(|w| w == b" Young \r\n"));
    let img = image::open(raw.join("img_align_celeba/000001.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (178, 218));
    let out = tmp.path().join("ds");
    let s = celeba::convert(&raw, &out, 64).unwrap();
    assert_eq!(s.counts, [32, 4, 4]);
    let ds = open_dataset(&out, None).unwrap();
    assert!(ds.synthetic() && ds.val.as_ref().unwrap().synthetic());
    assert_eq!(ds.manifest["synthetic_source"]["generator"], "powertrain data synth celeba");
    assert_eq!(ds.train.row_shape, vec![3, 64, 64]);
    let TargetKind::Binary { k, names } = &ds.train.target else { panic!("binary targets expected") };
    assert_eq!((*k, names[31].as_str(), names[20].as_str()), (40, "Smiling", "Male"));
    // y matches the attribute file: row 1 of the file = train row 0.
    let row1 = std::str::from_utf8(&attr).unwrap().lines().nth(2).unwrap().to_string();
    let want: Vec<f32> = row1.split_whitespace().skip(1).map(|v| if v == "1" { 1.0 } else { 0.0 }).collect();
    let b = Loader::new(ds.train.clone(), 4, false, 0, 0, vec![]).unwrap().next().unwrap().unwrap();
    assert_eq!(&b.y_bin[..40], &want[..]);
    // Normalised pixels of the training split: mean ~0, std ~1 per channel (over all train rows).
    let xs: Vec<f32> =
        Loader::new(ds.train.clone(), 8, false, 0, 0, vec![31]).unwrap().flat_map(|b| b.unwrap().x).collect();
    let red: Vec<f32> = xs.chunks(3 * 4096).flat_map(|r| r[..4096].to_vec()).collect();
    let m = red.iter().sum::<f32>() / red.len() as f32;
    let sd = (red.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / red.len() as f32).sqrt();
    assert!(m.abs() < 1e-3 && (sd - 1.0).abs() < 1e-3, "mean {m} std {sd}");

    // Errors: each on a fresh copy of the raw files.
    let case = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let d = tmp.path().join(name);
        copy_dir(&raw, &d);
        edit(&d);
        let e = err_of(celeba::convert(&d, &tmp.path().join(format!("{name}-out")), 64));
        assert!(!tmp.path().join(format!("{name}-out")).exists());
        e
    };
    let e = case("missing", &|d| std::fs::remove_file(d.join("img_align_celeba/000007.jpg")).unwrap());
    assert!(e.contains("000007.jpg") && e.contains("line 9"), "{e}");
    let e = case("corrupt", &|d| {
        std::fs::write(d.join("img_align_celeba/000003.jpg"), b"\xff\xd8\xff\xe0garbage").unwrap()
    });
    assert!(e.contains("000003.jpg") && e.contains("JPEG"), "{e}");
    let e = case("value", &|d| {
        let t = std::fs::read_to_string(d.join("list_attr_celeba.txt")).unwrap();
        let mut l: Vec<&str> = t.split("\r\n").collect();
        let bad = l[4].replacen(" -1", "  0", 1).replacen(" 1 ", " 0 ", 1);
        l[4] = &bad;
        std::fs::write(d.join("list_attr_celeba.txt"), l.join("\r\n")).unwrap();
    });
    assert!(e.contains("list_attr_celeba.txt:5") && e.contains("'0'"), "{e}");
    let e = case("disagree", &|d| {
        let t = std::fs::read_to_string(d.join("list_eval_partition.txt")).unwrap();
        std::fs::write(d.join("list_eval_partition.txt"), t.replace("000005.jpg 0", "000099.jpg 0")).unwrap();
    });
    assert!(e.contains("list_eval_partition.txt:5") && e.contains("disagree"), "{e}");
}

#[test]
fn protocol_version_mismatch_and_truncated_split_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    synth_celeba(&raw, 3, Scale::Tiny, false).unwrap();
    let out = tmp.path().join("ds");
    celeba::convert(&raw, &out, 16).unwrap();
    let m = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    std::fs::write(out.join("dataset.json"), m.replace("\"protocol\": 1", "\"protocol\": 2")).unwrap();
    let e = err_of(open_dataset(&out, None));
    assert!(e.contains("dataset.json") && e.contains("protocol 2"), "{e}");
    std::fs::write(out.join("dataset.json"), m).unwrap();
    let bytes = std::fs::read(out.join("val.safetensors")).unwrap();
    std::fs::write(out.join("val.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    let e = err_of(open_dataset(&out, None));
    assert!(e.contains("val.safetensors") && e.contains("truncated"), "{e}");
}

/// The shared real-format sample (internal fixture, never copied into the repository).
fn real_celeba() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/celeba");
    p.join("img_align_celeba/000001.jpg").exists().then_some(p)
}

#[test]
fn real_celeba_sample_converts() {
    let Some(src) = real_celeba() else {
        eprintln!("skipped: ../shared/data/real/celeba not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("celeba");
    std::fs::create_dir_all(d.join("img_align_celeba")).unwrap();
    let mut imgs: Vec<String> = std::fs::read_dir(src.join("img_align_celeba"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    imgs.sort();
    for n in &imgs {
        std::fs::copy(src.join("img_align_celeba").join(n), d.join("img_align_celeba").join(n)).unwrap();
    }
    // Keep the count and header lines (count 202599 stays: the converter accepts a prefix) and the rows of
    // the images present; bytes, CRLF and spacing untouched.
    let keep = |file: &str, header: usize| {
        let t = std::fs::read(src.join(file)).unwrap();
        let t = String::from_utf8(t).unwrap();
        let lines: Vec<&str> = t.split_inclusive('\n').collect();
        let mut out: String = lines[..header].concat();
        out.extend(lines[header..].iter().filter(|l| imgs.iter().any(|n| l.starts_with(n.as_str()))).copied());
        std::fs::write(d.join(file), out).unwrap();
    };
    keep("list_attr_celeba.txt", 2);
    keep("list_eval_partition.txt", 0);
    let out = tmp.path().join("ds");
    let s = celeba::convert(&d, &out, 64).unwrap();
    assert_eq!(s.counts, [imgs.len(), 0, 0]);
    assert_eq!(s.missing_rows, 202599 - imgs.len());
    let ds = open_dataset(&out, None).unwrap();
    assert!(!ds.synthetic());
    assert_eq!(ds.manifest["synthetic"], false);
    assert_eq!(ds.train.metadata["synthetic"], "false");
    assert_eq!(ds.train.n, imgs.len());
    assert!(ds.val.is_none());
    // 000001.jpg's attributes: -1 1 1 -1 ... (5_o_Clock_Shadow absent, Arched_Eyebrows and Attractive present).
    let b = Loader::new(ds.train.clone(), 1, false, 0, 0, vec![0, 1, 2, 20]).unwrap().next().unwrap().unwrap();
    assert_eq!(b.y_bin, vec![0.0, 1.0, 1.0, 0.0]);
    let mean = ds.manifest["normalisation"]["mean"].as_array().unwrap();
    assert!(mean.iter().all(|v| (0.2..0.8).contains(&v.as_f64().unwrap())), "{mean:?}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 over "<relative path> <sha256 of the file>\n" for every file under `dir` but the synthetic-data
/// marker, sorted by path.
fn tree_digest(dir: &Path) -> String {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.file_name().unwrap() != powertrain::data::synth::MARKER {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().to_string();
                out.push((rel, sha256_hex(&std::fs::read(&p).unwrap())));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    sha256_hex(files.iter().map(|(p, h)| format!("{p} {h}\n")).collect::<String>().as_bytes())
}

/// SHA-256 of the tensor bytes of a .safetensors file (everything after the header: the metadata may grow).
fn tensor_data_digest(path: &Path) -> String {
    let b = std::fs::read(path).unwrap();
    let hlen = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    sha256_hex(&b[8 + hlen..])
}

/// The synthetic data is part of every study's result: the same seed and scale must give the same bytes. A
/// change of the generators (or of the JPEG encoder) shows up here; update the pins only on purpose: the
/// tables of studies run on synthetic data change with them.
#[test]
fn synthetic_output_is_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("pamap2");
    synth_pamap2(&raw, 0, Scale::Tiny, false).unwrap();
    let dat = std::fs::read(raw.join("PAMAP2_Dataset/Protocol/subject101.dat")).unwrap();
    assert_eq!(sha256_hex(&dat), "c1e50a63a0b39e9e624d907cb9230e33ccb4e38992e6b404432d5821c91dbb23", "subject101.dat");
    assert_eq!(
        tree_digest(&raw.join("PAMAP2_Dataset/Protocol")),
        "811f172dfc9d8ea3b26b905e6fedd4e302443a8875c1c2eb497089e1b11a7fb5",
        "PAMAP2 Protocol/"
    );
    let ds = tmp.path().join("pamap2-ds");
    pamap2::convert(&raw.join("PAMAP2_Dataset"), &ds).unwrap();
    assert_eq!(
        tensor_data_digest(&ds.join("train.safetensors")),
        "0bcac898beba826e0c42019901cbe40eae9e6d23529b271c029e8ea10ad467f0",
        "converted PAMAP2 train split (tensor bytes)"
    );

    let mut r = powertrain::util::rng(11);
    let a = powertrain::data::synth::sample_attrs(&mut r);
    let px = powertrain::data::synth::draw_face(&a, &mut r);
    assert_eq!(
        sha256_hex(&px),
        "15bedc93bf212f8d537398820bedb33f80cfe8706a2c07c8f3d4163ea8d19d17",
        "draw_face pixels (seed 11)"
    );
    let raw = tmp.path().join("celeba");
    synth_celeba(&raw, 0, Scale::Tiny, false).unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(raw.join("list_attr_celeba.txt")).unwrap()),
        "67176d4529063a25cab16052308627fcd868354c5c6728cce7b1d5570e6c192a",
        "list_attr_celeba.txt"
    );
    assert_eq!(
        tree_digest(&raw.join("img_align_celeba")),
        "6200476b445a1b93b18fc5728fb5318684b2836b323e7c3babd80dfcbae8878d",
        "img_align_celeba/ (JPEG encoder included)"
    );
}

#[test]
fn synth_refuses_a_non_empty_out_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir_all(real.join("PAMAP2_Dataset/Protocol")).unwrap();
    std::fs::write(real.join("PAMAP2_Dataset/Protocol/subject101.dat"), "real data\n").unwrap();
    for e in [err_of(synth_pamap2(&real, 0, Scale::Tiny, false)), err_of(synth_celeba(&real, 0, Scale::Tiny, false))] {
        assert!(e.contains("--out") && e.contains("real") && e.contains("not empty") && e.contains("--force"), "{e}");
    }
    assert_eq!(std::fs::read_to_string(real.join("PAMAP2_Dataset/Protocol/subject101.dat")).unwrap(), "real data\n");
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 1);
    // Forced: written, and the folder is marked, so a conversion of it says synthetic.
    synth_pamap2(&real, 0, Scale::Tiny, true).unwrap();
    let marker = real.join("PAMAP2_Dataset/Protocol").join(powertrain::data::synth::MARKER);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(marker).unwrap()).unwrap();
    assert_eq!((m["synthetic"].as_bool(), m["scale"].as_str()), (Some(true), Some("tiny")));
    assert_ne!(std::fs::read_to_string(real.join("PAMAP2_Dataset/Protocol/subject101.dat")).unwrap(), "real data\n");
    // A file in the way is refused even when it is not a directory.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(err_of(synth_celeba(&file, 0, Scale::Tiny, false)).contains("not a directory"));
}

#[test]
fn damaged_sources_that_used_to_convert_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    synth_pamap2(&raw, 4, Scale::Tiny, false).unwrap();
    let proto = raw.join("PAMAP2_Dataset/Protocol");
    // An empty subject file (a failed copy).
    let keep = std::fs::read(proto.join("subject105.dat")).unwrap();
    std::fs::write(proto.join("subject105.dat"), "").unwrap();
    let e = err_of(pamap2::convert(&raw.join("PAMAP2_Dataset"), &tmp.path().join("o1")));
    assert!(e.contains("subject105.dat") && e.contains("no data rows"), "{e}");
    // Only transient rows for the validation subject: no window, the split would be empty.
    let only0: String = String::from_utf8(keep.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(' ').collect();
            f[1] = "0";
            f.join(" ") + "\n"
        })
        .collect();
    std::fs::write(proto.join("subject105.dat"), only0).unwrap();
    let e = err_of(pamap2::convert(&raw.join("PAMAP2_Dataset"), &tmp.path().join("o2")));
    assert!(e.contains("subject105.dat") && e.contains("no window"), "{e}");
    assert!(!tmp.path().join("o1").exists() && !tmp.path().join("o2").exists());
    std::fs::write(proto.join("subject105.dat"), &keep).unwrap();

    // CelebA: every image in the validation partition leaves nothing to train on.
    let raw = tmp.path().join("celeba");
    synth_celeba(&raw, 4, Scale::Tiny, false).unwrap();
    let part = std::fs::read_to_string(raw.join("list_eval_partition.txt")).unwrap();
    std::fs::write(raw.join("list_eval_partition.txt"), part.replace(" 0\r\n", " 1\r\n")).unwrap();
    let e = err_of(celeba::convert(&raw, &tmp.path().join("o3"), 64));
    assert!(e.contains("list_eval_partition.txt") && e.contains("training partition"), "{e}");
    std::fs::write(raw.join("list_eval_partition.txt"), &part).unwrap();
    // A truncated image (the decoder alone would grey-fill it) and a --size the images cannot give.
    let img = raw.join("img_align_celeba/000002.jpg");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = err_of(celeba::convert(&raw, &tmp.path().join("o4"), 64));
    assert!(e.contains("000002.jpg") && e.contains("end marker"), "{e}");
    std::fs::write(&img, &bytes).unwrap();
    let e = err_of(celeba::convert(&raw, &tmp.path().join("o5"), 200));
    assert!(e.contains("000001.jpg") && e.contains("--size 200"), "{e}");
    for o in ["o3", "o4", "o5"] {
        assert!(!tmp.path().join(o).exists(), "{o}");
    }
    assert!(tmp.path().read_dir().unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial")));
}

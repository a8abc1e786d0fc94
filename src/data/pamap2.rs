//! PAMAP2 converter: `PAMAP2_Dataset/Protocol/subject101.dat … subject109.dat` -> train/val/test.safetensors
//! following protocol.md exactly: 27 channels, 12 classes, NaN filled by linear interpolation within a run
//! (edges held; a run with an all-NaN channel is dropped), windows of 256 with stride 128 from each run's
//! first row, subject split, per-channel normalisation over the training subjects' kept runs.
//!
//! Damaged input is refused naming the file and line: a field that is not a number or `NaN`, an infinite
//! value, a sensor value beyond [`MAX_ABS_VALUE`], a wrong field count, an empty subject file or one
//! without a single window. A source written by `powertrain data synth pamap2` (`Protocol/` holds
//! [`super::synth::MARKER`]) gives a dataset marked `synthetic`.

use super::st::{f32_bytes, i64_bytes, write_file, TensorDecl};
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped whenever the converter's output changes for the same input (2: `synthetic` in the metadata and
/// dataset.json; the tensors are unchanged).
pub const CONVERTER_VERSION: u32 = 2;
/// Largest magnitude accepted in a used channel (the sensors read at most a few hundred m/s², rad/s or µT):
/// anything beyond is damage, and would overflow the normalisation.
pub const MAX_ABS_VALUE: f32 = 1e6;
/// Fields per .dat row.
pub const FIELDS: usize = 54;
/// Activity IDs of the 12 classes; label = index in this list.
pub const CLASS_IDS: [u32; 12] = [1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24];
pub const CLASS_NAMES: [&str; 12] = [
    "lying",
    "sitting",
    "standing",
    "walking",
    "running",
    "cycling",
    "Nordic walking",
    "ascending stairs",
    "descending stairs",
    "vacuum cleaning",
    "ironing",
    "rope jumping",
];
/// 1-based columns of the 27 channels: for hand, chest, ankle: acc16 x/y/z, gyro x/y/z, mag x/y/z.
pub const CHANNEL_COLS: [usize; 27] = [
    5, 6, 7, 11, 12, 13, 14, 15, 16, //
    22, 23, 24, 28, 29, 30, 31, 32, 33, //
    39, 40, 41, 45, 46, 47, 48, 49, 50,
];
pub const CHANNELS: usize = 27;
pub const WINDOW: usize = 256;
pub const STRIDE: usize = 128;
pub const SUBJECTS: [u32; 9] = [101, 102, 103, 104, 105, 106, 107, 108, 109];
pub const TRAIN_SUBJECTS: [u32; 7] = [101, 102, 103, 104, 107, 108, 109];
pub const VAL_SUBJECTS: [u32; 1] = [105];
pub const TEST_SUBJECTS: [u32; 1] = [106];

/// Channel names in tensor order, e.g. "hand_acc16_x".
pub fn channel_names() -> Vec<String> {
    let mut v = Vec::new();
    for imu in ["hand", "chest", "ankle"] {
        for s in ["acc16", "gyro", "mag"] {
            for a in ["x", "y", "z"] {
                v.push(format!("{imu}_{s}_{a}"));
            }
        }
    }
    v
}

/// The rows of one .dat file that matter: activity id per row and the 27 channels, row-major [rows, 27].
#[derive(Debug, Default)]
pub struct Recording {
    pub activity: Vec<u32>,
    pub data: Vec<f32>,
}

/// Parse .dat text (whitespace-separated, LF or CRLF, blank lines ignored). Every row must have 54 numeric
/// fields (`NaN` allowed, infinity not; the 27 used channels within ±[`MAX_ABS_VALUE`]) and an integer
/// activityID >= 0; errors name `label:line`.
pub fn parse_dat(text: &str, label: &str) -> Result<Recording> {
    let mut rec = Recording::default();
    let mut is_channel = [usize::MAX; FIELDS + 1];
    for (k, &c) in CHANNEL_COLS.iter().enumerate() {
        is_channel[c] = k;
    }
    let mut row = [0f32; CHANNELS];
    for (ln, line) in text.lines().enumerate() {
        let mut nf = 0usize;
        let mut activity = 0u32;
        for tok in line.split_ascii_whitespace() {
            nf += 1;
            if nf > FIELDS {
                continue;
            }
            let v: f32 = tok.parse().map_err(|_| {
                anyhow::anyhow!("{label}:{}: field {nf} is '{tok}', not a number (expected a number or NaN)", ln + 1)
            })?;
            if v.is_infinite() {
                anyhow::bail!(
                    "{label}:{}: field {nf} is '{tok}', not a finite number (expected a number or NaN)",
                    ln + 1
                );
            }
            if nf == 2 {
                if !(v >= 0.0 && v.fract() == 0.0 && v < 1e6) {
                    anyhow::bail!("{label}:{}: activityID '{tok}' is not a non-negative integer", ln + 1);
                }
                activity = v as u32;
            } else if is_channel[nf] != usize::MAX {
                if v.abs() > MAX_ABS_VALUE {
                    anyhow::bail!(
                        "{label}:{}: field {nf} is '{tok}', beyond ±{MAX_ABS_VALUE}: not a sensor reading (damaged file?)",
                        ln + 1
                    );
                }
                row[is_channel[nf]] = v;
            }
        }
        if nf == 0 {
            continue;
        }
        if nf != FIELDS {
            anyhow::bail!("{label}:{}: {nf} fields, expected {FIELDS} (whitespace-separated)", ln + 1);
        }
        rec.activity.push(activity);
        rec.data.extend_from_slice(&row);
    }
    Ok(rec)
}

/// Maximal blocks of consecutive rows with the same activity id: (start, end exclusive, activity id).
pub fn runs(activity: &[u32]) -> Vec<(usize, usize, u32)> {
    let mut out = Vec::new();
    let mut s = 0;
    for i in 1..=activity.len() {
        if i == activity.len() || activity[i] != activity[s] {
            out.push((s, i, activity[s]));
            s = i;
        }
    }
    out
}

/// Fill NaN in one channel of one run: linear interpolation between the nearest valid samples, edge values
/// held. Returns false (and leaves `v` unchanged) when no sample is valid.
pub fn fill_nan(v: &mut [f32]) -> bool {
    let Some(first) = v.iter().position(|x| !x.is_nan()) else {
        return false;
    };
    let fv = v[first];
    v[..first].iter_mut().for_each(|x| *x = fv);
    let mut last = first;
    for i in first + 1..v.len() {
        if !v[i].is_nan() {
            if i > last + 1 {
                let (a, b) = (v[last], v[i]);
                let span = (i - last) as f32;
                for (j, x) in v[last + 1..i].iter_mut().enumerate() {
                    *x = a + (b - a) * (j + 1) as f32 / span;
                }
            }
            last = i;
        }
    }
    let lv = v[last];
    v[last + 1..].iter_mut().for_each(|x| *x = lv);
    true
}

/// Window start offsets inside a run of `len` rows.
pub fn window_starts(len: usize) -> impl Iterator<Item = usize> {
    (0..).map(|k| k * STRIDE).take_while(move |s| s + WINDOW <= len)
}

/// One kept run: class label and channel-major data [27, len] (NaN filled).
#[derive(Debug)]
pub struct Run {
    pub label: usize,
    pub len: usize,
    pub data: Vec<f32>,
}

/// Kept runs of a recording (classes of the protocol only) and the number dropped for an all-NaN channel.
pub fn kept_runs(rec: &Recording) -> (Vec<Run>, usize) {
    let mut kept = Vec::new();
    let mut dropped = 0;
    for (s, e, id) in runs(&rec.activity) {
        let Some(label) = CLASS_IDS.iter().position(|&c| c == id) else { continue };
        let len = e - s;
        let mut data = vec![0f32; CHANNELS * len];
        let mut ok = true;
        for c in 0..CHANNELS {
            let ch = &mut data[c * len..(c + 1) * len];
            for (t, o) in ch.iter_mut().enumerate() {
                *o = rec.data[(s + t) * CHANNELS + c];
            }
            ok &= fill_nan(ch);
        }
        if ok {
            kept.push(Run { label, len, data });
        } else {
            dropped += 1;
        }
    }
    (kept, dropped)
}

/// Per-channel mean and population standard deviation over all rows of `runs` (f64 sums). A channel with
/// zero spread (or one lost in rounding, below 1e-30) gets std 1 so that normalisation stays finite.
pub fn channel_stats<'a>(runs: impl Iterator<Item = &'a Run>) -> (Vec<f32>, Vec<f32>) {
    let mut s = [0f64; CHANNELS];
    let mut s2 = [0f64; CHANNELS];
    let mut n = 0f64;
    for r in runs {
        n += r.len as f64;
        for c in 0..CHANNELS {
            for &v in &r.data[c * r.len..(c + 1) * r.len] {
                s[c] += v as f64;
                s2[c] += (v as f64) * (v as f64);
            }
        }
    }
    let n = n.max(1.0);
    let mean: Vec<f32> = s.iter().map(|v| (v / n) as f32).collect();
    let std: Vec<f32> = (0..CHANNELS)
        .map(|c| {
            let m = s[c] / n;
            let var = (s2[c] / n - m * m).max(0.0);
            // A spread lost in rounding (or none) would blow the normalised values up to infinity.
            if var > 0.0 && var.sqrt() as f32 > 1e-30 {
                var.sqrt() as f32
            } else {
                1.0
            }
        })
        .collect();
    (mean, std)
}

/// Windows of the runs, normalised: x [N, 27, 1, 256] (channel-major), y [N] labels.
pub fn windows(runs: &[Run], mean: &[f32], std: &[f32]) -> (Vec<f32>, Vec<i64>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for r in runs {
        for s in window_starts(r.len) {
            for c in 0..CHANNELS {
                let ch = &r.data[c * r.len + s..c * r.len + s + WINDOW];
                x.extend(ch.iter().map(|v| (v - mean[c]) / std[c]));
            }
            y.push(r.label as i64);
        }
    }
    (x, y)
}

struct Subject {
    id: u32,
    rel: String,
    bytes: u64,
    sha256: String,
    rows: usize,
    runs: Vec<Run>,
    dropped: usize,
}

/// Find the directory holding subject1xx.dat: `src/Protocol`, or `src/PAMAP2_Dataset/Protocol`.
fn protocol_dir(src: &Path) -> Result<PathBuf> {
    for c in [src.join("Protocol"), src.join("PAMAP2_Dataset").join("Protocol")] {
        if c.is_dir() {
            return Ok(c);
        }
    }
    anyhow::bail!(
        "--src {}: no Protocol/ directory found: give the unpacked PAMAP2_Dataset directory (holding Protocol/subject101.dat)",
        src.display()
    )
}

/// What a conversion did (printed by the command, used by tests and benchmarks).
#[derive(Debug)]
pub struct Summary {
    pub out: PathBuf,
    pub rows: usize,
    pub counts: [usize; 3],
    pub seconds: f64,
}

/// Convert `src` (PAMAP2_Dataset) into the dataset directory `out` (written under a temporary name, renamed
/// when complete).
pub fn convert(src: &Path, out: &Path) -> Result<Summary> {
    let t0 = std::time::Instant::now();
    let pdir = protocol_dir(src)?;
    super::files::refuse_non_empty(out, "--out", "choose another --out or remove it")?;
    let synthetic = super::synth::read_marker(std::slice::from_ref(&pdir))?;
    let subjects = read_subjects(&pdir)?;
    let in_set = |s: &Subject, set: &[u32]| set.contains(&s.id);
    let (mean, std) = channel_stats(subjects.iter().filter(|s| in_set(s, &TRAIN_SUBJECTS)).flat_map(|s| s.runs.iter()));
    let stage = super::files::Staging::new(out)?;
    let mut split_info = serde_json::Map::new();
    let mut counts = [0usize; 3];
    for (si, (split, set)) in
        [("train", &TRAIN_SUBJECTS[..]), ("val", &VAL_SUBJECTS[..]), ("test", &TEST_SUBJECTS[..])].iter().enumerate()
    {
        let members: Vec<&Subject> = subjects.iter().filter(|s| in_set(s, set)).collect();
        let meta = split_metadata(split, &mean, &std, synthetic.is_some())?;
        let (n, info) = write_split(stage.path(), split, set, &members, &mean, &std, &meta)?;
        counts[si] = n;
        split_info.insert(split.to_string(), info);
    }
    let rows: usize = subjects.iter().map(|s| s.rows).sum();
    let mut manifest = manifest(src, &subjects, &mean, &std, split_info);
    manifest["synthetic"] = synthetic.is_some().into();
    if let Some(m) = synthetic {
        manifest["synthetic_source"] = m;
    }
    crate::util::write_json(&stage.path().join("dataset.json"), &manifest)?;
    let out = stage.commit()?;
    Ok(Summary { out, rows, counts, seconds: t0.elapsed().as_secs_f64() })
}

/// Read, parse and cut into runs every subject file of the protocol (in parallel).
fn read_subjects(pdir: &Path) -> Result<Vec<Subject>> {
    let pb = super::progress(SUBJECTS.len() as u64, "pamap2: parsing subjects");
    let subjects: Vec<Subject> = SUBJECTS
        .par_iter()
        .map(|&id| -> Result<Subject> {
            let path = pdir.join(format!("subject{id}.dat"));
            let rel = format!("Protocol/subject{id}.dat");
            let bytes = super::files::read_regular(&path, "").with_context(|| {
                format!("cannot read {}: the protocol needs Protocol/subject101.dat … subject109.dat", path.display())
            })?;
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                anyhow::anyhow!("{}: not text (invalid UTF-8 at byte {})", path.display(), e.valid_up_to())
            })?;
            let rec = parse_dat(text, &path.display().to_string())?;
            if rec.activity.is_empty() {
                anyhow::bail!("{}: no data rows: the file is empty or damaged; unpack it again", path.display());
            }
            let (runs, dropped) = kept_runs(&rec);
            // Every real subject file has windows (109, the shortest, about 48): none means damage.
            if runs.iter().all(|r| window_starts(r.len).next().is_none()) {
                anyhow::bail!(
                    "{}: no window: the file holds no run of {WINDOW} rows of a protocol activity without an \
                     all-NaN channel, so it is damaged or not a PAMAP2 Protocol file; unpack it again",
                    path.display()
                );
            }
            pb.inc(1);
            Ok(Subject {
                id,
                rel,
                bytes: bytes.len() as u64,
                sha256: super::sha256_hex(&bytes),
                rows: rec.activity.len(),
                runs,
                dropped,
            })
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    Ok(subjects)
}

/// The string metadata of every split file.
fn split_metadata(split: &str, mean: &[f32], std: &[f32], synthetic: bool) -> Result<BTreeMap<String, String>> {
    Ok([
        ("protocol", crate::PROTOCOL_VERSION.to_string()),
        ("dataset", "pamap2".to_string()),
        ("split", split.to_string()),
        ("names", serde_json::to_string(&CLASS_NAMES)?),
        ("num_classes", CLASS_IDS.len().to_string()),
        ("activity_ids", serde_json::to_string(&CLASS_IDS)?),
        ("channels", serde_json::to_string(&channel_names())?),
        ("mean", serde_json::to_string(mean)?),
        ("std", serde_json::to_string(std)?),
        ("x_normalised", "true: x = (value - mean[c]) / std[c], statistics of the training split".to_string()),
        ("synthetic", synthetic.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// Write `<split>.safetensors` in `dir` from the windows of `members` (the subjects of `set`); returns the
/// number of windows and the split's entry of dataset.json.
fn write_split(
    dir: &Path,
    split: &str,
    set: &[u32],
    members: &[&Subject],
    mean: &[f32],
    std: &[f32],
    meta: &BTreeMap<String, String>,
) -> Result<(usize, serde_json::Value)> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut per_subject = serde_json::Map::new();
    for s in members {
        let (xs, ys) = windows(&s.runs, mean, std);
        per_subject.insert(
            s.id.to_string(),
            serde_json::json!({"windows": ys.len(), "runs_kept": s.runs.len(), "runs_dropped_all_nan": s.dropped}),
        );
        x.extend(xs);
        y.extend(ys);
    }
    let n = y.len();
    if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
        anyhow::bail!(
            "{split} split: channel {} of window {} is not finite after normalisation: the source values are too \
             extreme to be sensor readings",
            pos / WINDOW % CHANNELS,
            pos / (CHANNELS * WINDOW)
        );
    }
    let mut per_class = vec![0usize; CLASS_IDS.len()];
    y.iter().for_each(|&l| per_class[l as usize] += 1);
    let file = format!("{split}.safetensors");
    write_file(
        &dir.join(&file),
        &[
            (TensorDecl::new("x", "F32", &[n, CHANNELS, 1, WINDOW]), f32_bytes(&x)),
            (TensorDecl::new("y", "I64", &[n]), i64_bytes(&y)),
        ],
        meta,
    )?;
    let per_class_named: serde_json::Map<String, serde_json::Value> =
        CLASS_NAMES.iter().zip(&per_class).map(|(k, v)| (k.to_string(), (*v).into())).collect();
    let info = serde_json::json!({"file": file, "subjects": set, "n": n, "per_class": per_class_named, "per_subject": per_subject});
    Ok((n, info))
}

/// dataset.json: sources with checksums, layout, normalisation and the splits.
fn manifest(
    src: &Path,
    subjects: &[Subject],
    mean: &[f32],
    std: &[f32],
    split_info: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "dataset": "pamap2",
        "protocol": crate::PROTOCOL_VERSION,
        "converter": "powertrain data pamap2",
        "converter_version": CONVERTER_VERSION,
        "powertrain_version": env!("CARGO_PKG_VERSION"),
        "source": {
            "dir": src.display().to_string(),
            "files": subjects.iter().map(|s| serde_json::json!({"path": s.rel, "bytes": s.bytes, "sha256": s.sha256, "rows": s.rows})).collect::<Vec<_>>(),
        },
        "x": {"dtype": "F32", "row_shape": [CHANNELS, 1, WINDOW], "channels": channel_names(), "source_columns_1based": CHANNEL_COLS},
        "y": {"kind": "classes", "num_classes": CLASS_IDS.len(), "names": CLASS_NAMES, "activity_ids": CLASS_IDS},
        "normalisation": {"mean": mean, "std": std, "over": "all rows of the training subjects' kept runs, after NaN filling", "applied": "stored x is normalised"},
        "windows": {"length": WINDOW, "stride": STRIDE},
        "splits": split_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 54-field row with activity `a` and every channel = `v` (NaN allowed).
    fn row(t: f32, a: u32, v: f32) -> String {
        let mut f = vec![format!("{t:.2}"), a.to_string(), "NaN".into()];
        for c in 4..=FIELDS {
            f.push(if CHANNEL_COLS.contains(&c) {
                if v.is_nan() {
                    "NaN".into()
                } else {
                    v.to_string()
                }
            } else {
                "1".into()
            });
        }
        f.join(" ")
    }

    #[test]
    fn parse_lf_crlf_and_columns() {
        let excerpt = "8.38 0 104 30 2.37223 8.60074 3.51048 2.43954 8.76165 3.35465 -0.0922174 0.0568115 -0.0158445 14.6806 -69.2128 -5.58905 1 0 0 0 31.8125 0.23808 9.80003 -1.68896 0.265304 9.81549 -1.41344 -0.00506495 -0.00678097 -0.00566295 0.47196 -51.0499 43.2903 1 0 0 0 30.3125 9.65918 -1.65569 -0.0997967 9.64689 -1.55576 0.310404 0.00830026 0.00925038 -0.0175803 -61.1888 -38.9599 -58.1438 1 0 0 0";
        for sep in ["\n", "\r\n"] {
            let text = format!("{excerpt}{sep}{}{sep}{sep}", row(8.39, 4, f32::NAN));
            let r = parse_dat(&text, "s.dat").unwrap();
            assert_eq!(r.activity, vec![0, 4]);
            // Hand acc16 x (col 5), hand gyro x (col 11), chest mag z (col 33), ankle mag z (col 50).
            assert_eq!(r.data[0], 2.37223);
            assert_eq!(r.data[3], -0.0922174);
            assert_eq!(r.data[17], 43.2903);
            assert_eq!(r.data[26], -58.1438);
            assert!(r.data[27..].iter().all(|v| v.is_nan()));
        }
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let good = row(1.0, 1, 0.5);
        let short: Vec<&str> = good.split(' ').take(53).collect();
        let e = parse_dat(&format!("{good}\n{}\n", short.join(" ")), "subject101.dat").unwrap_err().to_string();
        assert!(e.contains("subject101.dat:2") && e.contains("53 fields"), "{e}");
        let bad = good.replacen("0.5", "0.5x", 1);
        let e = parse_dat(&format!("{good}\n{good}\n{bad}"), "s.dat").unwrap_err().to_string();
        assert!(e.contains("s.dat:3") && e.contains("'0.5x'"), "{e}");
        let e = parse_dat(&row(1.0, 1, 0.5).replacen(" 1 ", " 1.5 ", 1), "s.dat").unwrap_err().to_string();
        assert!(e.contains("activityID"), "{e}");
        // Infinity (any spelling Rust parses) and values no sensor reads are damage, not data.
        for bad in ["inf", "-infinity", "1e39"] {
            let e = parse_dat(&format!("{good}\n{}", good.replacen("0.5", bad, 1)), "s.dat").unwrap_err().to_string();
            assert!(e.contains("s.dat:2") && e.contains("finite"), "{bad}: {e}");
        }
        let e = parse_dat(&good.replacen("0.5", "2e6", 1), "s.dat").unwrap_err().to_string();
        assert!(e.contains("s.dat:1") && e.contains("'2e6'") && e.contains("sensor"), "{e}");
        assert!(parse_dat(&good.replacen("0.5", "-9.5e5", 1), "s.dat").is_ok());
    }

    #[test]
    fn runs_and_window_counts() {
        assert_eq!(runs(&[0, 0, 1, 1, 1, 0, 1]), vec![(0, 2, 0), (2, 5, 1), (5, 6, 0), (6, 7, 1)]);
        assert_eq!(runs(&[]), vec![]);
        let count = |len| window_starts(len).count();
        assert_eq!(count(255), 0);
        assert_eq!(count(256), 1);
        assert_eq!(count(383), 1);
        assert_eq!(count(384), 2);
        assert_eq!(count(1000), 6); // starts 0..=640 step 128 (640 + 256 = 896 <= 1000; 768 + 256 > 1000)
        assert_eq!(window_starts(1000).last(), Some(640));
    }

    #[test]
    fn nan_filling_interpolates_and_holds_edges() {
        let n = f32::NAN;
        let mut v = [n, n, 2.0, n, n, 5.0, n];
        assert!(fill_nan(&mut v));
        assert_eq!(v, [2.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0]);
        let mut all = [n, n];
        assert!(!fill_nan(&mut all));
    }

    #[test]
    fn class_mapping_and_dropped_runs() {
        // Runs: 300 rows of id 24 (-> label 11), 10 rows of id 0, 300 rows of id 9 (optional: ignored),
        // 280 rows of id 5 whose channels are all NaN (dropped), 100 rows of id 1 (kept, no window).
        let mut rec = Recording::default();
        let mut push = |a: u32, len: usize, v: f32| {
            for _ in 0..len {
                rec.activity.push(a);
                rec.data.extend(std::iter::repeat_n(v, CHANNELS));
            }
        };
        push(24, 300, 1.0);
        push(0, 10, 0.0);
        push(9, 300, 1.0);
        push(5, 280, f32::NAN);
        push(1, 100, 3.0);
        let (kept, dropped) = kept_runs(&rec);
        assert_eq!(dropped, 1);
        assert_eq!(kept.iter().map(|r| (r.label, r.len)).collect::<Vec<_>>(), vec![(11, 300), (0, 100)]);
        // Statistics over all kept rows: 300 ones and 100 threes: mean 1.5, std sqrt(0.75).
        let (mean, std) = channel_stats(kept.iter());
        assert!((mean[0] - 1.5).abs() < 1e-6 && (std[26] - 0.75f32.sqrt()).abs() < 1e-6, "{mean:?} {std:?}");
        let (x, y) = windows(&kept, &mean, &std);
        assert_eq!(y, vec![11]);
        assert_eq!(x.len(), CHANNELS * WINDOW);
        assert!((x[0] - (1.0 - 1.5) / 0.75f32.sqrt()).abs() < 1e-6);
    }
}

//! Fuzzing of every reader of outside data, on stable Rust (`arbitrary` + `arbtest`): the `.safetensors`
//! dataset reader, the checkpoint reader, the PAMAP2 line parser and converter, the CelebA annotation and
//! partition parsers and converter, and JPEG decoding of damaged files.
//!
//! Each target starts from valid input made here and damages it (header edits with absurd sizes, bit flips,
//! truncation, hostile tokens, …). The properties: never a panic, an abort or a hang; either an error that
//! names the file (and the line for text), or a result that round-trips (parse -> write -> parse gives the
//! same values; a converted dataset opens and every batch loads finite).
//!
//! Each run tries a fixed, bounded number of cases (deterministic seeds), so CI stays fast (well under a
//! minute on 2 cores). To fuzz longer or with other seeds:
//!
//! ```text
//! POWERTRAIN_FUZZ_CASES=20000 POWERTRAIN_FUZZ_SEED=7 cargo test --release --test fuzz_data -- --nocapture
//! ```
//!
//! `POWERTRAIN_FUZZ_CASES` is the number of cases per target (each target's default is below),
//! `POWERTRAIN_FUZZ_SEED` (decimal, or `random`) picks another deterministic sequence. A failing case prints
//! its seed (`arbtest` prints `seed 0x…`); rerun just that input with `ARBTEST_SEED=0x… cargo test --release
//! --test fuzz_data TARGET`. A case running longer than 30 s is reported as a hang and ends the run; the
//! seed of the case running when the process died (an abort) is in `target/tmp/fuzz-TARGET.last`.

use arbitrary::Unstructured;
use powertrain::data::{celeba, open_dataset, pamap2, Loader, Split, TargetKind};
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- harness --------------------------------------------------------------------------------------------

/// A case running longer than this is a hang.
const HANG_LIMIT: Duration = Duration::from_secs(30);

fn env_cases(default: u32) -> u32 {
    std::env::var("POWERTRAIN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_seed() -> u64 {
    match std::env::var("POWERTRAIN_FUZZ_SEED") {
        Ok(v) if v == "random" => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        }
        Ok(v) => v.parse().unwrap_or(0),
        Err(_) => 0,
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Reports a case that runs past [`HANG_LIMIT`] (then ends the process: a hung thread cannot be stopped).
struct Watchdog {
    seed: Arc<AtomicU64>,
    started_ms: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Watchdog {
    fn start(name: &'static str) -> Watchdog {
        let w = Watchdog {
            seed: Arc::new(AtomicU64::new(0)),
            started_ms: Arc::new(AtomicU64::new(0)),
            done: Arc::new(AtomicBool::new(false)),
        };
        let (seed, started, done) = (w.seed.clone(), w.started_ms.clone(), w.done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let t0 = started.load(Ordering::Relaxed);
                if t0 > 0 && now_ms().saturating_sub(t0) > HANG_LIMIT.as_millis() as u64 {
                    let s = seed.load(Ordering::Relaxed);
                    // Straight to the file descriptor: the test harness's capture would swallow it.
                    let _ = writeln!(
                        std::io::stderr(),
                        "fuzz target {name}: case ARBTEST_SEED={s:#018x} ran over {} s: a hang",
                        HANG_LIMIT.as_secs()
                    );
                    std::process::exit(101);
                }
            }
        });
        w
    }
    fn case(&self, name: &str, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
        self.started_ms.store(now_ms(), Ordering::Relaxed);
        let _ = std::fs::write(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}.last")),
            format!("ARBTEST_SEED={seed:#018x}\n"),
        );
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Run `prop` on `default_cases` (or $POWERTRAIN_FUZZ_CASES) seeds, each with 64..=`size_max` bytes of
/// entropy; with $ARBTEST_SEED set, on that one seed only. Returns the number of cases run.
fn fuzz(name: &'static str, default_cases: u32, size_max: u32, mut prop: impl FnMut(&mut Unstructured)) -> u32 {
    let dog = Watchdog::start(name);
    if let Ok(s) = std::env::var("ARBTEST_SEED") {
        let seed = u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("ARBTEST_SEED is hex");
        dog.case(name, seed);
        arbtest::arbtest(|u| {
            prop(u);
            Ok(())
        })
        .seed(seed)
        .run();
        return 1;
    }
    let n = env_cases(default_cases);
    let base = env_seed() ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    for i in 0..n {
        let r = splitmix(base.wrapping_add(i as u64));
        let size = 64 + (r % (size_max.max(65) as u64 - 63)) as u32;
        let seed = (r & 0xFFFF_FFFF_0000_0000) | size as u64;
        dog.case(name, seed);
        arbtest::arbtest(|u| {
            prop(u);
            Ok(())
        })
        .seed(seed)
        .run();
    }
    n
}

fn num<T>(u: &mut Unstructured, r: std::ops::RangeInclusive<T>) -> T
where
    T: arbitrary::unstructured::Int + Copy,
{
    let lo = *r.start();
    u.int_in_range(r).unwrap_or(lo)
}

/// An index below `len` (0 when `len` is 0: the caller handles empty collections).
fn index(u: &mut Unstructured, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        num(u, 0..=len - 1)
    }
}

fn pick<T: Copy>(u: &mut Unstructured, choices: &[T]) -> T {
    *u.choose(choices).unwrap_or(&choices[0])
}

fn flag(u: &mut Unstructured) -> bool {
    u.arbitrary().unwrap_or(false)
}

/// The error chain of `e` must name `what` (a file name, a path or a flag).
fn assert_names(e: &anyhow::Error, what: &[&str]) {
    let m = format!("{e:#}");
    assert!(what.iter().any(|w| m.contains(w)), "error does not name any of {what:?}: {m}");
}

/// Damage `bytes` in place: bit flips, truncation, appended or repeated bytes, zeroed ranges. `hot` is a
/// prefix (a header) that gets extra flips.
fn damage_bytes(u: &mut Unstructured, bytes: &mut Vec<u8>, hot: usize) {
    for _ in 0..num(u, 1..=3u8) {
        if bytes.is_empty() {
            bytes.push(num(u, 0..=255u8));
        }
        let len = bytes.len();
        match num(u, 0..=6u8) {
            0 | 1 => {
                let lim = if hot > 0 && flag(u) { hot.min(len) } else { len };
                for _ in 0..num(u, 1..=8u8) {
                    let i = num(u, 0..=lim - 1);
                    bytes[i] ^= 1 << num(u, 0..=7u8);
                }
            }
            2 => bytes.truncate(index(u, len)),
            3 => {
                for _ in 0..num(u, 1..=64u8) {
                    bytes.push(num(u, 0..=255u8));
                }
            }
            4 => {
                let a = index(u, len);
                let b = (a + num(u, 1..=512usize)).min(len);
                let chunk = bytes[a..b].to_vec();
                let at = num(u, 0..=len);
                bytes.splice(at..at, chunk);
            }
            5 => {
                let a = index(u, len);
                let b = (a + num(u, 1..=256usize)).min(len);
                bytes[a..b].fill(pick(u, &[0u8, 0xFF]));
            }
            _ => {
                let i = index(u, len);
                bytes[i] = num(u, 0..=255u8);
            }
        }
    }
}

// ---- safetensors: dataset splits and checkpoints --------------------------------------------------------

/// A .safetensors file's bytes from a header object and the data part (header padded to 8 with spaces).
fn st_bytes(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string().into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn dtype_size(d: &str) -> Option<u64> {
    Some(match d {
        "U8" | "I8" | "BOOL" => 1,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" => 8,
        _ => return None,
    })
}

/// Sizes a header might claim: small, boundary and absurd.
const DIMS: [u64; 14] = [0, 1, 2, 3, 7, 255, 256, 65_536, 1 << 26, 1 << 31, (1 << 32) + 1, 1 << 40, 1 << 53, u64::MAX];
const DTYPES: [&str; 10] = ["F32", "U8", "I64", "I32", "F16", "BOOL", "F64", "U64", "I8", "Q4"];
const META_VALUES: [&str; 16] = [
    "1",
    "0",
    "2",
    "-1",
    "1e9",
    "99999999999999999999",
    "[1e40]",
    "[1e-40]",
    "[0]",
    "[-1]",
    "[NaN]",
    "[1,2,3]",
    "[\"a\",\"b\"]",
    "",
    "true",
    "{\"a\":1}",
];

const EXTREME_NUMBERS: [&str; 10] = ["1e-40", "1e-45", "1e-30", "0", "-1", "1e38", "3.4e38", "1e39", "0.5", "1"];

/// Edit the header of a .safetensors file: sizes, dtypes, offsets, names, metadata. With `consistent`, the
/// offsets are recomputed from the shapes and the data part resized (zero-filled, sparse on disk) when that
/// stays under 16 MiB, so that the reader's own checks (not only the format's) get exercised.
fn edit_header(u: &mut Unstructured, header: &mut serde_json::Value, data: &mut Vec<u8>, consistent: bool) {
    let names: Vec<String> = header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
    for _ in 0..num(u, 1..=3u8) {
        let t = names[index(u, names.len())].clone();
        let edit = num(u, 0..=7u8);
        if edit == 5 {
            let key = pick(u, &["protocol", "mean", "std", "names", "num_classes", "synthetic", "other"]);
            let m = header.as_object_mut().unwrap().entry("__metadata__").or_insert(serde_json::json!({}));
            // A listed value, or a list of 1-4 extreme numbers (one per channel when the count matches).
            let v = if flag(u) {
                pick(u, &META_VALUES).to_string()
            } else {
                let n = num(u, 1..=4usize);
                let vals: Vec<&str> = (0..n).map(|_| pick(u, &EXTREME_NUMBERS)).collect();
                format!("[{}]", vals.join(","))
            };
            if let Some(m) = m.as_object_mut() {
                m.insert(key.into(), v.into());
            }
            continue;
        }
        let obj = header.as_object_mut().unwrap();
        if edit == 6 {
            if let Some(v) = obj.remove(&t) {
                obj.insert(pick(u, &["x", "y", "z", "x ", ""]).into(), v);
            }
            continue;
        }
        if edit == 7 {
            if let Some(v) = obj.get(&t).cloned() {
                obj.insert("extra".into(), v);
            }
            continue;
        }
        let Some(tensor) = obj.get_mut(&t).and_then(|v| v.as_object_mut()) else { continue };
        match edit {
            0 | 1 => {
                if let Some(shape) = tensor.get_mut("shape").and_then(|v| v.as_array_mut()) {
                    if !shape.is_empty() {
                        let i = index(u, shape.len());
                        shape[i] = pick(u, &DIMS).into();
                    }
                }
            }
            2 => {
                if let Some(shape) = tensor.get_mut("shape").and_then(|v| v.as_array_mut()) {
                    if flag(u) {
                        shape.push(pick(u, &DIMS).into());
                    } else {
                        shape.pop();
                    }
                }
            }
            3 => {
                tensor.insert("dtype".into(), pick(u, &DTYPES).into());
            }
            _ => {
                if let Some(off) = tensor.get_mut("data_offsets").and_then(|v| v.as_array_mut()) {
                    if off.len() == 2 {
                        off[num(u, 0..=1usize)] = pick(u, &DIMS).into();
                    }
                }
            }
        }
    }
    if !consistent {
        return;
    }
    // Offsets from the shapes, in the header's (sorted) order, as the format requires.
    let mut off = 0u64;
    let keys: Vec<String> = header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
    for k in keys {
        let t = &header[&k];
        if !t.is_object() {
            return;
        }
        let Some(es) = t["dtype"].as_str().and_then(dtype_size) else { return };
        let Some(n) = t["shape"]
            .as_array()
            .and_then(|s| s.iter().try_fold(1u64, |a, d| d.as_u64().and_then(|d| a.checked_mul(d))))
        else {
            return;
        };
        let Some(len) = n.checked_mul(es) else { return };
        header[&k]["data_offsets"] = serde_json::json!([off, off.saturating_add(len)]);
        off = off.saturating_add(len);
    }
    if off <= 16 << 20 {
        data.resize(off as usize, 0);
    }
}

/// What a generated split holds, to compare with what the loader gives back.
struct SplitSpec {
    n: usize,
    row_len: usize,
    /// x as the loader must deliver it (normalised for u8).
    x: Vec<f32>,
    /// Class ids, or 0/1 targets row-major.
    y: Vec<f32>,
    k: usize,
    binary: bool,
}

/// A valid split file (random dtypes, shapes, metadata) and what it holds.
fn gen_split(u: &mut Unstructured) -> (serde_json::Value, Vec<u8>, SplitSpec) {
    let n = num(u, 0..=6usize);
    let row_shape: Vec<usize> = (0..num(u, 1..=3usize)).map(|_| num(u, 1..=4usize)).collect();
    let row_len: usize = row_shape.iter().product();
    let c = row_shape[0];
    let u8x = flag(u);
    let mut meta = serde_json::Map::new();
    if flag(u) {
        meta.insert("protocol".into(), "1".into());
    }
    let mut x = Vec::new();
    let mut x_bytes = Vec::new();
    if u8x {
        let (mean, std): (Vec<f32>, Vec<f32>) = if flag(u) {
            let m: Vec<f32> = (0..c).map(|_| num(u, 0..=100u8) as f32 / 100.0).collect();
            let s: Vec<f32> = (0..c).map(|_| num(u, 1..=100u8) as f32 / 100.0).collect();
            meta.insert("mean".into(), serde_json::to_string(&m).unwrap().into());
            meta.insert("std".into(), serde_json::to_string(&s).unwrap().into());
            (m, s)
        } else {
            (vec![0.0; c], vec![1.0; c])
        };
        for i in 0..n * row_len {
            let v = num(u, 0..=255u8);
            x_bytes.push(v);
            let ch = (i % row_len) / (row_len / c);
            x.push((v as f32 / 255.0 - mean[ch]) / std[ch]);
        }
    } else {
        for _ in 0..n * row_len {
            let v = (num(u, 0..=u16::MAX) as f32 - 32768.0) / 64.0;
            x.push(v);
            x_bytes.extend(v.to_le_bytes());
        }
    }
    let binary = flag(u);
    let (y_dtype, y_shape, k, y, y_bytes) = if binary {
        let k = num(u, 1..=4usize);
        let f32y = flag(u);
        let y: Vec<f32> = (0..n * k).map(|_| num(u, 0..=1u8) as f32).collect();
        let b: Vec<u8> =
            if f32y { y.iter().flat_map(|v| v.to_le_bytes()).collect() } else { y.iter().map(|&v| v as u8).collect() };
        if flag(u) {
            let names: Vec<String> = (0..k).map(|j| format!("attr{j}")).collect();
            meta.insert("names".into(), serde_json::to_string(&names).unwrap().into());
        }
        (if f32y { "F32" } else { "U8" }, vec![n, k], k, y, b)
    } else {
        let kmax = num(u, 1..=5u8) as i64;
        let ids: Vec<i64> = (0..n).map(|_| num(u, 0..=kmax - 1)).collect();
        let d = pick(u, &["I64", "I32", "U8"]);
        let b: Vec<u8> = match d {
            "I64" => ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
            "I32" => ids.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
            _ => ids.iter().map(|&v| v as u8).collect(),
        };
        let max = ids.iter().copied().max().unwrap_or(-1);
        let k = if flag(u) {
            meta.insert("num_classes".into(), kmax.to_string().into());
            kmax as usize
        } else {
            (max + 1) as usize
        };
        (d, vec![n], k, ids.iter().map(|&v| v as f32).collect(), b)
    };
    let mut x_shape = vec![n];
    x_shape.extend(&row_shape);
    let xl = x_bytes.len();
    let mut header = serde_json::json!({
        "x": {"dtype": if u8x { "U8" } else { "F32" }, "shape": x_shape, "data_offsets": [0, xl]},
        "y": {"dtype": y_dtype, "shape": y_shape, "data_offsets": [xl, xl + y_bytes.len()]},
    });
    if !meta.is_empty() {
        header["__metadata__"] = meta.into();
    }
    let mut data = x_bytes;
    data.extend(y_bytes);
    (header, data, SplitSpec { n, row_len, x, y, k, binary })
}

/// Every row of `s` through the loader: all finite, targets in range; equal to `spec` when given.
fn check_loads(s: &Arc<Split>, batch: usize, spec: Option<&SplitSpec>) {
    let rl = s.row_len();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for b in Loader::new(s.clone(), batch, false, 0, 0, vec![]).unwrap() {
        let b = b.unwrap_or_else(|e| panic!("{}: opened, but a batch fails: {e:#}", s.path.display()));
        rows += b.n;
        assert!(b.x.iter().all(|v| v.is_finite()), "{}: non-finite x delivered", s.path.display());
        match &s.target {
            TargetKind::Classes { k } => {
                assert!(
                    b.y_class.iter().all(|&c| c >= 0 && (c as usize) < *k),
                    "{}: class id out of 0..{k}",
                    s.path.display()
                );
                ys.extend(b.y_class.iter().map(|&c| c as f32));
            }
            TargetKind::Binary { .. } => {
                assert!(b.y_bin.iter().all(|&v| v == 0.0 || v == 1.0));
                ys.extend(&b.y_bin);
            }
        }
        xs.extend(b.x);
    }
    assert_eq!(rows, s.n);
    assert_eq!(xs.len(), s.n * rl);
    if let Some(spec) = spec {
        assert_eq!((s.n, rl), (spec.n, spec.row_len));
        assert_eq!(xs, spec.x, "x does not round-trip");
        assert_eq!(ys, spec.y, "y does not round-trip");
        match &s.target {
            TargetKind::Classes { k } => assert!(!spec.binary && *k == spec.k),
            TargetKind::Binary { k, .. } => assert!(spec.binary && *k == spec.k),
        }
    }
}

#[test]
fn fuzz_split_reader() {
    let dir = tempfile::tempdir().unwrap();
    let mut case = 0u64;
    let t = Instant::now();
    let n = fuzz("split_reader", 4000, 4096, |u| {
        case += 1;
        let (mut header, mut data, spec) = gen_split(u);
        let mode = num(u, 0..=5u8);
        let bytes = match mode {
            0 => st_bytes(&header, &data),
            1 | 2 => {
                edit_header(u, &mut header, &mut data, mode == 2);
                st_bytes(&header, &data)
            }
            3 => {
                let mut b = st_bytes(&header, &data);
                damage_bytes(u, &mut b, 8 + header.to_string().len());
                b
            }
            4 => {
                let mut b = st_bytes(&header, &data);
                let len = u64::from_le_bytes(b[..8].try_into().unwrap());
                let v = pick(u, &[0, 1, 7, len - 1, len + 1, len + 8, 100_000_001, u64::MAX, 1 << 63]);
                b[..8].copy_from_slice(&v.to_le_bytes());
                b
            }
            _ => {
                // A valid header over random data: NaN, infinities, negative or huge class ids, 2s in 0/1 targets.
                for v in data.iter_mut() {
                    *v = num(u, 0..=255u8);
                }
                st_bytes(&header, &data)
            }
        };
        let name = format!("case{case}.safetensors");
        let p = dir.path().join(&name);
        std::fs::write(&p, &bytes).unwrap();
        match Split::open(&p) {
            Err(e) => {
                assert!(mode != 0, "a valid file was refused: {e:#}");
                assert_names(&e, &[&name]);
            }
            Ok(s) => check_loads(&Arc::new(s), num(u, 1..=7usize), (mode == 0).then_some(&spec)),
        }
        // The same file as --data (and the directory form's manifest check stays out of the way).
        match open_dataset(&p, None) {
            Err(e) => assert_names(&e, &[&name]),
            Ok(ds) => assert!(ds.train.n > 0),
        }
        let _ = std::fs::remove_file(&p);
    });
    eprintln!("split_reader: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn fuzz_checkpoint_reader() {
    use powertrain::model::{checkpoint, Arch, Layout};
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(Arch::parse("pamap2", 12).unwrap());
    let params: Vec<f32> = (0..layout.total).map(|i| ((i % 1000) as f32 - 500.0) / 1000.0).collect();
    let valid_path = dir.path().join("valid.safetensors");
    checkpoint::save(&valid_path, &layout, &params, None).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let hlen = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&valid[8..8 + hlen]).unwrap();
    let data = valid[8 + hlen..].to_vec();
    let mut case = 0u64;
    let t = Instant::now();
    let n = fuzz("checkpoint_reader", 300, 2048, |u| {
        case += 1;
        let mode = num(u, 0..=4u8);
        let bytes = match mode {
            0 => valid.clone(),
            1 | 2 => {
                let (mut h, mut d) = (header.clone(), data.clone());
                edit_header(u, &mut h, &mut d, mode == 2);
                st_bytes(&h, &d)
            }
            3 => {
                let mut b = valid.clone();
                damage_bytes(u, &mut b, 8 + hlen);
                b
            }
            _ => {
                // NaN or infinity somewhere in the parameters.
                let mut b = valid.clone();
                let i = 8 + hlen + 4 * num(u, 0..=layout.total - 1);
                b[i..i + 4].copy_from_slice(&pick(u, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).to_le_bytes());
                b
            }
        };
        let name = format!("ckpt{case}.safetensors");
        let p = dir.path().join(&name);
        std::fs::write(&p, &bytes).unwrap();
        match checkpoint::load(&p, &layout) {
            Err(e) => {
                assert!(mode != 0, "a valid checkpoint was refused: {e:#}");
                assert_names(&e, &[&name]);
            }
            Ok(v) => {
                assert_eq!(v.len(), layout.total);
                assert!(v.iter().all(|x| x.is_finite()), "{name}: non-finite parameters loaded");
                if mode == 0 {
                    assert_eq!(v, params, "checkpoint does not round-trip");
                }
            }
        }
        let _ = std::fs::remove_file(&p);
    });
    eprintln!("checkpoint_reader: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

// ---- PAMAP2 ----------------------------------------------------------------------------------------------

const HOSTILE_NUMBERS: [&str; 36] = [
    "NaN",
    "nan",
    "NAN",
    "-NaN",
    "inf",
    "-inf",
    "+inf",
    "infinity",
    "Infinity",
    "1e39",
    "-1e39",
    "3.4028236e38",
    "1e6",
    "-1e6",
    "1000001",
    "1e-45",
    "-0",
    "+0",
    "0.",
    ".5",
    "1e",
    "e1",
    "--1",
    "0x10",
    "1_000",
    "١",
    "",
    "1e308",
    "1.5",
    "24",
    "0",
    "-1",
    "4294967296",
    "999999",
    "\u{feff}1",
    "99999999999999999999999999999999999999999",
];
const SEPARATORS: [&str; 7] = [" ", "  ", "\t", "\x0c", "\u{a0}", "\r", " \u{2028} "];
const ACTIVITIES: [u32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16, 17, 24, 8, 1000];

/// A 54-field row with activity `a` and small values.
fn pamap2_row(u: &mut Unstructured, t: usize, a: u32) -> Vec<String> {
    let mut f = vec![format!("{:.2}", t as f32 / 100.0), a.to_string(), "NaN".to_string()];
    for c in 4..=pamap2::FIELDS {
        f.push(if num(u, 0..=40u8) == 0 {
            "NaN".into()
        } else {
            format!("{}", (num(u, 0..=2000u16) as f32 - 1000.0) / 37.0 + c as f32)
        });
    }
    f
}

/// Parsed rows written back as text (exact: `{}` of an f32 parses back to the same value).
fn write_recording(rec: &pamap2::Recording) -> String {
    let mut s = String::new();
    for (i, a) in rec.activity.iter().enumerate() {
        let mut f = vec!["0".to_string(), a.to_string(), "NaN".to_string()];
        for c in 4..=pamap2::FIELDS {
            f.push(match pamap2::CHANNEL_COLS.iter().position(|&k| k == c) {
                Some(k) => format!("{}", rec.data[i * pamap2::CHANNELS + k]),
                None => "0".into(),
            });
        }
        s.push_str(&f.join(" "));
        s.push('\n');
    }
    s
}

fn same_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

#[test]
fn fuzz_pamap2_parser() {
    let t = Instant::now();
    let n = fuzz("pamap2_parser", 4000, 4096, |u| {
        // A few rows, or one long run (enough for windows).
        let long = num(u, 0..=5u8) == 0;
        let nrows = if long { num(u, 250..=600usize) } else { num(u, 0..=12usize) };
        let a0 = pick(u, &ACTIVITIES);
        let mut rows: Vec<Vec<String>> = (0..nrows)
            .map(|i| {
                let a = if long { a0 } else { pick(u, &ACTIVITIES) };
                pamap2_row(u, i, a)
            })
            .collect();
        for _ in 0..num(u, 0..=4u8) {
            if rows.is_empty() {
                break;
            }
            let r = index(u, rows.len());
            if rows[r].is_empty() {
                rows[r].push(String::new());
            }
            match num(u, 0..=4u8) {
                0 | 1 => {
                    let i = index(u, rows[r].len());
                    rows[r][i] = pick(u, &HOSTILE_NUMBERS).to_string();
                }
                2 => {
                    let i = index(u, rows[r].len());
                    rows[r].remove(i);
                }
                3 => rows[r].push(pick(u, &HOSTILE_NUMBERS).to_string()),
                _ => rows[r].clear(),
            }
        }
        let nl = pick(u, &["\n", "\r\n"]);
        let mut text = String::new();
        for r in &rows {
            let sep = if num(u, 0..=9u8) == 0 { pick(u, &SEPARATORS) } else { " " };
            text.push_str(&r.join(sep));
            text.push_str(nl);
        }
        let label = "subject10x.dat";
        match pamap2::parse_dat(&text, label) {
            Err(e) => {
                let m = e.to_string();
                let line: usize = m
                    .strip_prefix(&format!("{label}:"))
                    .and_then(|r| r.split(':').next())
                    .and_then(|l| l.parse().ok())
                    .unwrap_or_else(|| panic!("error does not name {label}:LINE: {m}"));
                assert!(line >= 1 && line <= text.lines().count(), "{m}");
            }
            Ok(rec) => {
                assert_eq!(rec.activity.len(), text.lines().filter(|l| !l.trim_ascii().is_empty()).count());
                assert_eq!(rec.data.len(), rec.activity.len() * pamap2::CHANNELS);
                assert!(rec.data.iter().all(|v| v.is_nan() || v.abs() <= pamap2::MAX_ABS_VALUE), "value out of bounds");
                let again = pamap2::parse_dat(&write_recording(&rec), "again").unwrap();
                assert_eq!(again.activity, rec.activity);
                assert!(same_f32(&again.data, &rec.data), "rows do not round-trip");
                let (kept, _) = pamap2::kept_runs(&rec);
                let (mean, std) = pamap2::channel_stats(kept.iter());
                let (x, y) = pamap2::windows(&kept, &mean, &std);
                assert!(x.iter().all(|v| v.is_finite()) && y.iter().all(|&l| (0..12).contains(&l)));
            }
        }
    });
    eprintln!("pamap2_parser: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

/// Symlink every file of `src` into `dst` but `except`.
fn link_dir(src: &Path, dst: &Path, except: &str) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != except {
            std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// A converted dataset must open, and every row of every split load finite.
fn check_dataset(out: &Path, counts: [usize; 3]) {
    let ds = open_dataset(out, None).unwrap_or_else(|e| panic!("converted, but the dataset does not open: {e:#}"));
    assert_eq!(ds.train.n, counts[0]);
    assert_eq!(ds.val.as_ref().map_or(0, |s| s.n), counts[1]);
    assert_eq!(ds.test.as_ref().map_or(0, |s| s.n), counts[2]);
    for s in [Some(&ds.train), ds.val.as_ref(), ds.test.as_ref()].into_iter().flatten() {
        check_loads(s, 64, None);
    }
}

/// Apply a line- or byte-level mutation to a text file's bytes.
fn damage_text(u: &mut Unstructured, text: &[u8], hostile: &[&str]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text).to_string();
    let mut lines: Vec<String> = s.split_inclusive('\n').map(String::from).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let i = index(u, lines.len());
    match num(u, 0..=9u8) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 | 3 => {
            let mut toks: Vec<String> = lines[i].split(' ').map(String::from).collect();
            let j = index(u, toks.len());
            toks[j] = pick(u, hostile).to_string();
            lines[i] = toks.join(" ");
            if !lines[i].ends_with('\n') {
                lines[i].push('\n');
            }
        }
        4 => {
            // A block of lines gets another first-or-second field.
            let end = (i + num(u, 1..=400usize)).min(lines.len());
            let which = num(u, 0..=1usize);
            let v = pick(u, hostile).to_string();
            for l in &mut lines[i..end] {
                let mut toks: Vec<String> = l.split(' ').map(String::from).collect();
                if toks.len() > which + 1 {
                    toks[which] = v.clone();
                }
                *l = toks.join(" ");
            }
        }
        5 => {
            let j = index(u, lines.len());
            lines.swap(i, j)
        }
        6 => lines.insert(i, pick(u, &["\n", "\r\n", " \n", "\t\n"]).to_string()),
        7 => lines.truncate(i),
        _ => {
            let mut b = lines.concat().into_bytes();
            damage_bytes(u, &mut b, 0);
            return b;
        }
    }
    lines.concat().into_bytes()
}

#[test]
fn fuzz_pamap2_convert() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    powertrain::data::synth::synth_pamap2(&raw, 9, powertrain::data::synth::Scale::Tiny, false).unwrap();
    let proto = raw.join("PAMAP2_Dataset/Protocol");
    let hostile: Vec<&str> = HOSTILE_NUMBERS.iter().copied().chain(["5", "24", "0", "1", "7"]).collect();
    let mut case = 0u64;
    let t = Instant::now();
    let n = fuzz("pamap2_convert", 60, 1024, |u| {
        case += 1;
        let src = dir.path().join(format!("src{case}"));
        let id = pick(u, &pamap2::SUBJECTS);
        let file = format!("subject{id}.dat");
        link_dir(&proto, &src.join("Protocol"), &file);
        let text = std::fs::read(proto.join(&file)).unwrap();
        std::fs::write(src.join("Protocol").join(&file), damage_text(u, &text, &hostile)).unwrap();
        let out = dir.path().join(format!("out{case}"));
        match pamap2::convert(&src, &out) {
            Err(e) => {
                assert_names(&e, &[src.to_str().unwrap()]);
                assert!(!out.exists(), "a failed conversion left {}", out.display());
            }
            Ok(s) => check_dataset(&out, s.counts),
        }
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&out);
    });
    eprintln!("pamap2_convert: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

// ---- CelebA ----------------------------------------------------------------------------------------------

const HOSTILE_TOKENS: [&str; 22] = [
    "0",
    "2",
    "+1",
    "--1",
    "-1-1",
    "１",
    "",
    "../x.jpg",
    "a/b.jpg",
    ".",
    "..",
    "1",
    "-1",
    "000001.jpg",
    "000002.jpg",
    "NaN",
    "1e0",
    "\u{feff}1",
    "-0",
    "202599",
    "18446744073709551616",
    "Smiling",
];

fn gen_attr_text(u: &mut Unstructured) -> String {
    let k = num(u, 1..=6usize);
    let names: Vec<&str> = powertrain::data::synth::ATTRS[..k].to_vec();
    let nrows = num(u, 0..=8usize);
    let count = if flag(u) { nrows.to_string() } else { pick(u, &HOSTILE_TOKENS).to_string() };
    let nl = pick(u, &["\r\n", "\n"]);
    let mut lines = vec![count, format!("{} ", names.join(" "))];
    for i in 0..nrows {
        let mut toks = vec![format!("{:06}.jpg", i + 1)];
        toks.extend((0..k).map(|_| if flag(u) { "1".to_string() } else { "-1".to_string() }));
        lines.push(toks.join(pick(u, &[" ", "  "])));
    }
    for _ in 0..num(u, 0..=3u8) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = index(u, lines.len());
        match num(u, 0..=5u8) {
            0 | 1 => {
                let mut toks: Vec<String> = lines[i].split(' ').map(String::from).collect();
                let j = index(u, toks.len());
                toks[j] = pick(u, &HOSTILE_TOKENS).to_string();
                lines[i] = toks.join(" ");
            }
            2 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            3 => {
                lines.remove(i);
            }
            4 => lines.insert(i, String::new()),
            _ => lines[i].push_str(" 1"),
        }
    }
    lines.join(nl) + nl
}

#[test]
fn fuzz_celeba_parsers() {
    let t = Instant::now();
    let n = fuzz("celeba_parsers", 5000, 2048, |u| {
        let text = gen_attr_text(u);
        let lines = text.lines().count();
        let line_of = |m: &str, label: &str| -> Option<usize> {
            m.strip_prefix(&format!("{label}:")).and_then(|r| r.split(':').next()).and_then(|l| l.parse().ok())
        };
        match celeba::parse_attr(&text, "list_attr_celeba.txt") {
            Err(e) => {
                let m = e.to_string();
                assert!(m.starts_with("list_attr_celeba.txt"), "{m}");
                if let Some(l) = line_of(&m, "list_attr_celeba.txt") {
                    assert!(l >= 1 && l <= lines.max(2), "{m}");
                }
            }
            Ok(t) => {
                assert!(t.rows.len() <= t.count);
                let mut names = t.names.clone();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), t.names.len(), "repeated attribute names accepted");
                for (name, _, v) in &t.rows {
                    assert_eq!(v.len(), t.names.len());
                    assert!(v.iter().all(|&b| b <= 1));
                    assert!(!name.contains('/') && name != "." && name != "..", "image name {name:?} accepted");
                }
                // Round trip: written in the official format and parsed again.
                let mut s = format!("{}\r\n{} \r\n", t.count, t.names.join(" "));
                for (name, _, v) in &t.rows {
                    s.push_str(name);
                    for &b in v {
                        s.push_str(if b == 1 { "  1" } else { " -1" });
                    }
                    s.push_str("\r\n");
                }
                let again = celeba::parse_attr(&s, "again").unwrap();
                assert_eq!((again.count, &again.names), (t.count, &t.names));
                let strip = |r: &[(String, usize, Vec<u8>)]| {
                    r.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect::<Vec<_>>()
                };
                assert_eq!(strip(&again.rows), strip(&t.rows));
            }
        }
        // The partition file: `<image> <0|1|2>` lines.
        let mut p = String::new();
        for i in 0..num(u, 0..=8usize) {
            let name =
                if num(u, 0..=7u8) == 0 { pick(u, &HOSTILE_TOKENS).to_string() } else { format!("{:06}.jpg", i + 1) };
            let part =
                if num(u, 0..=7u8) == 0 { pick(u, &HOSTILE_TOKENS).to_string() } else { num(u, 0..=2u8).to_string() };
            p.push_str(&format!("{name}{}{part}{}", pick(u, &[" ", "  ", "\t"]), pick(u, &["\r\n", "\n"])));
        }
        match celeba::parse_partition(&p, "list_eval_partition.txt") {
            Err(e) => {
                let m = e.to_string();
                let l = line_of(&m, "list_eval_partition.txt").unwrap_or_else(|| panic!("no file:line in {m}"));
                assert!(l >= 1 && l <= p.lines().count(), "{m}");
            }
            Ok(rows) => {
                let s: String = rows.iter().map(|(n, k, _)| format!("{n} {k}\r\n")).collect();
                let again = celeba::parse_partition(&s, "again").unwrap();
                let strip = |r: &[(String, u8, usize)]| r.iter().map(|(n, k, _)| (n.clone(), *k)).collect::<Vec<_>>();
                assert_eq!(strip(&again), strip(&rows));
            }
        }
    });
    eprintln!("celeba_parsers: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn fuzz_celeba_convert() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    powertrain::data::synth::synth_celeba(&raw, 9, powertrain::data::synth::Scale::Tiny, false).unwrap();
    let mut case = 0u64;
    let t = Instant::now();
    let n = fuzz("celeba_convert", 100, 1024, |u| {
        case += 1;
        let src = dir.path().join(format!("src{case}"));
        std::fs::create_dir_all(&src).unwrap();
        link_dir(&raw.join("img_align_celeba"), &src.join("img_align_celeba"), "");
        for f in ["list_attr_celeba.txt", "list_eval_partition.txt"] {
            std::fs::copy(raw.join(f), src.join(f)).unwrap();
        }
        let mut size = 16;
        match num(u, 0..=4u8) {
            0 => {
                let p = src.join("list_attr_celeba.txt");
                let b = damage_text(u, &std::fs::read(&p).unwrap(), &HOSTILE_TOKENS);
                std::fs::write(p, b).unwrap();
            }
            1 => {
                let p = src.join("list_eval_partition.txt");
                let b = damage_text(u, &std::fs::read(&p).unwrap(), &HOSTILE_TOKENS);
                std::fs::write(p, b).unwrap();
            }
            2 | 3 => {
                let name = format!("{:06}.jpg", num(u, 1..=40u8));
                let p = src.join("img_align_celeba").join(&name);
                let mut b = std::fs::read(&p).unwrap();
                damage_bytes(u, &mut b, 700);
                std::fs::remove_file(&p).unwrap();
                std::fs::write(&p, b).unwrap();
            }
            _ => size = pick(u, &[0u32, 1, 8, 64, 178, 179, 4096, 5000, u32::MAX]),
        }
        let out = dir.path().join(format!("out{case}"));
        match celeba::convert(&src, &out, size) {
            Err(e) => {
                assert_names(&e, &[src.to_str().unwrap(), "--size"]);
                assert!(!out.exists(), "a failed conversion left {}", out.display());
            }
            Ok(s) => check_dataset(&out, s.counts),
        }
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&out);
    });
    eprintln!("celeba_convert: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

/// A few valid JPEGs of different kinds to damage.
fn seed_jpegs() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = powertrain::util::rng(5);
    for q in [90u8, 40] {
        let a = powertrain::data::synth::sample_attrs(&mut r);
        let px = powertrain::data::synth::draw_face(&a, &mut r);
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, q)
            .encode(&px, 178, 218, image::ExtendedColorType::Rgb8)
            .unwrap();
        out.push(jpg);
    }
    for (w, h, color, q) in [
        (64u32, 48u32, image::ExtendedColorType::L8, 75u8),
        (1, 1, image::ExtendedColorType::Rgb8, 95),
        (17, 9, image::ExtendedColorType::Rgb8, 10),
    ] {
        let ch = if color == image::ExtendedColorType::L8 { 1 } else { 3 };
        let px: Vec<u8> = (0..w * h * ch).map(|i| (i * 37 % 251) as u8).collect();
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, q).encode(&px, w, h, color).unwrap();
        out.push(jpg);
    }
    out
}

#[test]
fn fuzz_jpeg_decoding() {
    let seeds = seed_jpegs();
    let t = Instant::now();
    let n = fuzz("jpeg_decoding", 2000, 1024, |u| {
        let b = index(u, seeds.len());
        let mut bytes = seeds[b].clone();
        let mode = num(u, 0..=4u8);
        match mode {
            0 => {}
            4 => {
                // Cut anywhere before the end marker: must be refused (the decoder alone fills the rest grey).
                let cut = num(u, 0..=bytes.len() - 2);
                bytes.truncate(cut);
            }
            1 => {
                // Frame size fields of SOF0 (height, width) set to anything.
                if let Some(sof) = bytes.windows(2).position(|w| w == [0xFF, 0xC0]) {
                    let i = sof + 5 + 2 * num(u, 0..=1usize);
                    bytes[i..i + 2].copy_from_slice(&num(u, 0..=u16::MAX).to_be_bytes());
                }
            }
            2 => {
                // A marker dropped in anywhere.
                let i = index(u, bytes.len());
                bytes.splice(i..i, [0xFF, num(u, 0..=255u8)]);
            }
            _ => damage_bytes(u, &mut bytes, 700),
        }
        let label = format!("damaged-from-seed{b}.jpg");
        match celeba::decode_jpeg(&bytes, &label) {
            Err(e) => assert_names(&e, &[&label]),
            Ok(_) if mode == 4 => panic!("a JPEG cut at {} of {} bytes was decoded", bytes.len(), seeds[b].len()),
            Ok(img) => {
                let (w, h) = img.dimensions();
                assert!(w >= 1 && h >= 1 && w <= celeba::MAX_IMAGE_SIDE && h <= celeba::MAX_IMAGE_SIDE);
                assert_eq!(img.as_raw().len(), (w * h * 3) as usize);
                let side = w.min(h).min(16);
                assert_eq!(
                    celeba::crop_resize_chw(img.as_raw(), w, h, side).unwrap().len(),
                    (3 * side * side) as usize
                );
            }
        }
    });
    eprintln!("jpeg_decoding: {n} cases in {:.1} s", t.elapsed().as_secs_f64());
}

/// The harness itself: a failing property is reported (not swallowed), cases are counted and deterministic.
#[test]
fn harness_runs_the_cases_and_reports_failures() {
    let mut seen = Vec::new();
    let n = fuzz("harness", 5, 128, |u| seen.push(num(u, 0..=u32::MAX)));
    assert_eq!(n as usize, seen.len());
    if std::env::var("POWERTRAIN_FUZZ_CASES").is_err() {
        assert_eq!(n, 5);
        let mut again = Vec::new();
        fuzz("harness", 5, 128, |u| again.push(num(u, 0..=u32::MAX)));
        assert_eq!(seen, again, "the same seeds must give the same cases");
        let r = std::panic::catch_unwind(|| fuzz("harness", 3, 128, |_| panic!("property failed")));
        assert!(r.is_err());
    }
}

//! CelebA converter: `img_align_celeba/*.jpg` + `list_attr_celeba.txt` + `list_eval_partition.txt` ->
//! train/val/test.safetensors with x u8 [N, 3, S, S] (centre crop 178x178 = rows 20..198, resized to SxS by
//! fast_image_resize's antialiased bilinear convolution), y u8 [N, 40] (1 -> 1, -1 -> 0), the official
//! partition, and the per-channel mean/std of the training split's pixels (value/255) in every file's
//! metadata. Files are streamed: memory stays bounded for the full 202,599 images.
//!
//! Damaged input is refused with the file (and line) named, before the output directory is touched where
//! it can be: image names that are not plain file names, repeated attribute names, a truncated JPEG (no end
//! marker), images larger than [`MAX_IMAGE_SIDE`], an empty training partition. A source folder written by
//! `powertrain data synth celeba` (it holds [`super::synth::MARKER`]) gives a dataset marked `synthetic`.

use super::st::{StWriter, TensorDecl};
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Bumped whenever the converter's output changes for the same input (2: `synthetic` in the metadata and
/// dataset.json; the tensors are unchanged).
pub const CONVERTER_VERSION: u32 = 2;
/// Largest image width or height decoded (CelebA's aligned images are 178x218): a bigger header is refused
/// before any pixel memory is allocated.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// Images decoded per parallel chunk (bounds memory).
const CHUNK: usize = 256;

/// The parsed attribute file.
#[derive(Debug)]
pub struct AttrTable {
    /// The count on line 1.
    pub count: usize,
    pub names: Vec<String>,
    /// (image name, 1-based line, values 0/1).
    pub rows: Vec<(String, usize, Vec<u8>)>,
}

/// Parse `list_attr_celeba.txt` (CRLF or LF; values separated by one or more spaces). Fewer rows than the
/// count line are accepted (a prefix of the file); more rows, a value other than 1/-1, a wrong number of
/// values or a repeated image are errors naming `label:line`.
pub fn parse_attr(text: &str, label: &str) -> Result<AttrTable> {
    let mut lines = text.lines().enumerate();
    let count = match lines.next() {
        Some((_, l)) => l
            .trim()
            .parse::<usize>()
            .map_err(|_| anyhow::anyhow!("{label}:1: expected the image count, found '{}'", l.trim()))?,
        None => anyhow::bail!("{label}: empty file"),
    };
    let names: Vec<String> = match lines.next() {
        Some((_, l)) => l.split_ascii_whitespace().map(String::from).collect(),
        None => anyhow::bail!("{label}:2: missing the header line of attribute names"),
    };
    if names.is_empty() {
        anyhow::bail!("{label}:2: the header line holds no attribute names");
    }
    if names.len() > super::MAX_TARGETS {
        anyhow::bail!("{label}:2: {} attribute names, more than the {} supported", names.len(), super::MAX_TARGETS);
    }
    let mut seen_names = HashMap::new();
    for (j, n) in names.iter().enumerate() {
        if let Some(prev) = seen_names.insert(n.as_str(), j) {
            anyhow::bail!("{label}:2: attribute '{n}' is named twice (columns {} and {})", prev + 1, j + 1);
        }
    }
    let mut rows = Vec::new();
    let mut seen = HashMap::new();
    for (i, l) in lines {
        let ln = i + 1;
        let mut tok = l.split_ascii_whitespace();
        let Some(name) = tok.next() else { continue };
        check_image_name(name, label, ln)?;
        let vals: Vec<&str> = tok.collect();
        if vals.len() != names.len() {
            anyhow::bail!("{label}:{ln}: {} values for {name}, expected {}", vals.len(), names.len());
        }
        let mut v = Vec::with_capacity(vals.len());
        for (j, t) in vals.iter().enumerate() {
            v.push(match *t {
                "1" => 1u8,
                "-1" => 0u8,
                o => anyhow::bail!("{label}:{ln}: value '{o}' of {} for {name} is not 1 or -1", names[j]),
            });
        }
        if let Some(prev) = seen.insert(name.to_string(), ln) {
            anyhow::bail!("{label}:{ln}: {name} already listed on line {prev}");
        }
        rows.push((name.to_string(), ln, v));
    }
    if rows.len() > count {
        anyhow::bail!("{label}: {} rows, but line 1 says {count}: the file is inconsistent", rows.len());
    }
    Ok(AttrTable { count, names, rows })
}

/// Parse `list_eval_partition.txt`: `<image> <0|1|2>` per line, no header. Returns image -> (split, line).
pub fn parse_partition(text: &str, label: &str) -> Result<Vec<(String, u8, usize)>> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t: Vec<&str> = l.split_ascii_whitespace().collect();
        if t.is_empty() {
            continue;
        }
        let part = match t.as_slice() {
            [_, "0"] => 0,
            [_, "1"] => 1,
            [_, "2"] => 2,
            _ => anyhow::bail!("{label}:{}: expected '<image> <0|1|2>', found '{}'", i + 1, l.trim()),
        };
        check_image_name(t[0], label, i + 1)?;
        out.push((t[0].to_string(), part, i + 1));
    }
    Ok(out)
}

/// An image name from an annotation file must name a file inside the image folder: no path separators, not
/// `.` or `..` (a damaged or hostile file could otherwise make the converter read any file on the machine).
fn check_image_name(name: &str, label: &str, line: usize) -> Result<()> {
    if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        anyhow::bail!("{label}:{line}: '{name}' is not an image file name (expected e.g. 000001.jpg)");
    }
    Ok(())
}

/// Decode a JPEG file's bytes to RGB8; `label` names the file in errors. Refused: a file that does not end
/// with the JPEG end marker (truncated: the decoder would fill the missing rows with grey and succeed), a
/// width or height over [`MAX_IMAGE_SIDE`] (checked from the header before the pixels are allocated), and
/// anything the decoder rejects.
pub fn decode_jpeg(bytes: &[u8], label: &str) -> Result<image::RgbImage> {
    // Trailing padding after the end marker is tolerated; entropy-coded data never holds FF D9.
    let end = bytes.iter().rposition(|b| !matches!(b, 0x00 | b'\r' | b'\n' | b' ')).map_or(0, |i| i + 1);
    if !bytes[..end].ends_with(&[0xFF, 0xD9]) {
        anyhow::bail!(
            "{label}: not a valid JPEG: it ends without the end marker (FF D9), so it is truncated or damaged: \
             replace the file from the original archive"
        );
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| anyhow::anyhow!("{label}: not a valid JPEG ({e}): replace the file from the original archive"))?;
    Ok(img.to_rgb8())
}

/// Centre-crop an RGB8 image [h, w, 3] to a square and resize it to `size`x`size`; returns CHW u8
/// [3, size, size].
pub fn crop_resize_chw(rgb: &[u8], w: u32, h: u32, size: u32) -> Result<Vec<u8>> {
    use fast_image_resize as fr;
    let side = w.min(h);
    let (left, top) = ((w - side) / 2, (h - side) / 2);
    // Copy the square out first: resizing with a crop box would let the filter read pixels outside it.
    let mut sq = Vec::with_capacity((side * side * 3) as usize);
    for y in top..top + side {
        let o = ((y * w + left) * 3) as usize;
        sq.extend_from_slice(&rgb[o..o + side as usize * 3]);
    }
    let src = fr::images::ImageRef::new(side, side, &sq, fr::PixelType::U8x3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut dst = fr::images::Image::new(size, size, fr::PixelType::U8x3);
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    fr::Resizer::new().resize(&src, &mut dst, &opts).map_err(|e| anyhow::anyhow!("resize: {e}"))?;
    let hwc = dst.buffer();
    let plane = (size * size) as usize;
    let mut chw = vec![0u8; 3 * plane];
    for (p, px) in hwc.chunks_exact(3).enumerate() {
        chw[p] = px[0];
        chw[plane + p] = px[1];
        chw[2 * plane + p] = px[2];
    }
    Ok(chw)
}

/// Find a file or directory in the unpacked layout (`src/name`) or the official one (`src/<sub>/name`).
fn locate(src: &Path, name: &str, subs: &[&str]) -> Result<PathBuf> {
    let mut tried = vec![src.join(name)];
    tried.extend(subs.iter().map(|s| src.join(s).join(name)));
    tried.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "--src {}: {name} not found (looked in {}): give the CelebA directory",
            src.display(),
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// One image: decode, check, crop and resize. Returns (CHW pixels, sha256 of the file, file bytes).
fn load_image(path: &Path, attr_label: &str, line: usize, size: u32) -> Result<(Vec<u8>, String, u64)> {
    let bytes = super::files::read_regular(path, "").with_context(|| {
        format!(
            "{}: cannot read this image named in {attr_label} line {line}: is the image folder complete?",
            path.display()
        )
    })?;
    let img = decode_jpeg(&bytes, &path.display().to_string())?;
    let (w, h) = img.dimensions();
    if size > w.min(h) {
        anyhow::bail!("{}: {w}x{h} is smaller than --size {size}", path.display());
    }
    let chw = crop_resize_chw(img.as_raw(), w, h, size)?;
    Ok((chw, super::sha256_hex(&bytes), bytes.len() as u64))
}

/// What a conversion did.
#[derive(Debug)]
pub struct Summary {
    pub out: PathBuf,
    pub counts: [usize; 3],
    pub seconds: f64,
    /// Rows the attribute file's count line announced but that were absent (a prefix of the file).
    pub missing_rows: usize,
}

/// The annotation files, read and parsed, and where the images are.
struct Sources {
    attr_label: String,
    part_label: String,
    img_dir: PathBuf,
    attr_bytes: Vec<u8>,
    part_bytes: Vec<u8>,
    table: AttrTable,
    part: Vec<(String, u8, usize)>,
    /// The synthetic-data marker's content, when the source was written by `powertrain data synth celeba`.
    synthetic: Option<serde_json::Value>,
}

/// One row of the attribute file: (image name, 1-based line, values 0/1).
type AttrRow = (String, usize, Vec<u8>);

/// Find and parse `list_attr_celeba.txt` and `list_eval_partition.txt`, and find `img_align_celeba/`.
fn read_sources(src: &Path) -> Result<Sources> {
    let attr_path = locate(src, "list_attr_celeba.txt", &["Anno"])?;
    let part_path = locate(src, "list_eval_partition.txt", &["Eval"])?;
    let img_dir = locate(src, "img_align_celeba", &["Img"])?;
    let attr_label = attr_path.display().to_string();
    let part_label = part_path.display().to_string();
    let attr_bytes = super::files::read_regular(&attr_path, "")?;
    let part_bytes = super::files::read_regular(&part_path, "")?;
    let table = parse_attr(
        std::str::from_utf8(&attr_bytes).map_err(|_| anyhow::anyhow!("{attr_label}: not a text file"))?,
        &attr_label,
    )?;
    let part = parse_partition(
        std::str::from_utf8(&part_bytes).map_err(|_| anyhow::anyhow!("{part_label}: not a text file"))?,
        &part_label,
    )?;
    let mut marker_dirs = vec![src.to_path_buf()];
    marker_dirs.extend(attr_path.parent().map(Path::to_path_buf));
    let synthetic = super::synth::read_marker(&marker_dirs)?;
    Ok(Sources { attr_label, part_label, img_dir, attr_bytes, part_bytes, table, part, synthetic })
}

/// The rows of each split (train, val, test) in attribute-file order; the two files must list the same images.
fn assign_splits(s: &Sources) -> Result<[Vec<&AttrRow>; 3]> {
    let (attr_label, part_label) = (&s.attr_label, &s.part_label);
    let mut split_of: HashMap<&str, (u8, usize)> = HashMap::with_capacity(s.part.len());
    for (name, p, ln) in &s.part {
        if split_of.insert(name.as_str(), (*p, *ln)).is_some() {
            anyhow::bail!("{part_label}:{ln}: {name} is listed twice");
        }
    }
    let attr_names: HashMap<&str, usize> = s.table.rows.iter().map(|(n, ln, _)| (n.as_str(), *ln)).collect();
    for (name, _, ln) in &s.part {
        if !attr_names.contains_key(name.as_str()) {
            anyhow::bail!(
                "{part_label}:{ln}: {name} is not in {attr_label}: the partition and attribute files disagree"
            );
        }
    }
    let mut splits: [Vec<&AttrRow>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for row in &s.table.rows {
        match split_of.get(row.0.as_str()) {
            Some((p, _)) => splits[*p as usize].push(row),
            None => anyhow::bail!(
                "{attr_label}:{}: {} has no row in {part_label}: the partition and attribute files disagree",
                row.1,
                row.0
            ),
        }
    }
    Ok(splits)
}

/// Per-channel mean and standard deviation of pixel values / 255 from sums over `count` pixels per channel
/// (std 1 for a channel without spread).
fn pixel_stats(sum: &[u64; 3], sum2: &[u64; 3], count: usize) -> (Vec<f64>, Vec<f64>) {
    let cnt = count.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| *s as f64 / cnt / 255.0).collect();
    let std: Vec<f64> = (0..3)
        .map(|c| {
            let m = sum[c] as f64 / cnt;
            let var = (sum2[c] as f64 / cnt - m * m).max(0.0);
            if var > 0.0 {
                var.sqrt() / 255.0
            } else {
                1.0
            }
        })
        .collect();
    (mean, std)
}

/// What the splits written so far have gathered for dataset.json.
#[derive(Default)]
struct Written {
    /// (attribute-file line, sha256) of every image.
    image_hashes: Vec<(usize, String)>,
    image_bytes: u64,
    /// The training split's pixel mean/std, known once it is written.
    mean_std: Option<(Vec<f64>, Vec<f64>)>,
    split_info: serde_json::Map<String, serde_json::Value>,
}

/// Write split `si` (`rows`) as `<split>.safetensors` in `dir`: images decoded in parallel chunks, then the
/// targets; the training split (first) also measures the pixel statistics stored in every split.
fn write_split(
    dir: &Path,
    si: usize,
    rows: &[&AttrRow],
    s: &Sources,
    size: u32,
    pb: &indicatif::ProgressBar,
    acc: &mut Written,
) -> Result<()> {
    let split = ["train", "val", "test"][si];
    let n = rows.len();
    let k = s.table.names.len();
    let plane = (size * size) as usize;
    let decls =
        vec![TensorDecl::new("x", "U8", &[n, 3, size as usize, size as usize]), TensorDecl::new("y", "U8", &[n, k])];
    let mut meta: BTreeMap<String, String> = [
        ("protocol", crate::PROTOCOL_VERSION.to_string()),
        ("dataset", "celeba".to_string()),
        ("split", split.to_string()),
        ("names", serde_json::to_string(&s.table.names)?),
        ("x_layout", format!("u8 [N, 3, {size}, {size}] RGB; load as (v/255 - mean[c]) / std[c]")),
        ("synthetic", s.synthetic.is_some().to_string()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    if let Some((m, sd)) = &acc.mean_std {
        meta.insert("mean".into(), serde_json::to_string(m)?);
        meta.insert("std".into(), serde_json::to_string(sd)?);
    }
    let path = dir.join(format!("{split}.safetensors"));
    // Room for mean/std that the training split learns only at its end.
    let mut w = StWriter::begin(&path, decls, &meta, 512)?;
    let mut sum = [0u64; 3];
    let mut sum2 = [0u64; 3];
    for chunk in rows.chunks(CHUNK) {
        let imgs: Vec<(Vec<u8>, String, u64)> = chunk
            .par_iter()
            .map(|(name, ln, _)| {
                let r = load_image(&s.img_dir.join(name), &s.attr_label, *ln, size);
                pb.inc(1);
                r
            })
            .collect::<Result<_>>()?;
        for ((chw, sha, nb), (_, ln, _)) in imgs.into_iter().zip(chunk) {
            if si == 0 {
                for c in 0..3 {
                    for &v in &chw[c * plane..(c + 1) * plane] {
                        sum[c] += v as u64;
                        sum2[c] += (v as u64) * (v as u64);
                    }
                }
            }
            w.write(&chw)?;
            acc.image_hashes.push((*ln, sha));
            acc.image_bytes += nb;
        }
    }
    let mut pos = vec![0usize; k];
    for (_, _, v) in rows {
        w.write(v)?;
        v.iter().enumerate().for_each(|(j, &b)| pos[j] += b as usize);
    }
    if si == 0 {
        let (mean, std) = pixel_stats(&sum, &sum2, n * plane);
        meta.insert("mean".into(), serde_json::to_string(&mean)?);
        meta.insert("std".into(), serde_json::to_string(&std)?);
        acc.mean_std = Some((mean, std));
    }
    w.finish(&meta)?;
    let positives: serde_json::Map<String, serde_json::Value> =
        s.table.names.iter().zip(&pos).map(|(a, p)| (a.clone(), (*p).into())).collect();
    acc.split_info.insert(
        split.to_string(),
        serde_json::json!({"file": format!("{split}.safetensors"), "partition": si, "n": n, "positives_per_attribute": positives}),
    );
    Ok(())
}

/// dataset.json: sources with checksums (one digest over the image files), layout, normalisation, splits.
fn manifest(src: &Path, s: &Sources, size: u32, mut acc: Written) -> serde_json::Value {
    // One digest for the image folder: SHA-256 over "<name> <sha256>\n" in attribute-file order.
    acc.image_hashes.sort();
    let by_line: HashMap<usize, &str> = s.table.rows.iter().map(|(n, ln, _)| (*ln, n.as_str())).collect();
    let list: String =
        acc.image_hashes.iter().map(|(ln, h)| format!("{} {h}\n", by_line.get(ln).unwrap_or(&"?"))).collect();
    let (mean, std) = acc.mean_std.unwrap_or_default();
    let mut m = serde_json::json!({
        "dataset": "celeba",
        "protocol": crate::PROTOCOL_VERSION,
        "synthetic": s.synthetic.is_some(),
        "converter": "powertrain data celeba",
        "converter_version": CONVERTER_VERSION,
        "powertrain_version": env!("CARGO_PKG_VERSION"),
        "source": {
            "dir": src.display().to_string(),
            "files": [
                {"path": "list_attr_celeba.txt", "bytes": s.attr_bytes.len(), "sha256": super::sha256_hex(&s.attr_bytes),
                 "count_line": s.table.count, "rows": s.table.rows.len()},
                {"path": "list_eval_partition.txt", "bytes": s.part_bytes.len(), "sha256": super::sha256_hex(&s.part_bytes), "rows": s.part.len()},
                {"path": "img_align_celeba/", "files": acc.image_hashes.len(), "bytes": acc.image_bytes,
                 "sha256_of_list": super::sha256_hex(list.as_bytes()),
                 "sha256_of_list_means": "SHA-256 of the lines '<name> <sha256 of the file>\\n' in attribute-file order"},
            ],
        },
        "x": {"dtype": "U8", "row_shape": [3, size, size], "crop": "centre square (rows 20..198 of a 178x218 image)",
              "resize": "fast_image_resize Convolution(Bilinear), antialiased"},
        "y": {"kind": "binary", "k": s.table.names.len(), "names": s.table.names},
        "normalisation": {"mean": mean, "std": std, "over": "pixels of the training split, value/255", "applied": "at load time"},
        "splits": acc.split_info,
    });
    if let Some(marker) = &s.synthetic {
        m["synthetic_source"] = marker.clone();
    }
    m
}

/// Convert `src` (CelebA) into the dataset directory `out` with images of `size`x`size`.
pub fn convert(src: &Path, out: &Path, size: u32) -> Result<Summary> {
    let t0 = std::time::Instant::now();
    if size == 0 || size > MAX_IMAGE_SIDE {
        anyhow::bail!("--size {size}: must be between 1 and the images' side (default 64)");
    }
    super::files::refuse_non_empty(out, "--out", "choose another --out or remove it")?;
    let s = read_sources(src)?;
    let splits = assign_splits(&s)?;
    let Some((first, ln, _)) = splits[0].first() else {
        anyhow::bail!(
            "{}: no image is in the training partition (0 in {}): the dataset would have nothing to train on",
            s.part_label,
            s.attr_label
        );
    };
    // --size against the first image, before anything is written (every image is checked again).
    load_image(&s.img_dir.join(first), &s.attr_label, *ln, size)?;
    let missing_rows = s.table.count - s.table.rows.len();
    let stage = super::files::Staging::new(out)?;
    let pb = super::progress(s.table.rows.len() as u64, "celeba: converting images");
    let mut acc = Written { image_hashes: Vec::with_capacity(s.table.rows.len()), ..Written::default() };
    for (si, rows) in splits.iter().enumerate() {
        write_split(stage.path(), si, rows, &s, size, &pb, &mut acc)?;
    }
    pb.finish_and_clear();
    let counts = [splits[0].len(), splits[1].len(), splits[2].len()];
    let manifest = manifest(src, &s, size, acc);
    crate::util::write_json(&stage.path().join("dataset.json"), &manifest)?;
    let out = stage.commit()?;
    Ok(Summary { out, counts, seconds: t0.elapsed().as_secs_f64(), missing_rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "5_o_Clock_Shadow Arched_Eyebrows Attractive";

    #[test]
    fn attribute_parsing_both_spacings_crlf_and_lf() {
        for nl in ["\r\n", "\n"] {
            let text =
                format!("3{nl}{HEADER} {nl}000001.jpg -1  1  1{nl}000002.jpg 1 -1 -1{nl}000003.jpg  1  1 -1{nl}");
            let t = parse_attr(&text, "a.txt").unwrap();
            assert_eq!(t.count, 3);
            assert_eq!(t.names, vec!["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive"]);
            assert_eq!(t.rows[0], ("000001.jpg".to_string(), 3, vec![0, 1, 1]));
            assert_eq!(t.rows[1].2, vec![1, 0, 0]);
            assert_eq!(t.rows[2].2, vec![1, 1, 0]);
        }
        // Fewer rows than the count line: accepted (a prefix).
        assert_eq!(parse_attr(&format!("202599\r\n{HEADER} \r\n000001.jpg -1 1 1\r\n"), "a").unwrap().rows.len(), 1);
    }

    #[test]
    fn attribute_and_partition_errors_name_the_line() {
        let e = parse_attr(&format!("2\n{HEADER}\n000001.jpg -1 1 1\n000002.jpg -1 0 1\n"), "a.txt").unwrap_err();
        assert!(e.to_string().contains("a.txt:4") && e.to_string().contains("'0'"), "{e}");
        let e = parse_attr(&format!("2\n{HEADER}\n000001.jpg -1 1\n"), "a.txt").unwrap_err();
        assert!(e.to_string().contains("a.txt:3") && e.to_string().contains("2 values"), "{e}");
        let e = parse_attr(&format!("1\n{HEADER}\n000001.jpg 1 1 1\n000002.jpg 1 1 1\n"), "a.txt").unwrap_err();
        assert!(e.to_string().contains("line 1 says 1"), "{e}");
        let p = parse_partition("000001.jpg 0\r\n000002.jpg 2\r\n", "p.txt").unwrap();
        assert_eq!(p, vec![("000001.jpg".into(), 0, 1), ("000002.jpg".into(), 2, 2)]);
        let e = parse_partition("000001.jpg 0\n000002.jpg 3\n", "p.txt").unwrap_err();
        assert!(e.to_string().contains("p.txt:2"), "{e}");
        // Names that would leave the image folder, and repeated attribute names.
        for bad in ["../000001.jpg", "/etc/passwd", "..", "a\\b.jpg"] {
            let e = parse_attr(&format!("1\n{HEADER}\n{bad} 1 1 1\n"), "a.txt").unwrap_err().to_string();
            assert!(e.contains("a.txt:3") && e.contains("not an image file name"), "{bad}: {e}");
            let e = parse_partition(&format!("000001.jpg 0\n{bad} 0\n"), "p.txt").unwrap_err().to_string();
            assert!(e.contains("p.txt:2") && e.contains("not an image file name"), "{bad}: {e}");
        }
        let e = parse_attr("1\nA B A\n000001.jpg 1 1 1\n", "a.txt").unwrap_err().to_string();
        assert!(e.contains("a.txt:2") && e.contains("'A' is named twice"), "{e}");
    }

    #[test]
    fn crop_and_resize_of_a_known_image() {
        // 178x218: rows < 20 and >= 198 are red (cropped away); the square is left half black, right half
        // white. After resizing to 8x8: no red anywhere, columns 0..4 dark, 4..8 bright, G == B.
        let (w, h) = (178u32, 218u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let o = ((y * w + x) * 3) as usize;
                let px = if !(20..198).contains(&y) {
                    [255, 0, 0]
                } else if x >= 89 {
                    [255, 255, 255]
                } else {
                    [0, 0, 0]
                };
                rgb[o..o + 3].copy_from_slice(&px);
            }
        }
        let chw = crop_resize_chw(&rgb, w, h, 8).unwrap();
        assert_eq!(chw.len(), 3 * 64);
        for y in 0..8 {
            for x in 0..8 {
                let (r, g, b) = (chw[y * 8 + x], chw[64 + y * 8 + x], chw[128 + y * 8 + x]);
                assert_eq!(r, g, "red leaked in at ({x},{y})");
                assert_eq!(g, b);
                if x < 3 {
                    assert_eq!(r, 0);
                } else if x > 4 {
                    assert_eq!(r, 255);
                }
            }
        }
        // A uniform image stays uniform at any size.
        let grey = vec![77u8; (w * h * 3) as usize];
        assert!(crop_resize_chw(&grey, w, h, 64).unwrap().iter().all(|&v| v == 77));
    }

    #[test]
    fn truncated_and_oversized_jpegs_are_refused() {
        let px = vec![128u8; 178 * 218 * 3];
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 90)
            .encode(&px, 178, 218, image::ExtendedColorType::Rgb8)
            .unwrap();
        let img = decode_jpeg(&jpg, "ok.jpg").unwrap();
        assert_eq!(img.dimensions(), (178, 218));
        let mut padded = jpg.clone();
        padded.extend(b"\r\n\0\0");
        assert!(decode_jpeg(&padded, "padded.jpg").is_ok());
        // Cut in the middle: the decoder alone would fill the rest with grey and succeed.
        let e = decode_jpeg(&jpg[..jpg.len() / 2], "cut.jpg").unwrap_err().to_string();
        assert!(e.contains("cut.jpg") && e.contains("end marker"), "{e}");
        // A header claiming 60000x60000 (SOF0 height/width at offsets 5..9 of the segment).
        let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut big = jpg.clone();
        big[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let e = decode_jpeg(&big, "big.jpg").unwrap_err().to_string();
        assert!(e.contains("big.jpg") && e.contains("not a valid JPEG"), "{e}");
    }
}

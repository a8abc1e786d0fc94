//! `cargo bench --bench data`: dataset pipeline throughput on synthetic data (small scale, or medium with
//! `-- medium`): raw generation, conversion (rows/s for PAMAP2, images/s for CelebA) and the memory-mapped
//! loader from page cache (windows or images/s, GB/s of f32 produced, batches/s), shuffled, batch 256.
//! The loader is validated before it is timed: one epoch must deliver every row exactly once with the
//! right targets.
use powertrain::data::synth::{synth_celeba, synth_pamap2, Scale};
use powertrain::data::{celeba, open_dataset, pamap2, Loader, Split};
use std::sync::Arc;
use std::time::Instant;

/// Check one shuffled epoch covers each row once (targets compared with an unshuffled read).
fn validate(split: &Arc<Split>) {
    let rl = split.row_len();
    let ordered: Vec<_> = Loader::new(split.clone(), 256, false, 0, 0, vec![]).unwrap().map(|b| b.unwrap()).collect();
    let shuffled: Vec<_> = Loader::new(split.clone(), 256, true, 9, 0, vec![]).unwrap().map(|b| b.unwrap()).collect();
    let n_o: usize = ordered.iter().map(|b| b.n).sum();
    let n_s: usize = shuffled.iter().map(|b| b.n).sum();
    assert_eq!((n_o, n_s), (split.n, split.n), "loader dropped rows");
    let key = |x: &[f32]| x.iter().take(64).map(|v| v.to_bits() as u64).fold(0u64, |h, v| h.rotate_left(7) ^ v);
    let mut a: Vec<u64> = ordered.iter().flat_map(|b| b.x.chunks(rl).map(key).collect::<Vec<_>>()).collect();
    let mut b: Vec<u64> = shuffled.iter().flat_map(|b| b.x.chunks(rl).map(key).collect::<Vec<_>>()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "shuffled epoch is not a permutation of the rows");
}

fn loader_rate(name: &str, split: &Arc<Split>) {
    validate(split);
    let bytes_per_row = split.row_len() * 4;
    let t = Instant::now();
    let (mut rows, mut batches, mut epoch) = (0usize, 0usize, 0u64);
    while t.elapsed().as_secs_f64() < 3.0 {
        for b in Loader::new(split.clone(), 256, true, 1, epoch, vec![]).unwrap() {
            let b = b.unwrap();
            rows += b.n;
            batches += 1;
            std::hint::black_box(&b.x);
        }
        epoch += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "loader {name}: {:.0} rows/s, {:.2} GB/s f32 out, {:.0} batches/s (batch 256, shuffled, {epoch} epochs of {} rows)",
        rows as f64 / s,
        (rows * bytes_per_row) as f64 / s / 1e9,
        batches as f64 / s,
        split.n
    );
}

fn main() {
    let scale = if std::env::args().any(|a| a == "medium") { Scale::Medium } else { Scale::Small };
    let tmp = tempfile::tempdir().unwrap();
    let (raw_p, raw_c) = (tmp.path().join("raw-pamap2"), tmp.path().join("raw-celeba"));
    println!("scale {scale:?}, rayon threads {}", rayon::current_num_threads());

    let t = Instant::now();
    synth_pamap2(&raw_p, 0, scale, false).unwrap();
    println!("synth pamap2: {:.2} s", t.elapsed().as_secs_f64());
    let s = pamap2::convert(&raw_p.join("PAMAP2_Dataset"), &tmp.path().join("pamap2")).unwrap();
    let mb: u64 = std::fs::read_dir(raw_p.join("PAMAP2_Dataset/Protocol"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "convert pamap2: {} rows ({:.0} MB of text) in {:.2} s = {:.0} rows/s; windows {:?}",
        s.rows,
        mb as f64 / 1e6,
        s.seconds,
        s.rows as f64 / s.seconds,
        s.counts
    );

    let t = Instant::now();
    synth_celeba(&raw_c, 0, scale, false).unwrap();
    println!("synth celeba: {:.2} s", t.elapsed().as_secs_f64());
    let s = celeba::convert(&raw_c, &tmp.path().join("celeba"), 64).unwrap();
    let n: usize = s.counts.iter().sum();
    println!(
        "convert celeba: {n} images in {:.2} s = {:.0} images/s; split {:?}",
        s.seconds,
        n as f64 / s.seconds,
        s.counts
    );

    let p = open_dataset(&tmp.path().join("pamap2"), None).unwrap();
    loader_rate("pamap2 (f32 [27,1,256])", &p.train);
    let c = open_dataset(&tmp.path().join("celeba"), None).unwrap();
    loader_rate("celeba (u8 -> f32 [3,64,64], 40 targets)", &c.train);
}

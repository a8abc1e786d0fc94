//! Launch stamps (`--kernel-timing stamps`): the ring's layout and the host's bookkeeping, apart from the
//! driver calls so that the CPU emulation tests (tests/emu_stamps.rs) run the same code on an emulated ring.
//!
//! On the device (kernels/common.cuh `PT_STAMP`) every launch closes one ring slot with its (first block start,
//! last block end) in `%globaltimer` nanoseconds, whether the host times it or not. The host counts every
//! launch (`StampBook::launched`), remembers which launches make up each timed op, reads their slots after
//! synchronising (early, `drain`, when the oldest unread one is half a ring behind), and maps the times onto its
//! own clock through an anchor (a probe launch between two host clock reads).
use crate::ops::KernelTiming;
use anyhow::{bail, Result};

cuda_const! {
    /// Slots of the ring (kernels/common.cuh `PtStampBuf::ring` holds two words per slot).
    pub const PT_STAMP_RING: usize = 16384;
}
/// The buffer in 8-byte words: `STAMP_HEADER_WORDS` of header (first-start accumulator, end accumulator,
/// blocks_done | seq << 32), then (start, end) of launch s at `STAMP_HEADER_WORDS + 2 * (s % PT_STAMP_RING)`.
pub const STAMP_HEADER_WORDS: usize = 3;
pub const STAMP_BUF_WORDS: usize = STAMP_HEADER_WORDS + 2 * PT_STAMP_RING;
/// Read early when the oldest unread timed launch is this many launches behind (half the ring).
pub const STAMP_DRAIN_AT: u64 = (PT_STAMP_RING / 2) as u64;

/// The launches' device count from the header's third word.
pub fn header_seq(word2: u64) -> u64 {
    word2 >> 32
}

/// The contiguous pieces of the ring that hold launches `a..b`: (first launch, first word, launches).
pub fn ring_chunks(a: u64, b: u64) -> Result<Vec<(u64, usize, usize)>> {
    let ring = PT_STAMP_RING as u64;
    if b < a || b - a > ring {
        bail!("launch stamps: {} launches between reads overflow the ring of {ring}", b.saturating_sub(a));
    }
    let mut out = Vec::new();
    let mut i = a;
    while i < b {
        let slot = (i % ring) as usize;
        let n = ((b - i) as usize).min(PT_STAMP_RING - slot);
        out.push((i, STAMP_HEADER_WORDS + 2 * slot, n));
        i += n as u64;
    }
    Ok(out)
}

/// The host's side of the ring.
#[derive(Debug, Default)]
pub struct StampBook {
    /// Launches made since the ring was installed (the device's `seq` must equal it).
    pub launched: u64,
    /// Timed ops not yet taken: (name, first launch, launches).
    ops: Vec<(&'static str, u64, u64)>,
    /// Stamps read of launches `base..base + got.len()`.
    base: u64,
    got: Vec<(u64, u64)>,
}

impl StampBook {
    /// Count an op's `launches`; with `timed_from` (the launch count when the op began, `launched` then) keep
    /// it as a timed op `name`.
    pub fn end_op(&mut self, name: &'static str, timed_from: Option<u64>, launches: u64) {
        if let Some(first) = timed_from {
            self.ops.push((name, first, launches));
        }
        self.launched += launches;
    }

    /// No timed op is waiting.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Count a launch that is not an op (the clock probe); returns its index.
    pub fn count_probe(&mut self) -> u64 {
        self.launched += 1;
        self.launched - 1
    }

    /// Timed launches waiting to be read: `Some((from, to))`, or None when there is none.
    pub fn unread(&self) -> Option<(u64, u64)> {
        let first = self.ops.first()?.1;
        let from = if self.got.is_empty() { first } else { self.base + self.got.len() as u64 };
        (from < self.launched).then_some((from, self.launched))
    }

    /// Whether the oldest unread timed launch is far enough behind to read now, before the ring wraps.
    pub fn must_drain(&self) -> bool {
        self.unread().is_some_and(|(from, to)| to - from >= STAMP_DRAIN_AT)
    }

    /// The (start, end) stamps read for launches `from..`, continuing what was read before (`unread`).
    pub fn absorb(&mut self, from: u64, stamps: Vec<(u64, u64)>) -> Result<()> {
        if self.got.is_empty() {
            self.base = from;
        } else if from != self.base + self.got.len() as u64 {
            bail!("launch stamps: read launches from {from}, expected {}", self.base + self.got.len() as u64);
        }
        self.got.extend(stamps);
        Ok(())
    }

    /// The timed ops since the last take, their `%globaltimer` times mapped onto the host clock by `anchor`
    /// (globaltimer ns, host s): each op runs from its first launch's start to its last launch's end. Every
    /// timed launch must have been read (`unread` is None).
    pub fn take(&mut self, anchor: (u64, f64)) -> Result<Vec<KernelTiming>> {
        let ops = std::mem::take(&mut self.ops);
        let mut out = Vec::with_capacity(ops.len());
        for (name, first, n) in ops {
            let (mut s, mut e) = (u64::MAX, 0u64);
            for i in first..first + n {
                let k = i.checked_sub(self.base).map(|k| k as usize).filter(|&k| k < self.got.len());
                let Some(&(a, b)) = k.map(|k| &self.got[k]) else {
                    bail!("launch stamps: launch {i} of `{name}` was not read (ring overwritten?)");
                };
                if a == 0 || b < a {
                    bail!("launch stamps: launch {i} of `{name}` has invalid stamps (start {a}, end {b})");
                }
                s = s.min(a);
                e = e.max(b);
            }
            let start_s = anchor.1 + (s as i64 - anchor.0 as i64) as f64 * 1e-9;
            out.push(KernelTiming { name, start_s, dur_s: (e - s) as f64 * 1e-9 });
        }
        self.clear();
        Ok(out)
    }

    /// Forget the timed ops and what was read (timing turned off, or taken).
    pub fn clear(&mut self) {
        self.ops.clear();
        self.got.clear();
        self.base = self.launched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn chunks_split_at_the_ring_end() {
        let r = PT_STAMP_RING as u64;
        assert_eq!(ring_chunks(5, 9).unwrap(), vec![(5, STAMP_HEADER_WORDS + 10, 4)]);
        assert_eq!(
            ring_chunks(r - 2, r + 3).unwrap(),
            vec![(r - 2, STAMP_HEADER_WORDS + 2 * (PT_STAMP_RING - 2), 2), (r, STAMP_HEADER_WORDS, 3)]
        );
        assert!(ring_chunks(0, r + 1).is_err());
        assert!(ring_chunks(0, 0).unwrap().is_empty());
    }

    #[test]
    fn ops_span_their_launches_and_untimed_launches_are_counted() {
        let mut b = StampBook::default();
        b.end_op("untimed", None, 3);
        let f = b.launched;
        b.end_op("gemm", Some(f), 2);
        b.end_op("relu_forward", Some(b.launched), 1);
        assert_eq!(b.unread(), Some((3, 6)));
        // Launches 3, 4 (gemm), 5 (relu); globaltimer 1000 ns = host 2.0 s.
        b.absorb(3, vec![(1100, 1500), (1600, 2100), (2200, 2300)]).unwrap();
        assert_eq!(b.unread(), None);
        let t = b.take((1000, 2.0)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "gemm");
        assert_abs_diff_eq!(t[0].start_s, 2.0 + 100e-9, epsilon = 1e-15);
        assert_abs_diff_eq!(t[0].dur_s, 1000e-9, epsilon = 1e-15);
        assert_abs_diff_eq!(t[1].start_s, 2.0 + 1200e-9, epsilon = 1e-15);
        assert_abs_diff_eq!(t[1].dur_s, 100e-9, epsilon = 1e-15);
        assert_eq!(b.unread(), None);
        // A launch that was never read, or a zero stamp, is an error, not a made-up time.
        b.end_op("gemm", Some(b.launched), 1);
        assert!(format!("{:#}", b.take((0, 0.0)).unwrap_err()).contains("not read"));
        b.end_op("gemm", Some(b.launched), 1);
        b.absorb(7, vec![(0, 5)]).unwrap();
        assert!(format!("{:#}", b.take((0, 0.0)).unwrap_err()).contains("invalid stamps"));
    }

    #[test]
    fn draining_is_due_half_a_ring_behind() {
        let mut b = StampBook::default();
        b.end_op("gemm", Some(0), STAMP_DRAIN_AT - 1);
        assert!(!b.must_drain());
        b.end_op("gemm", Some(b.launched), 1);
        assert!(b.must_drain());
        let (from, to) = b.unread().unwrap();
        b.absorb(from, vec![(1, 2); (to - from) as usize]).unwrap();
        assert!(!b.must_drain() && b.unread().is_none());
        assert!(b.absorb(to + 1, vec![(1, 2)]).is_err(), "a gap in what was read");
        assert_eq!(b.take((0, 0.0)).unwrap().len(), 2);
    }
}

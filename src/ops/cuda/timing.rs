//! Per-launch timing of the CUDA backend: events around each op (mapped onto the host clock through an anchor
//! event), or launch stamps (`--kernel-timing stamps`: the kernels write %globaltimer into a ring, stamps.rs).
use super::{stamps, CudaBackend};
use crate::ops::{Clock, Device, EltwiseParams, KernelClock, KernelTiming};
use anyhow::{anyhow, bail, Context as _, Result};
use cudarc::driver::{CudaEvent, CudaSlice};

/// Per-launch timing state (see `Backend::set_kernel_timing`).
#[derive(Default)]
pub(super) struct Timing {
    on: bool,
    /// (op name, start event, end event), in launch order.
    pending: Vec<(&'static str, CudaEvent, CudaEvent)>,
    /// Recorded-and-read events, reused so that timing does not create events on every launch.
    pool: Vec<CudaEvent>,
    /// The clock anchor: an event recorded on an idle stream right after the host clock read `.1` (s).
    /// Reused for `ANCHOR_REFRESH_S`, so that a step's timings cost no extra round trip to the GPU.
    anchor: Option<(CudaEvent, f64)>,
    /// Launch stamps, when `set_kernel_clock(Stamps)` installed them (then they replace the events).
    stamps: Option<Stamps>,
}

/// Launch-stamp state (`--kernel-timing stamps`; kernels/common.cuh `PT_STAMP`, bookkeeping in stamps.rs):
/// while installed, every module's `pt_stamps` points at `buf`.
struct Stamps {
    buf: CudaSlice<u64>,
    book: stamps::StampBook,
    /// globaltimer (ns) at host clock (s): the probe launch's midpoint and the midpoint of the host clock reads
    /// around it.
    anchor: Option<(u64, f64)>,
}

/// What `op_begin` started: nothing (timing off), a start event, or the op's first launch index (stamps).
pub(super) enum OpMark {
    Off,
    Event(CudaEvent),
    Stamp(u64),
}

/// How long a clock anchor is reused before a new one is recorded (s). Event times are read relative to it
/// in f32 milliseconds: 0.06 us resolution at 1 s, well under the events' own 0.5 us; the GPU and host clocks
/// drift by parts per million, i.e. a few microseconds per second at most.
const ANCHOR_REFRESH_S: f64 = 1.0;

impl CudaBackend {
    /// A timing event from the pool of recorded-and-read ones, or a new one.
    fn pooled_event(&self, t: &mut Timing) -> Result<CudaEvent> {
        match t.pool.pop() {
            Some(e) => Ok(e),
            None => self.new_timing_event(),
        }
    }

    /// Start of an op: with timing on, record its start event (no synchronisation), or with launch stamps
    /// note its first launch.
    pub(super) fn op_begin(&self) -> Result<OpMark> {
        let mut t = self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?;
        if let Some(st) = &t.stamps {
            return Ok(if t.on { OpMark::Stamp(st.book.launched) } else { OpMark::Off });
        }
        if !t.on {
            return Ok(OpMark::Off);
        }
        let e = self.pooled_event(&mut t)?;
        e.record(&self.stream).map_err(|e| anyhow!("cuEventRecord: {e}"))?;
        Ok(OpMark::Event(e))
    }

    /// End of an op of `launches` launches: with events, record its end event and keep the pair for
    /// `take_kernel_timings`; with launch stamps, count the launches (timed or not) and keep the timed op.
    pub(super) fn op_end(&self, name: &'static str, mark: OpMark, launches: usize) -> Result<()> {
        let mut t = self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?;
        if let Some(st) = t.stamps.as_mut() {
            let first = match mark {
                OpMark::Stamp(first) => Some(first),
                _ => None,
            };
            st.book.end_op(name, first, launches as u64);
            if st.book.must_drain() {
                self.drain_stamps(st)?;
            }
            return Ok(());
        }
        let OpMark::Event(start) = mark else { return Ok(()) };
        let e = self.pooled_event(&mut t)?;
        e.record(&self.stream).map_err(|e| anyhow!("cuEventRecord: {e}"))?;
        t.pending.push((name, start, e));
        Ok(())
    }

    /// Install launch stamps (a zeroed ring, every module's `pt_stamps` pointing at it) or remove them.
    pub(super) fn install_stamps(&self, on: bool) -> Result<()> {
        let mut t = self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?;
        if on == t.stamps.is_some() {
            return Ok(());
        }
        self.synchronize()?;
        let buf = if on {
            Some(
                self.stream
                    .alloc_zeros::<u64>(stamps::STAMP_BUF_WORDS)
                    .map_err(|e| anyhow!("launch stamps: cannot allocate the ring: {e}"))?,
            )
        } else {
            None
        };
        let ptr: u64 = match &buf {
            Some(b) => {
                let (p, _sync) = cudarc::driver::DevicePtr::device_ptr(b, &self.stream);
                p
            }
            None => 0,
        };
        for (file, m) in &self.modules {
            let mut g = m.get_global("pt_stamps", &self.stream).map_err(|e| {
                anyhow!("launch stamps: kernels/{file} has no `pt_stamps` (rebuild after editing kernels/): {e}")
            })?;
            if g.len() != 8 {
                bail!("launch stamps: `pt_stamps` of kernels/{file} is {} bytes, not a pointer", g.len());
            }
            self.stream
                .memcpy_htod(&ptr.to_ne_bytes(), &mut g)
                .map_err(|e| anyhow!("launch stamps: cannot set kernels/{file}'s pointer: {e}"))?;
        }
        self.synchronize()?;
        t.stamps = buf.map(|buf| Stamps { buf, book: stamps::StampBook::default(), anchor: None });
        Ok(())
    }

    /// Copy the stamps of launches `a..b` (at most a ring's worth, all complete) from the device.
    fn read_stamps(&self, st: &Stamps, a: u64, b: u64) -> Result<Vec<(u64, u64)>> {
        let mut words = vec![0u64; 2 * (b.saturating_sub(a)) as usize];
        for (first, lo, n) in stamps::ring_chunks(a, b)? {
            let at = 2 * (first - a) as usize;
            self.stream
                .memcpy_dtoh(&st.buf.slice(lo..lo + 2 * n), &mut words[at..at + 2 * n])
                .map_err(|e| anyhow!("launch stamps: cannot read the ring: {e}"))?;
        }
        self.synchronize()?;
        Ok(words.chunks_exact(2).map(|w| (w[0], w[1])).collect())
    }

    /// Read the timed launches' stamps not read yet (before the ring wraps over them, or to take them).
    fn drain_stamps(&self, st: &mut Stamps) -> Result<()> {
        let Some((from, to)) = st.book.unread() else { return Ok(()) };
        self.synchronize()?;
        let new = self.read_stamps(st, from, to)?;
        st.book.absorb(from, new)
    }

    /// Pair globaltimer with the host clock: an empty probe launch between two host clock reads on an idle
    /// stream. Also checks that the device closed exactly the launches the host counted.
    fn stamp_anchor(&self, st: &mut Stamps) -> Result<(u64, f64)> {
        use cudarc::driver::PushKernelArg as _;
        let plan = crate::ops::elementwise::cuda::stamp_probe_plan();
        let (f, cfg) = self.prepare("pt_probe", &plan[0])?;
        let p = EltwiseParams::new(0);
        let t0 = self.clock_s();
        let mut b = self.stream.launch_builder(&f.f);
        b.arg(&p);
        b.arg(&st.buf);
        // SAFETY: pt_probe takes (EltwiseParams by value, float*) and touches neither; the pointer is a live
        // device allocation of this context.
        unsafe { b.launch(cfg) }.map_err(|e| anyhow!("launch stamps: probe launch failed: {e}"))?;
        let probe = st.book.count_probe();
        self.synchronize()?;
        let t1 = self.clock_s();
        let mut head = [0u64; stamps::STAMP_HEADER_WORDS];
        self.stream
            .memcpy_dtoh(&st.buf.slice(0..stamps::STAMP_HEADER_WORDS), &mut head[..])
            .map_err(|e| anyhow!("launch stamps: cannot read the ring header: {e}"))?;
        let seq = stamps::header_seq(head[2]);
        if seq != st.book.launched & 0xffff_ffff {
            bail!(
                "launch stamps: the device closed {seq} launches, the host made {}: a kernel without PT_STAMP() \
                 or a launch outside the timed path; use --kernel-timing events",
                st.book.launched
            );
        }
        let (s, e) = self.read_stamps(st, probe, probe + 1)?[0];
        if s == 0 || e < s {
            bail!("launch stamps: the probe's stamps are invalid (start {s}, end {e}); use --kernel-timing events");
        }
        Ok((s + (e - s) / 2, (t0 + t1) / 2.0))
    }

    /// `take_kernel_timings` with launch stamps.
    pub(super) fn take_stamp_timings(&self) -> Result<Vec<KernelTiming>> {
        let mut t = self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?;
        let Some(st) = t.stamps.as_mut() else { return Ok(Vec::new()) };
        if st.book.is_empty() {
            return Ok(Vec::new());
        }
        self.drain_stamps(st)?;
        let now = self.clock_s();
        let anchor = match st.anchor {
            Some(a) if now - a.1 < ANCHOR_REFRESH_S => a,
            _ => {
                let a = self.stamp_anchor(st)?;
                st.anchor = Some(a);
                a
            }
        };
        st.book.take(anchor)
    }
}

/// Map `take_kernel_timings`' events onto the host clock: `anchor` was recorded on an idle stream right after the
/// host clock read `anchor_s`. A fresh anchor (`before`: recorded after the events) places an event `e` at
/// `anchor_s - elapsed(e, anchor)`; a reused one, recorded before them, at `anchor_s + elapsed(anchor, e)`.
/// Elapsed times are always read in recording order, so they are never negative.
///
/// The caller has synchronised the (single) stream, so every pending event and the anchor are complete: the
/// elapsed times are read with the raw driver call, without the two event synchronisations and three context
/// checks cudarc's `elapsed_ms` adds per call (two calls per launch on the hot path of `--per-kernel`).
fn to_host_times(
    pending: &[(&'static str, CudaEvent, CudaEvent)],
    anchor: &CudaEvent,
    anchor_s: f64,
    before: bool,
) -> Result<Vec<KernelTiming>> {
    let ms = |a: &CudaEvent, b: &CudaEvent| {
        // SAFETY: both events were created by cudarc in this backend's context, recorded on its stream, and
        // are complete (see above); neither is destroyed while this runs (the caller owns them).
        unsafe { cudarc::driver::result::event::elapsed(a.cu_event(), b.cu_event()) }
            .map_err(|e| anyhow!("cuEventElapsedTime: {e}"))
    };
    pending
        .iter()
        .map(|(name, s, e)| {
            let start_s =
                if before { anchor_s - ms(s, anchor)? as f64 / 1e3 } else { anchor_s + ms(anchor, s)? as f64 / 1e3 };
            Ok(KernelTiming { name, start_s, dur_s: ms(s, e)? as f64 / 1e3 })
        })
        .collect()
}

impl Clock for CudaBackend {
    fn set_kernel_timing(&self, on: bool) {
        if let Ok(mut t) = self.timing.lock() {
            t.on = on;
            if !on {
                let pending = std::mem::take(&mut t.pending);
                for (_, s, e) in pending {
                    t.pool.push(s);
                    t.pool.push(e);
                }
                if let Some(st) = t.stamps.as_mut() {
                    st.book.clear();
                }
            }
        }
    }
    fn set_kernel_clock(&self, clock: KernelClock) -> Result<()> {
        self.install_stamps(clock == KernelClock::Stamps)
    }
    fn take_kernel_timings(&self) -> Result<Vec<KernelTiming>> {
        if self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?.stamps.is_some() {
            return self.take_stamp_timings();
        }
        let (pending, anchor) = {
            let mut t = self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?;
            (std::mem::take(&mut t.pending), t.anchor.take())
        };
        if pending.is_empty() {
            if let Ok(mut t) = self.timing.lock() {
                t.anchor = anchor;
            }
            return Ok(Vec::new());
        }
        // Wait for everything queued (the step has usually done so already, reading its loss).
        self.synchronize()?;
        let now_s = self.clock_s();
        let (anchor, before) = match anchor {
            Some((e, at)) if now_s - at < ANCHOR_REFRESH_S => ((e, at), false),
            old => {
                // A new anchor, recorded on the idle stream, so that its GPU time is (within microseconds)
                // the host time read just before recording it.
                let e = match old {
                    Some((e, _)) => e,
                    None => {
                        self.pooled_event(&mut *self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?)?
                    }
                };
                let at = self.clock_s();
                e.record(&self.stream).map_err(|e| anyhow!("cuEventRecord: {e}"))?;
                e.synchronize().map_err(|e| anyhow!("cuEventSynchronize: {e}"))?;
                ((e, at), true)
            }
        };
        let out = to_host_times(&pending, &anchor.0, anchor.1, before).context("reading kernel timing events")?;
        let mut t = self.timing.lock().map_err(|_| anyhow!("timing lock poisoned"))?;
        for (_, s, e) in pending {
            if t.pool.len() < 4096 {
                t.pool.push(s);
                t.pool.push(e);
            }
        }
        t.anchor = Some(anchor);
        Ok(out)
    }
    fn clock_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

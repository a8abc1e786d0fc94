//! CUDA backend: the kernels of `kernels/*.cu` (compiled by NVRTC in build.rs, embedded), launched through
//! cudarc on one context and one stream. File for file the same names as `src/ops/cpu/`.
//!
//! Each op is: check the buffer lengths against the parameters, then for every `Launch` of its plan
//! (`launch.rs`) launch that function with `(params by value, pointers in the trait method's order)`.
//! Kernel images, in order of preference: the embedded CUBIN for the device's architecture, the embedded PTX
//! (JIT by the driver), the embedded source compiled by NVRTC at run time.
//!
//! Without a GPU nothing here panics: `CudaBackend::new` returns an error that says to use `--device cpu`.

pub mod check;
mod conv2d;
mod elementwise;
mod gemm;
pub mod launch;
mod loss;
pub mod nvrtc;
mod optim;
mod pool;
pub mod stamps;

use super::*;
use anyhow::{anyhow, bail, Context as _};
use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr,
    LaunchConfig,
};
use cudarc::nvrtc::Ptx;
use launch::Launch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One `kernels/*.cu` file as embedded by build.rs.
pub struct EmbeddedModule {
    /// File name, e.g. `conv2d.cu`.
    pub file: &'static str,
    /// The source text (compiled by NVRTC at run time when no image fits).
    pub source: &'static str,
    /// `(arch, image)`: CUBIN for `sm_<arch>`, e.g. `(90, ..)`.
    pub cubins: &'static [(u32, &'static [u8])],
    /// `(arch, text)`: PTX for `compute_<arch>`.
    pub ptx: Option<(u32, &'static str)>,
}

mod embedded {
    use super::EmbeddedModule;
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}
pub use embedded::{HEADERS, MODULES, NVRTC_BUILD_VERSION, PTXAS_REPORT};

// SAFETY: the parameter structs are `#[repr(C)]`, `Pod`, made of 4-byte fields without padding, and have
// field-for-field twins in kernels/common.cuh (sizes checked in params.rs); kernels take them by value.
unsafe impl DeviceRepr for Conv2dParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for Pool2dParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for GemmParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for BiasParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for EltwiseParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for LossParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for SgdParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for AdamParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for FillParams {}

/// The error for a machine without the CUDA driver.
pub const NO_DRIVER: &str = "no CUDA driver found (libcuda.so.1); use --device cpu";

/// True when libcuda loads and reports at least one device. Never panics.
pub fn cuda_available() -> bool {
    // SAFETY: only tries to dlopen libcuda; no driver function is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return false;
    }
    matches!(CudaContext::device_count(), Ok(n) if n > 0)
}

/// The ptxas report of the embedded CUBINs (registers, shared memory, spills), written by build.rs.
pub fn ptxas_report() -> &'static str {
    PTXAS_REPORT
}

/// What build.rs embedded, per kernel file (no GPU needed): for `powertrain info` and the tests.
pub fn embedded_kernels_info() -> serde_json::Value {
    let modules: Vec<serde_json::Value> = MODULES
        .iter()
        .map(|m| {
            serde_json::json!({
                "file": m.file,
                "source_bytes": m.source.len(),
                "cubins": m.cubins.iter().map(|(a, b)| serde_json::json!({"arch": format!("sm_{a}"), "bytes": b.len()})).collect::<Vec<_>>(),
                "ptx": m.ptx.map(|(a, t)| serde_json::json!({"arch": format!("compute_{a}"), "bytes": t.len()})),
            })
        })
        .collect();
    serde_json::json!({
        "nvrtc_at_build": NVRTC_BUILD_VERSION.map(|(a, b)| format!("{a}.{b}")),
        "headers": HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "modules": modules,
    })
}

/// Device, driver and loaded kernel images of device 0 as JSON (for `powertrain info`). Errors without a GPU.
pub fn device_info() -> Result<serde_json::Value> {
    CudaBackend::new(0)?.info()
}

/// Device limits a launch must respect (read once).
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_threads: u32,
    max_block: (u32, u32, u32),
    max_grid: (u32, u32, u32),
    /// Dynamic + static shared memory a block may opt in to.
    max_shared_optin: u32,
    /// Without opting in (48 KiB on every recent GPU).
    max_shared_default: u32,
}

/// A loaded kernel function and what its launches must respect.
struct Func {
    f: CudaFunction,
    /// Register-limited threads per block of this function.
    max_threads: u32,
    /// Static shared memory of the function.
    static_shared: u32,
    /// Dynamic shared memory the function has been opted in to (0 = the default limit).
    optin_shared: Mutex<u32>,
}

/// Per-launch timing state (see `Backend::set_kernel_timing`).
#[derive(Default)]
struct Timing {
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
enum OpMark {
    Off,
    Event(CudaEvent),
    Stamp(u64),
}

/// How long a clock anchor is reused before a new one is recorded (s). Event times are read relative to it
/// in f32 milliseconds: 0.06 us resolution at 1 s, well under the events' own 0.5 us; the GPU and host clocks
/// drift by parts per million, i.e. a few microseconds per second at most.
const ANCHOR_REFRESH_S: f64 = 1.0;

/// The CUDA backend: one context, one stream (the context's default stream), lazily loaded kernel functions.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// (file, module), in `MODULES` order.
    modules: Vec<(&'static str, Arc<CudaModule>)>,
    /// (file, which image was loaded: "cubin sm_90", "ptx compute_80", "nvrtc sm_75").
    images: Vec<(&'static str, String)>,
    funcs: Mutex<HashMap<&'static str, Arc<Func>>>,
    limits: Limits,
    name: String,
    cc: (i32, i32),
    epoch: Instant,
    timing: Mutex<Timing>,
}

fn attr(ctx: &CudaContext, a: CUdevice_attribute) -> Result<u32> {
    let v = ctx.attribute(a).map_err(|e| anyhow!("cuDeviceGetAttribute({a:?}): {e}"))?;
    Ok(v.max(0) as u32)
}

impl CudaBackend {
    /// Open device `ordinal`: context, stream, kernel modules. Errors (never panics) without a driver or GPU.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only tries to dlopen libcuda; CudaContext::new panics when it is missing, so check first.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            bail!(NO_DRIVER);
        }
        let n = CudaContext::device_count()
            .map_err(|e| anyhow!("CUDA driver found but cuInit failed ({e}); use --device cpu"))?;
        if ordinal as i64 >= n as i64 {
            bail!("CUDA device {ordinal} does not exist ({n} device(s) found); use --device cpu");
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| anyhow!("cannot open CUDA device {ordinal}: {e}"))?;
        // SAFETY: this backend uses a single stream, so cudarc's cross-stream event tracking is not needed
        // (and would create two events per allocation). No buffer is ever used on another stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().map_err(|e| anyhow!("cuDeviceGetName: {e}"))?;
        let cc = ctx.compute_capability().map_err(|e| anyhow!("compute capability: {e}"))?;
        use CUdevice_attribute::*;
        let limits = Limits {
            max_threads: attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
            max_block: (
                attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X)?,
                attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y)?,
                attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z)?,
            ),
            max_grid: (
                attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
                attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?,
                attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?,
            ),
            max_shared_optin: attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
            max_shared_default: attr(&ctx, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?,
        };
        let mut modules = Vec::new();
        let mut images = Vec::new();
        for m in MODULES {
            let (module, image) = load_module(&ctx, m, cc)?;
            modules.push((m.file, module));
            images.push((m.file, image));
        }
        Ok(CudaBackend {
            ctx,
            stream,
            modules,
            images,
            funcs: Mutex::new(HashMap::new()),
            limits,
            name,
            cc,
            epoch: Instant::now(),
            timing: Mutex::new(Timing::default()),
        })
    }

    /// The stream every op runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Device, driver and kernel images as JSON.
    pub fn info(&self) -> Result<serde_json::Value> {
        let mut driver = 0i32;
        // SAFETY: one valid out-pointer; libcuda is loaded (the context exists).
        let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver) };
        r.result().map_err(|e| anyhow!("cuDriverGetVersion: {e}"))?;
        let sms = attr(&self.ctx, CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let mem = self.ctx.total_mem().map_err(|e| anyhow!("cuDeviceTotalMem: {e}"))?;
        let images: serde_json::Map<String, serde_json::Value> =
            self.images.iter().map(|(f, i)| (f.to_string(), serde_json::Value::from(i.clone()))).collect();
        Ok(serde_json::json!({
            "name": self.name,
            "compute_capability": format!("{}.{}", self.cc.0, self.cc.1),
            "sms": sms,
            "memory_bytes": mem,
            "driver_version": format!("{}.{}", driver / 1000, (driver % 1000) / 10),
            "kernel_image": self.image_summary(),
            "kernel_images": images,
            "max_threads_per_block": self.limits.max_threads,
            "max_shared_per_block_optin": self.limits.max_shared_optin,
        }))
    }

    /// "cubin sm_90" when every module loaded the same kind of image, else a per-file list.
    pub fn image_summary(&self) -> String {
        let first = self.images.first().map(|(_, i)| i.clone()).unwrap_or_else(|| "no kernels embedded".into());
        if self.images.iter().all(|(_, i)| *i == first) {
            first
        } else {
            self.images.iter().map(|(f, i)| format!("{f}: {i}")).collect::<Vec<_>>().join(", ")
        }
    }

    /// Device-to-device copy bandwidth in GB/s, counting bytes read + written, for a `bytes`-sized copy
    /// (median of `reps` copies timed with events). Used as the memory ceiling of `bench kernels`.
    pub fn measure_copy_gbps(&self, bytes: usize, reps: usize) -> Result<f64> {
        let n = bytes / 4;
        let src = self.alloc(n)?;
        let mut dst = self.alloc(n)?;
        let mut times = Vec::new();
        for i in 0..reps + 2 {
            let a = self.new_timing_event()?;
            let b = self.new_timing_event()?;
            a.record(&self.stream).map_err(|e| anyhow!("cuEventRecord: {e}"))?;
            self.stream.memcpy_dtod(&src, &mut dst).map_err(|e| anyhow!("cuMemcpyDtoD of {bytes} bytes: {e}"))?;
            b.record(&self.stream).map_err(|e| anyhow!("cuEventRecord: {e}"))?;
            let ms = a.elapsed_ms(&b).map_err(|e| anyhow!("cuEventElapsedTime: {e}"))?;
            if i >= 2 {
                times.push(ms as f64 / 1e3);
            }
        }
        let t = crate::stats::median(&times);
        Ok(2.0 * (n * 4) as f64 / t / 1e9)
    }

    fn new_timing_event(&self) -> Result<CudaEvent> {
        self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| anyhow!("cuEventCreate: {e}"))
    }

    /// The function `name` of one of the modules (loaded on first use, then cached).
    fn func(&self, name: &'static str) -> Result<Arc<Func>> {
        let mut map = self.funcs.lock().map_err(|_| anyhow!("CUDA function table lock poisoned"))?;
        if let Some(f) = map.get(name) {
            return Ok(f.clone());
        }
        let f = self.modules.iter().find_map(|(_, m)| m.load_function(name).ok()).ok_or_else(|| {
            let files: Vec<&str> = self.modules.iter().map(|(f, _)| *f).collect();
            anyhow!(
                "kernel function `{name}` is in none of the embedded kernel files {files:?}: launch.rs and \
                     kernels/*.cu disagree (rebuild after editing kernels/)"
            )
        })?;
        let max_threads = f.max_threads_per_block().map_err(|e| anyhow!("{name}: cuFuncGetAttribute: {e}"))?;
        let static_shared = f.shared_size_bytes().map_err(|e| anyhow!("{name}: cuFuncGetAttribute: {e}"))?;
        let func = Arc::new(Func {
            f,
            max_threads: max_threads.max(0) as u32,
            static_shared: static_shared.max(0) as u32,
            optin_shared: Mutex::new(0),
        });
        map.insert(name, func.clone());
        Ok(func)
    }

    /// Validate `l` against the device and the function; opt in to large dynamic shared memory if needed.
    fn prepare(&self, op: &str, l: &Launch) -> Result<(Arc<Func>, LaunchConfig)> {
        let f = self.func(l.func)?;
        let lim = &self.limits;
        let (bx, by, bz) = l.block;
        let (gx, gy, gz) = l.grid;
        let threads = bx as u64 * by as u64 * bz as u64;
        let bad = |what: String| {
            anyhow!("{op}: invalid launch of `{}` (grid {:?}, block {:?}): {what}", l.func, l.grid, l.block)
        };
        if threads == 0 || gx == 0 || gy == 0 || gz == 0 {
            return Err(bad("a zero grid or block dimension".into()));
        }
        if bx > lim.max_block.0 || by > lim.max_block.1 || bz > lim.max_block.2 {
            return Err(bad(format!("block exceeds the device's {:?}", lim.max_block)));
        }
        if threads > lim.max_threads.min(f.max_threads) as u64 {
            return Err(bad(format!(
                "{threads} threads per block, the device allows {} and this function {} (registers)",
                lim.max_threads, f.max_threads
            )));
        }
        if gx > lim.max_grid.0 || gy > lim.max_grid.1 || gz > lim.max_grid.2 {
            return Err(bad(format!("grid exceeds the device's {:?}", lim.max_grid)));
        }
        let total_shared = l.shared_bytes as u64 + f.static_shared as u64;
        if total_shared > lim.max_shared_optin as u64 {
            return Err(bad(format!(
                "{} bytes of shared memory ({} dynamic), the device allows {}",
                total_shared, l.shared_bytes, lim.max_shared_optin
            )));
        }
        if total_shared > lim.max_shared_default as u64 {
            let mut opted = f.optin_shared.lock().map_err(|_| anyhow!("CUDA function lock poisoned"))?;
            if *opted < l.shared_bytes {
                f.f.set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    l.shared_bytes as i32,
                )
                .map_err(|e| bad(format!("cannot opt in to {} bytes of dynamic shared memory: {e}", l.shared_bytes)))?;
                *opted = l.shared_bytes;
            }
        }
        Ok((f, LaunchConfig { grid_dim: l.grid, block_dim: l.block, shared_mem_bytes: l.shared_bytes }))
    }

    /// A timing event from the pool of recorded-and-read ones, or a new one.
    fn pooled_event(&self, t: &mut Timing) -> Result<CudaEvent> {
        match t.pool.pop() {
            Some(e) => Ok(e),
            None => self.new_timing_event(),
        }
    }

    /// Start of an op: with timing on, record its start event (no synchronisation), or with launch stamps
    /// note its first launch.
    fn op_begin(&self) -> Result<OpMark> {
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
    fn op_end(&self, name: &'static str, mark: OpMark, launches: usize) -> Result<()> {
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
    fn install_stamps(&self, on: bool) -> Result<()> {
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
        let plan = launch::stamp_probe();
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
    fn take_stamp_timings(&self) -> Result<Vec<KernelTiming>> {
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

/// Run every launch of `$plan` for op `$op` with the kernel arguments `$arg`s (params first, then pointers in
/// the trait method's order), bracketed by timing events when timing is on.
macro_rules! launch_op {
    ($be:expr, $op:expr, $plan:expr, $($arg:expr),+ $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let be: &$crate::ops::cuda::CudaBackend = $be;
        let plan: Vec<$crate::ops::cuda::launch::Launch> = $plan;
        let t0 = be.op_begin()?;
        for l in &plan {
            let (f, cfg) = be.prepare($op, l)?;
            let mut b = be.stream().launch_builder(&f.f);
            $( b.arg($arg); )+
            // SAFETY: every kernel of kernels/*.cu is `extern "C"` and takes (params struct by value, then the
            // pointers in the trait method's order) — exactly the arguments pushed above, in that order; the
            // caller checked every buffer against the lengths the params imply, and `prepare` checked the
            // launch configuration against the device and the function.
            unsafe { b.launch(cfg) }.map_err(|e| anyhow::anyhow!("{}: launch of `{}` failed: {e}", $op, l.func))?;
        }
        be.op_end($op, t0, plan.len())
    }};
}
pub(crate) use launch_op;

/// Product of the dimensions as an element count; errors when negative or beyond the kernels' 32-bit indexing.
pub(crate) fn elems(op: &str, dims: &[i32]) -> Result<usize> {
    let mut n: i64 = 1;
    for &d in dims {
        if d < 0 {
            bail!("{op}: negative dimension in {dims:?}");
        }
        n = n.saturating_mul(d as i64);
    }
    if n > i32::MAX as i64 {
        bail!("{op}: {dims:?} has {n} elements, more than the kernels' 32-bit indexing allows");
    }
    Ok(n as usize)
}

/// `have >= want`, else an error naming the op and the buffer.
pub(crate) fn need(op: &str, what: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        bail!("{op}: `{what}` has {have} elements, the parameters need {want}");
    }
    Ok(())
}

/// Load module `m`: CUBIN for the device's architecture (same major, highest minor not above the device's),
/// else PTX (JIT), else the source compiled now by NVRTC. Returns the module and which image it is.
fn load_module(ctx: &Arc<CudaContext>, m: &EmbeddedModule, cc: (i32, i32)) -> Result<(Arc<CudaModule>, String)> {
    let dev = (cc.0 * 10 + cc.1) as u32;
    let mut tried = Vec::new();
    let mut cubins: Vec<&(u32, &[u8])> = m.cubins.iter().filter(|(a, _)| *a / 10 == dev / 10 && *a <= dev).collect();
    cubins.sort_by_key(|(a, _)| std::cmp::Reverse(*a));
    for (arch, image) in cubins {
        match ctx.load_module(Ptx::from_binary(image.to_vec())) {
            Ok(module) => return Ok((module, format!("cubin sm_{arch}"))),
            Err(e) => tried.push(format!("cubin sm_{arch}: {e}")),
        }
    }
    if let Some((arch, text)) = m.ptx {
        if arch <= dev {
            match ctx.load_module(Ptx::from_src(text)) {
                Ok(module) => return Ok((module, format!("ptx compute_{arch}"))),
                Err(e) => tried.push(format!("ptx compute_{arch}: {e}")),
            }
        }
    }
    let arch = format!("sm_{dev}");
    if nvrtc::nvrtc_present() {
        let headers: Vec<(&str, &str)> = HEADERS.to_vec();
        match nvrtc::compile(m.source, m.file, &headers, &nvrtc::options(&arch), nvrtc::Output::Cubin) {
            Ok(c) => match ctx.load_module(Ptx::from_binary(c.image)) {
                Ok(module) => return Ok((module, format!("nvrtc {arch}"))),
                Err(e) => tried.push(format!("nvrtc {arch}: loading the CUBIN failed: {e}")),
            },
            Err(log) => tried.push(format!("nvrtc {arch}: {log}")),
        }
    } else {
        tried.push(format!(
            "nvrtc {arch}: libnvrtc not found (pip install nvidia-cuda-nvrtc==13.0.88 and add its nvidia/cu13/lib to \
             LD_LIBRARY_PATH, or rebuild with NVRTC so that CUBINs are embedded)"
        ));
    }
    Err(anyhow!(
        "no kernel image of kernels/{} could be loaded on this sm_{dev} device:\n  {}",
        m.file,
        tried.join("\n  ")
    ))
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

impl Backend for CudaBackend {
    type Buf = CudaSlice<f32>;
    type IBuf = CudaSlice<i32>;
    type View<'a> = CudaView<'a, f32>;
    type ViewMut<'a> = CudaViewMut<'a, f32>;

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cuda
    }
    fn device_name(&self) -> String {
        self.name.clone()
    }

    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        self.stream.alloc_zeros::<f32>(len).map_err(|e| anyhow!("cannot allocate {len} floats on the GPU: {e}"))
    }
    fn alloc_i32(&self, len: usize) -> Result<Self::IBuf> {
        self.stream.alloc_zeros::<i32>(len).map_err(|e| anyhow!("cannot allocate {len} ints on the GPU: {e}"))
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        self.stream.clone_htod(host).map_err(|e| anyhow!("upload of {} floats: {e}", host.len()))
    }
    fn upload_i32(&self, host: &[i32]) -> Result<Self::IBuf> {
        self.stream.clone_htod(host).map_err(|e| anyhow!("upload of {} ints: {e}", host.len()))
    }
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()> {
        need("write", "dst", dst.len(), host.len())?;
        let mut d = dst.slice_mut(0..host.len());
        self.stream.memcpy_htod(host, &mut d).map_err(|e| anyhow!("write of {} floats: {e}", host.len()))
    }
    fn write_i32(&self, dst: &mut Self::IBuf, host: &[i32]) -> Result<()> {
        need("write_i32", "dst", dst.len(), host.len())?;
        let mut d = dst.slice_mut(0..host.len());
        self.stream.memcpy_htod(host, &mut d).map_err(|e| anyhow!("write of {} ints: {e}", host.len()))
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        let v = self.stream.clone_dtoh(buf).map_err(|e| anyhow!("download of {} floats: {e}", buf.len()))?;
        self.synchronize()?;
        Ok(v)
    }
    fn download_i32(&self, buf: &Self::IBuf) -> Result<Vec<i32>> {
        let v = self.stream.clone_dtoh(buf).map_err(|e| anyhow!("download of {} ints: {e}", buf.len()))?;
        self.synchronize()?;
        Ok(v)
    }
    fn fill(&self, mut dst: Self::ViewMut<'_>, value: f32) -> Result<()> {
        let n = dst.len();
        if n > i32::MAX as usize {
            bail!("fill: {n} elements, more than the kernels' 32-bit indexing allows");
        }
        let p = FillParams { len: n as i32, value };
        launch_op!(self, "fill", launch::fill(&p), &p, &mut dst)
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len()
    }
    fn len_i32(&self, buf: &Self::IBuf) -> usize {
        buf.len()
    }
    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| anyhow!("CUDA stream synchronize (a kernel failed?): {e}"))
    }

    fn view<'a>(&self, buf: &'a Self::Buf) -> Self::View<'a> {
        buf.as_view()
    }
    fn view_mut<'a>(&self, buf: &'a mut Self::Buf) -> Self::ViewMut<'a> {
        buf.as_view_mut()
    }
    fn slice<'a>(&self, buf: &'a Self::Buf, off: usize, len: usize) -> Self::View<'a> {
        buf.slice(off..off + len)
    }
    fn slice_mut<'a>(&self, buf: &'a mut Self::Buf, off: usize, len: usize) -> Self::ViewMut<'a> {
        buf.slice_mut(off..off + len)
    }

    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: Self::View<'_>,
        w: Self::View<'_>,
        y: Self::ViewMut<'_>,
    ) -> Result<()> {
        conv2d::forward(self, p, x, w, y)
    }
    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: Self::View<'_>,
        w: Self::View<'_>,
        dx: Self::ViewMut<'_>,
    ) -> Result<()> {
        conv2d::backward_data(self, p, dy, w, dx)
    }
    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: Self::View<'_>,
        dy: Self::View<'_>,
        dw: Self::ViewMut<'_>,
    ) -> Result<()> {
        conv2d::backward_filter(self, p, x, dy, dw)
    }
    fn maxpool2d_forward(
        &self,
        p: &Pool2dParams,
        x: Self::View<'_>,
        y: Self::ViewMut<'_>,
        idx: &mut Self::IBuf,
    ) -> Result<()> {
        pool::max_forward(self, p, x, y, idx)
    }
    fn maxpool2d_backward(
        &self,
        p: &Pool2dParams,
        dy: Self::View<'_>,
        idx: &Self::IBuf,
        dx: Self::ViewMut<'_>,
    ) -> Result<()> {
        pool::max_backward(self, p, dy, idx, dx)
    }
    fn avgpool2d_forward(&self, p: &Pool2dParams, x: Self::View<'_>, y: Self::ViewMut<'_>) -> Result<()> {
        pool::avg_forward(self, p, x, y)
    }
    fn avgpool2d_backward(&self, p: &Pool2dParams, dy: Self::View<'_>, dx: Self::ViewMut<'_>) -> Result<()> {
        pool::avg_backward(self, p, dy, dx)
    }
    fn gemm(&self, p: &GemmParams, a: Self::View<'_>, b: Self::View<'_>, c: Self::ViewMut<'_>) -> Result<()> {
        gemm::gemm(self, p, a, b, c)
    }
    fn bias_forward(&self, p: &BiasParams, b: Self::View<'_>, y: Self::ViewMut<'_>) -> Result<()> {
        elementwise::bias_forward(self, p, b, y)
    }
    fn bias_backward(&self, p: &BiasParams, dy: Self::View<'_>, db: Self::ViewMut<'_>) -> Result<()> {
        elementwise::bias_backward(self, p, dy, db)
    }
    fn relu_forward(&self, p: &EltwiseParams, x: Self::ViewMut<'_>) -> Result<()> {
        elementwise::relu_forward(self, p, x)
    }
    fn relu_backward(&self, p: &EltwiseParams, y: Self::View<'_>, dy: Self::ViewMut<'_>) -> Result<()> {
        elementwise::relu_backward(self, p, y, dy)
    }
    fn softmax_xent(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        labels: &Self::IBuf,
        grad: Self::ViewMut<'_>,
        loss: Self::ViewMut<'_>,
    ) -> Result<()> {
        loss::softmax_xent(self, p, logits, labels, grad, loss)
    }
    fn bce_logits(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        targets: Self::View<'_>,
        grad: Self::ViewMut<'_>,
        loss: Self::ViewMut<'_>,
    ) -> Result<()> {
        loss::bce_logits(self, p, logits, targets, grad, loss)
    }
    fn accuracy_classes(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        labels: &Self::IBuf,
        correct: Self::ViewMut<'_>,
    ) -> Result<()> {
        loss::accuracy_classes(self, p, logits, labels, correct)
    }
    fn accuracy_binary(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        targets: Self::View<'_>,
        correct: Self::ViewMut<'_>,
    ) -> Result<()> {
        loss::accuracy_binary(self, p, logits, targets, correct)
    }
    fn sgd_step(
        &self,
        p: &SgdParams,
        w: Self::ViewMut<'_>,
        grad: Self::View<'_>,
        mom: Self::ViewMut<'_>,
    ) -> Result<()> {
        optim::sgd_step(self, p, w, grad, mom)
    }
    fn adam_step(
        &self,
        p: &AdamParams,
        w: Self::ViewMut<'_>,
        grad: Self::View<'_>,
        m: Self::ViewMut<'_>,
        v: Self::ViewMut<'_>,
    ) -> Result<()> {
        optim::adam_step(self, p, w, grad, m, v)
    }

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

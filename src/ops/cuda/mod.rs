//! CUDA backend: the kernels of `src/ops/<family>/*.cu` (compiled by NVRTC in build.rs, embedded), launched
//! through cudarc on one context and one stream. Memory, launches and device limits are here; the images in
//! modules.rs, per-launch timing in timing.rs (launch stamps' bookkeeping in stamps.rs); each op family's
//! checks and plans are in its own `cuda.rs`, shared with the CPU emulation through [`Launcher`].
//!
//! Each op is: check the buffer lengths against the parameters, then for every `Launch` of its plan launch that
//! function with `(params by value, buffers in the trait method's order)`. Plans are made for this device's
//! [`DeviceSpec`] (SM count and limits read from the driver). Without a GPU nothing here panics:
//! `CudaBackend::new` returns an error that says to use `--device cpu`.

mod modules;
pub mod nvrtc;
pub mod stamps;
mod timing;

pub use modules::{embedded_kernels_info, ptxas_report, EmbeddedModule, HEADERS, MODULES, NVRTC_BUILD_VERSION};

use crate::ops::launch::{need, Arg, DeviceSpec, Launch, Launcher};
use crate::ops::{Device, DeviceKind, KernelParams};
use anyhow::{anyhow, bail, Result};
use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig,
};
use modules::load_module;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// The 16 UUID bytes of CUDA device `ordinal` as the driver numbers devices (`cuDeviceGetUuid`, which honours
/// `CUDA_VISIBLE_DEVICES` and `CUDA_DEVICE_ORDER`): the identity NVML must be asked for to read the energy of
/// the GPU that runs the kernels. Errors without a driver; never panics.
pub fn device_uuid(ordinal: usize) -> Result<[u8; 16]> {
    // SAFETY: only tries to dlopen libcuda.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        bail!("{NO_DRIVER}");
    }
    use cudarc::driver::result;
    result::init().map_err(|e| anyhow!("cuInit: {e}"))?;
    let dev = result::device::get(ordinal as i32).map_err(|e| anyhow!("cuDeviceGet({ordinal}): {e}"))?;
    let id = result::device::get_uuid(dev).map_err(|e| anyhow!("cuDeviceGetUuid({ordinal}): {e}"))?;
    Ok(id.bytes.map(|b| b as u8))
}

/// Device, driver and loaded kernel images of device 0 as JSON (for `powertrain info`). Errors without a GPU.
pub fn device_info() -> Result<serde_json::Value> {
    CudaBackend::new(0)?.info()
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

/// The CUDA backend: one context, one stream (the context's default stream), lazily loaded kernel functions.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// (file, module), in `MODULES` order.
    modules: Vec<(&'static str, Arc<CudaModule>)>,
    /// (file, which image was loaded: "cubin sm_90", "ptx compute_80", "nvrtc sm_75").
    images: Vec<(&'static str, String)>,
    funcs: Mutex<HashMap<&'static str, Arc<Func>>>,
    spec: DeviceSpec,
    name: String,
    cc: (i32, i32),
    epoch: Instant,
    timing: Mutex<timing::Timing>,
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
        let spec = DeviceSpec {
            sms: attr(&ctx, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
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
            spec,
            name,
            cc,
            epoch: Instant::now(),
            timing: Mutex::new(timing::Timing::default()),
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
        let mem = self.ctx.total_mem().map_err(|e| anyhow!("cuDeviceTotalMem: {e}"))?;
        let images: serde_json::Map<String, serde_json::Value> =
            self.images.iter().map(|(f, i)| (f.to_string(), serde_json::Value::from(i.clone()))).collect();
        Ok(serde_json::json!({
            "name": self.name,
            "compute_capability": format!("{}.{}", self.cc.0, self.cc.1),
            "sms": self.spec.sms,
            "memory_bytes": mem,
            "driver_version": format!("{}.{}", driver / 1000, (driver % 1000) / 10),
            "kernel_image": self.image_summary(),
            "kernel_images": images,
            "max_threads_per_block": self.spec.max_threads,
            "max_shared_per_block_optin": self.spec.max_shared_optin,
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
                "kernel function `{name}` is in none of the embedded kernel files {files:?}: a launch plan and \
                 the .cu files disagree (rebuild after editing a .cu file)"
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
        l.validate(op, &self.spec, f.max_threads, f.static_shared)?;
        if l.shared_bytes as u64 + f.static_shared as u64 > self.spec.max_shared_default as u64 {
            let mut opted = f.optin_shared.lock().map_err(|_| anyhow!("CUDA function lock poisoned"))?;
            if *opted < l.shared_bytes {
                f.f.set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    l.shared_bytes as i32,
                )
                .map_err(|e| {
                    anyhow!(
                        "{op}: cannot opt in to {} bytes of dynamic shared memory for `{}`: {e}",
                        l.shared_bytes,
                        l.func
                    )
                })?;
                *opted = l.shared_bytes;
            }
        }
        Ok((f, LaunchConfig { grid_dim: l.grid, block_dim: l.block, shared_mem_bytes: l.shared_bytes }))
    }
}

impl Device for CudaBackend {
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
}

impl Launcher for CudaBackend {
    fn spec(&self) -> &DeviceSpec {
        &self.spec
    }
    fn view_len(v: &CudaView<'_, f32>) -> usize {
        v.len()
    }
    fn view_mut_len(v: &CudaViewMut<'_, f32>) -> usize {
        v.len()
    }
    fn shorten<'s, 'l: 's>(v: CudaView<'l, f32>) -> CudaView<'s, f32> {
        v
    }
    fn shorten_mut<'s, 'l: 's>(v: CudaViewMut<'l, f32>) -> CudaViewMut<'s, f32> {
        v
    }

    /// Every launch of `plan`, bracketed by timing events (or counted for launch stamps) when timing is on.
    fn launch<P: KernelParams>(
        &self,
        op: &'static str,
        plan: &[Launch],
        p: &P,
        args: &mut [Arg<'_, Self>],
    ) -> Result<()> {
        use cudarc::driver::PushKernelArg as _;
        let t0 = self.op_begin()?;
        for l in plan {
            let (f, cfg) = self.prepare(op, l)?;
            let mut b = self.stream.launch_builder(&f.f);
            b.arg(p);
            for a in args.iter_mut() {
                match a {
                    Arg::In(v) => b.arg(&*v),
                    Arg::Out(v) => b.arg(v),
                    Arg::IIn(v) => b.arg(*v),
                    Arg::IOut(v) => b.arg(&mut **v),
                };
            }
            // SAFETY: every kernel is `extern "C"` and takes (params struct by value, then the buffers in the
            // trait method's order); each family's `cuda.rs` passes exactly those, in that order, after checking
            // every buffer against the lengths the params imply, and `prepare` checked the launch configuration
            // against the device and the function.
            unsafe { b.launch(cfg) }.map_err(|e| anyhow!("{op}: launch of `{}` failed: {e}", l.func))?;
        }
        self.op_end(op, t0, plan.len())
    }
}

//! The ops: every kernel, its CPU twin, its CUDA source and launch plan, behind one seam.
//!
//! The seam (candle's `BackendDevice` apart from its op traits): [`Device`] is memory, synchronisation and the
//! device's identity; [`Clock`] is per-launch timing; each op family has its own trait ([`Conv2dOps`],
//! [`PoolOps`], ...), and [`Backend`] is all of them together, so models and the training loop write `B: Backend`
//! and call `be.conv2d_forward(..)`. Backends: [`cpu::CpuBackend`] (the readable reference, rayon),
//! [`cuda::CudaBackend`] (the `.cu` kernels on a GPU) and [`emu::EmuBackend`] (the same `.cu` sources compiled by
//! g++ and run on the CPU, with the CUDA launch plans). Calling an op on a concrete backend needs the family's
//! trait in scope: `use crate::ops::prelude::*`.
//!
//! One op family = one folder (`conv2d/`, `pool/`, `gemm/`, `bias/`, `elementwise/`, `loss/`, `optim/`):
//! - `mod.rs`: the `#[repr(C)]` parameter struct (`cuda_struct!`: build.rs writes its C twin into the kernels'
//!   `params.cuh`), the family's trait, shapes and FLOPs, and its calls for `check` / `bench kernels`;
//! - `cpu.rs`: the CPU code; `cuda.rs`: buffer checks and the launch plan (shared by CUDA and the emulation);
//! - `<family>.cu`: the kernels; `tests.rs`: f64 references, finite differences, PyTorch fixtures, emulation.
//!
//! Adding a kernel to a family touches only its folder; adding a family is a folder like the others, its
//! `pub mod` line and one row in `op_families!` below (the steps are in `kernels/README.md`). build.rs finds
//! the `.cu` files by globbing `src/ops/*/`.
//!
//! Layout conventions (all row-major, PyTorch's): activations NCHW `[n, c, h, w]` f32; conv weights
//! `[c_out, c_in, kh, kw]`, linear weights `[out, in]`; class labels i32 `[n]`; binary targets f32 `[n, k]` (0/1).
//! Buffers: `Buf` is an owned f32 buffer on the device (a `Vec<f32>` on the CPU), `IBuf` an owned i32 buffer; ops
//! take views (`View`/`ViewMut`, like `&[f32]`/`&mut [f32]`) so that one flat parameter buffer can be sliced per
//! tensor and updated by a single fused optimizer launch.

use anyhow::Result;

/// A `#[repr(C)]` parameter struct shared with the kernels: the struct (with `Clone, Copy, Debug, Default,
/// PartialEq, Pod, Zeroable`; add more derives as attributes), its [`KernelParams`] layout, and cudarc's
/// `DeviceRepr`. build.rs writes the C twin into `params.cuh` from this block's text (src/ops/abi.rs), so only
/// `pub field: i32 | u32 | f32,` lines and doc comments belong inside.
macro_rules! cuda_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident: $t:ty,)+ }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)+
        }
        impl $crate::ops::KernelParams for $name {
            const NAME: &'static str = stringify!($name);
            const FIELDS: &'static [(&'static str, usize)] = &[$((stringify!($f), ::std::mem::offset_of!($name, $f)),)+];
        }
        // Every field is 4 bytes: no padding, and the C twin (same fields, same order) has the same layout.
        const _: () = {
            $(assert!(::std::mem::size_of::<$t>() == 4);)+
            assert!(::std::mem::size_of::<$name>() == 4 * [$(stringify!($f)),+].len());
        };
        // SAFETY: `#[repr(C)]`, `Pod`, 4-byte fields without padding, and the kernels' twin is generated from
        // this very definition (build.rs, src/ops/abi.rs); kernels take it by value as their first argument.
        unsafe impl ::cudarc::driver::DeviceRepr for $name {}
    };
}

/// Constants shared with the kernels (tile sizes, scratch capacities): the Rust consts as written, and a
/// `#define NAME (expression)` in `params.cuh` (build.rs). Integer expressions only.
macro_rules! cuda_const {
    ($($i:item)+) => { $($i)+ };
}

/// The op families, one row each: `Op` variant, module, trait, call type, parameter structs. It re-exports the
/// trait, calls and params, and builds `Backend`, `KERNEL_NAMES`, `Op`, the awkward check cases and
/// `PARAM_LAYOUTS` from them (in this order). (The modules are declared outside the macro, where rustfmt sees them.)
macro_rules! op_families {
    ($($variant:ident: $module:ident, $ops:ident, $call:ident, [$($param:ident),+];)+) => {
        $(pub use $module::{$ops, $call, $($param),+};)+

        /// Every op family on one device, with memory and a clock: what models and the training loop use.
        pub trait Backend: Device + Clock $(+ $ops)+ {}
        impl<T: Device + Clock $(+ $ops)+> Backend for T {}

        /// The traits to call ops on a concrete backend: `use crate::ops::prelude::*`.
        pub mod prelude {
            pub use super::{Backend, Clock, Device, DeviceKind, KernelClock, KernelTiming $(, $ops)+};
        }

        /// Every kernel the backends implement, by name (the `.cu` function names), family by family. Used by
        /// `check`, `bench kernels`, `info` and the per-kernel energy records.
        pub const KERNEL_NAMES: &[&str] =
            &concat_names::<{ 0 $(+ $module::KERNELS.len())+ }>(&[$($module::KERNELS),+]);

        /// One kernel call with its parameters, of any family (what `check` compares and `bench kernels` times).
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Op {
            $($variant($call),)+
        }
        $(impl From<$call> for Op {
            fn from(c: $call) -> Op {
                Op::$variant(c)
            }
        })+
        impl Op {
            fn info(&self) -> &dyn check::CallInfo {
                match self {
                    $(Op::$variant(c) => c,)+
                }
            }
            /// Run the call once on `b` with the prepared buffers (in `buffers()` order).
            pub fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
                match self {
                    $(Op::$variant(c) => check::KernelCall::run(c, b, f, i),)+
                }
            }
        }

        /// The awkward shapes of every family (`check`), family by family.
        pub fn awkward_ops() -> Vec<Op> {
            let mut v = Vec::new();
            $(v.extend($module::awkward_calls().into_iter().map(Op::from));)+
            v
        }

        /// The layout of every parameter struct on the Rust side (compared field by field with the C compiler's
        /// in the tests).
        pub const PARAM_LAYOUTS: &[ParamLayout] = &[$($(ParamLayout::of::<$param>(),)+)+];
    };
}

pub mod abi;
pub mod check;
pub mod cpu;
pub mod cuda;
pub mod emu;
pub mod launch;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

// The op families: one folder each, and one row in `op_families!` below.
pub mod bias;
pub mod conv2d;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod pool;

op_families! {
    // Op variant   module        trait            call type         parameter structs
    Conv2d:         conv2d,       Conv2dOps,       Conv2dCall,       [Conv2dParams];
    Pool:           pool,         PoolOps,         PoolCall,         [Pool2dParams];
    Gemm:           gemm,         GemmOps,         GemmCall,         [GemmParams];
    Bias:           bias,         BiasOps,         BiasCall,         [BiasParams];
    Elementwise:    elementwise,  ElementwiseOps,  ElementwiseCall,  [EltwiseParams, FillParams];
    Loss:           loss,         LossOps,         LossCall,         [LossParams];
    Optim:          optim,        OptimOps,        OptimCall,        [SgdParams, AdamParams];
}

/// Which backend a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// GPU (or CPU wall-clock) time of one kernel launch, recorded when kernel timing is on (see
/// `Clock::set_kernel_timing`). The energy meter attributes step energy to kernels with these.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTiming {
    /// Kernel name, one of `KERNEL_NAMES`.
    pub name: &'static str,
    /// Start, seconds on the backend's clock (host monotonic time since the backend was created; CUDA event
    /// times are mapped onto it).
    pub start_s: f64,
    /// Duration in seconds (CUDA events on a GPU, wall clock on the CPU).
    pub dur_s: f64,
}

/// Memory, synchronisation and identity of a device. Every op enqueues work; `download`/`download_i32` are
/// the only methods that wait.
///
/// Errors: every method that can fail returns `Result`; shapes are the caller's contract (checked by each op),
/// device failures are errors, never panics.
pub trait Device: Send + Sync {
    /// Owned f32 buffer.
    type Buf: Send;
    /// Owned i32 buffer (class labels, max-pool argmax indices).
    type IBuf: Send;
    /// Borrowed f32 view (`&[f32]`).
    type View<'a>
    where
        Self: 'a;
    /// Borrowed mutable f32 view (`&mut [f32]`).
    type ViewMut<'a>
    where
        Self: 'a;

    fn kind(&self) -> DeviceKind;
    /// Human-readable device name ("cpu (2 threads)", "NVIDIA H100 80GB HBM3").
    fn device_name(&self) -> String;

    /// Zero-filled f32 buffer of `len` elements.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// Zero-filled i32 buffer of `len` elements.
    fn alloc_i32(&self, len: usize) -> Result<Self::IBuf>;
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    fn upload_i32(&self, host: &[i32]) -> Result<Self::IBuf>;
    /// Copy `host` into the start of `dst` (len(host) <= len(dst)); no allocation.
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()>;
    fn write_i32(&self, dst: &mut Self::IBuf, host: &[i32]) -> Result<()>;
    /// Copy the buffer to the host (waits for queued work).
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    fn download_i32(&self, buf: &Self::IBuf) -> Result<Vec<i32>>;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn len_i32(&self, buf: &Self::IBuf) -> usize;
    /// Wait until all queued work is done.
    fn synchronize(&self) -> Result<()>;

    fn view<'a>(&self, buf: &'a Self::Buf) -> Self::View<'a>;
    fn view_mut<'a>(&self, buf: &'a mut Self::Buf) -> Self::ViewMut<'a>;
    /// `buf[off .. off + len]`.
    fn slice<'a>(&self, buf: &'a Self::Buf, off: usize, len: usize) -> Self::View<'a>;
    fn slice_mut<'a>(&self, buf: &'a mut Self::Buf, off: usize, len: usize) -> Self::ViewMut<'a>;
}

/// Per-launch timing: it observes, it never changes what is computed.
pub trait Clock: Device {
    /// Turn per-launch timing on or off (off by default). On the CUDA backend every launch is then bracketed by
    /// events; nothing synchronises until `take_kernel_timings`.
    fn set_kernel_timing(&self, on: bool);
    /// Which clock per-launch timing reads (`--kernel-timing`). Events (the default) work everywhere (the CPU
    /// backend reads its wall clock); launch stamps only on CUDA.
    fn set_kernel_clock(&self, clock: KernelClock) -> Result<()> {
        match clock {
            KernelClock::Events => Ok(()),
            KernelClock::Stamps => anyhow::bail!(
                "--kernel-timing stamps needs --device cuda (the kernels write %globaltimer stamps); the {} \
                 backend times its kernels with the wall clock: use --kernel-timing events",
                self.kind().name()
            ),
        }
    }
    /// The timings recorded since the last call (waits for the recorded work to finish).
    fn take_kernel_timings(&self) -> Result<Vec<KernelTiming>>;
    /// Seconds on the backend's clock now (the clock `KernelTiming::start_s` uses).
    fn clock_s(&self) -> f64;
}

/// Per-op timing on the host's wall clock, for the backends whose ops run on the host (the CPU backend and
/// the emulation): `record` pushes one `KernelTiming` while timing is on.
#[derive(Debug)]
pub struct WallClock {
    epoch: std::time::Instant,
    timing: std::sync::Mutex<Option<Vec<KernelTiming>>>,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock { epoch: std::time::Instant::now(), timing: std::sync::Mutex::new(None) }
    }
}

impl WallClock {
    /// Seconds since the clock was made.
    pub fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
    pub fn is_on(&self) -> bool {
        self.timing.lock().map(|t| t.is_some()).unwrap_or(false)
    }
    /// Turn timing on (keeping what was recorded) or off (dropping it).
    pub fn set(&self, on: bool) {
        if let Ok(mut t) = self.timing.lock() {
            *t = if on { Some(t.take().unwrap_or_default()) } else { None };
        }
    }
    /// Record op `name` as having run from `start_s` until now (no-op while timing is off).
    pub fn record(&self, name: &'static str, start_s: f64) {
        let end = self.now_s();
        if let Ok(mut t) = self.timing.lock() {
            if let Some(v) = t.as_mut() {
                v.push(KernelTiming { name, start_s, dur_s: end - start_s });
            }
        }
    }
    /// The timings recorded since the last call.
    pub fn take(&self) -> Vec<KernelTiming> {
        self.timing.lock().ok().and_then(|mut t| t.as_mut().map(std::mem::take)).unwrap_or_default()
    }
}

/// How per-launch timing reads the GPU's time (`--kernel-timing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelClock {
    /// A CUDA event recorded before and after every op (two host calls per op).
    Events,
    /// Launch stamps: each kernel's blocks write %globaltimer into a ring (kernels/common.cuh `PT_STAMP`);
    /// no host call per launch, one read per step.
    Stamps,
}

/// `--kernel-timing events|stamps` (argh parses the flag into this).
impl std::str::FromStr for KernelClock {
    type Err = String;
    fn from_str(s: &str) -> Result<KernelClock, String> {
        match s {
            "events" => Ok(KernelClock::Events),
            "stamps" => Ok(KernelClock::Stamps),
            other => Err(format!("unknown --kernel-timing '{other}': use events or stamps")),
        }
    }
}

impl KernelClock {
    pub fn name(self) -> &'static str {
        match self {
            KernelClock::Events => "events",
            KernelClock::Stamps => "stamps",
        }
    }
}

/// A parameter struct the kernels take by value (implemented by `cuda_struct!`).
pub trait KernelParams: bytemuck::Pod + cudarc::driver::DeviceRepr + std::fmt::Debug + Send + Sync {
    /// The struct's name, in Rust and in `params.cuh`.
    const NAME: &'static str;
    /// `(field, byte offset)` in declaration order.
    const FIELDS: &'static [(&'static str, usize)];
}

/// A parameter struct's layout on the Rust side.
#[derive(Clone, Copy, Debug)]
pub struct ParamLayout {
    pub name: &'static str,
    pub size: usize,
    pub fields: &'static [(&'static str, usize)],
}

impl ParamLayout {
    pub const fn of<P: KernelParams>() -> ParamLayout {
        ParamLayout { name: P::NAME, size: std::mem::size_of::<P>(), fields: P::FIELDS }
    }
}

/// `parts` concatenated into an array of `N` names (N must be the total length).
const fn concat_names<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut k, mut i) = (0, 0);
    while i < parts.len() {
        let mut j = 0;
        while j < parts[i].len() {
            out[k] = parts[i][j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(k == N, "concat_names: N is not the total length");
    out
}

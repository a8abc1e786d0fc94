//! Launch plans: which kernel function(s) of the `.cu` files an op runs, with which grid, block and shared
//! memory, for a described device ([`DeviceSpec`]: SM count and limits, read from the GPU by the CUDA backend,
//! given explicitly to the emulation). Each family's `cuda.rs` holds its plans and checks; this file holds
//! their common vocabulary and [`Launcher`], the backends that run plans: [`CudaBackend`](crate::ops::cuda) and
//! [`EmuBackend`](crate::ops::emu), so both launch the kernels the same way. Every launch of an op receives the
//! op's full argument list (params by value, then the buffers in the trait method's order).
//!
//! Two-launch plans: conv2d_backward_filter, gemm and bias_backward may split their reduction over blocks
//! (`grid.z` / `grid.y` slices) into a static `__device__` scratch of their module, then a second launch
//! (`*_reduce`) sums the slices in a fixed order: deterministic, no atomics, no workspace argument. The scratch
//! is per module, so the launches of one plan must not interleave with another plan of the same module on a
//! second stream (the CUDA backend uses one stream; the emulation runs one plan at a time).

use crate::ops::{Device, KernelParams};
use anyhow::{bail, Result};

/// One kernel launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// `extern "C"` function name in the kernels.
    pub func: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

/// What a plan must know about the device: its SM count and launch limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Streaming multiprocessors.
    pub sms: u32,
    pub max_threads: u32,
    pub max_block: (u32, u32, u32),
    pub max_grid: (u32, u32, u32),
    /// Dynamic + static shared memory a block may opt in to.
    pub max_shared_optin: u32,
    /// Without opting in (48 KiB on every recent GPU).
    pub max_shared_default: u32,
}

impl DeviceSpec {
    /// An H100 SXM (132 SMs, like the H200; sm_90's limits): what the emulation plans for unless told otherwise,
    /// so that it runs the launches of the GPU the kernels are tuned on.
    pub const H100: DeviceSpec = DeviceSpec {
        sms: 132,
        max_threads: 1024,
        max_block: (1024, 1024, 64),
        max_grid: (2_147_483_647, 65535, 65535),
        max_shared_optin: 232_448,
        max_shared_default: 49_152,
    };

    /// Split reductions aim at this many blocks: 4 waves of one block per SM (528 on a 132-SM H100).
    pub fn split_target_blocks(&self) -> usize {
        4 * self.sms as usize
    }

    /// Blocks of the conv tile kernels resident per wave: 2 per SM (`__launch_bounds__(256, 2)`).
    pub fn conv_wave_blocks(&self) -> usize {
        2 * self.sms as usize
    }
}

impl Launch {
    /// Check the launch against the device: no zero dimension, block and grid within the limits, at most
    /// `func_max_threads` threads (the function's register limit) and the shared memory the device allows.
    pub fn validate(&self, op: &str, dev: &DeviceSpec, func_max_threads: u32, static_shared: u32) -> Result<()> {
        let (bx, by, bz) = self.block;
        let (gx, gy, gz) = self.grid;
        let threads = bx as u64 * by as u64 * bz as u64;
        let bad = |what: String| {
            anyhow::anyhow!(
                "{op}: invalid launch of `{}` (grid {:?}, block {:?}): {what}",
                self.func,
                self.grid,
                self.block
            )
        };
        if threads == 0 || gx == 0 || gy == 0 || gz == 0 {
            return Err(bad("a zero grid or block dimension".into()));
        }
        if bx > dev.max_block.0 || by > dev.max_block.1 || bz > dev.max_block.2 {
            return Err(bad(format!("block exceeds the device's {:?}", dev.max_block)));
        }
        if threads > dev.max_threads.min(func_max_threads) as u64 {
            return Err(bad(format!(
                "{threads} threads per block, the device allows {} and this function {} (registers)",
                dev.max_threads, func_max_threads
            )));
        }
        if gx > dev.max_grid.0 || gy > dev.max_grid.1 || gz > dev.max_grid.2 {
            return Err(bad(format!("grid exceeds the device's {:?}", dev.max_grid)));
        }
        let total_shared = self.shared_bytes as u64 + static_shared as u64;
        if total_shared > dev.max_shared_optin as u64 {
            return Err(bad(format!(
                "{} bytes of shared memory ({} dynamic), the device allows {}",
                total_shared, self.shared_bytes, dev.max_shared_optin
            )));
        }
        Ok(())
    }
}

/// One kernel argument after the params: a buffer view (read or written) or an i32 buffer.
pub enum Arg<'a, B: Device + ?Sized + 'a> {
    In(B::View<'a>),
    Out(B::ViewMut<'a>),
    IIn(&'a B::IBuf),
    IOut(&'a mut B::IBuf),
}

impl<'a, B: Launcher + ?Sized + 'a> Arg<'a, B> {
    /// A buffer the kernel reads.
    pub fn input<'l: 'a>(v: B::View<'l>) -> Self
    where
        B: 'l,
    {
        Arg::In(B::shorten(v))
    }
    /// A buffer the kernel writes (or reads and writes).
    pub fn output<'l: 'a>(v: B::ViewMut<'l>) -> Self
    where
        B: 'l,
    {
        Arg::Out(B::shorten_mut(v))
    }
}

/// A backend that runs the `.cu` kernels by launch plans (CUDA, and the CPU emulation of the same sources).
/// Each family's `cuda.rs` implements its trait once for every `Launcher`.
pub trait Launcher: Device {
    /// The device the plans are made for.
    fn spec(&self) -> &DeviceSpec;
    fn view_len(v: &Self::View<'_>) -> usize;
    fn view_mut_len(v: &Self::ViewMut<'_>) -> usize;
    /// The view for a shorter lifetime (views are covariant, which generic code cannot see), so that the views
    /// of one launch, borrowed for different lifetimes, go into one argument list.
    fn shorten<'s, 'l: 's>(v: Self::View<'l>) -> Self::View<'s>
    where
        Self: 'l;
    fn shorten_mut<'s, 'l: 's>(v: Self::ViewMut<'l>) -> Self::ViewMut<'s>
    where
        Self: 'l;
    /// Run every launch of `plan` (for op `op`, timed as one op when timing is on) with the kernel arguments
    /// (`p` by value, then `args` in order: the trait method's order, which is the kernel's signature).
    fn launch<P: KernelParams>(
        &self,
        op: &'static str,
        plan: &[Launch],
        p: &P,
        args: &mut [Arg<'_, Self>],
    ) -> Result<()>;
}

cuda_const! {
    /// Threads per block of the tiled GEMM / implicit-GEMM kernels (common.cuh `tile_mma`).
    pub const TILE_THREADS: u32 = 256;
}

/// Threads per block of the elementwise (grid-stride) plans.
pub const BLOCK_1D: u32 = 256;
/// Grid cap of the grid-stride plans (132 SMs x 16 resident blocks of 256 threads is far below it).
pub const MAX_BLOCKS_1D: usize = 8192;

/// A plan of one launch of `block` threads.
pub fn single(func: &'static str, grid: (u32, u32, u32), block: u32) -> Vec<Launch> {
    vec![Launch { func, grid, block: (block, 1, 1), shared_bytes: 0 }]
}

/// Grid-stride elementwise plan over `len` elements.
pub fn grid_1d(func: &'static str, len: usize) -> Vec<Launch> {
    let blocks = len.div_ceil(BLOCK_1D as usize).clamp(1, MAX_BLOCKS_1D) as u32;
    single(func, (blocks, 1, 1), BLOCK_1D)
}

/// Tiled launch for an (M x N) output in tiles of bm x bn: grid.x over N (may be large: n*h*w), grid.y over M
/// (channels), grid.z = K slices.
pub fn tiled(func: &'static str, m: usize, n: usize, bm: usize, bn: usize, splits: usize) -> Launch {
    let gx = n.div_ceil(bn).max(1) as u32;
    let gy = m.div_ceil(bm).max(1) as u32;
    Launch { func, grid: (gx, gy, splits.max(1) as u32), block: (TILE_THREADS, 1, 1), shared_bytes: 0 }
}

/// A non-negative i32 parameter as usize (negative: 0, rejected by the checks first).
pub fn u(v: i32) -> usize {
    v.max(0) as usize
}

/// Product of the dimensions as an element count; errors when negative or beyond the kernels' 32-bit indexing.
pub fn elems(op: &str, dims: &[i32]) -> Result<usize> {
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
pub fn need(op: &str, what: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        bail!("{op}: `{what}` has {have} elements, the parameters need {want}");
    }
    Ok(())
}

//! The CUDA kernels on the CPU: every `src/ops/*/*.cu` compiled by g++ under a CUDA emulation header (emu.h,
//! build.rs) and launched with the CUDA backend's own launch plans, as [`EmuBackend`] (a [`Launcher`]). It runs
//! `powertrain check --device emu` and the emulation tests; it is slow (one fiber per CUDA thread), but it runs
//! the real kernel source where there is no GPU.
//!
//! Buffers are host memory framed by guard zones of a recognisable NaN: a kernel that reads outside its buffer
//! gets NaN into its result, and one that writes outside it is an error after the launch (checked on every
//! buffer of every plan). Outputs that `check` expects a kernel to write are NaN-poisoned before the launch, so
//! an element the kernel forgets fails the comparison. Plans run whole, one at a time (a split-K plan keeps
//! partial sums in its module's static scratch between its launches, as on the GPU's single stream).

pub mod ffi;

use crate::ops::launch::{Arg, DeviceSpec, Launch, Launcher};
use crate::ops::{Clock, Device, DeviceKind, KernelParams, KernelTiming, WallClock};
use anyhow::{anyhow, bail, Result};
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::Mutex;

/// Words of guard on each side of every buffer, holding GUARD_BITS (a NaN with a recognisable payload).
const GUARD: usize = 64;
const GUARD_BITS: u32 = 0x7fa5_5a5a;

/// A buffer of 4-byte elements (f32 or i32) framed by guard zones, as the kernels see device memory.
pub struct EmuBuf<T> {
    bits: Vec<u32>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> EmuBuf<T> {
    fn framed(body: impl Iterator<Item = u32>, len: usize) -> Self {
        let mut bits = Vec::with_capacity(len + 2 * GUARD);
        bits.extend(std::iter::repeat_n(GUARD_BITS, GUARD));
        bits.extend(body);
        bits.extend(std::iter::repeat_n(GUARD_BITS, GUARD));
        debug_assert_eq!(bits.len(), len + 2 * GUARD);
        EmuBuf { bits, len, _t: PhantomData }
    }
    fn body(&self) -> &[u32] {
        &self.bits[GUARD..GUARD + self.len]
    }
    fn body_mut(&mut self) -> &mut [u32] {
        &mut self.bits[GUARD..GUARD + self.len]
    }
    /// Element `off` as the kernels address it.
    fn ptr(&self, off: usize) -> *mut c_void {
        self.bits[GUARD + off..].as_ptr() as *mut c_void
    }
    fn ptr_mut(&mut self, off: usize) -> *mut c_void {
        self.bits[GUARD + off..].as_mut_ptr() as *mut c_void
    }
    /// An error naming the op and the argument when a kernel wrote into a guard zone.
    fn check_guards(&self, op: &str, arg: usize) -> Result<()> {
        let n = self.bits.len();
        if let Some(i) = self.bits[..GUARD].iter().chain(&self.bits[n - GUARD..]).position(|&b| b != GUARD_BITS) {
            bail!("{op}: a kernel wrote outside its buffer (argument {arg}, guard word {i}) under the emulation");
        }
        Ok(())
    }
}

/// `buf[off .. off + len]`.
#[derive(Clone, Copy)]
pub struct EmuView<'a> {
    buf: &'a EmuBuf<f32>,
    off: usize,
    len: usize,
}

/// `buf[off .. off + len]`, written.
pub struct EmuViewMut<'a> {
    buf: &'a mut EmuBuf<f32>,
    off: usize,
    len: usize,
}

impl EmuViewMut<'_> {
    /// The same view, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> EmuViewMut<'_> {
        EmuViewMut { buf: &mut *self.buf, off: self.off, len: self.len }
    }
}

/// The emulated device: plans made for `spec` (an H100 by default), per-op wall-clock timing like the CPU's.
pub struct EmuBackend {
    spec: DeviceSpec,
    clock: WallClock,
}

/// One plan at a time in the whole process: the kernels' static scratch and the emulator's state are global.
static PLAN_LOCK: Mutex<()> = Mutex::new(());

impl Default for EmuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl EmuBackend {
    /// Plans for an H100 (`DeviceSpec::H100`), the GPU the kernels are tuned on.
    pub fn new() -> Self {
        Self::with_spec(DeviceSpec::H100)
    }
    /// Plans for the device `spec` describes.
    pub fn with_spec(spec: DeviceSpec) -> Self {
        EmuBackend { spec, clock: WallClock::default() }
    }
}

fn f32_bits(v: &[f32]) -> impl Iterator<Item = u32> + '_ {
    v.iter().map(|x| x.to_bits())
}

fn check_write(dst: usize, src: usize) -> Result<()> {
    if src > dst {
        bail!("write of {src} elements into a buffer of {dst}");
    }
    Ok(())
}

impl Device for EmuBackend {
    type Buf = EmuBuf<f32>;
    type IBuf = EmuBuf<i32>;
    type View<'a> = EmuView<'a>;
    type ViewMut<'a> = EmuViewMut<'a>;

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }
    fn device_name(&self) -> String {
        format!("emu (the .cu kernels under the g++ CPU emulation, planned for {} SMs)", self.spec.sms)
    }
    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        Ok(EmuBuf::framed(std::iter::repeat_n(0, len), len))
    }
    fn alloc_i32(&self, len: usize) -> Result<Self::IBuf> {
        Ok(EmuBuf::framed(std::iter::repeat_n(0, len), len))
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        Ok(EmuBuf::framed(f32_bits(host), host.len()))
    }
    fn upload_i32(&self, host: &[i32]) -> Result<Self::IBuf> {
        Ok(EmuBuf::framed(host.iter().map(|&x| x as u32), host.len()))
    }
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()> {
        check_write(dst.len, host.len())?;
        dst.body_mut().iter_mut().zip(f32_bits(host)).for_each(|(d, s)| *d = s);
        Ok(())
    }
    fn write_i32(&self, dst: &mut Self::IBuf, host: &[i32]) -> Result<()> {
        check_write(dst.len, host.len())?;
        dst.body_mut().iter_mut().zip(host).for_each(|(d, &s)| *d = s as u32);
        Ok(())
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        Ok(buf.body().iter().map(|&b| f32::from_bits(b)).collect())
    }
    fn download_i32(&self, buf: &Self::IBuf) -> Result<Vec<i32>> {
        Ok(buf.body().iter().map(|&b| b as i32).collect())
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len
    }
    fn len_i32(&self, buf: &Self::IBuf) -> usize {
        buf.len
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn view<'a>(&self, buf: &'a Self::Buf) -> EmuView<'a> {
        EmuView { len: buf.len, buf, off: 0 }
    }
    fn view_mut<'a>(&self, buf: &'a mut Self::Buf) -> EmuViewMut<'a> {
        EmuViewMut { len: buf.len, buf, off: 0 }
    }
    fn slice<'a>(&self, buf: &'a Self::Buf, off: usize, len: usize) -> EmuView<'a> {
        assert!(off + len <= buf.len, "slice {off}..{} of a buffer of {}", off + len, buf.len);
        EmuView { buf, off, len }
    }
    fn slice_mut<'a>(&self, buf: &'a mut Self::Buf, off: usize, len: usize) -> EmuViewMut<'a> {
        assert!(off + len <= buf.len, "slice {off}..{} of a buffer of {}", off + len, buf.len);
        EmuViewMut { buf, off, len }
    }
}

impl Clock for EmuBackend {
    fn set_kernel_timing(&self, on: bool) {
        self.clock.set(on)
    }
    fn take_kernel_timings(&self) -> Result<Vec<KernelTiming>> {
        Ok(self.clock.take())
    }
    fn clock_s(&self) -> f64 {
        self.clock.now_s()
    }
}

impl Launcher for EmuBackend {
    fn spec(&self) -> &DeviceSpec {
        &self.spec
    }
    fn view_len(v: &EmuView<'_>) -> usize {
        v.len
    }
    fn view_mut_len(v: &EmuViewMut<'_>) -> usize {
        v.len
    }
    fn shorten<'s, 'l: 's>(v: EmuView<'l>) -> EmuView<'s> {
        v
    }
    fn shorten_mut<'s, 'l: 's>(v: EmuViewMut<'l>) -> EmuViewMut<'s> {
        v
    }

    /// Every launch of `plan` on the emulator, the plan's buffers' guard zones checked afterwards.
    fn launch<P: KernelParams>(
        &self,
        op: &'static str,
        plan: &[Launch],
        p: &P,
        args: &mut [Arg<'_, Self>],
    ) -> Result<()> {
        let t0 = self.clock_s();
        let mut ptrs: Vec<*mut c_void> = args
            .iter_mut()
            .map(|a| match a {
                Arg::In(v) => v.buf.ptr(v.off),
                Arg::Out(v) => v.buf.ptr_mut(v.off),
                Arg::IIn(b) => b.ptr(0),
                Arg::IOut(b) => b.ptr_mut(0),
            })
            .collect();
        {
            let _one = PLAN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            for l in plan {
                // The emulator has no registers to run out of: the device's thread limit is the function's.
                l.validate(op, &self.spec, self.spec.max_threads, 0)?;
                let mut argv: Vec<*mut c_void> = vec![p as *const P as *mut c_void];
                argv.extend(ptrs.iter_mut().map(|q| q as *mut *mut c_void as *mut c_void));
                // SAFETY: argv[0] points at `p` (a Pod param struct; the emulator checks its size against the
                // kernel's), the rest at pointer variables into live buffers that the family's `cuda.rs` checked
                // against the lengths the params imply; `ptrs`, `p` and the buffers outlive the call.
                let r = unsafe {
                    ffi::launch(l.func, l.grid, l.block, l.shared_bytes, &mut argv, std::mem::size_of::<P>())
                };
                r.map_err(|e| anyhow!("{op}: launch of `{}` (grid {:?}, block {:?}): {e}", l.func, l.grid, l.block))?;
            }
        }
        for (i, a) in args.iter().enumerate() {
            match a {
                Arg::In(v) => v.buf.check_guards(op, i)?,
                Arg::Out(v) => v.buf.check_guards(op, i)?,
                Arg::IIn(b) => b.check_guards(op, i)?,
                Arg::IOut(b) => b.check_guards(op, i)?,
            }
        }
        self.clock.record(op, t0);
        Ok(())
    }
}

//! CPU backend (rayon): the readable reference of every GPU kernel, and fast enough to train on. Memory and the
//! clock are here; each op family's CPU code is in its folder (`src/ops/<family>/cpu.rs`), generic over
//! [`Float`] so that the tests run it in f64 too.

mod float;

pub use float::*;

use crate::ops::{Clock, Device, DeviceKind, KernelTiming, WallClock};
use anyhow::Result;

/// The CPU backend. Buffers are `Vec<f32>` / `Vec<i32>`.
pub struct CpuBackend {
    clock: WallClock,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend { clock: WallClock::default() }
    }

    /// Run `f` as kernel `name`, recording its wall-clock time when timing is on.
    pub(crate) fn timed<R>(&self, name: &'static str, f: impl FnOnce() -> R) -> R {
        if !self.clock.is_on() {
            return f();
        }
        let t0 = self.clock.now_s();
        let r = f();
        self.clock.record(name, t0);
        r
    }
}

impl Device for CpuBackend {
    type Buf = Vec<f32>;
    type IBuf = Vec<i32>;
    type View<'a> = &'a [f32];
    type ViewMut<'a> = &'a mut [f32];

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }
    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }
    fn alloc_i32(&self, len: usize) -> Result<Vec<i32>> {
        Ok(vec![0; len])
    }
    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }
    fn upload_i32(&self, host: &[i32]) -> Result<Vec<i32>> {
        Ok(host.to_vec())
    }
    fn write(&self, dst: &mut Vec<f32>, host: &[f32]) -> Result<()> {
        anyhow::ensure!(host.len() <= dst.len(), "write of {} elements into a buffer of {}", host.len(), dst.len());
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }
    fn write_i32(&self, dst: &mut Vec<i32>, host: &[i32]) -> Result<()> {
        anyhow::ensure!(host.len() <= dst.len(), "write of {} elements into a buffer of {}", host.len(), dst.len());
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }
    fn download_i32(&self, buf: &Vec<i32>) -> Result<Vec<i32>> {
        Ok(buf.clone())
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn len_i32(&self, buf: &Vec<i32>) -> usize {
        buf.len()
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn view<'a>(&self, buf: &'a Vec<f32>) -> &'a [f32] {
        buf
    }
    fn view_mut<'a>(&self, buf: &'a mut Vec<f32>) -> &'a mut [f32] {
        buf
    }
    fn slice<'a>(&self, buf: &'a Vec<f32>, off: usize, len: usize) -> &'a [f32] {
        &buf[off..off + len]
    }
    fn slice_mut<'a>(&self, buf: &'a mut Vec<f32>, off: usize, len: usize) -> &'a mut [f32] {
        &mut buf[off..off + len]
    }
}

impl Clock for CpuBackend {
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

//! CPU backend (rayon): the readable reference of every GPU kernel, and fast enough to train on.
//! One file per op family, the same names as `src/ops/cuda/` and `kernels/`.

pub mod conv2d;
pub mod elementwise;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod pool;

use super::*;
use std::sync::Mutex;
use std::time::Instant;

/// The CPU backend. Buffers are `Vec<f32>` / `Vec<i32>`.
pub struct CpuBackend {
    epoch: Instant,
    timing: Mutex<Option<Vec<KernelTiming>>>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend { epoch: Instant::now(), timing: Mutex::new(None) }
    }

    /// Run `f` as kernel `name`, recording its wall-clock time when timing is on.
    fn timed<R>(&self, name: &'static str, f: impl FnOnce() -> R) -> R {
        let on = self.timing.lock().map(|t| t.is_some()).unwrap_or(false);
        if !on {
            return f();
        }
        let t0 = self.clock_s();
        let r = f();
        let t1 = self.clock_s();
        if let Ok(mut t) = self.timing.lock() {
            if let Some(v) = t.as_mut() {
                v.push(KernelTiming { name, start_s: t0, dur_s: t1 - t0 });
            }
        }
        r
    }
}

impl Backend for CpuBackend {
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
    fn fill(&self, dst: &mut [f32], value: f32) -> Result<()> {
        self.timed("fill", || dst.fill(value));
        Ok(())
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

    fn conv2d_forward(&self, p: &Conv2dParams, x: &[f32], w: &[f32], y: &mut [f32]) -> Result<()> {
        self.timed("conv2d_forward", || conv2d::conv2d_forward(p, x, w, y))
    }
    fn conv2d_backward_data(&self, p: &Conv2dParams, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<()> {
        self.timed("conv2d_backward_data", || conv2d::conv2d_backward_data(p, dy, w, dx))
    }
    fn conv2d_backward_filter(&self, p: &Conv2dParams, x: &[f32], dy: &[f32], dw: &mut [f32]) -> Result<()> {
        self.timed("conv2d_backward_filter", || conv2d::conv2d_backward_filter(p, x, dy, dw))
    }
    fn maxpool2d_forward(&self, p: &Pool2dParams, x: &[f32], y: &mut [f32], idx: &mut Vec<i32>) -> Result<()> {
        self.timed("maxpool2d_forward", || pool::maxpool2d_forward(p, x, y, idx))
    }
    fn maxpool2d_backward(&self, p: &Pool2dParams, dy: &[f32], idx: &Vec<i32>, dx: &mut [f32]) -> Result<()> {
        self.timed("maxpool2d_backward", || pool::maxpool2d_backward(p, dy, idx, dx))
    }
    fn avgpool2d_forward(&self, p: &Pool2dParams, x: &[f32], y: &mut [f32]) -> Result<()> {
        self.timed("avgpool2d_forward", || pool::avgpool2d_forward(p, x, y))
    }
    fn avgpool2d_backward(&self, p: &Pool2dParams, dy: &[f32], dx: &mut [f32]) -> Result<()> {
        self.timed("avgpool2d_backward", || pool::avgpool2d_backward(p, dy, dx))
    }
    fn gemm(&self, p: &GemmParams, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
        self.timed("gemm", || gemm::gemm(p, a, b, c))
    }
    fn bias_forward(&self, p: &BiasParams, b: &[f32], y: &mut [f32]) -> Result<()> {
        self.timed("bias_forward", || elementwise::bias_forward(p, b, y))
    }
    fn bias_backward(&self, p: &BiasParams, dy: &[f32], db: &mut [f32]) -> Result<()> {
        self.timed("bias_backward", || elementwise::bias_backward(p, dy, db))
    }
    fn relu_forward(&self, p: &EltwiseParams, x: &mut [f32]) -> Result<()> {
        self.timed("relu_forward", || elementwise::relu_forward(p, x))
    }
    fn relu_backward(&self, p: &EltwiseParams, y: &[f32], dy: &mut [f32]) -> Result<()> {
        self.timed("relu_backward", || elementwise::relu_backward(p, y, dy))
    }
    fn softmax_xent(
        &self,
        p: &LossParams,
        logits: &[f32],
        labels: &Vec<i32>,
        grad: &mut [f32],
        loss: &mut [f32],
    ) -> Result<()> {
        self.timed("softmax_xent", || loss::softmax_xent(p, logits, labels, grad, loss))
    }
    fn bce_logits(
        &self,
        p: &LossParams,
        logits: &[f32],
        targets: &[f32],
        grad: &mut [f32],
        loss: &mut [f32],
    ) -> Result<()> {
        self.timed("bce_logits", || loss::bce_logits(p, logits, targets, grad, loss))
    }
    fn accuracy_classes(&self, p: &LossParams, logits: &[f32], labels: &Vec<i32>, correct: &mut [f32]) -> Result<()> {
        self.timed("accuracy_classes", || loss::accuracy_classes(p, logits, labels, correct))
    }
    fn accuracy_binary(&self, p: &LossParams, logits: &[f32], targets: &[f32], correct: &mut [f32]) -> Result<()> {
        self.timed("accuracy_binary", || loss::accuracy_binary(p, logits, targets, correct))
    }
    fn sgd_step(&self, p: &SgdParams, w: &mut [f32], grad: &[f32], mom: &mut [f32]) -> Result<()> {
        self.timed("sgd_step", || optim::sgd_step(p, w, grad, mom))
    }
    fn adam_step(&self, p: &AdamParams, w: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<()> {
        self.timed("adam_step", || optim::adam_step(p, w, grad, m, v))
    }

    fn set_kernel_timing(&self, on: bool) {
        if let Ok(mut t) = self.timing.lock() {
            *t = if on { Some(t.take().unwrap_or_default()) } else { None };
        }
    }
    fn take_kernel_timings(&self) -> Result<Vec<KernelTiming>> {
        Ok(self.timing.lock().ok().and_then(|mut t| t.as_mut().map(std::mem::take)).unwrap_or_default())
    }
    fn clock_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

//! The one `Backend` trait: one method per kernel.
//!
//! Models, the training loop and the studies only ever talk to this trait. `cpu/` and `cuda/` implement it
//! file for file under the same names (`conv2d.rs`, `pool.rs`, `gemm.rs`, `elementwise.rs`, `loss.rs`,
//! `optim.rs`). Every op's parameters live in a `#[repr(C)]` struct below whose twin is declared in
//! `kernels/common.cuh`; the field order and types must match exactly (a test checks the sizes).
//!
//! Layout conventions (all row-major, PyTorch's):
//! - activations NCHW, `[n, c, h, w]`, f32;
//! - conv weights `[c_out, c_in, kh, kw]`, linear weights `[out, in]`;
//! - class labels i32 `[n]`; binary targets f32 `[n, k]` with values 0/1.
//!
//! Buffers: `Buf` is an owned f32 buffer on the device (a `Vec<f32>` on the CPU), `IBuf` an owned i32 buffer.
//! Ops take views (`View`/`ViewMut`, like `&[f32]`/`&mut [f32]`) so that one flat parameter buffer can be
//! sliced per tensor and updated by a single fused optimizer launch.

pub mod bench;
pub mod cpu;
pub mod cuda;
pub mod params;

pub use params::*;

use anyhow::Result;

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
/// `Backend::set_kernel_timing`). The energy meter attributes step energy to kernels with these.
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

/// One method per kernel. All methods enqueue work; `download`/`read_scalar` are the only ones that wait.
///
/// Errors: every method returns `Result`; shapes are the caller's contract (checked with `debug_assert!`
/// in the CPU backend and by the models), device failures are errors, never panics.
pub trait Backend: Send + Sync {
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

    // ---- memory -------------------------------------------------------------------------------------
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
    /// Set every element of `dst` to `value`.
    fn fill(&self, dst: Self::ViewMut<'_>, value: f32) -> Result<()>;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn len_i32(&self, buf: &Self::IBuf) -> usize;
    /// Wait until all queued work is done.
    fn synchronize(&self) -> Result<()>;

    // ---- views --------------------------------------------------------------------------------------
    fn view<'a>(&self, buf: &'a Self::Buf) -> Self::View<'a>;
    fn view_mut<'a>(&self, buf: &'a mut Self::Buf) -> Self::ViewMut<'a>;
    /// `buf[off .. off + len]`.
    fn slice<'a>(&self, buf: &'a Self::Buf, off: usize, len: usize) -> Self::View<'a>;
    fn slice_mut<'a>(&self, buf: &'a mut Self::Buf, off: usize, len: usize) -> Self::ViewMut<'a>;

    // ---- conv2d.rs ----------------------------------------------------------------------------------
    /// y[n, c_out, h_out, w_out] = sum_{ci,ky,kx} x[n, ci, oy*sh - ph + ky, ox*sw - pw + kx] * w[co, ci, ky, kx]
    /// (zero padding; no bias: `bias_forward` adds it).
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: Self::View<'_>,
        w: Self::View<'_>,
        y: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// dx[n, c_in, h, w] = gradient of the above w.r.t. x, given dy [n, c_out, h_out, w_out]. Overwrites dx.
    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: Self::View<'_>,
        w: Self::View<'_>,
        dx: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// dw[c_out, c_in, kh, kw] = gradient w.r.t. w, given x and dy. Overwrites dw.
    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: Self::View<'_>,
        dy: Self::View<'_>,
        dw: Self::ViewMut<'_>,
    ) -> Result<()>;

    // ---- pool.rs ------------------------------------------------------------------------------------
    /// Max pooling (no padding, floor mode). `idx[n, c, h_out, w_out]` receives the flat index (into one
    /// `h*w` plane) of the chosen element; ties pick the first in row-major window order (PyTorch's rule).
    fn maxpool2d_forward(
        &self,
        p: &Pool2dParams,
        x: Self::View<'_>,
        y: Self::ViewMut<'_>,
        idx: &mut Self::IBuf,
    ) -> Result<()>;
    /// dx = scatter of dy through idx. Overwrites all of dx (zeros where nothing was chosen).
    fn maxpool2d_backward(
        &self,
        p: &Pool2dParams,
        dy: Self::View<'_>,
        idx: &Self::IBuf,
        dx: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Average pooling (no padding, floor mode, divisor kh*kw).
    fn avgpool2d_forward(&self, p: &Pool2dParams, x: Self::View<'_>, y: Self::ViewMut<'_>) -> Result<()>;
    /// Overwrites all of dx.
    fn avgpool2d_backward(&self, p: &Pool2dParams, dy: Self::View<'_>, dx: Self::ViewMut<'_>) -> Result<()>;

    // ---- gemm.rs ------------------------------------------------------------------------------------
    /// c[m, n] = alpha * op(a) * op(b) + beta * c, row-major; op(a) is [m, k] (a stored [m, k], or [k, m]
    /// when trans_a), op(b) is [k, n] (b stored [k, n], or [n, k] when trans_b). beta = 0 ignores c's
    /// old contents (NaN included).
    fn gemm(&self, p: &GemmParams, a: Self::View<'_>, b: Self::View<'_>, c: Self::ViewMut<'_>) -> Result<()>;

    // ---- elementwise.rs -----------------------------------------------------------------------------
    /// y[n, c, i] += b[c] for i < inner.
    fn bias_forward(&self, p: &BiasParams, b: Self::View<'_>, y: Self::ViewMut<'_>) -> Result<()>;
    /// db[c] = sum_{n, i} dy[n, c, i] (a reduction; overwrites db).
    fn bias_backward(&self, p: &BiasParams, dy: Self::View<'_>, db: Self::ViewMut<'_>) -> Result<()>;
    /// In place: x = max(x, 0).
    fn relu_forward(&self, p: &EltwiseParams, x: Self::ViewMut<'_>) -> Result<()>;
    /// In place: dy = dy * (y > 0), y being the ReLU's output.
    fn relu_backward(&self, p: &EltwiseParams, y: Self::View<'_>, dy: Self::ViewMut<'_>) -> Result<()>;

    // ---- loss.rs ------------------------------------------------------------------------------------
    /// Mean softmax cross-entropy over the batch. logits [n, k], labels i32 [n] in 0..k.
    /// grad [n, k] = (softmax(logits) - onehot(labels)) / n; loss[0] = mean loss (overwritten).
    fn softmax_xent(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        labels: &Self::IBuf,
        grad: Self::ViewMut<'_>,
        loss: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Mean BCE-with-logits over n*k. targets f32 [n, k] (0/1). grad = (sigmoid(l) - t) / (n*k);
    /// loss[0] = mean loss (overwritten). Numerically stable form: max(l,0) - l*t + log1p(exp(-|l|)).
    fn bce_logits(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        targets: Self::View<'_>,
        grad: Self::ViewMut<'_>,
        loss: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Top-1 accuracy: correct[0] += number of rows whose argmax (first max) equals the label.
    fn accuracy_classes(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        labels: &Self::IBuf,
        correct: Self::ViewMut<'_>,
    ) -> Result<()>;
    /// Binary accuracy per attribute: correct[j] += #{i : (logits[i, j] > 0) == (targets[i, j] > 0.5)}, j < k.
    fn accuracy_binary(
        &self,
        p: &LossParams,
        logits: Self::View<'_>,
        targets: Self::View<'_>,
        correct: Self::ViewMut<'_>,
    ) -> Result<()>;

    // ---- optim.rs -----------------------------------------------------------------------------------
    /// PyTorch SGD (dampening 0, no Nesterov), one fused pass over all parameters:
    /// g = grad + wd * w; m = momentum * m + g (m starts at 0, equal to PyTorch's first step);
    /// w -= lr * (momentum != 0 ? m : g).
    fn sgd_step(&self, p: &SgdParams, w: Self::ViewMut<'_>, grad: Self::View<'_>, mom: Self::ViewMut<'_>)
        -> Result<()>;
    /// PyTorch Adam (coupled weight decay, eps after the square root), one fused pass:
    /// g = grad + wd * w; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    /// w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), with bc1 = 1 - b1^t, bc2 = 1 - b2^t from the host.
    fn adam_step(
        &self,
        p: &AdamParams,
        w: Self::ViewMut<'_>,
        grad: Self::View<'_>,
        m: Self::ViewMut<'_>,
        v: Self::ViewMut<'_>,
    ) -> Result<()>;

    // ---- observation --------------------------------------------------------------------------------
    /// Turn per-launch timing on or off (off by default). On the CUDA backend every launch is then
    /// bracketed by events; nothing synchronises until `take_kernel_timings`. It observes; it never changes
    /// what is computed.
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

/// Every kernel the backends implement, by name (the `.cu` function names). Used by `check`, `bench
/// kernels`, `info` and the per-kernel energy records.
pub const KERNEL_NAMES: &[&str] = &[
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_filter",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "gemm",
    "bias_forward",
    "bias_backward",
    "relu_forward",
    "relu_backward",
    "softmax_xent",
    "bce_logits",
    "accuracy_classes",
    "accuracy_binary",
    "sgd_step",
    "adam_step",
    "fill",
];

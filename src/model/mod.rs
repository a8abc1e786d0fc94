//! The two reference CNNs of the protocol (`pamap2`, `celeba`), written against the `Backend` trait.
//!
//! The layer table ([`Arch::table`]) is the only description of the networks: the parameter layout, the
//! forward and backward passes (step.rs), the FLOP counts, the kernel calls `powertrain check` compares
//! (cases.rs) and the CPU benchmarks (benches/ops.rs) are all built from it.
//!
//! Parameters live in ONE flat buffer in PyTorch's state_dict order (conv1.weight, conv1.bias, ...,
//! fc2.bias) so that one fused optimizer launch updates them all; gradients mirror that layout. The head
//! (the fc layers) comes last, so a frozen encoder means updating only the tail of the buffer.
//!
//! Forward, per conv layer: conv2d_forward -> bias_forward -> relu_forward -> maxpool2d_forward; then per fc
//! layer gemm -> bias_forward (-> relu_forward, but not after the last), then the fused loss + gradient.
//! Backward mirrors it.

mod cases;
pub mod checkpoint;
mod step;

pub use cases::{check_cases, CELEBA_K};

use crate::ops::*;
use anyhow::{bail, Result};

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Input [N, 27, 1, 256], 12 classes (softmax cross-entropy).
    Pamap2,
    /// Input [N, 3, 64, 64], `k` binary outputs (BCE-with-logits).
    Celeba { k: usize },
}

/// One convolution block: conv (stride 1, zero padding) + bias + ReLU + max pooling (window = stride).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    /// (kh, kw).
    pub kernel: (usize, usize),
    /// (pad_h, pad_w).
    pub pad: (usize, usize),
    /// Max-pooling window (ph, pw).
    pub pool: (usize, usize),
}

const fn conv(
    c_in: usize,
    c_out: usize,
    kernel: (usize, usize),
    pad: (usize, usize),
    pool: (usize, usize),
) -> ConvSpec {
    ConvSpec { c_in, c_out, kernel, pad, pool }
}

/// A network's layers (protocol.md "Models"): input [C, H, W], conv blocks, the hidden fc widths (each + bias +
/// ReLU), then the output fc layer of `outputs` (+ bias) and the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerTable {
    pub input: [usize; 3],
    pub convs: &'static [ConvSpec],
    pub hidden: &'static [usize],
    pub outputs: usize,
    /// Class-id targets and softmax cross-entropy (else binary targets and BCE-with-logits).
    pub classification: bool,
}

const PAMAP2_CONVS: [ConvSpec; 3] =
    [conv(27, 64, (1, 5), (0, 2), (1, 2)), conv(64, 64, (1, 5), (0, 2), (1, 2)), conv(64, 128, (1, 5), (0, 2), (1, 2))];
const CELEBA_CONVS: [ConvSpec; 3] =
    [conv(3, 32, (3, 3), (1, 1), (2, 2)), conv(32, 64, (3, 3), (1, 1), (2, 2)), conv(64, 128, (3, 3), (1, 1), (2, 2))];

impl Arch {
    pub fn parse(model: &str, k: usize) -> Result<Arch> {
        match model {
            "pamap2" => Ok(Arch::Pamap2),
            "celeba" => Ok(Arch::Celeba { k }),
            other => bail!("unknown --model '{other}': use pamap2 or celeba"),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Pamap2 => "pamap2",
            Arch::Celeba { .. } => "celeba",
        }
    }
    /// The layer table.
    pub fn table(&self) -> LayerTable {
        match *self {
            Arch::Pamap2 => LayerTable {
                input: [27, 1, 256],
                convs: &PAMAP2_CONVS,
                hidden: &[128],
                outputs: 12,
                classification: true,
            },
            Arch::Celeba { k } => LayerTable {
                input: [3, 64, 64],
                convs: &CELEBA_CONVS,
                hidden: &[256],
                outputs: k,
                classification: false,
            },
        }
    }
    /// Shape of one input row [C, H, W].
    pub fn input_shape(&self) -> [usize; 3] {
        self.table().input
    }
    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.table().outputs
    }
    /// True for class-id targets (softmax cross-entropy), false for binary targets (BCE).
    pub fn is_classification(&self) -> bool {
        self.table().classification
    }
}

/// One named parameter tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Shapes of one conv block at a given batch size.
#[derive(Clone, Copy, Debug)]
pub struct ConvLayer {
    pub conv: Conv2dParams,
    pub pool: Pool2dParams,
}

/// One fully connected layer: y [n, out] = x [n, fan_in] W^T + b (W stored [out, fan_in]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcLayer {
    pub fan_in: usize,
    pub out: usize,
}

/// The parameter layout (PyTorch state_dict order) and the static layer shapes of an architecture.
#[derive(Clone, Debug)]
pub struct Layout {
    pub arch: Arch,
    pub params: Vec<ParamSpec>,
    pub total: usize,
    /// Offset of fc1.weight: everything from here on is the head.
    pub head_offset: usize,
    /// Flattened encoder output (fc1's fan-in).
    pub flat: usize,
}

impl Layout {
    pub fn new(arch: Arch) -> Layout {
        let mut params = Vec::new();
        let mut off = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let len: usize = shape.iter().product();
            params.push(ParamSpec { name, shape, offset: off });
            off += len;
            off
        };
        let t = arch.table();
        let [_, mut h, mut w] = t.input;
        let (mut c_last, mut head_offset) = (0, 0);
        for (i, c) in t.convs.iter().enumerate() {
            push(format!("conv{}.weight", i + 1), vec![c.c_out, c.c_in, c.kernel.0, c.kernel.1]);
            head_offset = push(format!("conv{}.bias", i + 1), vec![c.c_out]);
            h = (h + 2 * c.pad.0 - c.kernel.0 + 1) / c.pool.0;
            w = (w + 2 * c.pad.1 - c.kernel.1 + 1) / c.pool.1;
            c_last = c.c_out;
        }
        let flat = c_last * h * w;
        let (mut fan_in, mut total) = (flat, head_offset);
        for (i, &out) in t.hidden.iter().chain([&t.outputs]).enumerate() {
            push(format!("fc{}.weight", i + 1), vec![out, fan_in]);
            total = push(format!("fc{}.bias", i + 1), vec![out]);
            fan_in = out;
        }
        Layout { arch, params, total, head_offset, flat }
    }

    pub fn get(&self, name: &str) -> &ParamSpec {
        self.params.iter().find(|p| p.name == name).expect("parameter names are fixed by the layout")
    }

    /// PyTorch's default initialisation (Conv2d / Linear: kaiming-uniform with a = sqrt(5) for weights and
    /// uniform(+-1/sqrt(fan_in)) for biases, which both come to uniform(+-1/sqrt(fan_in))), from `seed`.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        use rand::Rng;
        let mut rng = crate::util::rng(seed);
        let mut out = vec![0f32; self.total];
        for (i, p) in self.params.iter().enumerate() {
            // The bias takes the fan-in of its weight (the tensor before it).
            let wshape = if p.name.ends_with(".bias") { &self.params[i - 1].shape } else { &p.shape };
            let fan_in: usize = wshape[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            for v in &mut out[p.offset..p.offset + p.len()] {
                *v = rng.random_range(-bound..bound) as f32;
            }
        }
        out
    }

    /// The conv blocks' shapes at batch `n`.
    pub fn conv_layers(&self, n: usize) -> Vec<ConvLayer> {
        let [_, mut h, mut w] = self.arch.input_shape();
        let mut out = Vec::new();
        for c in self.arch.table().convs {
            let conv = Conv2dParams::new(n, c.c_in, h, w, c.c_out, c.kernel.0, c.kernel.1, c.pad.0, c.pad.1);
            let pool = Pool2dParams::new(n, c.c_out, conv.h_out as usize, conv.w_out as usize, c.pool.0, c.pool.1);
            h = pool.h_out as usize;
            w = pool.w_out as usize;
            out.push(ConvLayer { conv, pool });
        }
        out
    }

    /// The fully connected layers, fc1 first (every one but the last followed by a ReLU).
    pub fn fc_layers(&self) -> Vec<FcLayer> {
        let t = self.arch.table();
        let mut fan_in = self.flat;
        t.hidden
            .iter()
            .chain([&t.outputs])
            .map(|&out| {
                let l = FcLayer { fan_in, out };
                fan_in = out;
                l
            })
            .collect()
    }
}

/// Optimiser settings (PyTorch semantics, see `Backend::sgd_step` / `adam_step`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd { lr: f32, momentum: f32, weight_decay: f32 },
    Adam { lr: f32, weight_decay: f32 },
}

impl Optimizer {
    pub fn parse(name: &str, lr: f32, momentum: f32, weight_decay: f32) -> Result<Optimizer> {
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be a positive number, got {lr}");
        }
        match name {
            "sgd" => Ok(Optimizer::Sgd { lr, momentum, weight_decay }),
            "adam" => {
                if momentum != 0.0 {
                    bail!("--momentum applies to --optimizer sgd only");
                }
                Ok(Optimizer::Adam { lr, weight_decay })
            }
            other => bail!("unknown --optimizer '{other}': use sgd or adam"),
        }
    }
}

/// A model instance on a backend: flat parameters, gradients, optimiser state and activation buffers sized
/// for `max_batch` rows (reused across steps: no allocation in steady state).
pub struct Model<'b, B: Backend> {
    be: &'b B,
    pub layout: Layout,
    pub max_batch: usize,
    pub params: B::Buf,
    grads: B::Buf,
    opt_m: B::Buf,
    opt_v: B::Buf,
    opt_steps: u64,
    /// Input x [max_batch, C, H, W].
    pub x: B::Buf,
    /// Per conv layer: pre-pool activation (conv + bias + relu), its gradient, pooled output, argmax idx.
    act: Vec<B::Buf>,
    dact: Vec<B::Buf>,
    pooled: Vec<B::Buf>,
    dpooled: Vec<B::Buf>,
    idx: Vec<B::IBuf>,
    /// Per fc layer: its output [max_batch, out] (after the ReLU; the last one is the logits) and gradient.
    fc_out: Vec<B::Buf>,
    dfc_out: Vec<B::Buf>,
    loss: B::Buf,
    /// Accuracy counters: [1] for classes, [k] for binary.
    pub correct: B::Buf,
    /// Labels of the current batch (classes) or targets (binary).
    pub labels: B::IBuf,
    pub targets: B::Buf,
    /// When true, only the head (the fc layers) is trained and the encoder's backward pass is skipped.
    pub freeze_encoder: bool,
}

impl<'b, B: Backend> Model<'b, B> {
    /// Allocate everything for batches of up to `max_batch` rows; parameters from `init` (flat, layout order).
    pub fn new(be: &'b B, arch: Arch, max_batch: usize, init: &[f32]) -> Result<Self> {
        if max_batch == 0 {
            bail!("--batch-size must be at least 1");
        }
        let layout = Layout::new(arch);
        anyhow::ensure!(
            init.len() == layout.total,
            "initial parameters: {} values, the model needs {}",
            init.len(),
            layout.total
        );
        let [c, h, w] = arch.input_shape();
        let k = arch.outputs();
        let (mut act, mut dact, mut pooled, mut dpooled, mut idx) = (vec![], vec![], vec![], vec![], vec![]);
        for l in &layout.conv_layers(max_batch) {
            act.push(be.alloc(l.conv.y_len())?);
            dact.push(be.alloc(l.conv.y_len())?);
            pooled.push(be.alloc(l.pool.y_len())?);
            dpooled.push(be.alloc(l.pool.y_len())?);
            idx.push(be.alloc_i32(l.pool.y_len())?);
        }
        let (mut fc_out, mut dfc_out) = (vec![], vec![]);
        for f in layout.fc_layers() {
            fc_out.push(be.alloc(max_batch * f.out)?);
            dfc_out.push(be.alloc(max_batch * f.out)?);
        }
        Ok(Model {
            be,
            params: be.upload(init)?,
            grads: be.alloc(layout.total)?,
            opt_m: be.alloc(layout.total)?,
            opt_v: be.alloc(layout.total)?,
            opt_steps: 0,
            x: be.alloc(max_batch * c * h * w)?,
            act,
            dact,
            pooled,
            dpooled,
            idx,
            fc_out,
            dfc_out,
            loss: be.alloc(1)?,
            correct: be.alloc(if arch.is_classification() { 1 } else { k })?,
            labels: be.alloc_i32(max_batch)?,
            targets: be.alloc(max_batch * k)?,
            layout,
            max_batch,
            freeze_encoder: false,
        })
    }

    pub fn backend(&self) -> &'b B {
        self.be
    }

    /// Upload one batch (x [n, C, H, W], and class ids or binary targets [n, k]).
    pub fn load_batch(&mut self, n: usize, x: &[f32], y_class: &[i32], y_bin: &[f32]) -> Result<()> {
        anyhow::ensure!(n >= 1 && n <= self.max_batch, "batch of {n} rows, buffers hold {}", self.max_batch);
        self.be.write(&mut self.x, x)?;
        if self.layout.arch.is_classification() {
            anyhow::ensure!(y_class.len() == n, "batch has {} labels for {n} rows", y_class.len());
            self.be.write_i32(&mut self.labels, y_class)?;
        } else {
            anyhow::ensure!(
                y_bin.len() == n * self.layout.arch.outputs(),
                "batch targets: {} values for {n} rows",
                y_bin.len()
            );
            self.be.write(&mut self.targets, y_bin)?;
        }
        Ok(())
    }

    /// One training step on the loaded batch: forward, loss, backward, update. Returns the mean loss (the one
    /// host round trip of the step).
    pub fn train_step(&mut self, n: usize, opt: &Optimizer) -> Result<f32> {
        self.forward(n)?;
        self.loss_and_grad(n)?;
        self.backward(n)?;
        self.optimizer_step(opt)?;
        let loss = self.be.download(&self.loss)?;
        Ok(loss[0])
    }

    /// Zero the accuracy counters.
    pub fn reset_correct(&mut self) -> Result<()> {
        self.be.fill(self.be.view_mut(&mut self.correct), 0.0)
    }

    /// Evaluate the loaded batch: forward, loss (returned), accuracy counters accumulated on the device.
    pub fn eval_batch(&mut self, n: usize) -> Result<f32> {
        self.forward(n)?;
        self.loss_and_grad(n)?;
        self.accuracy(n)?;
        Ok(self.be.download(&self.loss)?[0])
    }

    /// The accuracy counters ([1] or [k]).
    pub fn correct_counts(&self) -> Result<Vec<f32>> {
        self.be.download(&self.correct)
    }

    /// Gradients of the last backward pass (flat, layout order).
    pub fn gradients(&self) -> Result<Vec<f32>> {
        self.be.download(&self.grads)
    }

    /// Parameters (flat, layout order).
    pub fn parameters(&self) -> Result<Vec<f32>> {
        self.be.download(&self.params)
    }

    /// FLOPs of the fc layers' forward GEMMs at batch n.
    fn fc_flops(&self, n: usize) -> f64 {
        self.layout.fc_layers().iter().map(|f| 2.0 * n as f64 * (f.fan_in * f.out) as f64).sum()
    }

    /// FLOPs per kernel name of one evaluation batch of n (the forward pass: convolutions and the fc GEMMs),
    /// for J/GFLOP in kernels.csv.
    pub fn forward_kernel_flops(&self, n: usize) -> Vec<(&'static str, f64)> {
        let conv: f64 = self.layout.conv_layers(n).iter().map(|l| l.conv.flops()).sum();
        vec![("conv2d_forward", conv), ("gemm", self.fc_flops(n))]
    }

    /// FLOPs per kernel name of one training step at batch n (for J/GFLOP in kernels.csv).
    pub fn kernel_flops(&self, n: usize) -> Vec<(&'static str, f64)> {
        let layers = self.layout.conv_layers(n);
        let conv: f64 = layers.iter().map(|l| l.conv.flops()).sum();
        let below_first: f64 = layers[1..].iter().map(|l| l.conv.flops()).sum();
        let fc = self.fc_flops(n);
        if self.freeze_encoder {
            // Backward: dW2, dhidden and dW1 only, which together cost as much as the fc forward.
            return vec![("conv2d_forward", conv), ("gemm", 2.0 * fc)];
        }
        vec![
            ("conv2d_forward", conv),
            ("conv2d_backward_filter", conv),
            ("conv2d_backward_data", below_first),
            ("gemm", 3.0 * fc),
        ]
    }

    /// FLOPs of one training step at batch n: the convolutions and GEMMs it really runs (conv1's backward-data
    /// is never computed; a frozen encoder has no convolution backward at all).
    pub fn step_flops(&self, n: usize) -> f64 {
        self.kernel_flops(n).iter().map(|(_, f)| f).sum()
    }
}

//! The two reference CNNs of the protocol (`pamap2`, `celeba`), written against the `Backend` trait.
//!
//! Parameters live in ONE flat buffer in PyTorch's state_dict order (conv1.weight, conv1.bias, ...,
//! fc2.bias) so that one fused optimizer launch updates them all; gradients mirror that layout. The head
//! (fc1, fc2) comes last, so a frozen encoder means updating only the tail of the buffer.
//!
//! Forward, per conv layer: conv2d_forward -> bias_forward -> relu_forward -> maxpool2d_forward; then
//! fc1 (gemm, bias, relu) and fc2 (gemm, bias), then the fused loss + gradient. Backward mirrors it.

pub mod checkpoint;

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
    /// Shape of one input row [C, H, W].
    pub fn input_shape(&self) -> [usize; 3] {
        match self {
            Arch::Pamap2 => [27, 1, 256],
            Arch::Celeba { .. } => [3, 64, 64],
        }
    }
    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        match self {
            Arch::Pamap2 => 12,
            Arch::Celeba { k } => *k,
        }
    }
    /// True for class-id targets (softmax cross-entropy), false for binary targets (BCE).
    pub fn is_classification(&self) -> bool {
        matches!(self, Arch::Pamap2)
    }
    /// (c_in, c_out, kh, kw, pad_h, pad_w, pool_h, pool_w) of conv1..conv3.
    fn convs(&self) -> [(usize, usize, usize, usize, usize, usize, usize, usize); 3] {
        match self {
            Arch::Pamap2 => [(27, 64, 1, 5, 0, 2, 1, 2), (64, 64, 1, 5, 0, 2, 1, 2), (64, 128, 1, 5, 0, 2, 1, 2)],
            Arch::Celeba { .. } => [(3, 32, 3, 3, 1, 1, 2, 2), (32, 64, 3, 3, 1, 1, 2, 2), (64, 128, 3, 3, 1, 1, 2, 2)],
        }
    }
    /// Hidden width of fc1.
    fn hidden(&self) -> usize {
        match self {
            Arch::Pamap2 => 128,
            Arch::Celeba { .. } => 256,
        }
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

/// Shapes of one layer at a given batch size.
#[derive(Clone, Copy, Debug)]
struct ConvLayer {
    conv: Conv2dParams,
    pool: Pool2dParams,
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
        let push = |params: &mut Vec<ParamSpec>, off: &mut usize, name: String, shape: Vec<usize>| {
            let len: usize = shape.iter().product();
            params.push(ParamSpec { name, shape, offset: *off });
            *off += len;
        };
        let [_, mut h, mut w] = arch.input_shape();
        let mut c_last = 0;
        for (i, &(ci, co, kh, kw, ph, pw, qh, qw)) in arch.convs().iter().enumerate() {
            push(&mut params, &mut off, format!("conv{}.weight", i + 1), vec![co, ci, kh, kw]);
            push(&mut params, &mut off, format!("conv{}.bias", i + 1), vec![co]);
            h = (h + 2 * ph - kh + 1) / qh;
            w = (w + 2 * pw - kw + 1) / qw;
            c_last = co;
        }
        let flat = c_last * h * w;
        let head_offset = off;
        let hid = arch.hidden();
        push(&mut params, &mut off, "fc1.weight".into(), vec![hid, flat]);
        push(&mut params, &mut off, "fc1.bias".into(), vec![hid]);
        push(&mut params, &mut off, "fc2.weight".into(), vec![arch.outputs(), hid]);
        push(&mut params, &mut off, "fc2.bias".into(), vec![arch.outputs()]);
        Layout { arch, params, total: off, head_offset, flat }
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

    fn conv_layers(&self, n: usize) -> [ConvLayer; 3] {
        let [_, mut h, mut w] = self.arch.input_shape();
        let convs = self.arch.convs();
        std::array::from_fn(|i| {
            let (ci, co, kh, kw, ph, pw, qh, qw) = convs[i];
            let conv = Conv2dParams::new(n, ci, h, w, co, kh, kw, ph, pw);
            let pool = Pool2dParams::new(n, co, conv.h_out as usize, conv.w_out as usize, qh, qw);
            h = pool.h_out as usize;
            w = pool.w_out as usize;
            ConvLayer { conv, pool }
        })
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

/// The input of conv layer `i` (`len` values): the batch for the first layer, the previous layer's pooled
/// output after it.
fn conv_input<'a, B: Backend>(be: &B, x: &'a B::Buf, pooled: &'a [B::Buf], i: usize, len: usize) -> B::View<'a> {
    be.slice(if i == 0 { x } else { &pooled[i - 1] }, 0, len)
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
    hidden: B::Buf,
    dhidden: B::Buf,
    logits: B::Buf,
    dlogits: B::Buf,
    loss: B::Buf,
    /// Accuracy counters: [1] for classes, [k] for binary.
    pub correct: B::Buf,
    /// Labels of the current batch (classes) or targets (binary).
    pub labels: B::IBuf,
    pub targets: B::Buf,
    /// When true, only the head (fc1, fc2) is trained and the encoder's backward pass is skipped.
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
        let layers = layout.conv_layers(max_batch);
        let [c, h, w] = arch.input_shape();
        let k = arch.outputs();
        let hid = arch.hidden();
        let mut act = Vec::new();
        let mut dact = Vec::new();
        let mut pooled = Vec::new();
        let mut dpooled = Vec::new();
        let mut idx = Vec::new();
        for l in &layers {
            act.push(be.alloc(l.conv.y_len())?);
            dact.push(be.alloc(l.conv.y_len())?);
            pooled.push(be.alloc(l.pool.y_len())?);
            dpooled.push(be.alloc(l.pool.y_len())?);
            idx.push(be.alloc_i32(l.pool.y_len())?);
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
            hidden: be.alloc(max_batch * hid)?,
            dhidden: be.alloc(max_batch * hid)?,
            logits: be.alloc(max_batch * k)?,
            dlogits: be.alloc(max_batch * k)?,
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

    /// Forward pass of the loaded batch of `n` rows up to the logits.
    pub fn forward(&mut self, n: usize) -> Result<()> {
        let be = self.be;
        let lay = &self.layout;
        let layers = lay.conv_layers(n);
        for (i, l) in layers.iter().enumerate() {
            let w = lay.get(&format!("conv{}.weight", i + 1));
            let b = lay.get(&format!("conv{}.bias", i + 1));
            let ylen = l.conv.y_len();
            be.conv2d_forward(
                &l.conv,
                conv_input(be, &self.x, &self.pooled, i, l.conv.x_len()),
                be.slice(&self.params, w.offset, w.len()),
                be.slice_mut(&mut self.act[i], 0, ylen),
            )?;
            let bp = BiasParams::new(n, l.conv.c_out as usize, (l.conv.h_out * l.conv.w_out) as usize);
            be.bias_forward(&bp, be.slice(&self.params, b.offset, b.len()), be.slice_mut(&mut self.act[i], 0, ylen))?;
            be.relu_forward(&EltwiseParams::new(ylen), be.slice_mut(&mut self.act[i], 0, ylen))?;
            be.maxpool2d_forward(
                &l.pool,
                be.slice(&self.act[i], 0, ylen),
                be.slice_mut(&mut self.pooled[i], 0, l.pool.y_len()),
                &mut self.idx[i],
            )?;
        }
        let flat = lay.flat;
        let hid = lay.arch.hidden();
        let k = lay.arch.outputs();
        let (w1, b1, w2, b2) = (lay.get("fc1.weight"), lay.get("fc1.bias"), lay.get("fc2.weight"), lay.get("fc2.bias"));
        // hidden [n, hid] = pooled3 [n, flat] x fc1.weight^T ([hid, flat] stored)
        be.gemm(
            &GemmParams::new(n, hid, flat, false, true),
            be.slice(&self.pooled[2], 0, n * flat),
            be.slice(&self.params, w1.offset, w1.len()),
            be.slice_mut(&mut self.hidden, 0, n * hid),
        )?;
        be.bias_forward(
            &BiasParams::new(n, hid, 1),
            be.slice(&self.params, b1.offset, b1.len()),
            be.slice_mut(&mut self.hidden, 0, n * hid),
        )?;
        be.relu_forward(&EltwiseParams::new(n * hid), be.slice_mut(&mut self.hidden, 0, n * hid))?;
        // logits [n, k] = hidden x fc2.weight^T
        be.gemm(
            &GemmParams::new(n, k, hid, false, true),
            be.slice(&self.hidden, 0, n * hid),
            be.slice(&self.params, w2.offset, w2.len()),
            be.slice_mut(&mut self.logits, 0, n * k),
        )?;
        be.bias_forward(
            &BiasParams::new(n, k, 1),
            be.slice(&self.params, b2.offset, b2.len()),
            be.slice_mut(&mut self.logits, 0, n * k),
        )?;
        Ok(())
    }

    /// Fused loss + gradient of the logits (mean over the batch); the loss stays on the device.
    fn loss_and_grad(&mut self, n: usize) -> Result<()> {
        let be = self.be;
        let k = self.layout.arch.outputs();
        let lp = LossParams::new(n, k);
        if self.layout.arch.is_classification() {
            be.softmax_xent(
                &lp,
                be.slice(&self.logits, 0, n * k),
                &self.labels,
                be.slice_mut(&mut self.dlogits, 0, n * k),
                be.view_mut(&mut self.loss),
            )
        } else {
            be.bce_logits(
                &lp,
                be.slice(&self.logits, 0, n * k),
                be.slice(&self.targets, 0, n * k),
                be.slice_mut(&mut self.dlogits, 0, n * k),
                be.view_mut(&mut self.loss),
            )
        }
    }

    /// Backward pass from dlogits; writes every gradient (the encoder's only when not frozen).
    fn backward(&mut self, n: usize) -> Result<()> {
        let be = self.be;
        let lay = &self.layout;
        let flat = lay.flat;
        let hid = lay.arch.hidden();
        let k = lay.arch.outputs();
        let (w1, b1, w2, b2) = (lay.get("fc1.weight"), lay.get("fc1.bias"), lay.get("fc2.weight"), lay.get("fc2.bias"));
        // fc2: dW2 [k, hid] = dlogits^T [k, n] x hidden [n, hid]; db2 = sum over rows; dhidden = dlogits x W2.
        be.gemm(
            &GemmParams::new(k, hid, n, true, false),
            be.slice(&self.dlogits, 0, n * k),
            be.slice(&self.hidden, 0, n * hid),
            be.slice_mut(&mut self.grads, w2.offset, w2.len()),
        )?;
        be.bias_backward(
            &BiasParams::new(n, k, 1),
            be.slice(&self.dlogits, 0, n * k),
            be.slice_mut(&mut self.grads, b2.offset, b2.len()),
        )?;
        be.gemm(
            &GemmParams::new(n, hid, k, false, false),
            be.slice(&self.dlogits, 0, n * k),
            be.slice(&self.params, w2.offset, w2.len()),
            be.slice_mut(&mut self.dhidden, 0, n * hid),
        )?;
        be.relu_backward(
            &EltwiseParams::new(n * hid),
            be.slice(&self.hidden, 0, n * hid),
            be.slice_mut(&mut self.dhidden, 0, n * hid),
        )?;
        // fc1: dW1 [hid, flat] = dhidden^T x pooled3; db1; dpooled3 [n, flat] = dhidden x W1.
        be.gemm(
            &GemmParams::new(hid, flat, n, true, false),
            be.slice(&self.dhidden, 0, n * hid),
            be.slice(&self.pooled[2], 0, n * flat),
            be.slice_mut(&mut self.grads, w1.offset, w1.len()),
        )?;
        be.bias_backward(
            &BiasParams::new(n, hid, 1),
            be.slice(&self.dhidden, 0, n * hid),
            be.slice_mut(&mut self.grads, b1.offset, b1.len()),
        )?;
        if self.freeze_encoder {
            return Ok(());
        }
        be.gemm(
            &GemmParams::new(n, flat, hid, false, false),
            be.slice(&self.dhidden, 0, n * hid),
            be.slice(&self.params, w1.offset, w1.len()),
            be.slice_mut(&mut self.dpooled[2], 0, n * flat),
        )?;
        let layers = lay.conv_layers(n);
        for i in (0..3).rev() {
            let l = &layers[i];
            let w = lay.get(&format!("conv{}.weight", i + 1));
            let b = lay.get(&format!("conv{}.bias", i + 1));
            let ylen = l.conv.y_len();
            be.maxpool2d_backward(
                &l.pool,
                be.slice(&self.dpooled[i], 0, l.pool.y_len()),
                &self.idx[i],
                be.slice_mut(&mut self.dact[i], 0, ylen),
            )?;
            be.relu_backward(
                &EltwiseParams::new(ylen),
                be.slice(&self.act[i], 0, ylen),
                be.slice_mut(&mut self.dact[i], 0, ylen),
            )?;
            let bp = BiasParams::new(n, l.conv.c_out as usize, (l.conv.h_out * l.conv.w_out) as usize);
            be.bias_backward(&bp, be.slice(&self.dact[i], 0, ylen), be.slice_mut(&mut self.grads, b.offset, b.len()))?;
            be.conv2d_backward_filter(
                &l.conv,
                conv_input(be, &self.x, &self.pooled, i, l.conv.x_len()),
                be.slice(&self.dact[i], 0, ylen),
                be.slice_mut(&mut self.grads, w.offset, w.len()),
            )?;
            if i > 0 {
                // The input's gradient is needed only below conv2 (conv1's input is the data).
                be.conv2d_backward_data(
                    &l.conv,
                    be.slice(&self.dact[i], 0, ylen),
                    be.slice(&self.params, w.offset, w.len()),
                    be.slice_mut(&mut self.dpooled[i - 1], 0, l.conv.x_len()),
                )?;
            }
        }
        Ok(())
    }

    /// One fused optimizer launch over the trained parameters (all, or the head only when frozen).
    fn optimizer_step(&mut self, opt: &Optimizer) -> Result<()> {
        let be = self.be;
        let off = if self.freeze_encoder { self.layout.head_offset } else { 0 };
        let len = self.layout.total - off;
        self.opt_steps += 1;
        match *opt {
            Optimizer::Sgd { lr, momentum, weight_decay } => {
                let p = SgdParams { len: len as i32, lr, momentum, weight_decay };
                be.sgd_step(
                    &p,
                    be.slice_mut(&mut self.params, off, len),
                    be.slice(&self.grads, off, len),
                    be.slice_mut(&mut self.opt_m, off, len),
                )
            }
            Optimizer::Adam { lr, weight_decay } => {
                let p = AdamParams::at_step(len, lr, weight_decay, self.opt_steps);
                let (m, v) = (&mut self.opt_m, &mut self.opt_v);
                be.adam_step(
                    &p,
                    be.slice_mut(&mut self.params, off, len),
                    be.slice(&self.grads, off, len),
                    be.slice_mut(m, off, len),
                    be.slice_mut(v, off, len),
                )
            }
        }
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
        let be = self.be;
        let k = self.layout.arch.outputs();
        let lp = LossParams::new(n, k);
        if self.layout.arch.is_classification() {
            be.accuracy_classes(&lp, be.slice(&self.logits, 0, n * k), &self.labels, be.view_mut(&mut self.correct))?;
        } else {
            be.accuracy_binary(
                &lp,
                be.slice(&self.logits, 0, n * k),
                be.slice(&self.targets, 0, n * k),
                be.view_mut(&mut self.correct),
            )?;
        }
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

    /// FLOPs per kernel name of one evaluation batch of n (the forward pass: convolutions and the fc GEMMs),
    /// for J/GFLOP in kernels.csv.
    pub fn forward_kernel_flops(&self, n: usize) -> Vec<(&'static str, f64)> {
        let lay = &self.layout;
        let conv: f64 = lay.conv_layers(n).iter().map(|l| l.conv.flops()).sum();
        let fc = 2.0 * n as f64 * (lay.flat * lay.arch.hidden() + lay.arch.hidden() * lay.arch.outputs()) as f64;
        vec![("conv2d_forward", conv), ("gemm", fc)]
    }

    /// FLOPs per kernel name of one training step at batch n (for J/GFLOP in kernels.csv).
    pub fn kernel_flops(&self, n: usize) -> Vec<(&'static str, f64)> {
        let lay = &self.layout;
        let layers = lay.conv_layers(n);
        let conv: f64 = layers.iter().map(|l| l.conv.flops()).sum();
        let below_first: f64 = layers[1..].iter().map(|l| l.conv.flops()).sum();
        let (hid, k) = (lay.arch.hidden(), lay.arch.outputs());
        let fc = 2.0 * n as f64 * (lay.flat * hid + hid * k) as f64;
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

//! `powertrain check`: every GPU kernel against the CPU backend on fresh random inputs.
//!
//! The logic is generic over two backends (`compare::<T, R>`): the same case runs on the backend under test and
//! on the reference, from the same host inputs, with every pure output poisoned with NaN before the launch, and
//! the outputs are compared by max relative error `max|a - b| / max(max|b|, tiny)` (any NaN fails). The cases
//! (`Case`, `Op`) are also what `powertrain bench kernels` times.
//!
//! Cases: the protocol's layer shapes (`model_cases`) at batch 1, 7 and 64 plus awkward shapes (`awkward_cases`):
//! 3 and 27 channels, sizes that are not multiples of any tile, 1x5 kernels, stride 2, all GEMM transposes.

use crate::cli::CheckArgs;
use crate::ops::cpu::CpuBackend;
use crate::ops::*;
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One op with its parameters: a kernel of `KERNEL_NAMES` at one shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Conv2dForward(Conv2dParams),
    Conv2dBackwardData(Conv2dParams),
    Conv2dBackwardFilter(Conv2dParams),
    MaxPoolForward(Pool2dParams),
    MaxPoolBackward(Pool2dParams),
    AvgPoolForward(Pool2dParams),
    AvgPoolBackward(Pool2dParams),
    Gemm(GemmParams),
    BiasForward(BiasParams),
    BiasBackward(BiasParams),
    ReluForward(EltwiseParams),
    ReluBackward(EltwiseParams),
    SoftmaxXent(LossParams),
    BceLogits(LossParams),
    AccuracyClasses(LossParams),
    AccuracyBinary(LossParams),
    Sgd(SgdParams),
    Adam(AdamParams),
    Fill(FillParams),
}

/// How a buffer is used by an op: read, written (poisoned with NaN / i32::MIN first), or read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    In,
    Out,
    InOut,
}

/// Host values a buffer starts with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Init {
    /// Uniform in [lo, hi).
    Uniform(f32, f32),
    /// 0.0 or 1.0 (binary targets).
    Binary,
    /// Small whole numbers (accumulated counts).
    Counts,
    /// Class labels in 0..k.
    Labels(i32),
    /// Max-pool argmax indices: a random position inside each output's window.
    PoolIdx(Pool2dParams),
    /// NaN (f32) or i32::MIN: a pure output.
    Poison,
}

/// A buffer of an op: name, element count, role, initial values.
#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    len: usize,
    role: Role,
    init: Init,
}

fn sp(name: &'static str, len: usize, role: Role, init: Init) -> Spec {
    Spec { name, len, role, init }
}

const U: Init = Init::Uniform(-1.0, 1.0);

impl Op {
    /// The kernel name (one of `KERNEL_NAMES`).
    pub fn kernel(&self) -> &'static str {
        match self {
            Op::Conv2dForward(_) => "conv2d_forward",
            Op::Conv2dBackwardData(_) => "conv2d_backward_data",
            Op::Conv2dBackwardFilter(_) => "conv2d_backward_filter",
            Op::MaxPoolForward(_) => "maxpool2d_forward",
            Op::MaxPoolBackward(_) => "maxpool2d_backward",
            Op::AvgPoolForward(_) => "avgpool2d_forward",
            Op::AvgPoolBackward(_) => "avgpool2d_backward",
            Op::Gemm(_) => "gemm",
            Op::BiasForward(_) => "bias_forward",
            Op::BiasBackward(_) => "bias_backward",
            Op::ReluForward(_) => "relu_forward",
            Op::ReluBackward(_) => "relu_backward",
            Op::SoftmaxXent(_) => "softmax_xent",
            Op::BceLogits(_) => "bce_logits",
            Op::AccuracyClasses(_) => "accuracy_classes",
            Op::AccuracyBinary(_) => "accuracy_binary",
            Op::Sgd(_) => "sgd_step",
            Op::Adam(_) => "adam_step",
            Op::Fill(_) => "fill",
        }
    }

    /// The shape in a few words, e.g. `n7 c27 1x256 -> c64 k1x5 p0,2 s1,1`.
    pub fn shape(&self) -> String {
        match self {
            Op::Conv2dForward(p) | Op::Conv2dBackwardData(p) | Op::Conv2dBackwardFilter(p) => format!(
                "n{} c{} {}x{} -> c{} k{}x{} p{},{} s{},{}",
                p.n, p.c_in, p.h, p.w, p.c_out, p.kh, p.kw, p.pad_h, p.pad_w, p.stride_h, p.stride_w
            ),
            Op::MaxPoolForward(p) | Op::MaxPoolBackward(p) | Op::AvgPoolForward(p) | Op::AvgPoolBackward(p) => {
                format!("n{} c{} {}x{} k{}x{} s{},{}", p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride_h, p.stride_w)
            }
            Op::Gemm(p) => format!(
                "m{} n{} k{} {}{} a{} b{}",
                p.m,
                p.n,
                p.k,
                if p.trans_a != 0 { "T" } else { "N" },
                if p.trans_b != 0 { "T" } else { "N" },
                p.alpha,
                p.beta
            ),
            Op::BiasForward(p) | Op::BiasBackward(p) => format!("n{} c{} inner{}", p.n, p.c, p.inner),
            Op::ReluForward(p) | Op::ReluBackward(p) => format!("len{}", p.len),
            Op::SoftmaxXent(p) | Op::BceLogits(p) | Op::AccuracyClasses(p) | Op::AccuracyBinary(p) => {
                format!("n{} k{}", p.n, p.k)
            }
            Op::Sgd(p) => format!("len{} mom{} wd{}", p.len, p.momentum, p.weight_decay),
            Op::Adam(p) => format!("len{} wd{}", p.len, p.weight_decay),
            Op::Fill(p) => format!("len{}", p.len),
        }
    }

    /// f32 buffers in the trait method's argument order, then i32 buffers.
    fn specs(&self) -> (Vec<Spec>, Vec<Spec>) {
        use Role::*;
        let p_ = Init::Poison;
        match *self {
            Op::Conv2dForward(p) => {
                (vec![sp("x", p.x_len(), In, U), sp("w", p.w_len(), In, U), sp("y", p.y_len(), Out, p_)], vec![])
            }
            Op::Conv2dBackwardData(p) => {
                (vec![sp("dy", p.y_len(), In, U), sp("w", p.w_len(), In, U), sp("dx", p.x_len(), Out, p_)], vec![])
            }
            Op::Conv2dBackwardFilter(p) => {
                (vec![sp("x", p.x_len(), In, U), sp("dy", p.y_len(), In, U), sp("dw", p.w_len(), Out, p_)], vec![])
            }
            Op::MaxPoolForward(p) => {
                (vec![sp("x", p.x_len(), In, U), sp("y", p.y_len(), Out, p_)], vec![sp("idx", p.y_len(), Out, p_)])
            }
            Op::MaxPoolBackward(p) => (
                vec![sp("dy", p.y_len(), In, U), sp("dx", p.x_len(), Out, p_)],
                vec![sp("idx", p.y_len(), In, Init::PoolIdx(p))],
            ),
            Op::AvgPoolForward(p) => (vec![sp("x", p.x_len(), In, U), sp("y", p.y_len(), Out, p_)], vec![]),
            Op::AvgPoolBackward(p) => (vec![sp("dy", p.y_len(), In, U), sp("dx", p.x_len(), Out, p_)], vec![]),
            Op::Gemm(p) => {
                let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
                let c = if p.beta == 0.0 { sp("c", m * n, Out, p_) } else { sp("c", m * n, InOut, U) };
                (vec![sp("a", m * k, In, U), sp("b", k * n, In, U), c], vec![])
            }
            Op::BiasForward(p) => (vec![sp("b", p.c as usize, In, U), sp("y", p.len(), InOut, U)], vec![]),
            Op::BiasBackward(p) => (vec![sp("dy", p.len(), In, U), sp("db", p.c as usize, Out, p_)], vec![]),
            Op::ReluForward(p) => (vec![sp("x", p.len as usize, InOut, U)], vec![]),
            Op::ReluBackward(p) => (
                vec![sp("y", p.len as usize, In, Init::Uniform(-0.5, 1.0)), sp("dy", p.len as usize, InOut, U)],
                vec![],
            ),
            Op::SoftmaxXent(p) => {
                let nk = (p.n * p.k) as usize;
                (
                    vec![
                        sp("logits", nk, In, Init::Uniform(-4.0, 4.0)),
                        sp("grad", nk, Out, p_),
                        sp("loss", 1, Out, p_),
                    ],
                    vec![sp("labels", p.n as usize, In, Init::Labels(p.k))],
                )
            }
            Op::BceLogits(p) => {
                let nk = (p.n * p.k) as usize;
                (
                    vec![
                        sp("logits", nk, In, Init::Uniform(-4.0, 4.0)),
                        sp("targets", nk, In, Init::Binary),
                        sp("grad", nk, Out, p_),
                        sp("loss", 1, Out, p_),
                    ],
                    vec![],
                )
            }
            Op::AccuracyClasses(p) => (
                vec![sp("logits", (p.n * p.k) as usize, In, U), sp("correct", 1, InOut, Init::Counts)],
                vec![sp("labels", p.n as usize, In, Init::Labels(p.k))],
            ),
            Op::AccuracyBinary(p) => {
                let nk = (p.n * p.k) as usize;
                (
                    vec![
                        sp("logits", nk, In, U),
                        sp("targets", nk, In, Init::Binary),
                        sp("correct", p.k as usize, InOut, Init::Counts),
                    ],
                    vec![],
                )
            }
            Op::Sgd(p) => {
                let n = p.len as usize;
                (vec![sp("w", n, InOut, U), sp("grad", n, In, U), sp("mom", n, InOut, U)], vec![])
            }
            Op::Adam(p) => {
                let n = p.len as usize;
                (
                    vec![
                        sp("w", n, InOut, U),
                        sp("grad", n, In, U),
                        sp("m", n, InOut, Init::Uniform(-0.1, 0.1)),
                        sp("v", n, InOut, Init::Uniform(0.0, 0.01)),
                    ],
                    vec![],
                )
            }
            Op::Fill(p) => (vec![sp("dst", p.len as usize, Out, p_)], vec![]),
        }
    }

    /// Floating-point operations of one call (conv: `Conv2dParams::flops`, gemm: `GemmParams::flops`).
    pub fn flops(&self) -> Option<f64> {
        match self {
            Op::Conv2dForward(p) | Op::Conv2dBackwardData(p) | Op::Conv2dBackwardFilter(p) => Some(p.flops()),
            Op::Gemm(p) => Some(p.flops()),
            _ => None,
        }
    }

    /// Bytes moved by one call if every buffer is read (inputs) and written (outputs) once.
    pub fn bytes(&self) -> f64 {
        let (f, i) = self.specs();
        f.iter().chain(i.iter()).map(|s| s.len as f64 * 4.0 * if s.role == Role::InOut { 2.0 } else { 1.0 }).sum()
    }

    /// Max relative error allowed against the reference: 1e-4 for GEMM, convolutions and reductions, 1e-5 for
    /// elementwise ops.
    pub fn tolerance(&self) -> f64 {
        match self {
            Op::Conv2dForward(_)
            | Op::Conv2dBackwardData(_)
            | Op::Conv2dBackwardFilter(_)
            | Op::Gemm(_)
            | Op::BiasBackward(_)
            | Op::SoftmaxXent(_)
            | Op::BceLogits(_) => 1e-4,
            _ => 1e-5,
        }
    }

    /// Run the op once on `b` with the prepared buffers (in `specs` order).
    pub fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()> {
        let bad = || anyhow::anyhow!("{}: prepared buffers do not match the op", self.kernel());
        match (self, f, i) {
            (Op::Conv2dForward(p), [x, w, y], []) => b.conv2d_forward(p, b.view(x), b.view(w), b.view_mut(y)),
            (Op::Conv2dBackwardData(p), [dy, w, dx], []) => {
                b.conv2d_backward_data(p, b.view(dy), b.view(w), b.view_mut(dx))
            }
            (Op::Conv2dBackwardFilter(p), [x, dy, dw], []) => {
                b.conv2d_backward_filter(p, b.view(x), b.view(dy), b.view_mut(dw))
            }
            (Op::MaxPoolForward(p), [x, y], [idx]) => b.maxpool2d_forward(p, b.view(x), b.view_mut(y), idx),
            (Op::MaxPoolBackward(p), [dy, dx], [idx]) => b.maxpool2d_backward(p, b.view(dy), idx, b.view_mut(dx)),
            (Op::AvgPoolForward(p), [x, y], []) => b.avgpool2d_forward(p, b.view(x), b.view_mut(y)),
            (Op::AvgPoolBackward(p), [dy, dx], []) => b.avgpool2d_backward(p, b.view(dy), b.view_mut(dx)),
            (Op::Gemm(p), [a, bb, c], []) => b.gemm(p, b.view(a), b.view(bb), b.view_mut(c)),
            (Op::BiasForward(p), [bias, y], []) => b.bias_forward(p, b.view(bias), b.view_mut(y)),
            (Op::BiasBackward(p), [dy, db], []) => b.bias_backward(p, b.view(dy), b.view_mut(db)),
            (Op::ReluForward(p), [x], []) => b.relu_forward(p, b.view_mut(x)),
            (Op::ReluBackward(p), [y, dy], []) => b.relu_backward(p, b.view(y), b.view_mut(dy)),
            (Op::SoftmaxXent(p), [l, g, loss], [labels]) => {
                b.softmax_xent(p, b.view(l), labels, b.view_mut(g), b.view_mut(loss))
            }
            (Op::BceLogits(p), [l, t, g, loss], []) => {
                b.bce_logits(p, b.view(l), b.view(t), b.view_mut(g), b.view_mut(loss))
            }
            (Op::AccuracyClasses(p), [l, c], [labels]) => b.accuracy_classes(p, b.view(l), labels, b.view_mut(c)),
            (Op::AccuracyBinary(p), [l, t, c], []) => b.accuracy_binary(p, b.view(l), b.view(t), b.view_mut(c)),
            (Op::Sgd(p), [w, g, m], []) => b.sgd_step(p, b.view_mut(w), b.view(g), b.view_mut(m)),
            (Op::Adam(p), [w, g, m, v], []) => b.adam_step(p, b.view_mut(w), b.view(g), b.view_mut(m), b.view_mut(v)),
            (Op::Fill(p), [d], []) => b.fill(b.view_mut(d), p.value),
            _ => Err(bad()),
        }
    }
}

/// A named case: where the shape comes from (`pamap2 conv1`, `awkward`), the batch, the op.
#[derive(Clone, Debug)]
pub struct Case {
    pub label: String,
    pub batch: usize,
    pub op: Op,
}

/// Host inputs of one case (from the seed), for both backends.
pub struct HostData {
    pub f: Vec<Vec<f32>>,
    pub i: Vec<Vec<i32>>,
}

/// Fresh random host buffers for `op` from `seed`.
pub fn host_data(op: &Op, seed: u64) -> HostData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (fs, is) = op.specs();
    let f = fs
        .iter()
        .map(|s| {
            (0..s.len)
                .map(|_| match s.init {
                    Init::Uniform(lo, hi) => rng.random_range(lo..hi),
                    Init::Binary => (rng.random::<bool>() as i32) as f32,
                    Init::Counts => rng.random_range(0..5) as f32,
                    _ => f32::NAN,
                })
                .collect()
        })
        .collect();
    let i = is
        .iter()
        .map(|s| match s.init {
            Init::Labels(k) => (0..s.len).map(|_| rng.random_range(0..k.max(1))).collect(),
            Init::PoolIdx(p) => (0..s.len)
                .map(|j| {
                    let ox = j as i32 % p.w_out;
                    let oy = (j as i32 / p.w_out) % p.h_out;
                    let ry = rng.random_range(0..p.kh);
                    let rx = rng.random_range(0..p.kw);
                    (oy * p.stride_h + ry) * p.w + ox * p.stride_w + rx
                })
                .collect(),
            _ => vec![i32::MIN; s.len],
        })
        .collect();
    HostData { f, i }
}

/// The op's buffers on backend `B`.
pub struct Prepared<B: Backend> {
    pub f: Vec<B::Buf>,
    pub i: Vec<B::IBuf>,
}

/// Upload `h` to `b`.
pub fn prepare<B: Backend>(b: &B, h: &HostData) -> Result<Prepared<B>> {
    Ok(Prepared {
        f: h.f.iter().map(|v| b.upload(v)).collect::<Result<_>>()?,
        i: h.i.iter().map(|v| b.upload_i32(v)).collect::<Result<_>>()?,
    })
}

/// Download the written buffers (Out and InOut), named.
fn written<B: Backend>(
    b: &B,
    op: &Op,
    p: &Prepared<B>,
) -> Result<(Vec<(&'static str, Vec<f32>)>, Vec<(&'static str, Vec<i32>)>)> {
    let (fs, is) = op.specs();
    let mut f = Vec::new();
    for (s, buf) in fs.iter().zip(&p.f) {
        if s.role != Role::In {
            f.push((s.name, b.download(buf)?));
        }
    }
    let mut i = Vec::new();
    for (s, buf) in is.iter().zip(&p.i) {
        if s.role != Role::In {
            i.push((s.name, b.download_i32(buf)?));
        }
    }
    Ok((f, i))
}

/// Max relative error of `a` against the reference `b`: `max|a-b| / max(max|b|, tiny)`; infinite when either
/// holds a NaN or an infinity, or the lengths differ.
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let (mut diff, mut scale) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        diff = diff.max((x as f64 - y as f64).abs());
        scale = scale.max((y as f64).abs());
    }
    diff / scale.max(1e-30)
}

/// One compared case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub kernel: &'static str,
    pub case: String,
    pub batch: usize,
    pub shape: String,
    pub max_rel_err: f64,
    pub tolerance: f64,
    pub pass: bool,
    /// What went wrong, when something did (an error, which output is off).
    pub note: String,
}

/// Run `case` on `t` (under test) and on `r` (reference) from the same inputs (seed `seed`) and compare every
/// written buffer. An error on either side is a failed row, not an abort.
pub fn compare<T: Backend, R: Backend>(t: &T, r: &R, case: &Case, seed: u64) -> Row {
    let op = &case.op;
    let mut row = Row {
        kernel: op.kernel(),
        case: case.label.clone(),
        batch: case.batch,
        shape: op.shape(),
        max_rel_err: f64::INFINITY,
        tolerance: op.tolerance(),
        pass: false,
        note: String::new(),
    };
    let h = host_data(op, seed);
    let run = |label: &str, res: Result<(Vec<(&'static str, Vec<f32>)>, Vec<(&'static str, Vec<i32>)>)>| {
        res.map_err(|e| format!("{label}: {e:#}"))
    };
    let got = run(
        "under test",
        (|| {
            let mut p = prepare(t, &h)?;
            op.run(t, &mut p.f, &mut p.i)?;
            written(t, op, &p)
        })(),
    );
    let want = run(
        "reference",
        (|| {
            let mut p = prepare(r, &h)?;
            op.run(r, &mut p.f, &mut p.i)?;
            written(r, op, &p)
        })(),
    );
    let (got, want) = match (got, want) {
        (Ok(g), Ok(w)) => (g, w),
        (g, w) => {
            row.note = [g.err(), w.err()].into_iter().flatten().collect::<Vec<_>>().join("; ");
            return row;
        }
    };
    let mut worst = 0f64;
    let mut notes = Vec::new();
    for ((name, a), (_, b)) in got.0.iter().zip(&want.0) {
        let e = max_rel_err(a, b);
        if e > op.tolerance() || e.is_nan() {
            notes.push(format!("{name}: max rel err {e:.2e}"));
        }
        worst = worst.max(if e.is_nan() { f64::INFINITY } else { e });
    }
    for ((name, a), (_, b)) in got.1.iter().zip(&want.1) {
        let bad = a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
        if bad > 0 {
            notes.push(format!("{name}: {bad} of {} differ", b.len()));
            worst = f64::INFINITY;
        }
    }
    row.max_rel_err = worst;
    row.pass = worst <= op.tolerance();
    row.note = notes.join("; ");
    row
}

// ---- the cases ------------------------------------------------------------------------------------------------

/// Number of outputs of the CelebA model in the protocol's single-task default (`Smiling`).
pub const CELEBA_K: usize = 1;

/// A convolution layer: (name, c_in, h, w, c_out, kh, kw, pad_h, pad_w), followed by ReLU and max pooling
/// (ph, pw).
type ConvLayer = (&'static str, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize);

/// The protocol's layers of `model` (protocol.md "Models"): conv layers, fc layers (name, in, out), loss.
fn layers(model: &str) -> Result<(Vec<ConvLayer>, Vec<(&'static str, usize, usize)>, bool)> {
    Ok(match model {
        "pamap2" => (
            vec![
                ("conv1", 27, 1, 256, 64, 1, 5, 0, 2, 1, 2),
                ("conv2", 64, 1, 128, 64, 1, 5, 0, 2, 1, 2),
                ("conv3", 64, 1, 64, 128, 1, 5, 0, 2, 1, 2),
            ],
            vec![("fc1", 4096, 128), ("fc2", 128, 12)],
            true,
        ),
        "celeba" => (
            vec![
                ("conv1", 3, 64, 64, 32, 3, 3, 1, 1, 2, 2),
                ("conv2", 32, 32, 32, 64, 3, 3, 1, 1, 2, 2),
                ("conv3", 64, 16, 16, 128, 3, 3, 1, 1, 2, 2),
            ],
            vec![("fc1", 8192, 256), ("fc2", 256, CELEBA_K)],
            false,
        ),
        other => bail!("unknown model '{other}': use pamap2 or celeba"),
    })
}

/// Every kernel call of one training step of `model` at batch `n`, at the protocol's shapes (forward, backward,
/// loss, accuracy); with `with_optim` also the batch-independent optimiser steps and the gradient fill over all
/// parameters.
pub fn model_cases(model: &str, n: usize, with_optim: bool) -> Result<Vec<Case>> {
    let (convs, fcs, classes) = layers(model)?;
    let mut out = Vec::new();
    let mut push = |layer: &str, op: Op| out.push(Case { label: format!("{model} {layer}"), batch: n, op });
    let mut params = 0usize;
    for &(name, ci, h, w, co, kh, kw, ph, pw, qh, qw) in &convs {
        let c = Conv2dParams::new(n, ci, h, w, co, kh, kw, ph, pw);
        params += c.w_len() + co;
        push(name, Op::Conv2dForward(c));
        push(name, Op::Conv2dBackwardData(c));
        push(name, Op::Conv2dBackwardFilter(c));
        let inner = (c.h_out * c.w_out) as usize;
        push(name, Op::BiasForward(BiasParams::new(n, co, inner)));
        push(name, Op::BiasBackward(BiasParams::new(n, co, inner)));
        push(name, Op::ReluForward(EltwiseParams::new(c.y_len())));
        push(name, Op::ReluBackward(EltwiseParams::new(c.y_len())));
        let pool = Pool2dParams::new(n, co, c.h_out as usize, c.w_out as usize, qh, qw);
        let pname = format!("pool{}", &name[4..]);
        push(&pname, Op::MaxPoolForward(pool));
        push(&pname, Op::MaxPoolBackward(pool));
        push(&pname, Op::AvgPoolForward(pool));
        push(&pname, Op::AvgPoolBackward(pool));
    }
    for (li, &(name, fin, fout)) in fcs.iter().enumerate() {
        params += fin * fout + fout;
        // y[n, out] = x[n, in] W[out, in]^T; dx[n, in] = dy[n, out] W; dW[out, in] = dy^T x.
        push(name, Op::Gemm(GemmParams::new(n, fout, fin, false, true)));
        push(name, Op::Gemm(GemmParams::new(n, fin, fout, false, false)));
        push(name, Op::Gemm(GemmParams::new(fout, fin, n, true, false)));
        push(name, Op::BiasForward(BiasParams::new(n, fout, 1)));
        push(name, Op::BiasBackward(BiasParams::new(n, fout, 1)));
        if li + 1 < fcs.len() {
            push(name, Op::ReluForward(EltwiseParams::new(n * fout)));
            push(name, Op::ReluBackward(EltwiseParams::new(n * fout)));
        }
    }
    let k = fcs.last().map(|f| f.2).unwrap_or(1);
    let lp = LossParams::new(n, k);
    if classes {
        push("loss", Op::SoftmaxXent(lp));
        push("loss", Op::AccuracyClasses(lp));
    } else {
        push("loss", Op::BceLogits(lp));
        push("loss", Op::AccuracyBinary(lp));
    }
    if with_optim {
        let len = params as i32;
        push("params", Op::Fill(FillParams { len, value: 0.0 }));
        push("params", Op::Sgd(SgdParams { len, lr: 0.01, momentum: 0.9, weight_decay: 1e-4 }));
        push("params", Op::Adam(AdamParams::at_step(params, 1e-3, 1e-4, 3)));
    }
    Ok(out)
}

/// Shapes chosen to break tiling assumptions: odd sizes, 3 and 27 channels, 1x5 kernels, stride 2, batch 1,
/// every GEMM transpose, alpha/beta, tiny and odd lengths.
pub fn awkward_cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut push = |op: Op| out.push(Case { label: "awkward".into(), batch: 0, op });
    let convs = [
        Conv2dParams::new(7, 3, 13, 17, 5, 3, 3, 1, 1),
        Conv2dParams::new(1, 27, 1, 37, 9, 1, 5, 0, 2),
        Conv2dParams::new(3, 27, 1, 250, 64, 1, 5, 0, 2),
        Conv2dParams::strided(3, 5, 11, 9, 6, 3, 3, 1, 1, 2, 2),
        Conv2dParams::strided(2, 27, 1, 61, 13, 1, 5, 0, 2, 1, 2),
        Conv2dParams::new(5, 7, 3, 3, 33, 1, 1, 0, 0),
        Conv2dParams::new(2, 3, 5, 6, 4, 5, 5, 0, 0),
    ];
    for c in convs {
        push(Op::Conv2dForward(c));
        push(Op::Conv2dBackwardData(c));
        push(Op::Conv2dBackwardFilter(c));
    }
    for p in [
        Pool2dParams::new(3, 5, 7, 9, 2, 2),
        Pool2dParams::new(2, 27, 1, 37, 1, 2),
        Pool2dParams::new(2, 3, 10, 11, 3, 3),
    ] {
        push(Op::MaxPoolForward(p));
        push(Op::MaxPoolBackward(p));
        push(Op::AvgPoolForward(p));
        push(Op::AvgPoolBackward(p));
    }
    for (m, n, k) in [(1, 1, 1), (7, 13, 29), (65, 33, 129), (128, 257, 31), (3, 300, 1)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            push(Op::Gemm(GemmParams::new(m, n, k, ta, tb)));
        }
    }
    push(Op::Gemm(GemmParams { alpha: 0.5, beta: 0.25, ..GemmParams::new(37, 19, 53, false, true) }));
    push(Op::Gemm(GemmParams { alpha: -1.5, beta: 1.0, ..GemmParams::new(64, 64, 64, true, false) }));
    for b in [BiasParams::new(7, 27, 13), BiasParams::new(1, 3, 1), BiasParams::new(5, 129, 1)] {
        push(Op::BiasForward(b));
        push(Op::BiasBackward(b));
    }
    for len in [1, 255, 100_003] {
        push(Op::ReluForward(EltwiseParams::new(len)));
        push(Op::ReluBackward(EltwiseParams::new(len)));
        push(Op::Fill(FillParams { len: len as i32, value: -2.5 }));
    }
    for (n, k) in [(1, 12), (7, 12), (33, 1000)] {
        push(Op::SoftmaxXent(LossParams::new(n, k)));
        push(Op::AccuracyClasses(LossParams::new(n, k)));
    }
    for (n, k) in [(1, 1), (7, 5), (300, 40)] {
        push(Op::BceLogits(LossParams::new(n, k)));
        push(Op::AccuracyBinary(LossParams::new(n, k)));
    }
    for len in [1, 12_345] {
        push(Op::Sgd(SgdParams { len, lr: 0.1, momentum: 0.0, weight_decay: 0.0 }));
        push(Op::Sgd(SgdParams { len, lr: 0.05, momentum: 0.9, weight_decay: 1e-2 }));
        push(Op::Adam(AdamParams::at_step(len as usize, 1e-3, 0.0, 1)));
        push(Op::Adam(AdamParams::at_step(len as usize, 3e-3, 1e-2, 10)));
    }
    out
}

/// Every case of `powertrain check`: both models at batch 1, 7 and 64, then the awkward shapes.
pub fn check_cases() -> Result<Vec<Case>> {
    let mut v = Vec::new();
    for model in ["pamap2", "celeba"] {
        for (i, n) in [1usize, 7, 64].into_iter().enumerate() {
            v.extend(model_cases(model, n, i == 0)?);
        }
    }
    v.extend(awkward_cases());
    Ok(v)
}

/// Compare every case of `cases` on `t` against `r`; case `j` uses seed `seed + j`.
pub fn compare_all<T: Backend, R: Backend>(t: &T, r: &R, cases: &[Case], seed: u64) -> Vec<Row> {
    cases.iter().enumerate().map(|(j, c)| compare(t, r, c, seed.wrapping_add(j as u64))).collect()
}

/// The rows as a fixed-width table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!("{:<24} {:<16} {:<44} {:>11} {:>8}  result\n", "kernel", "case", "shape", "max rel err", "tol");
    for r in rows {
        let case = if r.batch > 0 { format!("{} b{}", r.case, r.batch) } else { r.case.clone() };
        s.push_str(&format!(
            "{:<24} {:<16} {:<44} {:>11.2e} {:>8.0e}  {}{}\n",
            r.kernel,
            case,
            r.shape,
            r.max_rel_err,
            r.tolerance,
            if r.pass { "pass" } else { "FAIL" },
            if r.note.is_empty() { String::new() } else { format!("  ({})", r.note) }
        ));
    }
    s
}

/// `powertrain check`: the table (or JSON), and an error when any case fails.
pub fn run_check(a: &CheckArgs) -> Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let cases = check_cases()?;
    let cpu = CpuBackend::new();
    let (device, rows) = match a.device.as_str() {
        "cuda" => {
            let gpu = super::CudaBackend::new(0)?;
            if !a.json {
                println!("check: {} ({}) against the CPU backend, seed {seed}", gpu.device_name(), gpu.image_summary());
            }
            (gpu.device_name(), compare_all(&gpu, &cpu, &cases, seed))
        }
        // The CPU against itself: exercises the harness where there is no GPU.
        "cpu" => {
            if !a.json {
                println!("check: the CPU backend against itself (harness self-test), seed {seed}");
            }
            (cpu.device_name(), compare_all(&cpu, &CpuBackend::new(), &cases, seed))
        }
        other => bail!("check --device {other}: use --device cuda (or cpu to self-test the harness)"),
    };
    let failed = rows.iter().filter(|r| !r.pass).count();
    if a.json {
        let doc =
            serde_json::json!({ "device": device, "seed": seed, "cases": rows.len(), "failed": failed, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&rows));
        println!("{} cases, {} failed, seed {seed}", rows.len(), failed);
    }
    if failed > 0 {
        let kernels: std::collections::BTreeSet<&str> = rows.iter().filter(|r| !r.pass).map(|r| r.kernel).collect();
        bail!("check: {failed} of {} cases FAILED ({kernels:?}); rerun with --seed {seed} to reproduce", rows.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_rel_err_scales_by_the_reference_and_fails_on_nan() {
        assert_eq!(max_rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        let e = max_rel_err(&[1.0, 4.01], &[1.0, 4.0]);
        assert!((e - 0.0025).abs() < 1e-6, "{e}");
        assert_eq!(max_rel_err(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_rel_err(&[1.0], &[f32::NAN]), f64::INFINITY);
        assert_eq!(max_rel_err(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(max_rel_err(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
    }

    #[test]
    fn cases_cover_every_kernel_and_buffers_match_the_params() {
        let cases = check_cases().unwrap();
        for k in KERNEL_NAMES {
            assert!(cases.iter().any(|c| c.op.kernel() == *k), "no check case for {k}");
        }
        // Each op's buffers have the lengths its parameters imply (the conv output of pamap2 conv1 at n=7).
        let c = Conv2dParams::new(7, 27, 1, 256, 64, 1, 5, 0, 2);
        let (f, _) = Op::Conv2dForward(c).specs();
        assert_eq!(f.iter().map(|s| s.len).collect::<Vec<_>>(), vec![7 * 27 * 256, 64 * 27 * 5, 7 * 64 * 256]);
        // Bytes: inputs + outputs once, in-out twice.
        assert_eq!(Op::ReluForward(EltwiseParams::new(10)).bytes(), 80.0);
        assert_eq!(Op::Fill(FillParams { len: 10, value: 0.0 }).bytes(), 40.0);
        // pamap2 parameter count (596300 per the protocol's layers) drives the optimiser cases.
        let m = model_cases("pamap2", 1, true).unwrap();
        assert!(m.iter().any(|c| c.op == Op::Fill(FillParams { len: 596_300, value: 0.0 })));
    }

    #[test]
    fn pool_indices_stay_inside_their_windows() {
        let p = Pool2dParams::new(2, 3, 10, 11, 3, 3);
        let h = host_data(&Op::MaxPoolBackward(p), 5);
        let idx = &h.i[0];
        assert_eq!(idx.len(), p.y_len());
        for (j, &v) in idx.iter().enumerate() {
            let (ox, oy) = (j as i32 % p.w_out, (j as i32 / p.w_out) % p.h_out);
            let (y, x) = (v / p.w, v % p.w);
            assert!((oy * 3..oy * 3 + 3).contains(&y) && (ox * 3..ox * 3 + 3).contains(&x), "{j}: {v}");
        }
        // Same seed, same data; another seed, other data.
        // (f[0] is the input dy; f[1] is the NaN-poisoned output dx.)
        let again = host_data(&Op::MaxPoolBackward(p), 5);
        assert_eq!((&again.f[0], &again.i), (&h.f[0], &h.i));
        assert!(again.f[1].iter().all(|v| v.is_nan()) && again.f[1].len() == p.x_len());
        assert_ne!(host_data(&Op::MaxPoolBackward(p), 6).f[0], h.f[0]);
    }
}

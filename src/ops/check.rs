//! The check harness: every kernel against a reference backend on fresh random inputs, with ONE list of cases
//! and ONE comparison, used by `powertrain check` (src/cmd/check.rs: `--device cuda`, `emu`, `cpu`), by the GPU
//! scripts (which run that command), by the emulation tests (tests/emu_kernels.rs) and by `bench kernels`.
//!
//! The logic is generic over two backends (`compare::<T, R>`): the same case runs on the backend under test and
//! on the reference, from the same host inputs, with every pure output poisoned with NaN before the launch, and
//! the outputs are compared by max relative error `max|a - b| / max(max|b|, tiny)` (any NaN fails).
//!
//! Cases (`check_cases`): every kernel call of one training step of each model, from the model's layer table
//! (src/model, through [`StepCases`]), at batch 1, 7 and 64, then each family's awkward shapes (`awkward_cases`):
//! 3 and 27 channels, sizes that are not multiples of any tile, 1x5 kernels, stride 2, all GEMM transposes.
//! What a call reads and writes, its shape, FLOPs and tolerance come from its family ([`CallInfo`]).

use crate::ops::*;
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a buffer is used by a call: read, written (poisoned with NaN / i32::MIN first), or read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    In,
    Out,
    InOut,
}

/// Host values a buffer starts with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
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

/// Uniform in [-1, 1).
pub const U: Init = Init::Uniform(-1.0, 1.0);

/// A buffer of a call: name, element count, role, initial values.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub len: usize,
    pub role: Role,
    pub init: Init,
}

pub fn sp(name: &'static str, len: usize, role: Role, init: Init) -> Spec {
    Spec { name, len, role, init }
}

/// A call's buffers: f32 buffers in the trait method's argument order, then i32 buffers.
pub type Buffers = (Vec<Spec>, Vec<Spec>);

/// What the harness needs to know about a call of a family (object safe: `Op` hands out `&dyn CallInfo`).
pub trait CallInfo {
    /// The kernel name (one of `KERNEL_NAMES`).
    fn kernel(&self) -> &'static str;
    /// The shape in a few words, e.g. `n7 c27 1x256 -> c64 k1x5 p0,2 s1,1`.
    fn shape(&self) -> String;
    fn buffers(&self) -> Buffers;
    /// Floating-point operations of one call (convolutions and GEMMs; None for the memory-bound rest).
    fn flops(&self) -> Option<f64> {
        None
    }
    /// Max relative error allowed against the reference: 1e-4 for GEMM, convolutions and reductions, 1e-5 for
    /// elementwise ops.
    fn tolerance(&self) -> f64;
}

/// A call of a family: its description and how to run it on any backend.
pub trait KernelCall: CallInfo {
    /// Run the call once on `b` with the prepared buffers (in `buffers()` order).
    fn run<B: Backend>(&self, b: &B, f: &mut [B::Buf], i: &mut [B::IBuf]) -> Result<()>;
}

/// The error of `KernelCall::run` when the prepared buffers do not fit the call.
pub fn bad_buffers(kernel: &str) -> anyhow::Error {
    anyhow::anyhow!("{kernel}: prepared buffers do not match the op")
}

impl Op {
    /// The kernel name (one of `KERNEL_NAMES`).
    pub fn kernel(&self) -> &'static str {
        self.info().kernel()
    }
    /// The shape in a few words.
    pub fn shape(&self) -> String {
        self.info().shape()
    }
    /// f32 buffers in the trait method's argument order, then i32 buffers.
    pub fn buffers(&self) -> Buffers {
        self.info().buffers()
    }
    /// Floating-point operations of one call (conv: `Conv2dParams::flops`, gemm: `GemmParams::flops`).
    pub fn flops(&self) -> Option<f64> {
        self.info().flops()
    }
    /// Bytes moved by one call if every buffer is read (inputs) and written (outputs) once.
    pub fn bytes(&self) -> f64 {
        let (f, i) = self.buffers();
        f.iter().chain(i.iter()).map(|s| s.len as f64 * 4.0 * if s.role == Role::InOut { 2.0 } else { 1.0 }).sum()
    }
    /// Max relative error allowed against the reference.
    pub fn tolerance(&self) -> f64 {
        self.info().tolerance()
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
    let (fs, is) = op.buffers();
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

/// The buffers a call wrote (Out and InOut), named: f32 ones, then i32 ones.
type Written = (Vec<(&'static str, Vec<f32>)>, Vec<(&'static str, Vec<i32>)>);

/// Download the written buffers.
fn written<B: Backend>(b: &B, op: &Op, p: &Prepared<B>) -> Result<Written> {
    let (fs, is) = op.buffers();
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

/// Run `op` once on `b` from the host inputs `h`; what it wrote.
fn outputs<B: Backend>(b: &B, op: &Op, h: &HostData) -> Result<Written> {
    let mut p = prepare(b, h)?;
    op.run(b, &mut p.f, &mut p.i)?;
    written(b, op, &p)
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
    let got = outputs(t, op, &h).map_err(|e| format!("under test: {e:#}"));
    let want = outputs(r, op, &h).map_err(|e| format!("reference: {e:#}"));
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

/// A model whose training step `check` covers: every kernel call of one step at batch `n` (labelled
/// `<model> <layer>`), with the batch-independent optimiser steps and gradient fill when `with_optim`.
/// Implemented by `model::Arch` from its layer table.
pub trait StepCases {
    fn step_cases(&self, n: usize, with_optim: bool) -> Vec<Case>;
}

/// Batch sizes of the model cases of `powertrain check` (the optimiser cases once, with the first).
pub const CHECK_BATCHES: [usize; 3] = [1, 7, 64];

/// Every case of `powertrain check`: each model's step at `CHECK_BATCHES`, then the awkward shapes.
pub fn check_cases(models: &[&dyn StepCases]) -> Vec<Case> {
    let mut v = Vec::new();
    for m in models {
        for (i, n) in CHECK_BATCHES.into_iter().enumerate() {
            v.extend(m.step_cases(n, i == 0));
        }
    }
    v.extend(awkward_cases());
    v
}

/// Shapes chosen to break tiling assumptions (each family's `awkward_calls`): odd sizes, 3 and 27 channels, 1x5
/// kernels, stride 2, batch 1, every GEMM transpose, alpha/beta, tiny and odd lengths.
pub fn awkward_cases() -> Vec<Case> {
    awkward_ops().into_iter().map(|op| Case { label: "awkward".into(), batch: 0, op }).collect()
}

/// Compare every case of `cases` on `t` against `r`; case `j` uses seed `seed + j`.
pub fn compare_all<T: Backend, R: Backend>(t: &T, r: &R, cases: &[Case], seed: u64) -> Vec<Row> {
    compare_each(t, r, cases, seed, |_, _| {})
}

/// `compare_all`, calling `done(j, row)` after each case (for progress on slow backends).
pub fn compare_each<T: Backend, R: Backend>(
    t: &T,
    r: &R,
    cases: &[Case],
    seed: u64,
    mut done: impl FnMut(usize, &Row),
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(cases.len());
    for (j, c) in cases.iter().enumerate() {
        rows.push(compare(t, r, c, seed.wrapping_add(j as u64)));
        done(j, &rows[j]);
    }
    rows
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

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn max_rel_err_scales_by_the_reference_and_fails_on_nan() {
        assert_eq!(max_rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        let e = max_rel_err(&[1.0, 4.01], &[1.0, 4.0]);
        assert_abs_diff_eq!(e, 0.0025, epsilon = 1e-6);
        assert_eq!(max_rel_err(&[f32::NAN], &[1.0]), f64::INFINITY);
        assert_eq!(max_rel_err(&[1.0], &[f32::NAN]), f64::INFINITY);
        assert_eq!(max_rel_err(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(max_rel_err(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
    }

    /// Each call's buffers have the lengths its parameters imply; bytes count inputs and outputs once, in-out
    /// twice. (That the whole list covers every kernel is tested with the models' cases: src/model/cases.rs.)
    #[test]
    fn buffers_match_the_params() {
        // The conv output of pamap2 conv1 at n=7.
        let c = Conv2dParams::new(7, 27, 1, 256, 64, 1, 5, 0, 2);
        let (f, _) = Op::from(Conv2dCall::Forward(c)).buffers();
        assert_eq!(f.iter().map(|s| s.len).collect::<Vec<_>>(), vec![7 * 27 * 256, 64 * 27 * 5, 7 * 64 * 256]);
        assert_eq!(Op::from(ElementwiseCall::ReluForward(EltwiseParams::new(10))).bytes(), 80.0);
        assert_eq!(Op::from(ElementwiseCall::Fill(FillParams { len: 10, value: 0.0 })).bytes(), 40.0);
    }

    /// The awkward cases cover every kernel (so does each model's step, but not every model runs every kernel).
    #[test]
    fn awkward_cases_cover_every_kernel() {
        let cases = awkward_cases();
        assert_eq!(cases.len(), 90);
        for k in KERNEL_NAMES {
            assert!(cases.iter().any(|c| c.op.kernel() == *k), "no awkward case for {k}");
        }
    }

    #[test]
    fn pool_indices_stay_inside_their_windows() {
        let p = Pool2dParams::new(2, 3, 10, 11, 3, 3);
        let op = Op::from(PoolCall::MaxBackward(p));
        let h = host_data(&op, 5);
        let idx = &h.i[0];
        assert_eq!(idx.len(), p.y_len());
        for (j, &v) in idx.iter().enumerate() {
            let (ox, oy) = (j as i32 % p.w_out, (j as i32 / p.w_out) % p.h_out);
            let (y, x) = (v / p.w, v % p.w);
            assert!((oy * 3..oy * 3 + 3).contains(&y) && (ox * 3..ox * 3 + 3).contains(&x), "{j}: {v}");
        }
        // Same seed, same data; another seed, other data.
        // (f[0] is the input dy; f[1] is the NaN-poisoned output dx.)
        let again = host_data(&op, 5);
        assert_eq!((&again.f[0], &again.i), (&h.f[0], &h.i));
        assert!(again.f[1].iter().all(|v| v.is_nan()) && again.f[1].len() == p.x_len());
        assert_ne!(host_data(&op, 6).f[0], h.f[0]);
    }
}

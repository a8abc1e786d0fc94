//! What the op families' tests share: the f64 helpers of the gradient checks, the PyTorch fixture reader,
//! and the emulation tests' seeded inputs and comparison.
#![allow(dead_code)]

use crate::ops::cpu::CpuBackend;
use crate::ops::Pool2dParams;
use anyhow::{anyhow, bail, ensure, Context, Result};
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

// ---- f64 references and finite differences (was tests/cpu_ops.rs) ---------------------------------------------
//
// The CPU op functions are generic over `Float` (f32 and f64); the f64 instantiation makes central finite
// differences accurate to ~1e-10, so thresholds are tight. The f32 instantiation (what `CpuBackend` runs) is
// checked against the f64 one through the op traits.

/// xorshift64*: a tiny deterministic generator, uniform in [-1, 1).
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// max |a - b| / max |b| (b the reference).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Central differences of `f` at `x`, one coordinate at a time.
pub fn fd_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + eps;
            let fp = f(&xp);
            xp[i] = x[i] - eps;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (2.0 * eps)
        })
        .collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---- PyTorch fixtures (was tests/torch_parity_ops.rs) ----------------------------------------------------------
//
// Reference values in `tests/fixtures/ops.safetensors`, written by `scripts/make_fixtures.py` (provenance in
// `tests/fixtures/README.md`). Tensors are named `<case>.<tensor>`; each case's parameters are a JSON string under
// the key `<case>` in the file's metadata. Tolerances (not to be loosened to make a test pass): forward and backward
// values rel. error max|got - want| / max|want| < 1e-4; optimizer weights after each of 3 steps rel. L2 error < 1e-5.

pub const OPS_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ops.safetensors");
pub const TOL_OP: f64 = 1e-4;
pub const TOL_OPTIM: f64 = 1e-5;

/// The fixture file's bytes (read whole: it is small).
pub fn fixture_bytes() -> Result<Vec<u8>> {
    std::fs::read(OPS_FIXTURE).with_context(|| {
        format!("reading {OPS_FIXTURE}: regenerate it with `python3 scripts/make_fixtures.py --only ops` (needs torch)")
    })
}

/// Run one parity test: the parsed fixture, the CPU backend and a checker whose failures are reported together.
pub fn parity(test: impl FnOnce(&Fixture, &CpuBackend, &mut Checker) -> Result<()>) -> Result<()> {
    let bytes = fixture_bytes()?;
    let fx = Fixture::parse(&bytes)?;
    let mut ck = Checker::default();
    test(&fx, &CpuBackend::new(), &mut ck)?;
    ck.finish()
}

/// Parsed fixture: tensors plus per-case metadata.
pub struct Fixture<'a> {
    st: SafeTensors<'a>,
    meta: std::collections::HashMap<String, String>,
}

impl<'a> Fixture<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{OPS_FIXTURE}: bad safetensors header: {e:?}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{OPS_FIXTURE}: bad safetensors file: {e:?}"))?;
        Ok(Fixture { st, meta })
    }

    /// The JSON parameters of `case`.
    pub fn params(&self, case: &str) -> Result<Value> {
        let s = self
            .meta
            .get(case)
            .ok_or_else(|| anyhow!("{OPS_FIXTURE}: no metadata for case `{case}`; regenerate the fixtures"))?;
        serde_json::from_str(s).with_context(|| format!("{OPS_FIXTURE}: metadata of `{case}` is not JSON"))
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    pub fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>> {
        self.st.tensor(name).map_err(|e| anyhow!("{OPS_FIXTURE}: tensor `{name}`: {e:?}; regenerate the fixtures"))
    }

    /// f32 tensor, flattened row-major.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        let v = self.view(name)?;
        ensure!(v.dtype() == Dtype::F32, "{OPS_FIXTURE}: `{name}` is {:?}, expected F32", v.dtype());
        Ok(v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Integer tensor (i32 or i64) as i32, flattened row-major.
    pub fn i32s(&self, name: &str) -> Result<Vec<i32>> {
        let v = self.view(name)?;
        match v.dtype() {
            Dtype::I32 => Ok(v.data().chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
            Dtype::I64 => v
                .data()
                .chunks_exact(8)
                .map(|b| {
                    let x = i64::from_le_bytes(b.try_into().expect("chunks_exact(8) yields 8 bytes"));
                    i32::try_from(x).map_err(|_| anyhow!("{OPS_FIXTURE}: `{name}` value {x} does not fit i32"))
                })
                .collect(),
            d => bail!("{OPS_FIXTURE}: `{name}` is {d:?}, expected I32 or I64"),
        }
    }
}

/// max|got - want| / max|want| (absolute error when want is all zeros). got, want: same length.
pub fn rel_err32(got: &[f32], want: &[f32]) -> f64 {
    let diff = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|b| (*b as f64).abs()).fold(0.0, f64::max);
    if scale > 0.0 {
        diff / scale
    } else {
        diff
    }
}

/// ||got - want||_2 / ||want||_2. got, want: same length.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Collects every comparison of a test, then fails once listing all mismatches (so one run shows them all).
#[derive(Default)]
pub struct Checker {
    pub failures: Vec<String>,
}

impl Checker {
    /// Compare with `metric` (rel_err or rel_l2) against `tol`; length mismatch is a failure too.
    pub fn cmp(&mut self, what: &str, got: &[f32], want: &[f32], metric: fn(&[f32], &[f32]) -> f64, tol: f64) {
        if got.len() != want.len() {
            self.failures.push(format!("{what}: {} values, expected {}", got.len(), want.len()));
            return;
        }
        if got.iter().any(|v| !v.is_finite()) {
            self.failures.push(format!("{what}: non-finite output"));
            return;
        }
        let e = metric(got, want);
        eprintln!("{what}: rel. error {e:.3e} (tol {tol:.0e})");
        if e.is_nan() || e >= tol {
            self.failures.push(format!("{what}: rel. error {e:.3e} >= {tol:.0e}"));
        }
    }
    pub fn op(&mut self, what: &str, got: &[f32], want: &[f32]) {
        self.cmp(what, got, want, rel_err32, TOL_OP);
    }
    /// Record an op that returned an error (e.g. "not implemented yet").
    pub fn run(&mut self, what: &str, r: Result<()>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.failures.push(format!("{what}: {e:#}"));
                false
            }
        }
    }
    pub fn finish(self) -> Result<()> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            bail!("{} mismatch(es) against PyTorch:\n  {}", self.failures.len(), self.failures.join("\n  "))
        }
    }
}

pub fn usize_pair(v: &Value, key: &str) -> Result<(usize, usize)> {
    let a = v[key].as_array().filter(|a| a.len() == 2).ok_or_else(|| anyhow!("metadata `{key}` is not a pair"))?;
    let get = |i: usize| a[i].as_u64().map(|x| x as usize).ok_or_else(|| anyhow!("metadata `{key}` not integers"));
    Ok((get(0)?, get(1)?))
}

/// A pooling case's parameters: the shape of its `x` and its `kernel` (stride = kernel).
pub fn pool_params(fx: &Fixture, case: &str) -> Result<Pool2dParams> {
    let xs = fx.shape(&format!("{case}.x"))?;
    let (kh, kw) = usize_pair(&fx.params(case)?, "kernel")?;
    Ok(Pool2dParams::new(xs[0], xs[1], xs[2], xs[3], kh, kw))
}

pub fn f32_field(v: &Value, key: &str) -> Result<f32> {
    v[key].as_f64().map(|x| x as f32).ok_or_else(|| anyhow!("metadata `{key}` missing or not a number"))
}

pub const CASES: &[&str] = &[
    "conv2d_pamap2",
    "conv2d_celeba",
    "conv2d_stride2",
    "maxpool_1x2",
    "maxpool_2x2",
    "avgpool_1x2",
    "avgpool_2x2",
    "linear",
    "relu",
    "cross_entropy",
    "bce_logits",
    "sgd",
    "adam",
];

/// The fixture holds every case, with JSON parameters that agree with its tensors' shapes.
#[test]
fn fixture_has_every_case_with_consistent_shapes() -> Result<()> {
    let bytes = fixture_bytes()?;
    let fx = Fixture::parse(&bytes)?;
    for case in CASES {
        let p = fx.params(case)?;
        ensure!(p["op"].is_string(), "case `{case}` has no `op` in its metadata");
    }
    let p = fx.params("conv2d_stride2")?;
    assert_eq!(usize_pair(&p, "stride")?, (2, 2));
    assert_eq!(fx.shape("conv2d_stride2.x")?, vec![1, 4, 7, 9]);
    // (7 + 2 - 3) / 2 + 1 = 4, (9 + 2 - 3) / 2 + 1 = 5.
    assert_eq!(fx.shape("conv2d_stride2.y")?, vec![1, 3, 4, 5]);
    assert_eq!(fx.shape("conv2d_pamap2.y")?, vec![2, 8, 1, 40]);
    assert_eq!(fx.shape("maxpool_2x2.y")?, vec![2, 3, 3, 4]);
    assert_eq!(fx.shape("linear.dw")?, vec![7, 33]);
    assert_eq!(fx.shape("cross_entropy.loss")?, vec![1]);
    assert_eq!(fx.shape("adam.w3")?, vec![37]);
    Ok(())
}

// ---- the emulation tests (was tests/emu_kernels.rs) -------------------------------------------------------------
//
// Fresh random inputs (seeded by the clock, seed printed; rerun one with POWERTRAIN_EMU_SEED=<seed>), outputs
// poisoned with NaN where the kernel must write them, every buffer framed by NaN guard zones (EmuBackend), max
// relative error <= 1e-4 against `CpuBackend`, with a floor for sums that cancel.

pub const TOL: f32 = 1e-4;

pub fn rng(test: &str) -> ChaCha8Rng {
    let seed = std::env::var("POWERTRAIN_EMU_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("{test}: seed = {seed} (rerun with POWERTRAIN_EMU_SEED={seed})");
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn randn(r: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Max over elements of |got - want| / max(|want|, 1e-2 * max|want|): relative error with a floor, so that
/// sums that cancel to ~0 (long reductions of random signs) are judged on the scale of the output.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = (1e-2 * scale).max(f32::MIN_POSITIVE);
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(w.is_finite(), "{what}: reference not finite at {i}: {w}");
        assert!(g.is_finite(), "{what}: kernel output not finite at {i}: {g} (want {w})");
        let e = (g - w).abs() / w.abs().max(floor);
        if e > worst {
            worst = e;
            at = i;
        }
    }
    assert!(worst <= TOL, "{what}: max relative error {worst:e} at {at}: got {} want {}", got[at], want[at]);
}

/// `n` NaNs: an output the kernel must write entirely.
pub fn poison(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

use crate::ops::emu::{EmuBackend, EmuView, EmuViewMut};
use crate::ops::Device;

/// Run `f` on the emulation with `a`, `b` uploaded as inputs and `c0` as the written buffer (NaN where the
/// kernel must write, data where it reads too); returns the written buffer. Guard zones are checked by
/// `EmuBackend` after every launch (an error here).
pub fn emu3(
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    f: impl FnOnce(&EmuBackend, EmuView<'_>, EmuView<'_>, EmuViewMut<'_>) -> Result<()>,
) -> Vec<f32> {
    let e = EmuBackend::new();
    let (a, b, mut c) = (e.upload(a).unwrap(), e.upload(b).unwrap(), e.upload(c0).unwrap());
    f(&e, e.view(&a), e.view(&b), e.view_mut(&mut c)).unwrap();
    e.download(&c).unwrap()
}

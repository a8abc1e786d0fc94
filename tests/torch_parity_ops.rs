//! Op parity with PyTorch: every CPU-backend op, called through the `Backend` trait, against the reference
//! values in `tests/fixtures/ops.safetensors` (written by `scripts/make_fixtures.py`; provenance in
//! `tests/fixtures/README.md`). Tensors are named `<case>.<tensor>`; each case's parameters are a JSON
//! string under the key `<case>` in the file's metadata.
//!
//! Tolerances (not to be loosened to make a test pass): forward and backward values rel. error
//! max|got - want| / max|want| < 1e-4; optimizer weights after each of 3 steps rel. L2 error < 1e-5.

use anyhow::{anyhow, bail, ensure, Context, Result};
use powertrain::ops::cpu::CpuBackend;
use powertrain::ops::{
    AdamParams, Backend, BiasParams, Conv2dParams, EltwiseParams, GemmParams, LossParams, Pool2dParams, SgdParams,
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

const OPS_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ops.safetensors");
const TOL_OP: f64 = 1e-4;
const TOL_OPTIM: f64 = 1e-5;

/// The fixture file's bytes (read whole: it is small).
fn fixture_bytes() -> Result<Vec<u8>> {
    std::fs::read(OPS_FIXTURE).with_context(|| {
        format!("reading {OPS_FIXTURE}: regenerate it with `python3 scripts/make_fixtures.py --only ops` (needs torch)")
    })
}

/// Run one parity test: the parsed fixture, the CPU backend and a checker whose failures are reported together.
fn parity(test: impl FnOnce(&Fixture, &CpuBackend, &mut Checker) -> Result<()>) -> Result<()> {
    let bytes = fixture_bytes()?;
    let fx = Fixture::parse(&bytes)?;
    let mut ck = Checker::default();
    test(&fx, &CpuBackend::new(), &mut ck)?;
    ck.finish()
}

/// Parsed fixture: tensors plus per-case metadata.
struct Fixture<'a> {
    st: SafeTensors<'a>,
    meta: std::collections::HashMap<String, String>,
}

impl<'a> Fixture<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{OPS_FIXTURE}: bad safetensors header: {e:?}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{OPS_FIXTURE}: bad safetensors file: {e:?}"))?;
        Ok(Fixture { st, meta })
    }

    /// The JSON parameters of `case`.
    fn params(&self, case: &str) -> Result<Value> {
        let s = self
            .meta
            .get(case)
            .ok_or_else(|| anyhow!("{OPS_FIXTURE}: no metadata for case `{case}`; regenerate the fixtures"))?;
        serde_json::from_str(s).with_context(|| format!("{OPS_FIXTURE}: metadata of `{case}` is not JSON"))
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>> {
        self.st.tensor(name).map_err(|e| anyhow!("{OPS_FIXTURE}: tensor `{name}`: {e:?}; regenerate the fixtures"))
    }

    /// f32 tensor, flattened row-major.
    fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        let v = self.view(name)?;
        ensure!(v.dtype() == Dtype::F32, "{OPS_FIXTURE}: `{name}` is {:?}, expected F32", v.dtype());
        Ok(v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Integer tensor (i32 or i64) as i32, flattened row-major.
    fn i32s(&self, name: &str) -> Result<Vec<i32>> {
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
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let diff = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|b| (*b as f64).abs()).fold(0.0, f64::max);
    if scale > 0.0 {
        diff / scale
    } else {
        diff
    }
}

/// ||got - want||_2 / ||want||_2. got, want: same length.
fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Collects every comparison of a test, then fails once listing all mismatches (so one run shows them all).
#[derive(Default)]
struct Checker {
    failures: Vec<String>,
}

impl Checker {
    /// Compare with `metric` (rel_err or rel_l2) against `tol`; length mismatch is a failure too.
    fn cmp(&mut self, what: &str, got: &[f32], want: &[f32], metric: fn(&[f32], &[f32]) -> f64, tol: f64) {
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
        if !(e < tol) {
            self.failures.push(format!("{what}: rel. error {e:.3e} >= {tol:.0e}"));
        }
    }
    fn op(&mut self, what: &str, got: &[f32], want: &[f32]) {
        self.cmp(what, got, want, rel_err, TOL_OP);
    }
    /// Record an op that returned an error (e.g. "not implemented yet").
    fn run(&mut self, what: &str, r: Result<()>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.failures.push(format!("{what}: {e:#}"));
                false
            }
        }
    }
    fn finish(self) -> Result<()> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            bail!("{} mismatch(es) against PyTorch:\n  {}", self.failures.len(), self.failures.join("\n  "))
        }
    }
}

fn usize_pair(v: &Value, key: &str) -> Result<(usize, usize)> {
    let a = v[key].as_array().filter(|a| a.len() == 2).ok_or_else(|| anyhow!("metadata `{key}` is not a pair"))?;
    let get = |i: usize| a[i].as_u64().map(|x| x as usize).ok_or_else(|| anyhow!("metadata `{key}` not integers"));
    Ok((get(0)?, get(1)?))
}

/// A pooling case's parameters: the shape of its `x` and its `kernel` (stride = kernel).
fn pool_params(fx: &Fixture, case: &str) -> Result<Pool2dParams> {
    let xs = fx.shape(&format!("{case}.x"))?;
    let (kh, kw) = usize_pair(&fx.params(case)?, "kernel")?;
    Ok(Pool2dParams::new(xs[0], xs[1], xs[2], xs[3], kh, kw))
}

fn f32_field(v: &Value, key: &str) -> Result<f32> {
    v[key].as_f64().map(|x| x as f32).ok_or_else(|| anyhow!("metadata `{key}` missing or not a number"))
}

const CASES: &[&str] = &[
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

/// conv2d forward (no bias), + bias, backward data, backward filter, bias gradient: three shapes.
#[test]
fn conv2d_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        for case in ["conv2d_pamap2", "conv2d_celeba", "conv2d_stride2"] {
            let meta = fx.params(case)?;
            let (xs, ws) = (fx.shape(&format!("{case}.x"))?, fx.shape(&format!("{case}.w"))?);
            ensure!(xs.len() == 4 && ws.len() == 4 && xs[1] == ws[1], "{case}: bad x/w shapes {xs:?} {ws:?}");
            let (ph, pw) = usize_pair(&meta, "pad")?;
            let (sh, sw) = usize_pair(&meta, "stride")?;
            let p = Conv2dParams::strided(xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], ph, pw, sh, sw);
            let t = |n: &str| fx.f32s(&format!("{case}.{n}"));
            let (x, w, b, dy) = (t("x")?, t("w")?, t("b")?, t("dy")?);

            let mut y = vec![f32::NAN; p.y_len()];
            if ck.run(&format!("{case} forward"), be.conv2d_forward(&p, &x, &w, &mut y)) {
                ck.op(&format!("{case}.y"), &y, &t("y")?);
            }
            let bp = BiasParams::new(xs[0], ws[0], (p.h_out * p.w_out) as usize);
            let mut yb = t("y")?; // bias on top of the reference y: tests bias_forward alone
            if ck.run(&format!("{case} bias_forward"), be.bias_forward(&bp, &b, &mut yb)) {
                ck.op(&format!("{case}.y_bias"), &yb, &t("y_bias")?);
            }
            let mut dx = vec![f32::NAN; p.x_len()];
            if ck.run(&format!("{case} backward_data"), be.conv2d_backward_data(&p, &dy, &w, &mut dx)) {
                ck.op(&format!("{case}.dx"), &dx, &t("dx")?);
            }
            let mut dw = vec![f32::NAN; p.w_len()];
            if ck.run(&format!("{case} backward_filter"), be.conv2d_backward_filter(&p, &x, &dy, &mut dw)) {
                ck.op(&format!("{case}.dw"), &dw, &t("dw")?);
            }
            let mut db = vec![f32::NAN; ws[0]];
            if ck.run(&format!("{case} bias_backward"), be.bias_backward(&bp, &dy, &mut db)) {
                ck.op(&format!("{case}.db"), &db, &t("db")?);
            }
        }
        Ok(())
    })
}

/// Max pooling 1x2 and 2x2 (odd sizes: floor mode): values, argmax indices (exact), and the scatter backward.
#[test]
fn maxpool_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        for case in ["maxpool_1x2", "maxpool_2x2"] {
            let p = pool_params(fx, case)?;
            let t = |n: &str| fx.f32s(&format!("{case}.{n}"));
            let mut y = vec![f32::NAN; p.y_len()];
            let mut idx = vec![-1i32; p.y_len()];
            let want_idx = fx.i32s(&format!("{case}.idx"))?;
            if ck.run(&format!("{case} forward"), be.maxpool2d_forward(&p, &t("x")?, &mut y, &mut idx)) {
                ck.op(&format!("{case}.y"), &y, &t("y")?);
                let bad = idx.iter().zip(&want_idx).filter(|(a, b)| a != b).count();
                if bad != 0 || idx.len() != want_idx.len() {
                    ck.failures.push(format!("{case}.idx: {bad} of {} indices differ", want_idx.len()));
                }
            }
            // Backward through the reference indices, so a forward bug does not hide a backward one.
            let mut dx = vec![f32::NAN; p.x_len()];
            if ck.run(&format!("{case} backward"), be.maxpool2d_backward(&p, &t("dy")?, &want_idx, &mut dx)) {
                ck.op(&format!("{case}.dx"), &dx, &t("dx")?);
            }
        }
        Ok(())
    })
}

/// Average pooling 1x2 and 2x2 (odd sizes: floor mode), forward and backward.
#[test]
fn avgpool_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        for case in ["avgpool_1x2", "avgpool_2x2"] {
            let p = pool_params(fx, case)?;
            let t = |n: &str| fx.f32s(&format!("{case}.{n}"));
            let mut y = vec![f32::NAN; p.y_len()];
            if ck.run(&format!("{case} forward"), be.avgpool2d_forward(&p, &t("x")?, &mut y)) {
                ck.op(&format!("{case}.y"), &y, &t("y")?);
            }
            let mut dx = vec![f32::NAN; p.x_len()];
            if ck.run(&format!("{case} backward"), be.avgpool2d_backward(&p, &t("dy")?, &mut dx)) {
                ck.op(&format!("{case}.dx"), &dx, &t("dx")?);
            }
        }
        Ok(())
    })
}

/// Linear layer as the models build it from gemm + bias: y = x W^T + b, dx = dy W, dW = dy^T x, db = sum dy.
#[test]
fn linear_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let (xs, ws) = (fx.shape("linear.x")?, fx.shape("linear.w")?);
        let (n, k_in, k_out) = (xs[0], xs[1], ws[0]);
        let t = |s: &str| fx.f32s(&format!("linear.{s}"));
        let (x, w, b, dy) = (t("x")?, t("w")?, t("b")?, t("dy")?);

        // y [n, out] = x [n, in] * W^T (W stored [out, in]), then + b.
        let mut y = vec![f32::NAN; n * k_out];
        let fwd = be.gemm(&GemmParams::new(n, k_out, k_in, false, true), &x, &w, &mut y);
        if ck.run("linear gemm forward", fwd)
            && ck.run("linear bias_forward", be.bias_forward(&BiasParams::new(n, k_out, 1), &b, &mut y))
        {
            ck.op("linear.y", &y, &t("y")?);
        }
        // dx [n, in] = dy [n, out] * W [out, in].
        let mut dx = vec![f32::NAN; n * k_in];
        if ck.run("linear gemm dx", be.gemm(&GemmParams::new(n, k_in, k_out, false, false), &dy, &w, &mut dx)) {
            ck.op("linear.dx", &dx, &t("dx")?);
        }
        // dW [out, in] = dy^T (dy stored [n, out]) * x [n, in].
        let mut dw = vec![f32::NAN; k_out * k_in];
        if ck.run("linear gemm dw", be.gemm(&GemmParams::new(k_out, k_in, n, true, false), &dy, &x, &mut dw)) {
            ck.op("linear.dw", &dw, &t("dw")?);
        }
        let mut db = vec![f32::NAN; k_out];
        if ck.run("linear bias_backward", be.bias_backward(&BiasParams::new(n, k_out, 1), &dy, &mut db)) {
            ck.op("linear.db", &db, &t("db")?);
        }
        Ok(())
    })
}

/// ReLU forward (in place) and backward (dy masked by y > 0, in place).
#[test]
fn relu_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let t = |s: &str| fx.f32s(&format!("relu.{s}"));
        let p = EltwiseParams::new(t("x")?.len());
        let mut y = t("x")?;
        if ck.run("relu forward", be.relu_forward(&p, &mut y)) {
            ck.op("relu.y", &y, &t("y")?);
        }
        let mut d = t("dy")?;
        if ck.run("relu backward", be.relu_backward(&p, &t("y")?, &mut d)) {
            ck.op("relu.dx", &d, &t("dx")?);
        }
        Ok(())
    })
}

/// Mean softmax cross-entropy: loss and gradient of the mean loss w.r.t. the logits.
#[test]
fn cross_entropy_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let s = fx.shape("cross_entropy.logits")?;
        let p = LossParams::new(s[0], s[1]);
        let labels = fx.i32s("cross_entropy.labels")?;
        let (mut grad, mut loss) = (vec![f32::NAN; s[0] * s[1]], vec![f32::NAN; 1]);
        let r = be.softmax_xent(&p, &fx.f32s("cross_entropy.logits")?, &labels, &mut grad, &mut loss);
        if ck.run("softmax_xent", r) {
            ck.op("cross_entropy.loss", &loss, &fx.f32s("cross_entropy.loss")?);
            ck.op("cross_entropy.grad", &grad, &fx.f32s("cross_entropy.grad")?);
        }
        Ok(())
    })
}

/// Mean BCE-with-logits over n*k: loss and gradient.
#[test]
fn bce_logits_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let s = fx.shape("bce_logits.logits")?;
        let p = LossParams::new(s[0], s[1]);
        let (mut grad, mut loss) = (vec![f32::NAN; s[0] * s[1]], vec![f32::NAN; 1]);
        let r =
            be.bce_logits(&p, &fx.f32s("bce_logits.logits")?, &fx.f32s("bce_logits.targets")?, &mut grad, &mut loss);
        if ck.run("bce_logits", r) {
            ck.op("bce_logits.loss", &loss, &fx.f32s("bce_logits.loss")?);
            ck.op("bce_logits.grad", &grad, &fx.f32s("bce_logits.grad")?);
        }
        Ok(())
    })
}

/// torch.optim.SGD(momentum 0.9, weight_decay 0.01, lr 0.05): weights after each of 3 steps.
#[test]
fn sgd_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let meta = fx.params("sgd")?;
        let mut w = fx.f32s("sgd.w0")?;
        let p = SgdParams {
            len: w.len() as i32,
            lr: f32_field(&meta, "lr")?,
            momentum: f32_field(&meta, "momentum")?,
            weight_decay: f32_field(&meta, "weight_decay")?,
        };
        let mut mom = vec![0.0f32; w.len()];
        for t in 1..=3 {
            let g = fx.f32s(&format!("sgd.grad{t}"))?;
            if !ck.run(&format!("sgd step {t}"), be.sgd_step(&p, &mut w, &g, &mut mom)) {
                break;
            }
            ck.cmp(&format!("sgd.w{t}"), &w, &fx.f32s(&format!("sgd.w{t}"))?, rel_l2, TOL_OPTIM);
        }
        Ok(())
    })
}

/// torch.optim.Adam(lr 1e-3, weight_decay 0.01; betas 0.9/0.999, eps 1e-8): weights after each of 3 steps.
#[test]
fn adam_matches_torch() -> Result<()> {
    parity(|fx, be, ck| {
        let meta = fx.params("adam")?;
        let (lr, wd) = (f32_field(&meta, "lr")?, f32_field(&meta, "weight_decay")?);
        let mut w = fx.f32s("adam.w0")?;
        let (mut m, mut v) = (vec![0.0f32; w.len()], vec![0.0f32; w.len()]);
        for t in 1..=3u64 {
            let p = AdamParams::at_step(w.len(), lr, wd, t);
            let g = fx.f32s(&format!("adam.grad{t}"))?;
            if !ck.run(&format!("adam step {t}"), be.adam_step(&p, &mut w, &g, &mut m, &mut v)) {
                break;
            }
            ck.cmp(&format!("adam.w{t}"), &w, &fx.f32s(&format!("adam.w{t}"))?, rel_l2, TOL_OPTIM);
        }
        Ok(())
    })
}

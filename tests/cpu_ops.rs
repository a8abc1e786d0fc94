//! CPU backend ops: gradients against finite differences in f64, forward passes against direct formulas,
//! optimisers against scalar transcriptions of PyTorch's update rules, and bad input returning `Err`.
//!
//! The op functions are generic over `Float` (f32 and f64); the f64 instantiation makes central finite
//! differences accurate to ~1e-10, so thresholds are tight. The f32 instantiation (what `CpuBackend` runs) is
//! checked against the f64 one through the `Backend` trait.
use powertrain::ops::cpu::{conv2d, elementwise, gemm, loss, optim, pool, CpuBackend};
use powertrain::ops::*;

/// xorshift64*: a tiny deterministic generator, uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// max |a - b| / max |b| (b the reference).
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Central differences of `f` at `x`, one coordinate at a time.
fn fd_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
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

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---- conv2d ---------------------------------------------------------------------------------------------

/// (n, c_in, h, w, c_out, kh, kw, pad_h, pad_w, stride_h, stride_w): batch 1, odd sizes, padding, stride 2,
/// 1x5 and 3x3 kernels, rectangular inputs and kernels, 1x1, and padding wider than the input.
const CONVS: &[[usize; 11]] = &[
    [1, 2, 5, 7, 3, 3, 3, 1, 1, 1, 1],
    [3, 3, 1, 11, 4, 1, 5, 0, 2, 1, 1],
    [2, 3, 7, 6, 2, 3, 3, 1, 1, 2, 2],
    [5, 2, 6, 9, 3, 2, 4, 0, 3, 1, 2],
    [4, 3, 5, 5, 2, 1, 1, 0, 0, 1, 1],
    [3, 2, 4, 5, 3, 5, 2, 2, 0, 3, 1],
    [2, 1, 1, 2, 2, 1, 7, 0, 3, 1, 1],
    [1, 1, 3, 3, 1, 1, 1, 0, 0, 1, 1],
    [19, 2, 3, 4, 3, 3, 3, 1, 1, 1, 1],
];

fn conv_params(c: &[usize; 11]) -> Conv2dParams {
    Conv2dParams::strided(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10])
}

/// The defining sum of `Backend::conv2d_forward`, written out with bounds checks instead of padding.
fn conv_direct(p: &Conv2dParams, x: &[f64], w: &[f64]) -> Vec<f64> {
    let u = |v: i32| v as usize;
    let (n, ci, h, wd, co, kh, kw) = (u(p.n), u(p.c_in), u(p.h), u(p.w), u(p.c_out), u(p.kh), u(p.kw));
    let (ho, wo) = (u(p.h_out), u(p.w_out));
    let mut y = vec![0.0; n * co * ho * wo];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = 0.0;
                    for c in 0..ci {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * u(p.stride_h) + ky) as i64 - p.pad_h as i64;
                                let ix = (ox * u(p.stride_w) + kx) as i64 - p.pad_w as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xi = ((b * ci + c) * h + iy as usize) * wd + ix as usize;
                                s += x[xi] * w[((o * ci + c) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    y[((b * co + o) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
    y
}

#[test]
fn conv_forward_matches_the_direct_sum() {
    let mut rng = Rng::new(1);
    for c in CONVS {
        let p = conv_params(c);
        let (x, w) = (rng.vec(p.x_len()), rng.vec(p.w_len()));
        let mut y = vec![f64::NAN; p.y_len()];
        conv2d::conv2d_forward(&p, &x, &w, &mut y).unwrap();
        let e = rel_err(&y, &conv_direct(&p, &x, &w));
        assert!(e < 1e-12, "{c:?}: rel err {e}");
    }
}

#[test]
fn conv_gradients_match_finite_differences() {
    let mut rng = Rng::new(2);
    for c in CONVS {
        let p = conv_params(c);
        let (x, w, r) = (rng.vec(p.x_len()), rng.vec(p.w_len()), rng.vec(p.y_len()));
        // L = sum(y * r), so dL/dy = r.
        let loss = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; p.y_len()];
            conv2d::conv2d_forward(&p, x, w, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![f64::NAN; p.x_len()];
        conv2d::conv2d_backward_data(&p, &r, &w, &mut dx).unwrap();
        let e = rel_err(&dx, &fd_grad(|x| loss(x, &w), &x, 1e-3));
        assert!(e < 1e-7, "{c:?}: dx rel err {e}");
        let mut dw = vec![f64::NAN; p.w_len()];
        conv2d::conv2d_backward_filter(&p, &x, &r, &mut dw).unwrap();
        let e = rel_err(&dw, &fd_grad(|w| loss(&x, w), &w, 1e-3));
        assert!(e < 1e-7, "{c:?}: dw rel err {e}");
    }
}

/// The f32 backend (through the trait; batch larger than the thread count, so samples are processed in
/// parallel chunks of several) agrees with the f64 instantiation run one sample at a time.
#[test]
fn conv_f32_backend_matches_f64_per_sample() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(3);
    for p in [Conv2dParams::new(17, 5, 1, 40, 6, 1, 5, 0, 2), Conv2dParams::new(11, 3, 10, 12, 4, 3, 3, 1, 1)] {
        let (x, w, dy) = (rng.vec(p.x_len()), rng.vec(p.w_len()), rng.vec(p.y_len()));
        let (xf, wf, dyf) = (to_f32(&x), to_f32(&w), to_f32(&dy));
        let mut one = p;
        one.n = 1;
        let (xs, ys) = (one.x_len(), one.y_len());
        let (mut y, mut dx, mut dw) = (vec![0.0; p.y_len()], vec![0.0; p.x_len()], vec![0.0; p.w_len()]);
        let mut dw_n = vec![0.0; p.w_len()];
        for s in 0..p.n as usize {
            let (x_n, dy_n) = (&x[s * xs..(s + 1) * xs], &dy[s * ys..(s + 1) * ys]);
            conv2d::conv2d_forward(&one, x_n, &w, &mut y[s * ys..(s + 1) * ys]).unwrap();
            conv2d::conv2d_backward_data(&one, dy_n, &w, &mut dx[s * xs..(s + 1) * xs]).unwrap();
            conv2d::conv2d_backward_filter(&one, x_n, dy_n, &mut dw_n).unwrap();
            dw.iter_mut().zip(&dw_n).for_each(|(a, b)| *a += b);
        }
        let (mut yf, mut dxf, mut dwf) = (vec![0.0f32; p.y_len()], vec![0.0f32; p.x_len()], vec![0.0f32; p.w_len()]);
        cpu.conv2d_forward(&p, &xf, &wf, &mut yf).unwrap();
        cpu.conv2d_backward_data(&p, &dyf, &wf, &mut dxf).unwrap();
        cpu.conv2d_backward_filter(&p, &xf, &dyf, &mut dwf).unwrap();
        for (name, a, b) in [("y", &yf, &y), ("dx", &dxf, &dx), ("dw", &dwf, &dw)] {
            let e = rel_err(&to_f64(a), b);
            assert!(e < 1e-5, "{p:?} {name}: rel err {e}");
        }
    }
}

// ---- pooling --------------------------------------------------------------------------------------------

/// Window = stride pools (floor mode on odd sizes) and one overlapping pool (3x2 window, stride 2x1).
fn pools() -> Vec<Pool2dParams> {
    let mut v = vec![Pool2dParams::new(2, 3, 5, 7, 2, 2), Pool2dParams::new(1, 2, 1, 9, 1, 2)];
    v.push(Pool2dParams::new(3, 1, 4, 6, 1, 3));
    v.push(Pool2dParams { n: 2, c: 2, h: 7, w: 5, kh: 3, kw: 2, stride_h: 2, stride_w: 1, h_out: 3, w_out: 4 });
    v
}

#[test]
fn avgpool_forward_and_gradient() {
    let mut rng = Rng::new(4);
    for p in pools() {
        let (x, r) = (rng.vec(p.x_len()), rng.vec(p.y_len()));
        let mut y = vec![0.0; p.y_len()];
        pool::avgpool2d_forward(&p, &x, &mut y).unwrap();
        // Spot value: the first window of the first plane.
        let (kh, kw, w) = (p.kh as usize, p.kw as usize, p.w as usize);
        let first: f64 = (0..kh).flat_map(|i| (0..kw).map(move |j| (i, j))).map(|(i, j)| x[i * w + j]).sum();
        assert!((y[0] - first / (kh * kw) as f64).abs() < 1e-14, "{p:?}");
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; p.y_len()];
            pool::avgpool2d_forward(&p, x, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![f64::NAN; p.x_len()];
        pool::avgpool2d_backward(&p, &r, &mut dx).unwrap();
        let e = rel_err(&dx, &fd_grad(loss, &x, 1e-3));
        assert!(e < 1e-9, "{p:?}: rel err {e}");
    }
}

#[test]
fn maxpool_forward_and_gradient_away_from_ties() {
    let mut rng = Rng::new(5);
    for p in pools() {
        // Distinct values at least 1e-3 apart: a shuffled grid plus small noise.
        let len = p.x_len();
        let mut x: Vec<f64> = (0..len).map(|i| i as f64 * 1e-2 + rng.next() * 1e-3).collect();
        for i in (1..len).rev() {
            let j = ((rng.next() + 1.0) * 0.5 * (i + 1) as f64) as usize % (i + 1);
            x.swap(i, j);
        }
        let r = rng.vec(p.y_len());
        let mut y = vec![0.0; p.y_len()];
        let mut idx = vec![-1; p.y_len()];
        pool::maxpool2d_forward(&p, &x, &mut y, &mut idx).unwrap();
        let hw = (p.h * p.w) as usize;
        let plane_of = |o: usize| o / (p.h_out * p.w_out) as usize;
        for (o, (&v, &i)) in y.iter().zip(&idx).enumerate() {
            assert_eq!(v, x[plane_of(o) * hw + i as usize], "y must be x at idx");
        }
        let loss = |x: &[f64]| {
            let (mut y, mut idx) = (vec![0.0; p.y_len()], vec![0; p.y_len()]);
            pool::maxpool2d_forward(&p, x, &mut y, &mut idx).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![f64::NAN; p.x_len()];
        pool::maxpool2d_backward(&p, &r, &idx, &mut dx).unwrap();
        let e = rel_err(&dx, &fd_grad(loss, &x, 1e-6));
        assert!(e < 1e-6, "{p:?}: rel err {e}");
    }
}

#[test]
fn maxpool_ties_pick_the_first_in_row_major_window_order() {
    // One plane [2, 4], windows 2x2: window 0 all equal; window 1 has its max (5) at (0,3) and (1,2).
    let p = Pool2dParams::new(1, 1, 2, 4, 2, 2);
    let x = [1.0f32, 1.0, 2.0, 5.0, 1.0, 1.0, 5.0, 0.0];
    let (mut y, mut idx) = (vec![0.0f32; 2], vec![0i32; 2]);
    CpuBackend::new().maxpool2d_forward(&p, &x, &mut y, &mut idx).unwrap();
    assert_eq!(y, [1.0, 5.0]);
    assert_eq!(idx, [0, 3]);
    let mut dx = vec![9.0f32; 8];
    CpuBackend::new().maxpool2d_backward(&p, &[2.0, 3.0], &idx, &mut dx).unwrap();
    assert_eq!(dx, [2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
}

/// Many planes (the rayon path) through the f32 backend, checked element by element.
#[test]
fn pooling_large_batch_matches_per_window_formula() {
    let cpu = CpuBackend::new();
    let p = Pool2dParams::new(64, 32, 1, 256, 1, 2);
    let x = to_f32(&Rng::new(6).vec(p.x_len()));
    let (mut y, mut idx, mut ya) = (vec![0.0f32; p.y_len()], vec![0; p.y_len()], vec![0.0f32; p.y_len()]);
    cpu.maxpool2d_forward(&p, &x, &mut y, &mut idx).unwrap();
    cpu.avgpool2d_forward(&p, &x, &mut ya).unwrap();
    for o in 0..p.y_len() {
        let (a, b) = (x[2 * o], x[2 * o + 1]);
        assert_eq!(y[o], a.max(b));
        assert_eq!(idx[o] as usize, (2 * o) % 256 + usize::from(b > a));
        assert_eq!(ya[o], (a + b) * 0.5);
    }
}

// ---- gemm -----------------------------------------------------------------------------------------------

fn gemm_naive(p: &GemmParams, a: &[f64], b: &[f64], c: &[f64]) -> Vec<f64> {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let at = |i: usize, l: usize| if p.trans_a != 0 { a[l * m + i] } else { a[i * k + l] };
    let bt = |l: usize, j: usize| if p.trans_b != 0 { b[j * k + l] } else { b[l * n + j] };
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            let old = if p.beta == 0.0 { 0.0 } else { p.beta as f64 * c[i * n + j] };
            out[i * n + j] = p.alpha as f64 * s + old;
        }
    }
    out
}

#[test]
fn gemm_all_transposes_match_naive_loop() {
    let mut rng = Rng::new(7);
    let cpu = CpuBackend::new();
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (13, 9, 4), (37, 29, 41), (70, 65, 130)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 2.0), (-1.5, 1.0)] {
                let mut p = GemmParams::new(m, n, k, ta, tb);
                (p.alpha, p.beta) = (alpha, beta);
                let (a, b, c0) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
                let want = gemm_naive(&p, &a, &b, &c0);
                // beta = 0 must ignore NaN in c.
                let start = if beta == 0.0 { vec![f64::NAN; m * n] } else { c0.clone() };
                let mut c = start.clone();
                gemm::gemm(&p, &a, &b, &mut c).unwrap();
                let e = rel_err(&c, &want);
                assert!(e < 1e-12, "f64 {m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta}: {e}");
                let mut cf = to_f32(&start);
                cpu.gemm(&p, &to_f32(&a), &to_f32(&b), &mut cf).unwrap();
                let e = rel_err(&to_f64(&cf), &want);
                assert!(e < 1e-5, "f32 {m}x{n}x{k} ta {ta} tb {tb} alpha {alpha} beta {beta}: {e}");
            }
        }
    }
}

#[test]
fn gemm_gradients_match_finite_differences() {
    // Linear-layer shapes: y[n, out] = x[n, in] * W^T; dx = dy * W; dW = dy^T * x.
    let (n, i, o) = (3, 7, 5);
    let mut rng = Rng::new(8);
    let (x, w, r) = (rng.vec(n * i), rng.vec(o * i), rng.vec(n * o));
    let fwd = GemmParams::new(n, o, i, false, true);
    let loss = |x: &[f64], w: &[f64]| {
        let mut y = vec![0.0; n * o];
        gemm::gemm(&fwd, x, w, &mut y).unwrap();
        dot(&y, &r)
    };
    let mut dx = vec![0.0; n * i];
    gemm::gemm(&GemmParams::new(n, i, o, false, false), &r, &w, &mut dx).unwrap();
    let mut dw = vec![0.0; o * i];
    gemm::gemm(&GemmParams::new(o, i, n, true, false), &r, &x, &mut dw).unwrap();
    assert!(rel_err(&dx, &fd_grad(|x| loss(x, &w), &x, 1e-3)) < 1e-9);
    assert!(rel_err(&dw, &fd_grad(|w| loss(&x, w), &w, 1e-3)) < 1e-9);
}

// ---- bias, relu -----------------------------------------------------------------------------------------

#[test]
fn bias_forward_and_backward() {
    let mut rng = Rng::new(9);
    // inner 1 (linear), small conv-like, and one above the parallel threshold.
    for (n, c, inner) in [(3, 4, 1), (2, 3, 5), (5, 7, 1000)] {
        let p = BiasParams::new(n, c, inner);
        let (b, y0, r) = (rng.vec(c), rng.vec(p.len()), rng.vec(p.len()));
        let mut y = y0.clone();
        elementwise::bias_forward(&p, &b, &mut y).unwrap();
        for (e, (&v, &v0)) in y.iter().zip(&y0).enumerate() {
            assert_eq!(v, v0 + b[(e / inner) % c]);
        }
        let loss = |b: &[f64]| {
            let mut y = y0.clone();
            elementwise::bias_forward(&p, b, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut db = vec![f64::NAN; c];
        elementwise::bias_backward(&p, &r, &mut db).unwrap();
        let e = rel_err(&db, &fd_grad(loss, &b, 1e-3));
        assert!(e < 1e-8, "({n}, {c}, {inner}): rel err {e}");
    }
}

#[test]
fn relu_forward_and_backward() {
    let cpu = CpuBackend::new();
    for len in [7, 100_003] {
        let x = to_f32(&Rng::new(10).vec(len));
        let g = to_f32(&Rng::new(11).vec(len));
        let mut y = x.clone();
        cpu.relu_forward(&EltwiseParams::new(len), &mut y).unwrap();
        let mut dy = g.clone();
        cpu.relu_backward(&EltwiseParams::new(len), &y, &mut dy).unwrap();
        for i in 0..len {
            assert_eq!(y[i], x[i].max(0.0));
            assert_eq!(dy[i], if x[i] > 0.0 { g[i] } else { 0.0 });
        }
    }
}

// ---- losses ---------------------------------------------------------------------------------------------

#[test]
fn softmax_xent_value_and_gradient() {
    let mut rng = Rng::new(12);
    for (n, k) in [(1, 3), (4, 12), (7, 5)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f64> = rng.vec(n * k).iter().map(|v| 3.0 * v).collect();
        let labels: Vec<i32> = (0..n).map(|i| ((i * 7 + 3) % k) as i32).collect();
        let loss_of = |l: &[f64]| {
            let (mut g, mut loss) = (vec![0.0; n * k], [f64::NAN]);
            loss::softmax_xent(&p, l, &labels, &mut g, &mut loss).unwrap();
            loss[0]
        };
        // Direct formula: mean of -log(exp(l_y) / sum exp(l)).
        let direct: f64 = (0..n)
            .map(|i| {
                let row = &logits[i * k..(i + 1) * k];
                -(row[labels[i] as usize].exp() / row.iter().map(|v| v.exp()).sum::<f64>()).ln()
            })
            .sum::<f64>()
            / n as f64;
        let (mut g, mut l) = (vec![f64::NAN; n * k], [f64::NAN]);
        loss::softmax_xent(&p, &logits, &labels, &mut g, &mut l).unwrap();
        assert!((l[0] - direct).abs() < 1e-12 * direct.abs().max(1.0), "loss {} vs {direct}", l[0]);
        let e = rel_err(&g, &fd_grad(loss_of, &logits, 1e-6));
        assert!(e < 1e-7, "({n}, {k}): grad rel err {e}");
    }
}

#[test]
fn softmax_xent_is_stable_for_large_logits() {
    let p = LossParams::new(2, 3);
    let (mut g, mut l) = (vec![0.0f32; 6], vec![0.0f32; 1]);
    let logits = [1000.0f32, 0.0, -1000.0, 500.0, 500.0, -500.0];
    CpuBackend::new().softmax_xent(&p, &logits, &vec![1, 0], &mut g, &mut l).unwrap();
    // Row 0: loss 1000; row 1: two equal maxima, loss ln 2.
    assert!((l[0] - (1000.0 + std::f32::consts::LN_2) / 2.0).abs() < 1e-3, "{}", l[0]);
    let want = [0.5, -0.5, 0.0, 0.25 - 0.5, 0.25, 0.0];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{g:?}");
    }
}

#[test]
fn bce_logits_value_and_gradient() {
    let mut rng = Rng::new(13);
    for (n, k) in [(1, 1), (5, 3), (4, 40)] {
        let p = LossParams::new(n, k);
        let logits: Vec<f64> = rng.vec(n * k).iter().map(|v| 4.0 * v).collect();
        let targets: Vec<f64> = rng.vec(n * k).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
        let loss_of = |l: &[f64]| {
            let (mut g, mut loss) = (vec![0.0; n * k], [0.0]);
            loss::bce_logits(&p, l, &targets, &mut g, &mut loss).unwrap();
            loss[0]
        };
        // Direct formula: -(t ln s + (1 - t) ln(1 - s)), s = sigmoid(l).
        let direct = logits
            .iter()
            .zip(&targets)
            .map(|(&l, &t)| {
                let s = 1.0 / (1.0 + (-l).exp());
                -(t * s.ln() + (1.0 - t) * (1.0 - s).ln())
            })
            .sum::<f64>()
            / (n * k) as f64;
        let (mut g, mut l) = (vec![0.0; n * k], [0.0]);
        loss::bce_logits(&p, &logits, &targets, &mut g, &mut l).unwrap();
        assert!((l[0] - direct).abs() < 1e-12, "loss {} vs {direct}", l[0]);
        let e = rel_err(&g, &fd_grad(loss_of, &logits, 1e-6));
        assert!(e < 1e-7, "({n}, {k}): grad rel err {e}");
    }
    // Stable at extreme logits: loss 100 for a confident wrong answer, 0 for a confident right one.
    let (mut g, mut l) = (vec![0.0f32; 2], vec![0.0f32]);
    CpuBackend::new().bce_logits(&LossParams::new(1, 2), &[100.0, -100.0], &[0.0, 0.0], &mut g, &mut l).unwrap();
    assert!((l[0] - 50.0).abs() < 1e-4 && (g[0] - 0.5).abs() < 1e-6 && g[1].abs() < 1e-30, "{l:?} {g:?}");
}

#[test]
fn accuracies_accumulate() {
    let cpu = CpuBackend::new();
    let p = LossParams::new(3, 3);
    // Row 0: tie between 0 and 2 -> argmax 0 (label 0: hit); row 1: argmax 1 (label 2: miss); row 2: hit.
    let logits = [2.0f32, 1.0, 2.0, 0.0, 3.0, 1.0, -1.0, -2.0, -0.5];
    let mut correct = vec![1.0f32];
    cpu.accuracy_classes(&p, &logits, &vec![0, 2, 2], &mut correct).unwrap();
    assert_eq!(correct, [3.0]);
    cpu.accuracy_classes(&p, &logits, &vec![0, 1, 2], &mut correct).unwrap();
    assert_eq!(correct, [6.0]);
    let targets = [1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let mut per_col = vec![10.0f32, 20.0, 30.0];
    cpu.accuracy_binary(&p, &logits, &targets, &mut per_col).unwrap();
    // Column 0: (T,T) (F,F) (F,F) = 3; column 1: (T,F) (T,T) (F,F) = 2; column 2: (T,T) (T,T) (F,T) = 2.
    assert_eq!(per_col, [13.0, 22.0, 32.0]);
}

// ---- optimisers -----------------------------------------------------------------------------------------

#[test]
fn sgd_matches_pytorch_reference() {
    for (momentum, wd) in [(0.0f32, 0.0f32), (0.9, 0.0), (0.9, 1e-2), (0.0, 5e-2)] {
        let len = 20_000; // above the parallel threshold
        let mut rng = Rng::new(14);
        let mut w = to_f32(&rng.vec(len));
        let mut mom = vec![0.0f32; len];
        let (mut w_ref, mut buf): (Vec<f64>, Option<Vec<f64>>) = (to_f64(&w), None);
        let p = SgdParams { len: len as i32, lr: 0.05, momentum, weight_decay: wd };
        let (lr, mu, wd) = (p.lr as f64, momentum as f64, wd as f64);
        for _ in 0..4 {
            let g = to_f32(&rng.vec(len));
            optim::sgd_step(&p, &mut w, &g, &mut mom).unwrap();
            // torch.optim.SGD._single_tensor_sgd, dampening 0, nesterov False.
            let d_p: Vec<f64> = g.iter().zip(&w_ref).map(|(&g, &w)| g as f64 + wd * w).collect();
            let step = if mu != 0.0 {
                let b = match buf.take() {
                    None => d_p.clone(),
                    Some(b) => b.iter().zip(&d_p).map(|(b, d)| mu * b + d).collect(),
                };
                buf = Some(b.clone());
                b
            } else {
                d_p
            };
            for (w, s) in w_ref.iter_mut().zip(&step) {
                *w -= lr * s;
            }
        }
        let e = rel_err(&to_f64(&w), &w_ref);
        assert!(e < 1e-6, "momentum {momentum}: rel err {e}");
    }
}

#[test]
fn adam_matches_pytorch_reference() {
    for (len, wd) in [(9usize, 0.0f32), (20_000, 1e-2)] {
        let mut rng = Rng::new(15);
        let w0 = rng.vec(len);
        let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; len], vec![0.0; len]);
        let mut w32 = to_f32(&w0);
        let (mut m32, mut v32) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (mut w_ref, mut m_ref, mut v_ref) = (w0.clone(), vec![0.0f64; len], vec![0.0f64; len]);
        let (lr, b1, b2, eps) = (1e-2f32 as f64, 0.9f32 as f64, 0.999f32 as f64, 1e-8f32 as f64);
        for t in 1..=5u64 {
            let g = rng.vec(len);
            let p = AdamParams::at_step(len, 1e-2, wd, t);
            optim::adam_step(&p, &mut w, &g, &mut m, &mut v).unwrap();
            optim::adam_step(&p, &mut w32, &to_f32(&g), &mut m32, &mut v32).unwrap();
            // torch.optim.Adam._single_tensor_adam (amsgrad False, maximize False).
            let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            for i in 0..len {
                let g = g[i] + wd as f64 * w_ref[i];
                m_ref[i] += (g - m_ref[i]) * (1.0 - b1); // lerp_(grad, 1 - beta1)
                v_ref[i] = v_ref[i] * b2 + (1.0 - b2) * g * g;
                let denom = v_ref[i].sqrt() / bc2.sqrt() + eps;
                w_ref[i] -= lr / bc1 * m_ref[i] / denom;
            }
        }
        let e = rel_err(&w, &w_ref);
        assert!(e < 1e-7, "f64 len {len}: rel err {e}");
        let e = rel_err(&to_f64(&w32), &w_ref);
        assert!(e < 1e-5, "f32 len {len}: rel err {e}");
        assert!(rel_err(&to_f64(&v32), &v_ref) < 1e-5 && rel_err(&m, &m_ref) < 1e-9);
    }
}

// ---- bad input ------------------------------------------------------------------------------------------

#[test]
fn mismatched_lengths_and_bad_labels_are_errors() {
    let cpu = CpuBackend::new();
    let c = Conv2dParams::new(2, 3, 4, 4, 5, 3, 3, 1, 1);
    let (x, w, mut y) = (vec![0.0f32; c.x_len()], vec![0.0f32; c.w_len()], vec![0.0f32; c.y_len()]);
    let err = cpu.conv2d_forward(&c, &x[1..], &w, &mut y).unwrap_err().to_string();
    assert!(err.contains("conv2d_forward") && err.contains("`x`"), "{err}");
    assert!(cpu.conv2d_forward(&c, &x, &w[1..], &mut y).is_err());
    assert!(cpu.conv2d_backward_data(&c, &y[1..], &w, &mut x.clone()).is_err());
    assert!(cpu.conv2d_backward_filter(&c, &x, &y, &mut w.clone()[1..]).is_err());
    let mut bad = c;
    bad.w_out += 1;
    assert!(cpu.conv2d_forward(&bad, &x, &w, &mut y).is_err(), "inconsistent w_out");
    bad = c;
    bad.stride_h = 0;
    assert!(cpu.conv2d_forward(&bad, &x, &w, &mut y).is_err(), "stride 0");

    let p = Pool2dParams::new(1, 2, 4, 4, 2, 2);
    let (px, mut py, mut idx) = (vec![0.0f32; 32], vec![0.0f32; 8], vec![0i32; 8]);
    assert!(cpu.maxpool2d_forward(&p, &px[..31], &mut py, &mut idx).is_err());
    assert!(cpu.maxpool2d_forward(&p, &px, &mut py, &mut vec![0; 7]).is_err());
    assert!(cpu.avgpool2d_backward(&p, &py, &mut [0.0; 33]).is_err());
    assert!(cpu.maxpool2d_backward(&p, &py, &vec![16; 8], &mut [0.0; 32]).is_err(), "idx outside the plane");

    let g = GemmParams::new(2, 3, 4, false, false);
    assert!(cpu.gemm(&g, &[0.0; 8], &[0.0; 12], &mut [0.0; 5]).is_err());
    assert!(cpu.gemm(&g, &[0.0; 7], &[0.0; 12], &mut [0.0; 6]).is_err());

    assert!(cpu.bias_forward(&BiasParams::new(2, 3, 4), &[0.0; 2], &mut [0.0; 24]).is_err());
    assert!(cpu.bias_backward(&BiasParams::new(2, 3, 4), &[0.0; 23], &mut [0.0; 3]).is_err());
    assert!(cpu.relu_forward(&EltwiseParams::new(5), &mut [0.0; 4]).is_err());
    assert!(cpu.relu_backward(&EltwiseParams::new(5), &[0.0; 5], &mut [0.0; 6]).is_err());

    let lp = LossParams::new(2, 3);
    let (lg, mut gr, mut ls) = (vec![0.0f32; 6], vec![0.0f32; 6], vec![0.0f32; 1]);
    let err = cpu.softmax_xent(&lp, &lg, &vec![0, 3], &mut gr, &mut ls).unwrap_err().to_string();
    assert!(err.contains("label 3"), "{err}");
    assert!(cpu.softmax_xent(&lp, &lg, &vec![-1, 0], &mut gr, &mut ls).is_err());
    assert!(cpu.softmax_xent(&lp, &lg, &vec![0], &mut gr, &mut ls).is_err(), "too few labels");
    assert!(cpu.accuracy_classes(&lp, &lg, &vec![0, 7], &mut ls).is_err());
    assert!(cpu.bce_logits(&lp, &lg, &lg[..5], &mut gr, &mut ls).is_err());
    assert!(cpu.accuracy_binary(&lp, &lg, &lg, &mut [0.0; 2]).is_err());

    let sp = SgdParams { len: 4, lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    assert!(cpu.sgd_step(&sp, &mut [0.0; 4], &[0.0; 4], &mut [0.0; 3]).is_err());
    let ap = AdamParams::at_step(4, 1e-3, 0.0, 1);
    assert!(cpu.adam_step(&ap, &mut [0.0; 4], &[0.0; 5], &mut [0.0; 4], &mut [0.0; 4]).is_err());
    assert!(
        cpu.adam_step(&AdamParams::at_step(4, 1e-3, 0.0, 0), &mut [0.0; 4], &[0.0; 4], &mut [0.0; 4], &mut [0.0; 4])
            .is_err(),
        "t = 0 has no bias correction"
    );
}

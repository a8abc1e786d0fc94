// kernels/conv2d.cu: 2-D convolution (NCHW, weights [c_out, c_in, kh, kw], zero padding, any stride) as
// implicit GEMM on the shared tiled core of common.cuh (tile_mma): im2col is gathered on the fly while the
// tiles are loaded, never materialised.
//
//   forward          y  [c_out] x [n*h_out*w_out] = w [c_out] x [c_in*kh*kw]  *  im2col(x) [c_in*kh*kw] x [n*ho*wo]
//   backward_data    dx [c_in]  x [n*h*w]         = w^T-ish [c_in] x [c_out*kh*kw] * col(dy) [c_out*kh*kw] x [n*h*w]
//   backward_filter  dw [c_out] x [c_in*kh*kw]    = dy [c_out] x [n*ho*wo] * im2col(x)^T [n*ho*wo] x [c_in*kh*kw]
//
// backward_filter lets one block own each output tile and loop over the whole n*ho*wo reduction, so the result
// is deterministic without atomics or workspace.
// Launch plans: src/backend/cuda/launch.rs conv2d_*(): grid (ceil(N / CONV_BN), ceil(M / CONV_BM)), block
// CONV_THREADS, with M, N the GEMM sizes above.
#include "common.cuh"

#define CONV_BM 64
#define CONV_BN 64
#define CONV_BK 16
#define CONV_TM 4
#define CONV_TN 4

// x [n, c_in, h, w], w [c_out, c_in, kh, kw] -> y [n, c_out, h_out, w_out] (overwritten).
extern "C" __global__ void __launch_bounds__(256) conv2d_forward(const Conv2dParams p, const float* __restrict__ x,
                                                                 const float* __restrict__ w, float* __restrict__ y) {
    __shared__ TileSmem<CONV_BM, CONV_BN, CONV_BK> sm;
    const int khw = p.kh * p.kw, K = p.c_in * khw, hwo = p.h_out * p.w_out;
    const int M = p.c_out, N = p.n * hwo;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    auto la = [=](int co, int k) -> float { return co < M && k < K ? w[(long long)co * K + k] : 0.0f; };
    auto lb = [=](int k, int col) -> float {
        if (k >= K || col >= N) return 0.0f;
        int ci = k / khw, r = k - ci * khw, ky = r / p.kw, kx = r - ky * p.kw;
        int img = col / hwo, pix = col - img * hwo, oy = pix / p.w_out, ox = pix - oy * p.w_out;
        int iy = oy * p.stride_h - p.pad_h + ky, ix = ox * p.stride_w - p.pad_w + kx;
        if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) return 0.0f;
        return x[(((long long)img * p.c_in + ci) * p.h + iy) * p.w + ix];
    };
    float acc[CONV_TM][CONV_TN];
    tile_mma<CONV_BM, CONV_BN, CONV_BK, CONV_TM, CONV_TN, true, false>(sm, m0, n0, K, la, lb, acc);
#pragma unroll
    for (int i = 0; i < CONV_TM; i++) {
        int co = m0 + tile_row<CONV_BM, CONV_BN, CONV_TM, CONV_TN>(i);
        if (co >= M) continue;
#pragma unroll
        for (int j = 0; j < CONV_TN; j++) {
            int col = n0 + tile_col<CONV_BM, CONV_BN, CONV_TM, CONV_TN>(j);
            if (col >= N) continue;
            int img = col / hwo, pix = col - img * hwo;
            y[((long long)img * p.c_out + co) * hwo + pix] = acc[i][j];
        }
    }
}

// dy [n, c_out, h_out, w_out], w [c_out, c_in, kh, kw] -> dx [n, c_in, h, w] (overwritten).
// dx[img, ci, iy, ix] = sum over co, ky, kx with oy = (iy + pad_h - ky) / stride_h integral and in range (same
// for ox) of dy[img, co, oy, ox] * w[co, ci, ky, kx].
extern "C" __global__ void __launch_bounds__(256)
    conv2d_backward_data(const Conv2dParams p, const float* __restrict__ dy, const float* __restrict__ w,
                         float* __restrict__ dx) {
    __shared__ TileSmem<CONV_BM, CONV_BN, CONV_BK> sm;
    const int khw = p.kh * p.kw, K = p.c_out * khw, hw = p.h * p.w, hwo = p.h_out * p.w_out;
    const int M = p.c_in, N = p.n * hw;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    auto la = [=](int ci, int k) -> float {
        if (ci >= M || k >= K) return 0.0f;
        int co = k / khw, r = k - co * khw;
        return w[((long long)co * p.c_in + ci) * khw + r];
    };
    auto lb = [=](int k, int col) -> float {
        if (k >= K || col >= N) return 0.0f;
        int co = k / khw, r = k - co * khw, ky = r / p.kw, kx = r - ky * p.kw;
        int img = col / hw, pix = col - img * hw, iy = pix / p.w, ix = pix - iy * p.w;
        int ty = iy + p.pad_h - ky, tx = ix + p.pad_w - kx;
        if (ty < 0 || tx < 0) return 0.0f;
        int oy = ty / p.stride_h, ox = tx / p.stride_w;
        if (oy * p.stride_h != ty || ox * p.stride_w != tx || oy >= p.h_out || ox >= p.w_out) return 0.0f;
        return dy[((long long)img * p.c_out + co) * hwo + oy * p.w_out + ox];
    };
    float acc[CONV_TM][CONV_TN];
    tile_mma<CONV_BM, CONV_BN, CONV_BK, CONV_TM, CONV_TN, true, false>(sm, m0, n0, K, la, lb, acc);
#pragma unroll
    for (int i = 0; i < CONV_TM; i++) {
        int ci = m0 + tile_row<CONV_BM, CONV_BN, CONV_TM, CONV_TN>(i);
        if (ci >= M) continue;
#pragma unroll
        for (int j = 0; j < CONV_TN; j++) {
            int col = n0 + tile_col<CONV_BM, CONV_BN, CONV_TM, CONV_TN>(j);
            if (col >= N) continue;
            int img = col / hw, pix = col - img * hw;
            dx[((long long)img * p.c_in + ci) * hw + pix] = acc[i][j];
        }
    }
}

// x [n, c_in, h, w], dy [n, c_out, h_out, w_out] -> dw [c_out, c_in, kh, kw] (overwritten).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_backward_filter(const Conv2dParams p, const float* __restrict__ x, const float* __restrict__ dy,
                           float* __restrict__ dw) {
    __shared__ TileSmem<CONV_BM, CONV_BN, CONV_BK> sm;
    const int khw = p.kh * p.kw, hwo = p.h_out * p.w_out;
    const int M = p.c_out, N = p.c_in * khw, K = p.n * hwo;
    const int m0 = blockIdx.y * CONV_BM, n0 = blockIdx.x * CONV_BN;
    auto la = [=](int co, int k) -> float {
        if (co >= M || k >= K) return 0.0f;
        int img = k / hwo, pix = k - img * hwo;
        return dy[((long long)img * p.c_out + co) * hwo + pix];
    };
    auto lb = [=](int k, int col) -> float {
        if (k >= K || col >= N) return 0.0f;
        int img = k / hwo, pix = k - img * hwo, oy = pix / p.w_out, ox = pix - oy * p.w_out;
        int ci = col / khw, r = col - ci * khw, ky = r / p.kw, kx = r - ky * p.kw;
        int iy = oy * p.stride_h - p.pad_h + ky, ix = ox * p.stride_w - p.pad_w + kx;
        if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) return 0.0f;
        return x[(((long long)img * p.c_in + ci) * p.h + iy) * p.w + ix];
    };
    float acc[CONV_TM][CONV_TN];
    tile_mma<CONV_BM, CONV_BN, CONV_BK, CONV_TM, CONV_TN, true, true>(sm, m0, n0, K, la, lb, acc);
#pragma unroll
    for (int i = 0; i < CONV_TM; i++) {
        int co = m0 + tile_row<CONV_BM, CONV_BN, CONV_TM, CONV_TN>(i);
        if (co >= M) continue;
#pragma unroll
        for (int j = 0; j < CONV_TN; j++) {
            int col = n0 + tile_col<CONV_BM, CONV_BN, CONV_TM, CONV_TN>(j);
            if (col < N) dw[(long long)co * N + col] = acc[i][j];
        }
    }
}

// src/ops/pool/pool.cu: max and average pooling, forward and backward (NCHW, no padding, floor mode).
//
// Launch plans: src/ops/pool/cuda.rs (maxpool2d_*, avgpool2d_*): one thread per output element
// (forward) or per input element (backward), grid-stride. Backward kernels GATHER from the windows that cover
// an input element instead of scattering with atomics: deterministic, overwrite all of dx, and correct for
// overlapping windows (stride < window) too. Exception: maxpool2d_backward with windows that tile the input
// exactly (every input in exactly one window) runs one thread per output that writes its whole window.
#include "common.cuh"

// Output rows/cols whose window covers input coordinate i (size k, stride s, n_out outputs): [lo, hi].
__device__ __forceinline__ void pool_cover(int i, int k, int s, int n_out, int& lo, int& hi) {
    lo = i - k + 1 <= 0 ? 0 : (i - k + 1 + s - 1) / s;
    hi = imin(i / s, n_out - 1);
}

// x [n, c, h, w] -> y [n, c, h_out, w_out], idx [n, c, h_out, w_out] = iy*w + ix of the max inside its
// h*w plane; ties keep the first in row-major window order, a NaN wins (PyTorch's rule).
extern "C" __global__ void maxpool2d_forward(const Pool2dParams p, const float* __restrict__ x, float* __restrict__ y,
                                             int* __restrict__ idx) {
    PT_STAMP();
    long long total = (long long)p.n * p.c * p.h_out * p.w_out;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
        int ox = (int)(o % p.w_out);
        int oy = (int)((o / p.w_out) % p.h_out);
        long long plane = o / ((long long)p.w_out * p.h_out);
        const float* xp = x + plane * p.h * p.w;
        int y0 = oy * p.stride_h, x0 = ox * p.stride_w;
        float best = xp[y0 * p.w + x0];
        int bi = y0 * p.w + x0;
        for (int ky = 0; ky < p.kh; ky++)
            for (int kx = 0; kx < p.kw; kx++) {
                int i = (y0 + ky) * p.w + x0 + kx;
                float v = xp[i];
                if (v > best || v != v) {
                    best = v;
                    bi = i;
                }
            }
        y[o] = best;
        idx[o] = bi;
    }
}

// True when the windows tile the input exactly (window == stride, no dropped row or column): then every input
// element lies in exactly one window (the protocol's 2x2 / 1x2 pools).
__device__ __forceinline__ bool pool_tiles_exactly(const Pool2dParams& p) {
    return p.kh == p.stride_h && p.kw == p.stride_w && p.h == p.h_out * p.kh && p.w == p.w_out * p.kw;
}

// maxpool2d_backward when pool_tiles_exactly: one thread per OUTPUT writes its whole window (dy[o] at idx[o],
// 0 elsewhere), so dy and idx are read once, coalesced, and a warp's stores to each window row are contiguous.
// Output row R = plane*h_out + oy starts input row R*kh (h == h_out*kh): one division per output. I is int when
// every index fits (the common case: no 64-bit division), else long long.
template <class I>
__device__ __forceinline__ void maxpool_bwd_scatter(const Pool2dParams& p, const float* __restrict__ dy,
                                                    const int* __restrict__ idx, float* __restrict__ dx) {
    const I total = (I)p.n * p.c * p.h_out * p.w_out, stride = (I)gridDim.x * blockDim.x;
    for (I o = (I)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
        const I row = o / p.w_out;
        const int ox = (int)(o - row * p.w_out), oy = (int)(row % p.h_out);
        const float v = dy[o];
        const int at = idx[o] - (oy * p.kh * p.w + ox * p.kw);  // idx relative to the window's top-left
        float* d = dx + row * p.kh * p.w + ox * p.kw;
        for (int ky = 0; ky < p.kh; ky++)
            for (int kx = 0; kx < p.kw; kx++) d[ky * p.w + kx] = ky * p.w + kx == at ? v : 0.0f;
    }
}

// dy, idx [n, c, h_out, w_out] -> dx [n, c, h, w] (overwritten): dx[i] = sum of dy over windows whose idx is i.
// Exactly tiling windows scatter per output (maxpool_bwd_scatter; the plan then sizes the grid by outputs),
// any other geometry gathers per input element.
extern "C" __global__ void maxpool2d_backward(const Pool2dParams p, const float* __restrict__ dy,
                                              const int* __restrict__ idx, float* __restrict__ dx) {
    PT_STAMP();
    if (pool_tiles_exactly(p)) {
        if ((long long)p.n * p.c * p.h * p.w < (1LL << 31) - (1LL << 26))  // no int overflow in o += stride
            maxpool_bwd_scatter<int>(p, dy, idx, dx);
        else
            maxpool_bwd_scatter<long long>(p, dy, idx, dx);
        return;
    }
    long long total = (long long)p.n * p.c * p.h * p.w;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        int ix = (int)(e % p.w);
        int iy = (int)((e / p.w) % p.h);
        long long plane = e / ((long long)p.w * p.h);
        int oy0, oy1, ox0, ox1;
        pool_cover(iy, p.kh, p.stride_h, p.h_out, oy0, oy1);
        pool_cover(ix, p.kw, p.stride_w, p.w_out, ox0, ox1);
        int me = iy * p.w + ix;
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++) {
                long long o = (plane * p.h_out + oy) * p.w_out + ox;
                if (idx[o] == me) s += dy[o];
            }
        dx[e] = s;
    }
}

// x [n, c, h, w] -> y [n, c, h_out, w_out] = window mean (divisor kh*kw).
extern "C" __global__ void avgpool2d_forward(const Pool2dParams p, const float* __restrict__ x, float* __restrict__ y) {
    PT_STAMP();
    long long total = (long long)p.n * p.c * p.h_out * p.w_out;
    long long stride = (long long)gridDim.x * blockDim.x;
    float inv = 1.0f / (float)(p.kh * p.kw);
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += stride) {
        int ox = (int)(o % p.w_out);
        int oy = (int)((o / p.w_out) % p.h_out);
        long long plane = o / ((long long)p.w_out * p.h_out);
        const float* xp = x + plane * p.h * p.w + (oy * p.stride_h) * p.w + ox * p.stride_w;
        float s = 0.0f;
        for (int ky = 0; ky < p.kh; ky++)
            for (int kx = 0; kx < p.kw; kx++) s += xp[ky * p.w + kx];
        y[o] = s * inv;
    }
}

// dy [n, c, h_out, w_out] -> dx [n, c, h, w] (overwritten) = sum over covering windows of dy / (kh*kw).
extern "C" __global__ void avgpool2d_backward(const Pool2dParams p, const float* __restrict__ dy,
                                              float* __restrict__ dx) {
    PT_STAMP();
    long long total = (long long)p.n * p.c * p.h * p.w;
    long long stride = (long long)gridDim.x * blockDim.x;
    float inv = 1.0f / (float)(p.kh * p.kw);
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        int ix = (int)(e % p.w);
        int iy = (int)((e / p.w) % p.h);
        long long plane = e / ((long long)p.w * p.h);
        int oy0, oy1, ox0, ox1;
        pool_cover(iy, p.kh, p.stride_h, p.h_out, oy0, oy1);
        pool_cover(ix, p.kw, p.stride_w, p.w_out, ox0, ox1);
        float s = 0.0f;
        for (int oy = oy0; oy <= oy1; oy++)
            for (int ox = ox0; ox <= ox1; ox++) s += dy[(plane * p.h_out + oy) * p.w_out + ox];
        dx[e] = s * inv;
    }
}

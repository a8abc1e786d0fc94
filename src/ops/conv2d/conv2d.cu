// src/ops/conv2d/conv2d.cu: 2-D convolution (NCHW, weights [c_out, c_in, kh, kw], zero padding, any stride) as
// implicit GEMM on the shared tiled core of common.cuh (tile_mma): im2col is gathered on the fly while tiles are
// loaded, never materialised. With the GEMM sizes M x N (output) and K (reduction):
//
//   forward          y  [c_out] x [n*h_out*w_out],  K = c_in*kh*kw     (A = w,  B = im2col(x))
//   backward_data    dx [c_in]  x [n*h*w],          K = c_out*kh*kw    (A = w re-indexed, B = col(dy))
//   backward_filter  dw [c_out] x [c_in*kh*kw],     K = n*h_out*w_out  (A = dy, B = im2col(x)^T)
//
// Each op has three tile heights BM = 32 / 64 / 128 (suffix _m32, none, _m128; BN = 128, 256 threads, micro-tile
// BM/16 x 8) so that c_out / c_in of 32, 64 and 128 waste no rows; the plan picks one by M.
// Forward and backward_data decode k -> (channel, ky, kx) from a table built in shared memory at block start
// (no integer division per gathered element) when K <= CONV_KTAB, else by division.
// backward_filter decodes its im2col COLUMN from a shared table instead (m32 / m64), and the m32 kernel takes a
// 32 x 32 tile when N = c_in*kh*kw <= 32 (celeba conv1: 27).
// backward_filter has a tiny output and a huge reduction, so it splits K over gridDim.z blocks: each writes its
// partial tile to the module's static scratch `conv_partial` and conv2d_backward_filter_reduce sums the slices
// in a fixed order (deterministic, no atomics, no workspace argument). With gridDim.z == 1 it writes dw directly.
// Launch plans: src/ops/conv2d/cuda.rs; grid (ceil(N/128), ceil(M/BM), splits), block 256.
#include "common.cuh"

// CONV_BN (the tile width) and CONV_SPLIT_CAP (the split-K scratch in floats) come from params.cuh, written from
// src/ops/conv2d/mod.rs, whose launch plans use them too.
#define CONV_TN 8
#define CONV_KTAB 1280

static __device__ float conv_partial[CONV_SPLIT_CAP];
static __device__ int conv_splits;

// x [n, c_in, h, w], w [c_out, c_in, kh, kw] -> y [n, c_out, h_out, w_out] (overwritten).
template <int BM>
__device__ __forceinline__ void conv_fwd(const Conv2dParams& p, const float* __restrict__ x,
                                         const float* __restrict__ w, float* __restrict__ y) {
    constexpr int BN = CONV_BN, TM = BM / 16, TN = CONV_TN;
    __shared__ TileSmem<BM, BN> sm;
    __shared__ int koff[CONV_KTAB], kyx[CONV_KTAB];  // k -> ci*h*w + ky*w + kx, (ky << 16) | kx
    const int khw = p.kh * p.kw, K = p.c_in * khw, hw = p.h * p.w, hwo = p.h_out * p.w_out;
    const int M = p.c_out, N = p.n * hwo;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const bool tab = K <= CONV_KTAB;
    if (tab)
        for (int k = threadIdx.x; k < K; k += blockDim.x) {
            int ci = k / khw, r = k - ci * khw, ky = r / p.kw, kx = r - ky * p.kw;
            koff[k] = ci * hw + ky * p.w + kx;
            kyx[k] = (ky << 16) | kx;
        }
    __syncthreads();
    auto la = [=](int co, int k) -> float { return co < M && k < K ? w[(long long)co * K + k] : 0.0f; };
    auto lb = [=](int k, int col) -> float {
        if (k >= K || col >= N) return 0.0f;
        int img = col / hwo, pix = col - img * hwo, oy = pix / p.w_out, ox = pix - oy * p.w_out;
        int iy0 = oy * p.stride_h - p.pad_h, ix0 = ox * p.stride_w - p.pad_w;
        int off, ky, kx;
        if (tab) {
            off = koff[k];
            ky = kyx[k] >> 16;
            kx = kyx[k] & 0xffff;
        } else {
            int ci = k / khw, r = k - ci * khw;
            ky = r / p.kw;
            kx = r - ky * p.kw;
            off = ci * hw + ky * p.w + kx;
        }
        if ((unsigned)(iy0 + ky) >= (unsigned)p.h || (unsigned)(ix0 + kx) >= (unsigned)p.w) return 0.0f;
        return x[(long long)img * p.c_in * hw + iy0 * p.w + ix0 + off];
    };
    float acc[TM][TN];
    tile_mma<BM, BN, TM, TN, true, false>(sm, m0, n0, 0, K, la, lb, acc);
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int co = m0 + tile_row<BM, BN, TM, TN>(i);
        if (co >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int col = n0 + tile_col<BM, BN, TM, TN>(j);
            if (col >= N) continue;
            int img = col / hwo, pix = col - img * hwo;
            y[((long long)img * p.c_out + co) * hwo + pix] = acc[i][j];
        }
    }
}

// dy [n, c_out, h_out, w_out], w [c_out, c_in, kh, kw] -> dx [n, c_in, h, w] (overwritten):
// dx[img, ci, iy, ix] = sum over co, ky, kx with oy = (iy + pad_h - ky) / stride_h integral and in range (same for
// ox) of dy[img, co, oy, ox] * w[co, ci, ky, kx]. UNIT: both strides are 1 (no divisibility test).
// sm, kco [CONV_KTAB] (k -> co), kyx [CONV_KTAB] (k -> (ky << 16) | kx): the caller's shared memory (one
// allocation for both UNIT instantiations).
template <int BM, bool UNIT>
__device__ __forceinline__ void conv_bwd_data(const Conv2dParams& p, const float* __restrict__ dy,
                                              const float* __restrict__ w, float* __restrict__ dx,
                                              TileSmem<BM, CONV_BN>& sm, int* kco, int* kyx) {
    constexpr int BN = CONV_BN, TM = BM / 16, TN = CONV_TN;
    const int khw = p.kh * p.kw, K = p.c_out * khw, hw = p.h * p.w, hwo = p.h_out * p.w_out;
    const int M = p.c_in, N = p.n * hw;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const bool tab = K <= CONV_KTAB;
    if (tab)
        for (int k = threadIdx.x; k < K; k += blockDim.x) {
            int co = k / khw, r = k - co * khw, ky = r / p.kw;
            kco[k] = co;
            kyx[k] = (ky << 16) | (r - ky * p.kw);
        }
    __syncthreads();
    auto decode = [=](int k, int& co, int& ky, int& kx) {
        if (tab) {
            co = kco[k];
            ky = kyx[k] >> 16;
            kx = kyx[k] & 0xffff;
        } else {
            co = k / khw;
            int r = k - co * khw;
            ky = r / p.kw;
            kx = r - ky * p.kw;
        }
    };
    auto la = [=](int ci, int k) -> float {
        if (ci >= M || k >= K) return 0.0f;
        int co, ky, kx;
        decode(k, co, ky, kx);
        return w[(((long long)co * p.c_in + ci) * p.kh + ky) * p.kw + kx];
    };
    auto lb = [=](int k, int col) -> float {
        if (k >= K || col >= N) return 0.0f;
        int img = col / hw, pix = col - img * hw, iy = pix / p.w, ix = pix - iy * p.w;
        int co, ky, kx;
        decode(k, co, ky, kx);
        int oy = iy + p.pad_h - ky, ox = ix + p.pad_w - kx;
        if (!UNIT) {
            if (oy < 0 || ox < 0) return 0.0f;
            int qy = oy / p.stride_h, qx = ox / p.stride_w;
            if (qy * p.stride_h != oy || qx * p.stride_w != ox) return 0.0f;
            oy = qy;
            ox = qx;
        }
        if ((unsigned)oy >= (unsigned)p.h_out || (unsigned)ox >= (unsigned)p.w_out) return 0.0f;
        return dy[((long long)img * p.c_out + co) * hwo + oy * p.w_out + ox];
    };
    float acc[TM][TN];
    tile_mma<BM, BN, TM, TN, true, false>(sm, m0, n0, 0, K, la, lb, acc);
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int ci = m0 + tile_row<BM, BN, TM, TN>(i);
        if (ci >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int col = n0 + tile_col<BM, BN, TM, TN>(j);
            if (col >= N) continue;
            int img = col / hw, pix = col - img * hw;
            dx[((long long)img * p.c_in + ci) * hw + pix] = acc[i][j];
        }
    }
}

// x [n, c_in, h, w], dy [n, c_out, h_out, w_out] -> dw [c_out, c_in, kh, kw] (overwritten when gridDim.z == 1,
// else this block's K slice goes to conv_partial[blockIdx.z][c_out][c_in*kh*kw]).
// BN: tile width, CONV_BN or (conv2d_backward_filter_m32 when N <= 32) 32, micro-tile TN = BN / 16.
// coff [CONV_KTAB] (col -> ci*h*w + ky*w + kx), cyx [CONV_KTAB] (col -> (ky << 16) | kx): the caller's shared
// memory, filled here when TAB and N <= CONV_KTAB so that the B gather decodes its column with one shared load
// instead of two integer divisions per element (else by division). The m128 variant passes TAB = false: at 128
// registers the table's extra live values made it spill more.
template <int BM, int BN = CONV_BN, bool TAB = true>
__device__ __forceinline__ void conv_bwd_filter(const Conv2dParams& p, const float* __restrict__ x,
                                                const float* __restrict__ dy, float* __restrict__ dw, int* coff,
                                                int* cyx) {
    constexpr int TM = BM / 16, TN = BN / 16;
    __shared__ TileSmem<BM, BN> sm;
    const int khw = p.kh * p.kw, hwo = p.h_out * p.w_out;
    const int M = p.c_out, N = p.c_in * khw, K = p.n * hwo;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) conv_splits = gridDim.z;
    const bool tab = TAB && N <= CONV_KTAB;
    if (tab)
        for (int c = threadIdx.x; c < N; c += blockDim.x) {
            int ci = c / khw, r = c - ci * khw, ky = r / p.kw, kx = r - ky * p.kw;
            coff[c] = (ci * p.h + ky) * p.w + kx;
            cyx[c] = (ky << 16) | kx;
        }
    if (TAB) __syncthreads();  // tile_mma's first barrier comes after its first fetch, which reads the table
    int k_begin, k_end;
    splitk_range(K, k_begin, k_end);
    auto la = [=](int co, int k) -> float {
        if (co >= M || k >= K) return 0.0f;
        int img = k / hwo, pix = k - img * hwo;
        return dy[((long long)img * p.c_out + co) * hwo + pix];
    };
    auto lb = [=](int k, int col) -> float {
        if (k >= K || col >= N) return 0.0f;
        int img = k / hwo, pix = k - img * hwo, oy = pix / p.w_out, ox = pix - oy * p.w_out;
        int off, ky, kx;
        if (tab) {
            off = coff[col];
            ky = cyx[col] >> 16;
            kx = cyx[col] & 0xffff;
        } else {
            int ci = col / khw, r = col - ci * khw;
            ky = r / p.kw;
            kx = r - ky * p.kw;
            off = (ci * p.h + ky) * p.w + kx;
        }
        int iy0 = oy * p.stride_h - p.pad_h, ix0 = ox * p.stride_w - p.pad_w;
        if ((unsigned)(iy0 + ky) >= (unsigned)p.h || (unsigned)(ix0 + kx) >= (unsigned)p.w) return 0.0f;
        return x[(long long)img * p.c_in * p.h * p.w + iy0 * p.w + ix0 + off];
    };
    float acc[TM][TN];
    tile_mma<BM, BN, TM, TN, true, true>(sm, m0, n0, k_begin, k_end, la, lb, acc);
    float* out = gridDim.z == 1 ? dw : conv_partial + (long long)blockIdx.z * M * N;
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int co = m0 + tile_row<BM, BN, TM, TN>(i);
        if (co >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int col = n0 + tile_col<BM, BN, TM, TN>(j);
            if (col < N) out[(long long)co * N + col] = acc[i][j];
        }
    }
}

#define CONV_ARGS_FWD const Conv2dParams p, const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y
#define CONV_ARGS_BWD_DATA \
    const Conv2dParams p, const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx
#define CONV_ARGS_BWD_FILTER \
    const Conv2dParams p, const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dw

// Shapes as in conv_fwd; grid (ceil(n*h_out*w_out / 128), ceil(c_out / BM)), block 256.
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_forward_m32(CONV_ARGS_FWD) {
    PT_STAMP();
    conv_fwd<32>(p, x, w, y);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_forward(CONV_ARGS_FWD) {
    PT_STAMP();
    conv_fwd<64>(p, x, w, y);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_forward_m128(CONV_ARGS_FWD) {
    PT_STAMP();
    conv_fwd<128>(p, x, w, y);
}

// Shapes as in conv_bwd_data; grid (ceil(n*h*w / 128), ceil(c_in / BM)), block 256.
#define CONV_BWD_DATA_DISPATCH(BM)                                          \
    __shared__ TileSmem<BM, CONV_BN> sm;                                    \
    __shared__ int kco[CONV_KTAB], kyx[CONV_KTAB];                          \
    if (p.stride_h == 1 && p.stride_w == 1)                                 \
        conv_bwd_data<BM, true>(p, dy, w, dx, sm, kco, kyx);                \
    else                                                                    \
        conv_bwd_data<BM, false>(p, dy, w, dx, sm, kco, kyx);
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_data_m32(CONV_ARGS_BWD_DATA) {
    PT_STAMP();
    CONV_BWD_DATA_DISPATCH(32)
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_data(CONV_ARGS_BWD_DATA) {
    PT_STAMP();
    CONV_BWD_DATA_DISPATCH(64)
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_data_m128(CONV_ARGS_BWD_DATA) {
    PT_STAMP();
    CONV_BWD_DATA_DISPATCH(128)
}

// Shapes as in conv_bwd_filter; grid (ceil(c_in*kh*kw / 128), ceil(c_out / BM), splits), block 256; when
// splits > 1 (c_out*c_in*kh*kw*splits <= CONV_SPLIT_CAP) conv2d_backward_filter_reduce follows.
// N = c_in*kh*kw <= 32 (celeba conv1: 3*3*3 = 27) takes a 32 x 32 tile: the 32 x 128 one would spend 79% of
// its FMAs, shared-memory reads and B loads on columns past N. Same grid (ceil(N / 128) = 1 column of tiles).
#define CONV_BWD_FILTER_TABLES __shared__ int coff[CONV_KTAB], cyx[CONV_KTAB];
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_filter_m32(CONV_ARGS_BWD_FILTER) {
    PT_STAMP();
    CONV_BWD_FILTER_TABLES
    if (p.c_in * p.kh * p.kw <= 32)
        conv_bwd_filter<32, 32>(p, x, dy, dw, coff, cyx);
    else
        conv_bwd_filter<32>(p, x, dy, dw, coff, cyx);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_filter(CONV_ARGS_BWD_FILTER) {
    PT_STAMP();
    CONV_BWD_FILTER_TABLES
    conv_bwd_filter<64>(p, x, dy, dw, coff, cyx);
}
extern "C" __global__ void __launch_bounds__(256, 2) conv2d_backward_filter_m128(CONV_ARGS_BWD_FILTER) {
    PT_STAMP();
    conv_bwd_filter<128, CONV_BN, false>(p, x, dy, dw, nullptr, nullptr);
}
// dw [c_out, c_in, kh, kw] = sum over the splits of conv_partial. dw is tiny (864 floats for celeba conv1) and
// the splits many (hundreds), so one thread per output summing every split serially would leave most SMs idle
// behind long dependent chains: instead a block takes 32 consecutive outputs (one per lane, coalesced) and its
// G = blockDim.x / 32 warps (G <= 32) each sum the splits z = g, g + G, ... in order; warp 0 then adds the G
// partial sums in warp order (a fixed tree: deterministic). Grid-stride over groups of 32 outputs, any grid,
// blockDim.x a multiple of 32.
extern "C" __global__ void conv2d_backward_filter_reduce(CONV_ARGS_BWD_FILTER) {
    PT_STAMP();
    __shared__ float part[32][33];
    const long long len = (long long)p.c_out * p.c_in * p.kh * p.kw;
    const int S = conv_splits, lane = threadIdx.x & 31, g = threadIdx.x >> 5, G = blockDim.x >> 5;
    for (long long base = (long long)blockIdx.x * 32; base < len; base += (long long)gridDim.x * 32) {
        const long long i = base + lane;  // the loop bound is uniform per block: every thread reaches the barriers
        float s = 0.0f;
        if (i < len)
            for (int z = g; z < S; z += G) s += conv_partial[(long long)z * len + i];
        part[g][lane] = s;
        __syncthreads();
        if (g == 0 && i < len) {
            float t = 0.0f;
            for (int q = 0; q < G; q++) t += part[q][lane];
            dw[i] = t;
        }
        __syncthreads();
    }
}

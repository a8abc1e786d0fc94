// src/ops/gemm/gemm.cu: FP32 GEMM for the linear layers, row-major, all four transpose cases.
//
// c [m, n] = alpha * op(a) [m, k] * op(b) [k, n] + beta * c; a is stored [m, k] ([k, m] when trans_a), b is
// stored [k, n] ([n, k] when trans_b). beta == 0 never reads c (NaN there is ignored).
// Tiled on the core of common.cuh (tile_mma): 64 x 128 tiles, 256 threads, 4 x 8 register micro-tiles, shared
// memory double-buffered. The forward pass of a linear layer has a small output (batch x out_features) and a
// long reduction (in_features up to 8192), so the plan may split K over gridDim.z blocks: each writes its
// partial tile to the module's static scratch `gemm_partial` and gemm_splitk_reduce sums the slices in a fixed
// order and applies alpha / beta (deterministic, no atomics, no workspace argument).
// Launch plan: src/ops/gemm/cuda.rs: grid (ceil(n/128), ceil(m/64), splits), block 256.
#include "common.cuh"

// GEMM_BM x GEMM_BN (the tile) and GEMM_SPLIT_CAP (the split-K scratch in floats) come from params.cuh, written
// from src/ops/gemm/mod.rs, whose launch plan uses them too.
#define GEMM_TM 4
#define GEMM_TN 8

static __device__ float gemm_partial[GEMM_SPLIT_CAP];
static __device__ int gemm_splits;

template <bool TA, bool TB>
__device__ __forceinline__ void gemm_body(const GemmParams& p, const float* __restrict__ a,
                                          const float* __restrict__ b, float* __restrict__ c,
                                          TileSmem<GEMM_BM, GEMM_BN>& sm) {
    constexpr int BM = GEMM_BM, BN = GEMM_BN, TM = GEMM_TM, TN = GEMM_TN;
    const int M = p.m, N = p.n, K = p.k;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    // op(a)(m, k) and op(b)(k, n), zero outside the matrices.
    auto la = [=](int m, int k) -> float {
        if (m >= M || k >= K) return 0.0f;
        return TA ? a[(long long)k * M + m] : a[(long long)m * K + k];
    };
    auto lb = [=](int k, int n) -> float {
        if (k >= K || n >= N) return 0.0f;
        return TB ? b[(long long)n * K + k] : b[(long long)k * N + n];
    };
    int k_begin, k_end;
    splitk_range(K, k_begin, k_end);
    float acc[TM][TN];
    tile_mma<BM, BN, TM, TN, !TA, TB>(sm, m0, n0, k_begin, k_end, la, lb, acc);
    const bool split = gridDim.z > 1;
    float* out = split ? gemm_partial + (long long)blockIdx.z * M * N : c;
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int m = m0 + tile_row<BM, BN, TM, TN>(i);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int n = n0 + tile_col<BM, BN, TM, TN>(j);
            if (n >= N) continue;
            long long o = (long long)m * N + n;
            if (split) {
                out[o] = acc[i][j];
            } else {
                float v = p.alpha * acc[i][j];
                out[o] = p.beta == 0.0f ? v : v + p.beta * out[o];
            }
        }
    }
}

// a, b, c as above; grid (ceil(n/128), ceil(m/64), splits), block 256. With splits > 1 (m*n*splits <=
// GEMM_SPLIT_CAP) gemm_splitk_reduce must follow.
extern "C" __global__ void __launch_bounds__(256, 2) gemm(const GemmParams p, const float* __restrict__ a,
                                                          const float* __restrict__ b, float* __restrict__ c) {
    PT_STAMP();
    __shared__ TileSmem<GEMM_BM, GEMM_BN> sm;
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) gemm_splits = gridDim.z;
    if (!p.trans_a && !p.trans_b) gemm_body<false, false>(p, a, b, c, sm);
    else if (!p.trans_a && p.trans_b) gemm_body<false, true>(p, a, b, c, sm);
    else if (p.trans_a && !p.trans_b) gemm_body<true, false>(p, a, b, c, sm);
    else gemm_body<true, true>(p, a, b, c, sm);
}

// c [m, n] = alpha * (sum over splits of gemm_partial, in split order) + beta * c. Grid-stride, any grid.
extern "C" __global__ void gemm_splitk_reduce(const GemmParams p, const float* __restrict__ a,
                                              const float* __restrict__ b, float* __restrict__ c) {
    PT_STAMP();
    splitk_reduce(gemm_partial, gemm_splits, (long long)p.m * p.n, p.alpha, p.beta, c);
}

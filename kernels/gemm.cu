// kernels/gemm.cu: FP32 GEMM for the linear layers, row-major, all four transpose cases.
//
// c [m, n] = alpha * op(a) [m, k] * op(b) [k, n] + beta * c; a is stored [m, k] ([k, m] when trans_a), b is
// stored [k, n] ([n, k] when trans_b). beta == 0 never reads c (NaN there is ignored).
// Launch plan: src/backend/cuda/launch.rs gemm(): grid (ceil(n / GEMM_BN), ceil(m / GEMM_BM)), block
// GEMM_THREADS, no dynamic shared memory.
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_TM 4
#define GEMM_TN 4

template <bool TA, bool TB>
__device__ __forceinline__ void gemm_body(const GemmParams& p, const float* __restrict__ a,
                                          const float* __restrict__ b, float* __restrict__ c,
                                          TileSmem<GEMM_BM, GEMM_BN, GEMM_BK>& sm) {
    const int M = p.m, N = p.n, K = p.k;
    const int m0 = blockIdx.y * GEMM_BM, n0 = blockIdx.x * GEMM_BN;
    // op(a)(m, k) and op(b)(k, n), zero outside the matrices.
    auto la = [=](int m, int k) -> float {
        if (m >= M || k >= K) return 0.0f;
        return TA ? a[(long long)k * M + m] : a[(long long)m * K + k];
    };
    auto lb = [=](int k, int n) -> float {
        if (k >= K || n >= N) return 0.0f;
        return TB ? b[(long long)n * K + k] : b[(long long)k * N + n];
    };
    float acc[GEMM_TM][GEMM_TN];
    tile_mma<GEMM_BM, GEMM_BN, GEMM_BK, GEMM_TM, GEMM_TN, !TA, TB>(sm, m0, n0, K, la, lb, acc);
#pragma unroll
    for (int i = 0; i < GEMM_TM; i++) {
        int m = m0 + tile_row<GEMM_BM, GEMM_BN, GEMM_TM, GEMM_TN>(i);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < GEMM_TN; j++) {
            int n = n0 + tile_col<GEMM_BM, GEMM_BN, GEMM_TM, GEMM_TN>(j);
            if (n >= N) continue;
            long long o = (long long)m * N + n;
            float v = p.alpha * acc[i][j];
            c[o] = p.beta == 0.0f ? v : v + p.beta * c[o];
        }
    }
}

// a, b, c as above; grid (ceil(n/64), ceil(m/64)), block 256.
extern "C" __global__ void __launch_bounds__(256) gemm(const GemmParams p, const float* __restrict__ a,
                                                       const float* __restrict__ b, float* __restrict__ c) {
    __shared__ TileSmem<GEMM_BM, GEMM_BN, GEMM_BK> sm;
    if (!p.trans_a && !p.trans_b) gemm_body<false, false>(p, a, b, c, sm);
    else if (!p.trans_a && p.trans_b) gemm_body<false, true>(p, a, b, c, sm);
    else if (p.trans_a && !p.trans_b) gemm_body<true, false>(p, a, b, c, sm);
    else gemm_body<true, true>(p, a, b, c, sm);
}

// kernels/common.cuh: shared header of every powertrain kernel.
//
// The parameter structs below are the twins of `src/backend/params.rs` (same names, field order and types;
// all fields 4 bytes, so there is no padding). Kernels take them BY VALUE as their first argument and are
// declared `extern "C" __global__` so that their names stay unmangled for cudarc's `load_function`.
//
// Built three ways: by NVRTC in build.rs (CUBIN sm_90/sm_80 + PTX compute_80), by NVRTC at run time from the
// embedded source, and by g++ under the CPU emulation header (tests/emu/) that runs the same source.
#pragma once

struct Conv2dParams {
    int n, c_in, h, w, c_out, kh, kw, pad_h, pad_w, stride_h, stride_w, h_out, w_out;
};
struct Pool2dParams {
    int n, c, h, w, kh, kw, stride_h, stride_w, h_out, w_out;
};
struct GemmParams {
    int m, n, k, trans_a, trans_b;
    float alpha, beta;
};
struct BiasParams {
    int n, c, inner;
};
struct EltwiseParams {
    int len;
};
struct LossParams {
    int n, k;
};
struct SgdParams {
    int len;
    float lr, momentum, weight_decay;
};
struct AdamParams {
    int len;
    float lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2;
};
struct FillParams {
    int len;
    float value;
};

// ---- device helpers shared by the kernels ---------------------------------------------------------------------

__device__ __forceinline__ int imin(int a, int b) {
    return a < b ? a : b;
}
__device__ __forceinline__ int imax(int a, int b) {
    return a > b ? a : b;
}

// Sum over the 32 lanes of a warp (every lane must call it); lane 0 holds the total, in a fixed order.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// Sum / max over the 32 lanes of a warp, returned to every lane (butterfly; every lane must call it).
__device__ __forceinline__ float warp_allsum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_allmax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Largest finite float (NVRTC has no <cfloat> without headers).
#define PT_FLT_MAX 3.402823466e+38f

// Sum over the whole block (blockDim.x threads, a multiple of 32, all calling it); the result is returned to
// every thread. `scratch` is caller-owned __shared__ float[32]. Deterministic: fixed reduction tree.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = 0.0f;
    if (warp == 0) {
        t = lane < nwarps ? scratch[lane] : 0.0f;
        t = warp_sum(t);
        if (lane == 0) scratch[0] = t;
    }
    __syncthreads();
    return scratch[0];
}

// ---- the tiled matrix-multiply core (GEMM and the three implicit-GEMM convolutions) ---------------------------
//
// One block computes the C tile [BM x BN] at (m0, n0) of C = A [M x K] * B [K x N], looping over all of K in
// steps of BK: both operand tiles go through shared memory, each thread then accumulates a TM x TN micro-tile
// held in registers. The micro-tile is STRIDED (thread (tx, ty) owns rows ty + i*BM/TM and columns
// tx + j*BN/TN): a warp then reads 16 consecutive Bs words and 2 broadcast As words per step (no bank
// conflicts), and the epilogue writes consecutive columns (coalesced).
//
// Operands are functors `float operator()(int m_or_k, int k_or_n) const` returning 0 out of range, so the
// convolutions gather im2col on the fly. A_KFAST / B_KFAST say whether consecutive k are adjacent in memory
// (then consecutive threads load consecutive k, else consecutive m / n), which keeps global loads coalesced.
// The shared tiles are [BK][BM + 32/BK]: with that padding the transposing stores are conflict-free too
// (BK = 16: a warp stores 16 k x 2 m at banks 2k + m, all distinct).
// Blocks have (BM/TM)*(BN/TN) threads, 1-D.
template <int BM, int BN, int BK>
struct TileSmem {
    float a[BK][BM + 32 / BK];
    float b[BK][BN + 32 / BK];
};

template <int BM, int BN, int BK, int TM, int TN, bool A_KFAST, bool B_KFAST, class LA, class LB>
__device__ __forceinline__ void tile_mma(TileSmem<BM, BN, BK>& sm, int m0, int n0, int K, const LA& la,
                                         const LB& lb, float (&acc)[TM][TN]) {
    constexpr int RM = BM / TM, RN = BN / TN, NT = RM * RN;
    const int tid = threadIdx.x, tx = tid % RN, ty = tid / RN;
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int e = tid; e < BM * BK; e += NT) {
            int kk = A_KFAST ? e % BK : e / BM, mm = A_KFAST ? e / BK : e % BM;
            sm.a[kk][mm] = la(m0 + mm, k0 + kk);
        }
#pragma unroll
        for (int e = tid; e < BN * BK; e += NT) {
            int kk = B_KFAST ? e % BK : e / BN, nn = B_KFAST ? e / BK : e % BN;
            sm.b[kk][nn] = lb(k0 + kk, n0 + nn);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = sm.a[kk][ty + i * RM];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = sm.b[kk][tx + j * RN];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();  // the next iteration overwrites the tiles
    }
}

// Row / column of micro-tile element (i, j) of this thread inside the block tile (see tile_mma).
template <int BM, int BN, int TM, int TN>
__device__ __forceinline__ int tile_row(int i) {
    return (int)threadIdx.x / (BN / TN) + i * (BM / TM);
}
template <int BM, int BN, int TM, int TN>
__device__ __forceinline__ int tile_col(int j) {
    return (int)threadIdx.x % (BN / TN) + j * (BN / TN);
}

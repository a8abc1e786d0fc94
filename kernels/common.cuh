// kernels/common.cuh: shared header of every powertrain kernel (src/ops/<family>/<family>.cu).
//
// The parameter structs and the constants the launch plans share with the kernels (tile sizes, scratch
// capacities, the stamp ring) are not written here: build.rs generates them from the Rust side (the
// `cuda_struct!` / `cuda_const!` blocks of src/ops, see src/ops/abi.rs) into `params.cuh`. Kernels take their
// params struct BY VALUE as their first argument and are declared `extern "C" __global__` so that their names stay
// unmangled for cudarc's `load_function` (and for the emulator's launch table, which build.rs finds the same way).
//
// Built three ways: by NVRTC in build.rs (CUBIN sm_90/sm_80 + PTX compute_80), by NVRTC at run time from the
// embedded source, and by g++ under the CPU emulation header (src/ops/emu/emu.h) that runs the same source.
#pragma once

#include "params.cuh"

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
// One block computes the C tile [BM x BN] at (m0, n0) of C = A [M x K] * B [K x N] over the k range
// [k_begin, k_end) in steps of TILE_BK (k_begin a multiple of TILE_BK; loaders return 0 past K). Both operand
// tiles go through shared memory, double-buffered: while the block multiplies stage s, each thread has already
// fetched the next tile into registers and stores it into stage s^1, so one __syncthreads per step suffices
// and global latency hides behind the math. Each thread accumulates a TM x TN micro-tile in registers.
//
// The micro-tile is STRIDED (thread (tx, ty) owns rows ty + i*BM/TM and columns tx + j*BN/TN, with
// BM/TM = BN/TN = 16): per k a warp reads 16 consecutive Bs words and 2 broadcast As words (no bank
// conflicts), and the epilogue writes consecutive columns (coalesced).
//
// Operands are functors `float operator()(int m_or_k, int k_or_n) const` returning 0 out of range, so the
// convolutions gather im2col on the fly. A_KFAST / B_KFAST say whether consecutive k are adjacent in memory:
// then consecutive threads load consecutive k, else consecutive m / n; global loads stay coalesced. The shared
// tiles are [BK][BM + 2]: with BK = 16 a warp's transposing store covers 16 k x 2 m at banks 2k + m, all
// distinct, and the non-transposing one 32 consecutive words.
// Blocks have TILE_THREADS threads (256, params.cuh), 1-D.
#define TILE_BK 16

template <int BM, int BN>
struct TileSmem {
    float a[2][TILE_BK][BM + 2];
    float b[2][TILE_BK][BN + 2];
};

template <int BM, int BN, int TM, int TN, bool A_KFAST, bool B_KFAST, class LA, class LB>
__device__ __forceinline__ void tile_mma(TileSmem<BM, BN>& sm, int m0, int n0, int k_begin, int k_end,
                                         const LA& la, const LB& lb, float (&acc)[TM][TN]) {
    constexpr int BK = TILE_BK, RM = BM / TM, RN = BN / TN, NT = RM * RN;
    constexpr int AL = BM * BK / NT, BL = BN * BK / NT;  // elements each thread loads per tile
    static_assert(NT == TILE_THREADS && AL * NT == BM * BK && BL * NT == BN * BK, "tile shape");
    const int tid = threadIdx.x, tx = tid % RN, ty = tid / RN;
    float ra[AL], rb[BL];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;
    if (k_begin >= k_end) return;  // uniform per block

    // Fetch tile k0 into registers / store the registers into stage s (element r of this thread: see kk, mm).
#define TILE_A_KK(r) (A_KFAST ? (tid + (r) * NT) % BK : (tid + (r) * NT) / BM)
#define TILE_A_MM(r) (A_KFAST ? (tid + (r) * NT) / BK : (tid + (r) * NT) % BM)
#define TILE_B_KK(r) (B_KFAST ? (tid + (r) * NT) % BK : (tid + (r) * NT) / BN)
#define TILE_B_NN(r) (B_KFAST ? (tid + (r) * NT) / BK : (tid + (r) * NT) % BN)
    auto fetch = [&](int k0) {
#pragma unroll
        for (int r = 0; r < AL; r++) ra[r] = la(m0 + TILE_A_MM(r), k0 + TILE_A_KK(r));
#pragma unroll
        for (int r = 0; r < BL; r++) rb[r] = lb(k0 + TILE_B_KK(r), n0 + TILE_B_NN(r));
    };
    auto stash = [&](int s) {
#pragma unroll
        for (int r = 0; r < AL; r++) sm.a[s][TILE_A_KK(r)][TILE_A_MM(r)] = ra[r];
#pragma unroll
        for (int r = 0; r < BL; r++) sm.b[s][TILE_B_KK(r)][TILE_B_NN(r)] = rb[r];
    };
#undef TILE_A_KK
#undef TILE_A_MM
#undef TILE_B_KK
#undef TILE_B_NN

    fetch(k_begin);
    stash(0);
    __syncthreads();
    int s = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more) fetch(k0 + BK);
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = sm.a[s][kk][ty + i * RM];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = sm.b[s][kk][tx + j * RN];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) stash(s ^ 1);  // stage s^1 was last read in the previous step, before its barrier
        __syncthreads();
        s ^= 1;
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

// Split-K: block z of gridDim.z slices handles k in [z*chunk, (z+1)*chunk), chunk a multiple of TILE_BK so
// that no tile straddles two slices.
__device__ __forceinline__ void splitk_range(int K, int& k_begin, int& k_end) {
    int S = gridDim.z;
    int chunk = ((K + S - 1) / S + TILE_BK - 1) / TILE_BK * TILE_BK;
    k_begin = imin(K, (int)blockIdx.z * chunk);
    k_end = imin(K, k_begin + chunk);
}

// Second pass of split-K: out[i] = alpha * sum_{z < splits} partial[z*len + i] (+ beta * out[i] when beta != 0),
// summed in z order (deterministic). Grid-stride over len.
__device__ __forceinline__ void splitk_reduce(const float* partial, int splits, long long len, float alpha,
                                              float beta, float* out) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < len; i += stride) {
        float s = 0.0f;
        for (int z = 0; z < splits; z++) s += partial[z * len + i];
        float v = alpha * s;
        out[i] = beta == 0.0f ? v : v + beta * out[i];
    }
}

// ---- launch stamps: per-kernel timing without host events (`--kernel-timing stamps`) ------------------------------
//
// The host points `pt_stamps` (one per module, set through cuModuleGetGlobal) at one buffer shared by every
// module; null, the default, turns stamping off. Every kernel opens with PT_STAMP(): thread 0 of each block
// folds the block's start time (%globaltimer, ns) into the current launch's accumulator and, when it exits, its
// end time; the last block of the launch to finish moves the launch's (first start, last end) into ring slot
// seq % PT_STAMP_RING, clears the accumulator and increments seq. Launches on one stream run one after another,
// so one accumulator serves them all; the host counts its launches and reads their slots after synchronising.
// Cost: a load, two atomics and a fence per block, and no host call per launch.
// PT_STAMP_RING (the ring's slots) comes from params.cuh (src/ops/cuda/stamps.rs).
struct PtStampBuf {
    unsigned long long start_inv;  // max over the launch's blocks of ~start, i.e. ~(first start); 0: none yet
    unsigned long long end;        // max over the launch's blocks of their end
    unsigned int blocks_done;      // blocks of the current launch that have finished
    unsigned int seq;              // launches closed so far
    unsigned long long ring[2 * PT_STAMP_RING];  // (start, end) of launch s at [2 (s % PT_STAMP_RING)]
};

#ifndef PT_EMU
#define PT_MODULE_GLOBAL __device__
__device__ __forceinline__ unsigned long long pt_globaltimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#endif
PT_MODULE_GLOBAL PtStampBuf* pt_stamps = 0;

struct PtStamp {
    __device__ __forceinline__ PtStamp() {
        PtStampBuf* b = pt_stamps;
        if (b != 0 && threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0)
            atomicMax(&b->start_inv, ~pt_globaltimer());
    }
    // Runs at every exit of the kernel (early returns included).
    __device__ __forceinline__ ~PtStamp() {
        PtStampBuf* b = pt_stamps;
        if (b == 0 || threadIdx.x != 0 || threadIdx.y != 0 || threadIdx.z != 0) return;
        atomicMax(&b->end, pt_globaltimer());
        __threadfence();  // this block's start and end land before it counts as done
        unsigned int blocks = gridDim.x * gridDim.y * gridDim.z;
        if (atomicAdd(&b->blocks_done, 1u) != blocks - 1) return;
        __threadfence();
        unsigned long long start_inv = atomicExch(&b->start_inv, 0ull);
        unsigned long long end = atomicExch(&b->end, 0ull);
        atomicExch(&b->blocks_done, 0u);
        unsigned int slot = atomicAdd(&b->seq, 1u) % PT_STAMP_RING;
        b->ring[2 * slot] = ~start_inv;
        b->ring[2 * slot + 1] = end;
    }
};
#define PT_STAMP() PtStamp pt_stamp_scope_

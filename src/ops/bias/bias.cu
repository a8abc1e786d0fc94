// src/ops/bias/bias.cu: bias forward / backward.
//
// Launch plans: src/ops/bias/cuda.rs (bias_forward, bias_backward). bias_forward uses a grid-stride loop, so any
// grid size is correct; the plan caps the grid.
#include "common.cuh"

// y [n, c, inner] += b [c] broadcast over n and inner. One thread per element (grid-stride).
extern "C" __global__ void bias_forward(const BiasParams p, const float* __restrict__ b, float* __restrict__ y) {
    PT_STAMP();
    long long total = (long long)p.n * p.c * p.inner;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int ch = (int)((i / p.inner) % p.c);
        y[i] += b[ch];
    }
}

// BIAS_SPLIT_CAP (params.cuh, from src/ops/bias/mod.rs): capacity (floats) of the split reduction's scratch.
static __device__ float bias_partial[BIAS_SPLIT_CAP];
static __device__ int bias_splits;

// db [c] = sum over n, inner of dy [n, c, inner] (overwrites db). Grid (c, splits): block (ch, z) sums images
// z, z + splits, ... of channel ch (threads stride over inner: coalesced) with a fixed-order block reduction.
// splits == 1: it writes db[ch]; else bias_partial[z][ch] and bias_backward_reduce sums the slices in z order
// (deterministic, no atomics). For inner == 1 (linear layers) the plan uses bias_backward_rows instead.
extern "C" __global__ void bias_backward(const BiasParams p, const float* __restrict__ dy, float* __restrict__ db) {
    PT_STAMP();
    __shared__ float scratch[32];
    int ch = blockIdx.x, z = blockIdx.y, splits = gridDim.y;
    if (blockIdx.x == 0 && z == 0 && threadIdx.x == 0) bias_splits = splits;
    if (ch >= p.c) return;  // uniform per block: no thread of this block reaches a barrier
    float s = 0.0f;
    for (int img = z; img < p.n; img += splits) {
        const float* row = dy + ((long long)img * p.c + ch) * p.inner;
        for (int i = threadIdx.x; i < p.inner; i += blockDim.x) s += row[i];
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) {
        if (splits == 1) db[ch] = s;
        else bias_partial[z * p.c + ch] = s;
    }
}

// db [c] = sum over z < splits of bias_partial[z][c], in z order. Grid-stride over c.
extern "C" __global__ void bias_backward_reduce(const BiasParams p, const float* __restrict__ dy,
                                                float* __restrict__ db) {
    PT_STAMP();
    for (int ch = blockIdx.x * blockDim.x + threadIdx.x; ch < p.c; ch += gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < bias_splits; z++) s += bias_partial[z * p.c + ch];
        db[ch] = s;
    }
}

// db [c] = sum over n of dy [n, c] (inner == 1, or any inner: it loops over it too). One thread per channel,
// consecutive threads read consecutive channels of a row (coalesced); sequential, deterministic sum.
extern "C" __global__ void bias_backward_rows(const BiasParams p, const float* __restrict__ dy,
                                              float* __restrict__ db) {
    PT_STAMP();
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= p.c) return;
    float s = 0.0f;
    for (int img = 0; img < p.n; img++)
        for (int i = 0; i < p.inner; i++) s += dy[((long long)img * p.c + ch) * p.inner + i];
    db[ch] = s;
}

// kernels/elementwise.cu: bias forward / backward, ReLU forward / backward, fill.
//
// Launch plans: src/backend/cuda/launch.rs (bias_forward, bias_backward, relu_*, fill). Elementwise kernels
// use grid-stride loops, so any grid size is correct; the plan caps the grid.
#include "common.cuh"

// y [n, c, inner] += b [c] broadcast over n and inner. One thread per element (grid-stride).
extern "C" __global__ void bias_forward(const BiasParams p, const float* __restrict__ b, float* __restrict__ y) {
    long long total = (long long)p.n * p.c * p.inner;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int ch = (int)((i / p.inner) % p.c);
        y[i] += b[ch];
    }
}

// db [c] = sum over n, inner of dy [n, c, inner] (overwrites db). One block per channel (grid.x = c): the
// block's threads stride over the channel's n*inner values (coalesced along inner) and reduce in a fixed
// order, so the result is deterministic. For inner == 1 (linear layers) the plan uses bias_backward_rows.
extern "C" __global__ void bias_backward(const BiasParams p, const float* __restrict__ dy, float* __restrict__ db) {
    __shared__ float scratch[32];
    int ch = blockIdx.x;
    if (ch >= p.c) return;  // uniform per block: no thread of this block reaches a barrier
    long long count = (long long)p.n * p.inner;
    float s = 0.0f;
    for (long long j = threadIdx.x; j < count; j += blockDim.x) {
        long long img = j / p.inner, i = j - img * p.inner;
        s += dy[(img * p.c + ch) * p.inner + i];
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) db[ch] = s;
}

// db [c] = sum over n of dy [n, c] (inner == 1, or any inner: it loops over it too). One thread per channel,
// consecutive threads read consecutive channels of a row (coalesced); sequential, deterministic sum.
extern "C" __global__ void bias_backward_rows(const BiasParams p, const float* __restrict__ dy,
                                              float* __restrict__ db) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= p.c) return;
    float s = 0.0f;
    for (int img = 0; img < p.n; img++)
        for (int i = 0; i < p.inner; i++) s += dy[((long long)img * p.c + ch) * p.inner + i];
    db[ch] = s;
}

// x [len] = max(x, 0) in place (NaN stays NaN, like torch.relu).
extern "C" __global__ void relu_forward(const EltwiseParams p, float* __restrict__ x) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        float v = x[i];
        x[i] = v < 0.0f ? 0.0f : v;
    }
}

// dy [len] *= (y [len] > 0) in place, y being the ReLU's output.
extern "C" __global__ void relu_backward(const EltwiseParams p, const float* __restrict__ y, float* __restrict__ dy) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        if (!(y[i] > 0.0f)) dy[i] = 0.0f;
    }
}

// dst [len] = value.
extern "C" __global__ void fill(const FillParams p, float* __restrict__ dst) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) dst[i] = p.value;
}

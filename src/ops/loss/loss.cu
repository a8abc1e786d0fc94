// src/ops/loss/loss.cu: fused loss + gradient (softmax cross-entropy, BCE with logits) and accuracies.
//
// Launch plans: src/ops/loss/cuda.rs. The losses run as ONE block (LOSS_THREADS threads) so that the
// mean loss is reduced in a fixed order without atomics: deterministic, and cheap for the sizes training
// uses (n*k up to ~50k). accuracy_classes is one block too; accuracy_binary is one thread per attribute.
#include "common.cuh"

// logits [n, k], labels i32 [n] in 0..k -> grad [n, k] = (softmax - onehot) / n, loss [1] = mean over rows of
// logsumexp(row) - row[label]. One warp per row (rows strided over the block's warps); blockDim.x must be a
// multiple of 32. A label outside 0..k makes the loss NaN (no out-of-bounds read).
extern "C" __global__ void softmax_xent(const LossParams p, const float* __restrict__ logits,
                                        const int* __restrict__ labels, float* __restrict__ grad,
                                        float* __restrict__ loss) {
    PT_STAMP();
    __shared__ float scratch[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float inv_n = 1.0f / (float)p.n;
    float lsum = 0.0f;  // meaningful in lane 0 of each warp
    for (int row = warp; row < p.n; row += nwarps) {
        const float* l = logits + (long long)row * p.k;
        float* g = grad + (long long)row * p.k;
        float mx = -PT_FLT_MAX;
        for (int j = lane; j < p.k; j += 32) mx = fmaxf(mx, l[j]);
        mx = warp_allmax(mx);
        float s = 0.0f;
        for (int j = lane; j < p.k; j += 32) s += expf(l[j] - mx);
        s = warp_allsum(s);
        int lab = labels[row];
        float inv_s = 1.0f / s;
        for (int j = lane; j < p.k; j += 32) {
            float sm = expf(l[j] - mx) * inv_s;
            g[j] = (sm - (j == lab ? 1.0f : 0.0f)) * inv_n;
        }
        if (lane == 0) {
            float nan = __int_as_float(0x7fc00000);
            lsum += (lab >= 0 && lab < p.k) ? mx + logf(s) - l[lab] : nan;
        }
    }
    float total = block_sum(lsum, scratch);
    if (threadIdx.x == 0) loss[0] = total * inv_n;
}

// logits, targets [n, k] (0/1) -> grad [n, k] = (sigmoid(l) - t) / (n*k), loss [1] = mean of
// max(l, 0) - l*t + log1p(exp(-|l|)). One block, threads strided over the n*k elements.
extern "C" __global__ void bce_logits(const LossParams p, const float* __restrict__ logits,
                                      const float* __restrict__ targets, float* __restrict__ grad,
                                      float* __restrict__ loss) {
    PT_STAMP();
    __shared__ float scratch[32];
    int total = p.n * p.k;
    float inv = 1.0f / (float)total;
    float lsum = 0.0f;
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
        float l = logits[i], t = targets[i];
        float e = expf(-fabsf(l));  // in (0, 1]: no overflow
        float sig = l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        grad[i] = (sig - t) * inv;
        lsum += fmaxf(l, 0.0f) - l * t + log1pf(e);
    }
    float s = block_sum(lsum, scratch);
    if (threadIdx.x == 0) loss[0] = s * inv;
}

// logits [n, k], labels [n] -> correct[0] += #rows whose argmax (first max) equals the label. One block,
// one warp per row; counts are exact in f32 below 2^24.
extern "C" __global__ void accuracy_classes(const LossParams p, const float* __restrict__ logits,
                                            const int* __restrict__ labels, float* __restrict__ correct) {
    PT_STAMP();
    __shared__ float scratch[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float hits = 0.0f;
    for (int row = warp; row < p.n; row += nwarps) {
        const float* l = logits + (long long)row * p.k;
        float bv = -PT_FLT_MAX;
        int bi = p.k;  // "none yet": loses every tie
        for (int j = lane; j < p.k; j += 32) {
            float v = l[j];
            if (v > bv || (v == bv && j < bi)) {
                bv = v;
                bi = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) {
                bv = ov;
                bi = oi;
            }
        }
        if (lane == 0 && bi == labels[row]) hits += 1.0f;
    }
    float s = block_sum(hits, scratch);
    if (threadIdx.x == 0) correct[0] += s;
}

// logits, targets [n, k] -> correct[j] += #{i : (logits[i, j] > 0) == (targets[i, j] > 0.5)} for j < k.
// One thread per attribute j (consecutive threads read consecutive columns of a row: coalesced).
extern "C" __global__ void accuracy_binary(const LossParams p, const float* __restrict__ logits,
                                           const float* __restrict__ targets, float* __restrict__ correct) {
    PT_STAMP();
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.k) return;
    int hits = 0;
    for (int i = 0; i < p.n; i++) {
        long long e = (long long)i * p.k + j;
        hits += (logits[e] > 0.0f) == (targets[e] > 0.5f);
    }
    correct[j] += (float)hits;
}

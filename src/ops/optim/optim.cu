// src/ops/optim/optim.cu: fused SGD and Adam steps over one flat parameter buffer (all tensors in one launch).
//
// Launch plans: src/ops/optim/cuda.rs (sgd_step, adam_step): grid-stride, any grid is correct.
#include "common.cuh"

// w, grad, mom [len]. PyTorch SGD (dampening 0, no Nesterov): g = grad + wd*w; m = momentum*m + g;
// w -= lr * (momentum != 0 ? m : g). mom is always updated (as the trait documents: m = g when momentum == 0).
extern "C" __global__ void sgd_step(const SgdParams p, float* __restrict__ w, const float* __restrict__ grad,
                                    float* __restrict__ mom) {
    PT_STAMP();
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        float wi = w[i];
        float g = grad[i] + p.weight_decay * wi;
        float m = p.momentum * mom[i] + g;
        mom[i] = m;
        w[i] = wi - p.lr * (p.momentum != 0.0f ? m : g);
    }
}

// w, grad, m, v [len]. PyTorch Adam (coupled weight decay, eps after the square root):
// g = grad + wd*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
extern "C" __global__ void adam_step(const AdamParams p, float* __restrict__ w, const float* __restrict__ grad,
                                     float* __restrict__ m, float* __restrict__ v) {
    PT_STAMP();
    int stride = gridDim.x * blockDim.x;
    float step = p.lr / p.bias_correction1;
    float sqrt_bc2 = sqrtf(p.bias_correction2);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < p.len; i += stride) {
        float wi = w[i];
        float g = grad[i] + p.weight_decay * wi;
        float mi = p.beta1 * m[i] + (1.0f - p.beta1) * g;
        float vi = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step * mi / (sqrtf(vi) / sqrt_bc2 + p.eps);
    }
}

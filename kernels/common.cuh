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

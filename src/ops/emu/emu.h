// src/ops/emu/emu.h: the CUDA emulation header. g++ force-includes it (-include) before every
// src/ops/<family>/<family>.cu (build.rs), so the SAME kernel source runs on the CPU (`check --device emu`, tests).
//
// Model: one launch at a time (a mutex in emu.cpp), blocks one after another, and inside a block one fiber
// (ucontext) per CUDA thread on a single OS thread. `__syncthreads()` and the warp shuffles are barriers of the
// fiber scheduler; fibers run round-robin until they block, so a missing barrier between a shared-memory write
// and a read by another thread shows up as a wrong result. `__shared__` becomes `static`, which is per block
// because blocks never overlap. Threads that returned count as arrived at `__syncthreads()` (as on sm_70+);
// a shuffle with an exited lane is reported as a deadlock.
#pragma once

// kernels/common.cuh: use the emulated clock and a single (C++17 inline) stamp pointer shared by every .cu.
#define PT_EMU 1
#define PT_MODULE_GLOBAL inline

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <utility>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

extern dim3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)

void emu_syncthreads();
#define __syncthreads() emu_syncthreads()

// mode 0: shfl (absolute lane), 1: down, 2: up, 3: xor. width: sub-warp size (power of two <= 32).
uint32_t emu_shfl(uint32_t v, int arg, int mode, int width);

template <class T>
inline T emu_shfl_t(T v, int arg, int mode, int width) {
    static_assert(sizeof(T) == 4, "emu: shuffles of 4-byte values only");
    uint32_t u;
    memcpy(&u, &v, 4);
    u = emu_shfl(u, arg, mode, width);
    memcpy(&v, &u, 4);
    return v;
}
template <class T>
inline T __shfl_sync(unsigned, T v, int lane, int width = 32) {
    return emu_shfl_t(v, lane, 0, width);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    return emu_shfl_t(v, (int)delta, 1, width);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    return emu_shfl_t(v, (int)delta, 2, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    return emu_shfl_t(v, mask, 3, width);
}

template <class T>
inline T __ldg(const T* p) {
    return *p;
}
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}
inline float __fdividef(float a, float b) {
    return a / b;
}
inline float __expf(float a) {
    return expf(a);
}

// Atomics and fences: one launch at a time, its fibers on one OS thread, so plain operations are atomic.
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
    unsigned long long o = *p;
    if (v > o) *p = v;
    return o;
}
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) {
    unsigned long long o = *p;
    *p = v;
    return o;
}
inline unsigned int atomicExch(unsigned int* p, unsigned int v) {
    unsigned int o = *p;
    *p = v;
    return o;
}
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    unsigned int o = *p;
    *p = o + v;
    return o;
}
inline void __threadfence() {}
// %globaltimer: nanoseconds of a monotonic clock (emu.cpp).
unsigned long long pt_globaltimer();

// ---- the launch table: one entry per kernel, built by build.rs from the `extern "C" __global__` functions it
// finds in the .cu files (one generated wrapper per file calls make_entry for each) --------------------------
namespace emu {
struct Entry {
    const char* name;
    int nargs;
    size_t param_size;
    void (*call)(void* fn, void** args);
    void* fn;
};

template <class P, class... Ts, size_t... I>
void invoke(void (*f)(P, Ts...), void** args, std::index_sequence<I...>) {
    f(*static_cast<P*>(args[0]), *static_cast<Ts*>(args[I + 1])...);
}

// The entry of kernel `f`: its argument count and param struct size come from its signature.
template <class P, class... Ts>
Entry make_entry(const char* name, void (*f)(P, Ts...)) {
    Entry e;
    e.name = name;
    e.nargs = 1 + (int)sizeof...(Ts);
    e.param_size = sizeof(P);
    e.fn = reinterpret_cast<void*>(f);
    e.call = [](void* fn, void** args) {
        invoke(reinterpret_cast<void (*)(P, Ts...)>(fn), args, std::index_sequence_for<Ts...>{});
    };
    return e;
}

// Every kernel of every .cu file (generated: $OUT_DIR/emu/tables.cpp).
const std::vector<Entry>& table();
}  // namespace emu

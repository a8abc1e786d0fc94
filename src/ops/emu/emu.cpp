// src/ops/emu/emu.cpp: the fiber scheduler behind emu.h and the C ABI launcher of every kernel.
//
// `emu_launch(name, grid, block, shared, args, nargs, param_size, err, errlen)` runs kernel `name` like
// cuLaunchKernel: args[i] points at the i-th argument (args[0] at the param struct, then at each pointer).
// Launches are serialised by a mutex; each block runs as blockDim fibers on the calling thread.
#include "common.cuh"

#include <ucontext.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

dim3 threadIdx, blockIdx, blockDim, gridDim;

unsigned long long pt_globaltimer() {
    return (unsigned long long)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

namespace {

enum State { RUNNABLE, WAIT_BLOCK, WAIT_WARP, DONE };

constexpr size_t STACK_BYTES = 256 * 1024;

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    dim3 tid;
    State state = DONE;
};

struct Sched {
    std::vector<Fiber> fibers;
    ucontext_t main_ctx;
    int cur = -1;
    int nthreads = 0;
    int live = 0;
    int block_arrived = 0;
    std::vector<int> warp_arrived, warp_size_, warp_live;
    std::vector<uint32_t> xchg;  // [warp][32]
    std::function<void()> body;
};

Sched S;
std::mutex LAUNCH_MUTEX;

void yield_to_main() {
    swapcontext(&S.fibers[S.cur].ctx, &S.main_ctx);
}

void fiber_entry() {
    S.body();
    S.fibers[S.cur].state = DONE;
    // returning resumes uc_link (the scheduler)
}

void warp_barrier() {
    int w = S.cur / 32;
    S.fibers[S.cur].state = WAIT_WARP;
    S.warp_arrived[w]++;
    yield_to_main();
}

// Release the barriers that every participant has reached.
void release_barriers() {
    if (S.block_arrived > 0 && S.block_arrived == S.live) {
        for (int i = 0; i < S.nthreads; i++)
            if (S.fibers[i].state == WAIT_BLOCK) S.fibers[i].state = RUNNABLE;
        S.block_arrived = 0;
    }
    for (size_t w = 0; w < S.warp_arrived.size(); w++) {
        // Strict: every lane of the warp must take part (a shuffle with an exited lane never completes).
        if (S.warp_arrived[w] > 0 && S.warp_arrived[w] == S.warp_size_[w]) {
            for (int i = (int)w * 32; i < (int)w * 32 + S.warp_size_[w]; i++)
                if (S.fibers[i].state == WAIT_WARP) S.fibers[i].state = RUNNABLE;
            S.warp_arrived[w] = 0;
        }
    }
}

// Runs one block; returns an error message or "".
std::string run_block() {
    int nt = S.nthreads;
    S.live = nt;
    S.block_arrived = 0;
    int nw = (nt + 31) / 32;
    S.warp_arrived.assign(nw, 0);
    S.warp_size_.assign(nw, 32);
    if (nt % 32) S.warp_size_[nw - 1] = nt % 32;
    S.xchg.assign((size_t)nw * 32, 0);
    for (int i = 0; i < nt; i++) {
        Fiber& f = S.fibers[i];
        if (f.stack.empty()) f.stack.resize(STACK_BYTES);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &S.main_ctx;
        makecontext(&f.ctx, fiber_entry, 0);
        f.tid.x = i % blockDim.x;
        f.tid.y = (i / blockDim.x) % blockDim.y;
        f.tid.z = i / (blockDim.x * blockDim.y);
        f.state = RUNNABLE;
    }
    while (S.live > 0) {
        bool progress = false;
        for (int i = 0; i < nt; i++) {
            if (S.fibers[i].state != RUNNABLE) continue;
            progress = true;
            S.cur = i;
            threadIdx = S.fibers[i].tid;
            swapcontext(&S.main_ctx, &S.fibers[i].ctx);
            if (S.fibers[i].state == DONE) S.live--;
            release_barriers();
        }
        if (!progress) {
            int wb = 0, ww = 0, done = 0;
            for (int i = 0; i < nt; i++) {
                wb += S.fibers[i].state == WAIT_BLOCK;
                ww += S.fibers[i].state == WAIT_WARP;
                done += S.fibers[i].state == DONE;
            }
            char buf[256];
            snprintf(buf, sizeof buf,
                     "deadlock in block (%u,%u,%u): %d threads at __syncthreads, %d at a warp shuffle, %d exited",
                     blockIdx.x, blockIdx.y, blockIdx.z, wb, ww, done);
            return buf;
        }
    }
    return "";
}

}  // namespace

void emu_syncthreads() {
    S.fibers[S.cur].state = WAIT_BLOCK;
    S.block_arrived++;
    yield_to_main();
}

uint32_t emu_shfl(uint32_t v, int arg, int mode, int width) {
    int w = S.cur / 32, lane = S.cur % 32;
    uint32_t* x = &S.xchg[(size_t)w * 32];
    x[lane] = v;
    warp_barrier();
    int base = lane & ~(width - 1), sub = lane & (width - 1), src = lane;
    switch (mode) {
        case 0: src = base + (arg & (width - 1)); break;
        case 1: src = sub + arg < width ? lane + arg : lane; break;
        case 2: src = sub - arg >= 0 ? lane - arg : lane; break;
        default: src = base + ((sub ^ arg) & (width - 1)); break;
    }
    uint32_t r = src < S.warp_size_[w] ? x[src] : v;
    warp_barrier();  // nobody overwrites x before every lane has read
    return r;
}

// ---- the launcher ------------------------------------------------------------------------------------------

namespace {
int fail(char* err, size_t errlen, const std::string& msg) {
    if (errlen > 0) snprintf(err, errlen, "%s", msg.c_str());
    return 1;
}
}  // namespace

extern "C" {

// Number of kernels and the name of kernel i (for tests that check every plan's functions exist).
int emu_kernel_count() {
    return (int)emu::table().size();
}
const char* emu_kernel_name(int i) {
    return i >= 0 && i < (int)emu::table().size() ? emu::table()[i].name : nullptr;
}

// Point every kernel's launch stamps at `buf` (a PtStampBuf, kernels/common.cuh), or turn them off (null).
void emu_set_stamps(void* buf) {
    std::lock_guard<std::mutex> lock(LAUNCH_MUTEX);
    pt_stamps = static_cast<PtStampBuf*>(buf);
}
// sizeof(PtStampBuf) and PT_STAMP_RING, for the Rust side to check its layout.
size_t emu_stamp_buf_bytes() {
    return sizeof(PtStampBuf);
}
unsigned emu_stamp_ring() {
    return PT_STAMP_RING;
}

// Runs kernel `name` over the grid; 0 on success, else 1 with a message in err.
int emu_launch(const char* name, const unsigned* grid, const unsigned* block, unsigned shared_bytes, void** args,
               int nargs, size_t param_size, char* err, size_t errlen) {
    const emu::Entry* e = nullptr;
    for (const emu::Entry& t : emu::table())
        if (strcmp(t.name, name) == 0) e = &t;
    if (!e) return fail(err, errlen, std::string("emu: no kernel named '") + name + "' (build.rs lists the extern \"C\" __global__ functions of src/ops/*/*.cu)");
    if (nargs != e->nargs)
        return fail(err, errlen, std::string("emu: kernel '") + name + "' takes " + std::to_string(e->nargs) +
                                     " arguments, got " + std::to_string(nargs));
    if (param_size != e->param_size)
        return fail(err, errlen, std::string("emu: kernel '") + name + "': param struct is " +
                                     std::to_string(e->param_size) + " bytes in C++, " +
                                     std::to_string(param_size) + " in Rust");
    if (shared_bytes != 0) return fail(err, errlen, "emu: dynamic shared memory is not supported (use static)");
    unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || block[2] > 64)
        return fail(err, errlen, "emu: invalid block size " + std::to_string(block[0]) + "x" +
                                     std::to_string(block[1]) + "x" + std::to_string(block[2]));
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 2147483647u || grid[1] > 65535 || grid[2] > 65535)
        return fail(err, errlen, "emu: invalid grid " + std::to_string(grid[0]) + "x" + std::to_string(grid[1]) +
                                     "x" + std::to_string(grid[2]));
    std::lock_guard<std::mutex> lock(LAUNCH_MUTEX);
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    S.nthreads = (int)threads;
    if ((int)S.fibers.size() < S.nthreads) S.fibers.resize(S.nthreads);
    S.body = [e, args] { e->call(e->fn, args); };
    for (unsigned z = 0; z < grid[2]; z++)
        for (unsigned y = 0; y < grid[1]; y++)
            for (unsigned x = 0; x < grid[0]; x++) {
                blockIdx = {x, y, z};
                std::string msg = run_block();
                if (!msg.empty()) return fail(err, errlen, std::string("emu: kernel '") + name + "': " + msg);
            }
    return 0;
}
}

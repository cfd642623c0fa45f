// The emulator runtime as seen by emulated device code: which thread is
// running, barriers, warp collectives, and error reporting.
//
// One OS thread runs one block at a time. The block's threads are fibers
// switched cooperatively, so a thread runs until it reaches a barrier, a warp
// collective or its end. Built-in variables (threadIdx...) are OS-thread-local
// globals that the scheduler rewrites at every switch.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memwall_emu {

// The lanes of one warp that take part in a collective see every other
// participant's input: `inputs[l]` is lane l's input, or nullptr for lanes
// outside the mask.
struct WarpInputs {
  const void* inputs[32];
  unsigned mask;
};

// Computes one lane's result of a collective from all participants' inputs.
// Returns nullptr on success or a static/thread-local error message.
using CollectiveFn = const char* (*)(const WarpInputs& all, unsigned lane, void* out);

// Blocks the calling thread until every lane in `mask` has reached a
// collective, checks that they all passed the same mask and the same `fn`,
// then runs `fn` once per participant. `what` names the collective in errors.
void warp_collective(unsigned mask, const char* what, const void* in, void* out, CollectiveFn fn);

// __syncthreads: waits until every thread of the block reaches a barrier.
// Threads waiting at different call sites, or some waiting while others have
// exited, are reported as barrier divergence.
void syncthreads(const char* file, int line);

// Reports an error for the current thread and abandons the block. Never returns.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The lane (0..31) and warp of the current thread.
unsigned lane_id();
unsigned warp_id();
// Mask of lanes of the current warp that exist and have not exited.
unsigned active_mask();

// Dynamic shared memory of the current block (nullptr when none was asked for).
unsigned char* dynamic_smem();
size_t dynamic_smem_bytes();

// Deferred cp.async copies of the current thread: queued by cp_async, made
// visible by cp_async_wait (all but the newest `keep` committed groups).
void cp_async_enqueue(void* dst_shared, const void* src_global, unsigned bytes, unsigned src_bytes);
void cp_async_commit();
void cp_async_wait(unsigned keep);

}  // namespace memwall_emu

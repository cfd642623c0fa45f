// cp.async (sm_80): asynchronous 16-byte copies from global to shared memory,
// grouped with commit_group and completed with wait_group N (all but the
// newest N groups). The emulator defers each copy until the wait that
// completes its group, so a kernel that reads shared memory too early reads
// stale (poisoned) data there, as it could on a GPU.
#pragma once

#ifdef MEMWALL_EMU
#include <stdint.h>

#include "memwall_emu/runtime.h"
#endif

namespace memwall {

// Copies 16 bytes; both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
#ifdef MEMWALL_EMU
  if ((reinterpret_cast<uintptr_t>(smem_dst) | reinterpret_cast<uintptr_t>(gmem_src)) % 16 != 0)
    memwall_emu::fail("cp.async 16: addresses %p <- %p not 16-byte aligned", smem_dst, gmem_src);
  memwall_emu::cp_async_enqueue(smem_dst, gmem_src, 16, 16);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(static_cast<unsigned>(__cvta_generic_to_shared(smem_dst))),
               "l"(gmem_src));
#endif
}

// Copies 16 bytes when `valid`, else writes 16 zero bytes (src-size 0): the
// global address is not read then, so it may be out of bounds.
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, bool valid) {
#ifdef MEMWALL_EMU
  if (reinterpret_cast<uintptr_t>(smem_dst) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(gmem_src) % 16 != 0))
    memwall_emu::fail("cp.async 16: addresses %p <- %p not 16-byte aligned", smem_dst, gmem_src);
  memwall_emu::cp_async_enqueue(smem_dst, gmem_src, 16, valid ? 16 : 0);
#else
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(
                   static_cast<unsigned>(__cvta_generic_to_shared(smem_dst))),
               "l"(gmem_src), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef MEMWALL_EMU
  memwall_emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef MEMWALL_EMU
  memwall_emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

}  // namespace memwall

// Shared device-side definitions for every memwall kernel.
//
// Kept free of inline PTX: primitives that need PTX live in their own headers
// next to their emulated twins (kernels/emu), so the CPU emulator can compile
// every kernel source unmodified.
#pragma once

#include <stdint.h>

// Kernels are exported with C linkage so their PTX entry names are stable and
// readable; the Rust launch plans name them exactly.
#define MEMWALL_KERNEL extern "C" __global__

// Declares `T* name` pointing at the block's dynamic shared memory (the
// launch plan's dynamic_smem_bytes), 16-byte aligned. A macro rather than
// `extern __shared__`, so that the emulator can hand out a buffer that ends
// at a guard page and so catch out-of-bounds accesses.
#ifdef MEMWALL_EMU
#define MEMWALL_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(::memwall_emu::dynamic_smem())
#else
#define MEMWALL_DYNAMIC_SMEM(T, name)                                 \
  extern __shared__ __align__(16) unsigned char memwall_dyn_smem_[]; \
  T* name = reinterpret_cast<T*>(memwall_dyn_smem_)
#endif

namespace memwall {

// A 16-byte word for vectorised copies (same size and alignment as uint4).
struct alignas(16) Word16 {
  uint32_t v[4];
};

// The global index of this thread in a 1-D launch, widened before multiplying
// so that grids of more than 2^32 threads cannot overflow.
__device__ __forceinline__ uint64_t global_thread_index() {
  return static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// The number of threads in a 1-D launch (the grid-stride step).
__device__ __forceinline__ uint64_t global_thread_count() {
  return static_cast<uint64_t>(gridDim.x) * blockDim.x;
}

}  // namespace memwall

// The CUDA C++ dialect on the CPU: included before every kernel source the
// emulator compiles (with -DMEMWALL_EMU), so that g++ accepts kernels/*.cu
// unmodified. Built-in variables are per-CPU-thread globals that the
// scheduler (runtime.cpp) sets for the emulated thread it is running.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <type_traits>

#include "memwall_emu/half_types.h"
#include "memwall_emu/runtime.h"

#ifndef MEMWALL_EMU
#define MEMWALL_EMU 1
#endif

// --- keywords -----------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One copy per CPU thread, and a CPU thread runs one block at a time: block scope.
#define __shared__ static thread_local
#define __constant__ static
#define __syncthreads() ::memwall_emu::syncthreads(__FILE__, __LINE__)

// --- vector types and built-in variables ------------------------------------------
#define MEMWALL_EMU_VEC2(T, N, A) \
  struct alignas(A) N##2 {        \
    T x, y;                       \
  };                              \
  inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define MEMWALL_EMU_VEC4(T, N, A) \
  struct alignas(A) N##4 {        \
    T x, y, z, w;                 \
  };                              \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
MEMWALL_EMU_VEC2(int, int, 8)
MEMWALL_EMU_VEC4(int, int, 16)
MEMWALL_EMU_VEC2(unsigned, uint, 8)
MEMWALL_EMU_VEC4(unsigned, uint, 16)
MEMWALL_EMU_VEC2(float, float, 8)
MEMWALL_EMU_VEC4(float, float, 16)
MEMWALL_EMU_VEC2(double, double, 16)
MEMWALL_EMU_VEC2(long long, longlong, 16)
MEMWALL_EMU_VEC2(unsigned long long, ulonglong, 16)
MEMWALL_EMU_VEC2(unsigned short, ushort, 4)
MEMWALL_EMU_VEC4(unsigned short, ushort, 8)
#undef MEMWALL_EMU_VEC2
#undef MEMWALL_EMU_VEC4

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3() = default;
  constexpr dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

// --- integer and bit intrinsics ---------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((uint64_t{a} * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline unsigned __float_as_uint(float f) { return memwall_emu::f32_bits(f); }
inline float __uint_as_float(unsigned u) { return memwall_emu::bits_f32(u); }
inline int __float_as_int(float f) { return static_cast<int>(memwall_emu::f32_bits(f)); }
inline float __int_as_float(int i) { return memwall_emu::bits_f32(static_cast<unsigned>(i)); }
using std::max;
using std::min;
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// --- float intrinsics ---------------------------------------------------------------
// The fast-math intrinsics compute the correctly rounded result here; on a GPU
// they are approximate (a few ulp), so tests compare them with a tolerance.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }

// --- memory fences and atomics ---------------------------------------------------------
// Blocks may run on different CPU threads at once: global atomics are real ones.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

template <typename T>
inline T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    for (;;) {
      T desired = old + v;
      if (__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
    }
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  }
}
template <typename T>
inline T atomicSub(T* p, T v) {
  return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED);
}
template <typename T>
inline T atomicExch(T* p, T v) {
  T old;
  __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
  return old;
}
template <typename T>
inline T atomicCAS(T* p, T expected, T desired) {
  __atomic_compare_exchange(p, &expected, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}
template <typename T>
inline T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange(p, &old, &v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old > v && !__atomic_compare_exchange(p, &old, &v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
inline T atomicOr(T* p, T v) {
  return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
}
template <typename T>
inline T atomicAnd(T* p, T v) {
  return __atomic_fetch_and(p, v, __ATOMIC_RELAXED);
}

// --- warp collectives -------------------------------------------------------------------
namespace memwall_emu {

enum class ShflMode { Idx, Up, Down, Bfly };

template <typename T>
struct ShflIn {
  T value;
  unsigned src;  // the lane to read, already resolved; == own lane when out of range
};

template <typename T>
const char* shfl_result(const WarpInputs& all, unsigned lane, void* out) {
  const auto* me = static_cast<const ShflIn<T>*>(all.inputs[lane]);
  const auto* src = static_cast<const ShflIn<T>*>(all.inputs[me->src]);
  if (!src) {
    static thread_local char msg[160];
    snprintf(msg, sizeof msg, "lane %u reads lane %u, which is not in the mask 0x%08x (undefined on a GPU)", lane,
             me->src, all.mask);
    return msg;
  }
  *static_cast<T*>(out) = src->value;
  return nullptr;
}

// The source lane as PTX shfl.sync computes it (c = segment mask and clamp).
inline unsigned shfl_source(ShflMode mode, unsigned lane, unsigned b, int width) {
  if (width <= 0 || width > 32 || (width & (width - 1))) fail("shuffle width %d is not a power of two in 1..32", width);
  const unsigned segmask = 32u - static_cast<unsigned>(width);
  const unsigned cval = mode == ShflMode::Up ? 0u : 31u;
  const unsigned max_lane = (lane & segmask) | (cval & ~segmask);
  const unsigned min_lane = lane & segmask;
  int j;
  bool ok;
  switch (mode) {
    case ShflMode::Up:
      j = static_cast<int>(lane) - static_cast<int>(b);
      ok = j >= static_cast<int>(max_lane);
      break;
    case ShflMode::Down:
      j = static_cast<int>(lane + b);
      ok = j <= static_cast<int>(max_lane);
      break;
    case ShflMode::Bfly:
      j = static_cast<int>(lane ^ b);
      ok = j <= static_cast<int>(max_lane);
      break;
    default:
      j = static_cast<int>(min_lane | (b & 31u & ~segmask));
      ok = j <= static_cast<int>(max_lane);
      break;
  }
  return ok ? static_cast<unsigned>(j) : lane;
}

template <typename T>
__attribute__((always_inline)) inline T shfl(unsigned mask, T var, ShflMode mode, unsigned b, int width, const char* what) {
  ShflIn<T> in{var, shfl_source(mode, lane_id(), b, width)};
  T out;
  warp_collective(mask, what, &in, &out, &shfl_result<T>);
  return out;
}

const char* ballot_result(const WarpInputs& all, unsigned lane, void* out);
const char* syncwarp_result(const WarpInputs& all, unsigned lane, void* out);

}  // namespace memwall_emu

template <typename T>
__forceinline__ T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return memwall_emu::shfl(mask, var, memwall_emu::ShflMode::Idx, static_cast<unsigned>(src_lane), width,
                           "__shfl_sync");
}
template <typename T>
__forceinline__ T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return memwall_emu::shfl(mask, var, memwall_emu::ShflMode::Up, delta, width, "__shfl_up_sync");
}
template <typename T>
__forceinline__ T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return memwall_emu::shfl(mask, var, memwall_emu::ShflMode::Down, delta, width, "__shfl_down_sync");
}
template <typename T>
__forceinline__ T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return memwall_emu::shfl(mask, var, memwall_emu::ShflMode::Bfly, static_cast<unsigned>(lane_mask), width,
                           "__shfl_xor_sync");
}
__forceinline__ unsigned __ballot_sync(unsigned mask, int pred) {
  int in = pred != 0;
  unsigned out;
  memwall_emu::warp_collective(mask, "__ballot_sync", &in, &out, &memwall_emu::ballot_result);
  return out;
}
__forceinline__ int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
__forceinline__ int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
__forceinline__ void __syncwarp(unsigned mask = 0xffffffffu) {
  int in = 0;
  int out;
  memwall_emu::warp_collective(mask, "__syncwarp", &in, &out, &memwall_emu::syncwarp_result);
}
inline unsigned __activemask() { return memwall_emu::active_mask(); }

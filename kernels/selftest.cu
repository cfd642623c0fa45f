// Self-test kernels: each exercises one primitive of the CUDA dialect in a
// way whose result is fully determined, so the emulator and a real GPU can be
// compared bit for bit (tests/emu_selftest.rs, tests/gpu_conformance.rs).
// The `bad_*` kernels break a rule on purpose; only the emulator runs them,
// to check that it reports the fault.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "memwall/common.cuh"
#include "memwall/prim/cp_async.cuh"
#include "memwall/prim/ldmatrix.cuh"
#include "memwall/prim/mma.cuh"

// out[t] = shuffle of in[t] across the warp. mode: 0 idx, 1 up, 2 down, 3 xor.
MEMWALL_KERNEL void memwall_selftest_shfl(const int* in, int* out, int mode, unsigned b, int width) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = in[t];
  int r;
  switch (mode) {
    case 0: r = __shfl_sync(0xffffffffu, v, static_cast<int>(b), width); break;
    case 1: r = __shfl_up_sync(0xffffffffu, v, b, width); break;
    case 2: r = __shfl_down_sync(0xffffffffu, v, b, width); break;
    default: r = __shfl_xor_sync(0xffffffffu, v, static_cast<int>(b), width); break;
  }
  out[t] = r;
}

// Per warp w: out[4w..4w+3] = ballot, any, all over the warp, and a ballot
// taken by lanes 0..15 alone with mask 0x0000ffff.
MEMWALL_KERNEL void memwall_selftest_vote(const int* pred, unsigned* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned lane = threadIdx.x % 32, warp = t / 32;
  const int p = pred[t];
  const unsigned ballot = __ballot_sync(0xffffffffu, p);
  const int any = __any_sync(0xffffffffu, p);
  const int all = __all_sync(0xffffffffu, p);
  unsigned half = 0;
  if (lane < 16) half = __ballot_sync(0x0000ffffu, p);
  __syncwarp();
  if (lane == 0) {
    out[4 * warp + 0] = ballot;
    out[4 * warp + 1] = static_cast<unsigned>(any);
    out[4 * warp + 2] = static_cast<unsigned>(all);
    out[4 * warp + 3] = half;
  }
}

// out[block] = sum of the block's 256 inputs by a shared-memory tree with
// barriers (a fixed order: the result is bit-exact on any executor).
MEMWALL_KERNEL void __launch_bounds__(256) memwall_selftest_block_sum(const float* in, float* out) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * 256 + t];
  __syncthreads();
  for (unsigned stride = 128; stride > 0; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// One warp: D = A * B + C with mma.m16n8k16. A is 16x16 row-major, B is
// given column-major (b[n * 16 + k]), C and D are 16x8 row-major. Elements are
// raw f16 or bf16 bits (bf16 != 0).
MEMWALL_KERNEL void memwall_selftest_mma(const uint16_t* a, const uint16_t* b, const float* c, float* d, int bf16) {
  const unsigned lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  uint32_t af[4], bf[2];
  float cf[4], df[4];
  for (unsigned r = 0; r < 4; ++r) {
    uint32_t pair = 0;
    for (unsigned h = 0; h < 2; ++h) {
      const unsigned i = 2 * r + h;
      const unsigned row = g + 8 * ((i / 2) % 2), col = 2 * t + (i % 2) + 8 * (i / 4);
      pair |= static_cast<uint32_t>(a[row * 16 + col]) << (16 * h);
    }
    af[r] = pair;
  }
  for (unsigned r = 0; r < 2; ++r) {
    uint32_t pair = 0;
    for (unsigned h = 0; h < 2; ++h) {
      const unsigned i = 2 * r + h;
      const unsigned k = 2 * t + (i % 2) + 8 * (i / 2);
      pair |= static_cast<uint32_t>(b[g * 16 + k]) << (16 * h);
    }
    bf[r] = pair;
  }
  for (unsigned i = 0; i < 4; ++i) cf[i] = c[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)];
  if (bf16) {
    memwall::mma_m16n8k16_bf16(df, af, bf, cf);
  } else {
    memwall::mma_m16n8k16_f16(df, af, bf, cf);
  }
  for (unsigned i = 0; i < 4; ++i) d[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)] = df[i];
}

// One warp: four 8x8 matrices of 16-bit values (src, 256 elements, matrix
// after matrix, row-major) go through shared memory and ldmatrix.x{count}
// (.trans when trans != 0). out[4 * lane + j] = register j of the lane (0
// for j >= count).
MEMWALL_KERNEL void memwall_selftest_ldmatrix(const uint16_t* src, uint32_t* out, int count, int trans) {
  __shared__ __align__(16) uint16_t tile[256];
  const unsigned lane = threadIdx.x % 32;
  for (unsigned i = lane; i < 256; i += 32) tile[i] = src[i];
  __syncthreads();
  const void* row = &tile[(lane / 8) * 64 + (lane % 8) * 8];
  uint32_t r[4] = {0, 0, 0, 0};
  if (count == 1) {
    if (trans) memwall::ldmatrix_x1_trans(r, row); else memwall::ldmatrix_x1(r, row);
  } else if (count == 2) {
    if (trans) memwall::ldmatrix_x2_trans(r, row); else memwall::ldmatrix_x2(r, row);
  } else {
    if (trans) memwall::ldmatrix_x4_trans(r, row); else memwall::ldmatrix_x4(r, row);
  }
  for (unsigned j = 0; j < 4; ++j) out[4 * lane + j] = r[j];
}

// 32 threads, 1536 bytes of dynamic shared memory. Two committed groups of
// 16-byte copies and one zero-filled copy; each thread reads its own copies
// back after the wait that completes them: out[t], out[32 + t] = src[t],
// src[32 + t], out[64 + t] = zeros.
MEMWALL_KERNEL void memwall_selftest_cp_async(const uint4* src, uint4* out) {
  MEMWALL_DYNAMIC_SMEM(uint4, stage);
  const unsigned t = threadIdx.x;
  memwall::cp_async_16(&stage[t], &src[t]);
  memwall::cp_async_commit();
  memwall::cp_async_16(&stage[32 + t], &src[32 + t]);
  memwall::cp_async_16_zfill(&stage[64 + t], &src[t], false);
  memwall::cp_async_commit();
  memwall::cp_async_wait<1>();
  out[t] = stage[t];
  memwall::cp_async_wait<0>();
  out[32 + t] = stage[32 + t];
  out[64 + t] = stage[64 + t];
}

// Thread 0 writes and reads back dynamic shared memory float `index`.
MEMWALL_KERNEL void memwall_selftest_smem_index(float* out, unsigned index) {
  MEMWALL_DYNAMIC_SMEM(float, smem);
  if (threadIdx.x == 0) {
    smem[index] = 1.5f;
    out[0] = smem[index];
  }
}

// Breaks a rule on purpose (emulator only). mode 0: half the block skips a
// barrier the other half waits at. 1: lanes disagree on a shuffle's mask.
// 2: a shuffle waits for lanes that have exited. 3: a shuffle's mask leaves
// out the calling lane. 4: reads shared memory before cp.async completes.
// 5: lane 0 waits in a shuffle for lanes waiting at a barrier (deadlock).
MEMWALL_KERNEL void memwall_selftest_bad(int* out, int mode) {
  __shared__ __align__(16) int staged[32 * 4];
  const unsigned lane = threadIdx.x % 32;
  int v = static_cast<int>(threadIdx.x);
  switch (mode) {
    case 0:
      if (threadIdx.x < 16) __syncthreads();
      break;
    case 1:
      v = __shfl_sync(lane < 16 ? 0x0000ffffu : 0xffffffffu, v, 0);
      break;
    case 2:
      if (lane >= 16) return;
      v = __shfl_sync(0xffffffffu, v, 0);
      break;
    case 3:
      v = __shfl_sync(0x1u, v, 0);
      break;
    case 5:
      if (lane == 0) {
        v = __shfl_sync(0xffffffffu, v, 0);
      } else {
        __syncthreads();
      }
      break;
    default:
      memwall::cp_async_16(&staged[4 * lane], out + 4 * lane);
      memwall::cp_async_commit();
      v = staged[4 * lane];  // not yet waited for: stale
      memwall::cp_async_wait<0>();
      break;
  }
  out[threadIdx.x] = v;
}

// Grid-wide atomics: every thread adds its input to hist[in % 16] (u32) and
// to sums[0] (f32), and raises maxima[0] (u32). Inputs are small integers,
// so the float sum is exact in any order.
MEMWALL_KERNEL void memwall_selftest_atomics(const unsigned* in, unsigned* hist, float* sums, unsigned* maxima,
                                             unsigned n) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t < n) {
    const unsigned v = in[t];
    atomicAdd(&hist[v % 16], 1u);
    atomicAdd(&sums[0], static_cast<float>(v));
    atomicMax(&maxima[0], v);
  }
}

// Conversions: for each f32 input, its f16 and bf16 (round to nearest even)
// and the values those convert back to.
MEMWALL_KERNEL void memwall_selftest_convert(const float* in, __half* h, __nv_bfloat16* b, float* back, unsigned n) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t < n) {
    h[t] = __float2half_rn(in[t]);
    b[t] = __float2bfloat16_rn(in[t]);
    back[2 * t] = __half2float(h[t]);
    back[2 * t + 1] = __bfloat162float(b[t]);
  }
}

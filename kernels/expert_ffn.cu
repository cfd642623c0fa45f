// One FFN expert's feed-forward over the rows dispatch gave it, for
// decode-sized batches: out[r] = W2 relu(W1 x[token(r)]), f32 throughout.
//
// Rows are the expert's slice [row0, row0 + rows) of the sorted order that
// memwall_moe_scatter writes: sorted[row] is the token (or -1 for a padding
// row, whose output is zeroed). The weights are one expert's W1 (ffn x hidden,
// row j for hidden unit j) and W2 (hidden x ffn, row j for output j).
//
//   up    one warp per hidden unit j: hid[r][j] = relu(W1[j] . x[t_r]) for
//         every row r, W1[j] read from DRAM once (then from L1/L2 for the
//         later rows), x rows shared by every warp through L2.
//   down  one warp per output j: out[row0 + r][j] = W2[j] . hid[r].
//
// Each dot product: lane i sums quads (16-byte loads when the rows are
// aligned and the length a multiple of 4; else elements) i, i + 32, ... in
// order, then a fixed xor-shuffle tree; results are deterministic run to run.
//
// Floors (decode: rows small): the weights, 2 * hidden * ffn * 4 bytes, read
// once per launch pair; FLOPs 4 * rows * hidden * ffn. Memory-bound for
// rows < ~100 on an H100 (see docs/perf-notes.md).

#include "memwall/common.cuh"

#define MEMWALL_FFN_WARPS 8

namespace {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Four floats loaded as one 16-byte access (ld.global.v4.f32).
struct alignas(16) F4 {
  float v[4];
};

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Lane `lane`'s share of a . b over `len` floats: 16-byte loads when both
// rows are 16-byte aligned and `len % 4 == 0` (lane i takes quads i, i + 32,
// ...), else 4-byte loads (elements i, i + 32, ...).
__device__ __forceinline__ float lane_dot(const float* a, const float* b, uint32_t len, uint32_t lane) {
  float acc = 0.0f;
  if ((len & 3u) == 0 && aligned16(a) && aligned16(b)) {
    const F4* a4 = reinterpret_cast<const F4*>(a);
    const F4* b4 = reinterpret_cast<const F4*>(b);
    for (uint32_t i = lane; i < len / 4; i += 32) {
      const F4 x = a4[i], y = b4[i];
      acc += x.v[0] * y.v[0] + x.v[1] * y.v[1] + x.v[2] * y.v[2] + x.v[3] * y.v[3];
    }
  } else {
    for (uint32_t i = lane; i < len; i += 32) acc += a[i] * b[i];
  }
  return acc;
}

// out[r * out_stride + j] = act(w[j] . in(r)) for the warp's j, where in(r)
// is `in + index(r) * in_stride` (index < 0: the row's output is 0).
template <bool RELU, typename Index>
__device__ __forceinline__ void rows_dot(const float* w, uint32_t j, uint32_t len, const float* in,
                                         uint64_t in_stride, uint32_t rows, Index index, float* out,
                                         uint64_t out_stride) {
  const uint32_t lane = threadIdx.x & 31u;
  const float* wj = w + static_cast<uint64_t>(j) * len;
  for (uint32_t r = 0; r < rows; r++) {
    const int64_t t = index(r);
    float acc = 0.0f;
    if (t >= 0) acc = lane_dot(wj, in + static_cast<uint64_t>(t) * in_stride, len, lane);
    acc = warp_sum(acc);
    if (lane == 0) {
      if (RELU) acc = acc > 0.0f ? acc : 0.0f;
      out[static_cast<uint64_t>(r) * out_stride + j] = t >= 0 ? acc : 0.0f;
    }
  }
}

}  // namespace

// hid: rows x ffn. Grid: ceil(ffn / 8) blocks of 256 threads.
MEMWALL_KERNEL void memwall_ffn_up_f32(const float* w1, const float* x, const int* sorted, float* hid,
                                       uint32_t hidden, uint32_t ffn, uint32_t row0, uint32_t rows) {
  const uint32_t j = blockIdx.x * MEMWALL_FFN_WARPS + (threadIdx.x >> 5);
  if (j >= ffn) return;
  const int* s = sorted + row0;
  rows_dot<true>(w1, j, hidden, x, hidden, rows, [s](uint32_t r) { return static_cast<int64_t>(s[r]); }, hid,
                 ffn);
}

// out: the expert_out rows, (row0 + rows) x hidden at least. Grid:
// ceil(hidden / 8) blocks of 256 threads.
MEMWALL_KERNEL void memwall_ffn_down_f32(const float* w2, const float* hid, const int* sorted, float* out,
                                         uint32_t hidden, uint32_t ffn, uint32_t row0, uint32_t rows) {
  const uint32_t j = blockIdx.x * MEMWALL_FFN_WARPS + (threadIdx.x >> 5);
  if (j >= hidden) return;
  const int* s = sorted + row0;
  // hid row r belongs to row r (padding rows were zeroed by up, and are
  // zeroed again here).
  rows_dot<false>(w2, j, ffn, hid, ffn, rows,
                  [s](uint32_t r) { return s[r] >= 0 ? static_cast<int64_t>(r) : static_cast<int64_t>(-1); },
                  out + static_cast<uint64_t>(row0) * hidden, hidden);
}

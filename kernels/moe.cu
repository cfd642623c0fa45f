// MoE++ routing (Jin et al., ICLR 2025): gating with gating residuals and
// zero-computation experts, dispatch for the FFN experts, and combine.
//
// Expert indices, as in the reference code: [0, n_ffn) FFN experts, then
// n_const constant experts, n_copy copy experts, n_zero zero experts.
//
// The pipeline, all stream-ordered with no host synchronization:
//   route   one warp per token: G = logits (+ W_g G_prev), optional division
//           by the row's std, softmax over all N, top-k (ties to the lower
//           index, NaN as -inf), weights (paper: p; reference code: zero
//           experts' gates set to 0 then renormalized), the constant
//           experts' [a1, a2] = softmax(W_c x).
//   count   one block per chunk of tokens: FFN assignments, selections and
//           summed probabilities per expert in the chunk.
//   scan    one block: per-chunk offsets, padded per-expert offsets,
//           f_i, P_i, L_b, padding slots of the sorted order set to -1.
//   scatter one warp per chunk: token order grouped by expert, in token
//           order within an expert (deterministic), capacity applied.
//   combine one block per token: out = sum over slots of
//           w * {expert_out row | 0 | x | a1 x + a2 v}, f32 accumulation.
// Every sum runs in a fixed order, so results are deterministic.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "memwall/common.cuh"

#define MEMWALL_MOE_MAX_EXPERTS 256
#define MEMWALL_MOE_MAX_K 8
#define MEMWALL_MOE_PER_LANE (MEMWALL_MOE_MAX_EXPERTS / 32)

// The routing configuration, passed by value (128 bytes).
struct MoeParams {
  uint32_t tokens;      // T
  uint32_t experts;     // N
  uint32_t n_ffn;       // FFN experts: [0, n_ffn)
  uint32_t n_const;     // constant experts: [n_ffn, n_ffn + n_const)
  uint32_t n_copy;      // copy experts: next n_copy
  uint32_t n_zero;      // zero experts: the last n_zero
  uint32_t top_k;       // k <= 8
  uint32_t renormalize; // 1: reference code (zero gates 0, divide by sum); 0: paper
  uint32_t has_prev;    // 1: add W_g * G_prev
  uint32_t norm_std;    // 1: divide the logits by (unbiased std / target_std)
  float target_std;
  float tau;            // load-balance weight of zero-computation experts
  uint32_t hidden;      // D
  uint32_t chunk;       // tokens per count/scatter chunk
  uint32_t chunks;      // ceil(T / chunk)
  uint32_t pad_to;      // expert row counts are padded to a multiple of this
  uint32_t capacity;    // per FFN expert; 0xffffffff = unlimited
  uint32_t reserved[15];
};

namespace {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Is (v, i) a better top-k candidate than (w, j)? Larger value, then lower index.
__device__ __forceinline__ bool better(float v, int i, float w, int j) {
  return v > w || (v == w && static_cast<unsigned>(i) < static_cast<unsigned>(j));
}

}  // namespace

// One warp per token; block = 4 warps.
template <typename Logit, typename Act>
__device__ __forceinline__ void moe_route(const MoeParams& p, const Logit* __restrict__ logits,
                                          const float* __restrict__ prev, const float* __restrict__ wg,
                                          const Act* __restrict__ x, const float* __restrict__ wc,
                                          float* __restrict__ next_logits, float* __restrict__ probs,
                                          int* __restrict__ topk_ids, float* __restrict__ topk_w,
                                          float* __restrict__ alpha) {
  const unsigned lane = threadIdx.x % 32;
  const uint64_t t = (static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (t >= p.tokens) return;  // whole warps exit together
  const unsigned n = p.experts;
  float g[MEMWALL_MOE_PER_LANE];
#pragma unroll
  for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j) {
    const unsigned e = lane + 32 * j;
    float v = -INFINITY;
    if (e < n) {
      v = to_f32(logits[t * n + e]);
      if (p.has_prev) {
        // W_g row e times the previous layer's raw logits, k ascending.
        const float* row = wg + static_cast<uint64_t>(e) * n;
        const float* gp = prev + t * n;
        float acc = 0.0f;
        for (unsigned k = 0; k < n; ++k) acc = fmaf(row[k], gp[k], acc);
        v += acc;
      }
      next_logits[t * n + e] = v;
      if (v != v) v = -INFINITY;  // NaN ranks last and gets no probability
    }
    g[j] = v;
  }

  if (p.norm_std) {
    // Unbiased std over the N experts (-inf entries make it inf or NaN; then
    // the logits are left as they are).
    float s = 0.0f;
#pragma unroll
    for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j)
      if (lane + 32 * j < n) s += g[j];
    const float mean = warp_sum(s) / static_cast<float>(n);
    float q = 0.0f;
#pragma unroll
    for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j)
      if (lane + 32 * j < n) q += (g[j] - mean) * (g[j] - mean);
    const float var = warp_sum(q) / static_cast<float>(n > 1 ? n - 1 : 1);
    const float sd = sqrtf(var);
    if (sd > 0.0f && sd < INFINITY) {
      const float scale = p.target_std / sd;
#pragma unroll
      for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j) g[j] *= scale;
    }
  }

  // Softmax over all N.
  float m = -INFINITY;
#pragma unroll
  for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j) m = fmaxf(m, g[j]);
  m = warp_max(m);
  float s = 0.0f;
#pragma unroll
  for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j) {
    g[j] = (m == -INFINITY || g[j] == -INFINITY) ? 0.0f : expf(g[j] - m);
    s += g[j];
  }
  s = warp_sum(s);
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
#pragma unroll
  for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j) {
    g[j] *= inv;
    if (lane + 32 * j < n) probs[t * n + lane + 32 * j] = g[j];
  }

  // Top-k by warp argmax, k times; taken entries drop to -1.
  int ids[MEMWALL_MOE_MAX_K];
  float w[MEMWALL_MOE_MAX_K];
  float wsum = 0.0f;
  for (unsigned r = 0; r < p.top_k; ++r) {
    float bv = -2.0f;
    int bi = 0x7fffffff;
#pragma unroll
    for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j) {
      const int e = static_cast<int>(lane + 32 * j);
      if (e < static_cast<int>(n) && better(g[j], e, bv, bi)) {
        bv = g[j];
        bi = e;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (better(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
#pragma unroll
    for (unsigned j = 0; j < MEMWALL_MOE_PER_LANE; ++j)
      if (static_cast<int>(lane + 32 * j) == bi) g[j] = -1.0f;
    ids[r] = bi;
    const bool zero_expert = static_cast<unsigned>(bi) >= n - p.n_zero;
    w[r] = (p.renormalize && zero_expert) ? 0.0f : bv;
    wsum += w[r];
  }
  if (p.renormalize) {
    const float winv = wsum > 0.0f ? 1.0f / wsum : 0.0f;
    for (unsigned r = 0; r < p.top_k; ++r) w[r] *= winv;
  }

  // [a1, a2] = softmax(W_c x) for slots on constant experts.
  for (unsigned r = 0; r < p.top_k; ++r) {
    const unsigned e = static_cast<unsigned>(ids[r]);
    float a1 = 0.0f, a2 = 0.0f;
    if (e >= p.n_ffn && e < p.n_ffn + p.n_const) {
      const float* w0 = wc + static_cast<uint64_t>(e - p.n_ffn) * 2 * p.hidden;
      const float* w1 = w0 + p.hidden;
      const Act* xr = x + t * p.hidden;
      float d0 = 0.0f, d1 = 0.0f;
      for (unsigned d = lane; d < p.hidden; d += 32) {
        const float xv = to_f32(xr[d]);
        d0 = fmaf(w0[d], xv, d0);
        d1 = fmaf(w1[d], xv, d1);
      }
      d0 = warp_sum(d0);
      d1 = warp_sum(d1);
      const float mx = fmaxf(d0, d1);
      const float e0 = expf(d0 - mx), e1 = expf(d1 - mx);
      a1 = e0 / (e0 + e1);
      a2 = e1 / (e0 + e1);
    }
    if (lane == 0) {
      topk_ids[t * p.top_k + r] = ids[r];
      topk_w[t * p.top_k + r] = w[r];
      alpha[(t * p.top_k + r) * 2] = a1;
      alpha[(t * p.top_k + r) * 2 + 1] = a2;
    }
  }
}

#define MEMWALL_MOE_ROUTE_ENTRY(NAME, LOGIT, ACT)                                                               \
  MEMWALL_KERNEL void NAME(MoeParams p, const LOGIT* logits, const float* prev, const float* wg, const ACT* x,  \
                           const float* wc, float* next_logits, float* probs, int* topk_ids, float* topk_w,     \
                           float* alpha) {                                                                      \
    moe_route<LOGIT, ACT>(p, logits, prev, wg, x, wc, next_logits, probs, topk_ids, topk_w, alpha);            \
  }

MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_f32_f32, float, float)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_f32_f16, float, __half)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_f32_bf16, float, __nv_bfloat16)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_f16_f32, __half, float)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_f16_f16, __half, __half)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_f16_bf16, __half, __nv_bfloat16)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_bf16_f32, __nv_bfloat16, float)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_bf16_f16, __nv_bfloat16, __half)
MEMWALL_MOE_ROUTE_ENTRY(memwall_moe_route_bf16_bf16, __nv_bfloat16, __nv_bfloat16)

// One block of 256 threads per chunk. Per chunk c and expert e:
// ffn_counts[c][e] FFN assignments, selected[c][e] selections (any type),
// prob_sums[c][e] = sum over the chunk's tokens of probs[t][e] (in token order).
MEMWALL_KERNEL void __launch_bounds__(256)
    memwall_moe_count(MoeParams p, const int* topk_ids, const float* probs, unsigned* ffn_counts,
                      unsigned* selected, float* prob_sums) {
  __shared__ unsigned sel[MEMWALL_MOE_MAX_EXPERTS];
  const unsigned c = blockIdx.x;
  for (unsigned e = threadIdx.x; e < p.experts; e += blockDim.x) sel[e] = 0;
  __syncthreads();
  const uint64_t t0 = static_cast<uint64_t>(c) * p.chunk;
  const uint64_t t1 = min(t0 + p.chunk, static_cast<uint64_t>(p.tokens));
  for (uint64_t a = t0 * p.top_k + threadIdx.x; a < t1 * p.top_k; a += blockDim.x) {
    const int e = topk_ids[a];
    if (e >= 0 && static_cast<unsigned>(e) < p.experts) atomicAdd(&sel[e], 1u);
  }
  __syncthreads();
  for (unsigned e = threadIdx.x; e < p.experts; e += blockDim.x) {
    float s = 0.0f;
    for (uint64_t t = t0; t < t1; ++t) s += probs[t * p.experts + e];
    prob_sums[static_cast<uint64_t>(c) * p.experts + e] = s;
    selected[static_cast<uint64_t>(c) * p.experts + e] = sel[e];
    if (e < p.n_ffn) ffn_counts[static_cast<uint64_t>(c) * p.n_ffn + e] = sel[e];
  }
}

// One block of 256 threads. Writes chunk_offsets[c][e] (rank of the chunk's
// first assignment to FFN expert e), expert_offsets[0..n_ffn] (padded row
// offsets; [n_ffn] = total padded rows), expert_counts[e] (rows kept after
// capacity), stats = {f_0..f_{N-1}, P_0..P_{N-1}, L_b}, and -1 into the
// padding rows of sorted_tokens.
MEMWALL_KERNEL void __launch_bounds__(256)
    memwall_moe_scan(MoeParams p, const unsigned* ffn_counts, const unsigned* selected, const float* prob_sums,
                     unsigned* chunk_offsets, unsigned* expert_offsets, unsigned* expert_counts, float* stats,
                     int* sorted_tokens) {
  __shared__ unsigned kept[MEMWALL_MOE_MAX_EXPERTS];
  __shared__ unsigned offsets[MEMWALL_MOE_MAX_EXPERTS + 1];
  const unsigned e = threadIdx.x;
  const float inv_t = p.tokens ? 1.0f / static_cast<float>(p.tokens) : 0.0f;
  if (e < p.experts) {
    unsigned run = 0, sel = 0;
    float ps = 0.0f;
    for (unsigned c = 0; c < p.chunks; ++c) {
      if (e < p.n_ffn) {
        chunk_offsets[static_cast<uint64_t>(c) * p.n_ffn + e] = run;
        run += ffn_counts[static_cast<uint64_t>(c) * p.n_ffn + e];
      }
      sel += selected[static_cast<uint64_t>(c) * p.experts + e];
      ps += prob_sums[static_cast<uint64_t>(c) * p.experts + e];
    }
    if (e < p.n_ffn) kept[e] = min(run, p.capacity);
    stats[e] = static_cast<float>(sel) * inv_t;              // f_e
    stats[p.experts + e] = ps * inv_t;                      // P_e
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned off = 0;
    float lb = 0.0f;
    for (unsigned i = 0; i < p.n_ffn; ++i) {
      offsets[i] = off;
      off += (kept[i] + p.pad_to - 1) / p.pad_to * p.pad_to;
    }
    offsets[p.n_ffn] = off;
    for (unsigned i = 0; i < p.experts; ++i) {
      const float eta = i < p.n_ffn ? 1.0f : p.tau;
      lb += eta * stats[i] * stats[p.experts + i];
    }
    stats[2 * p.experts] = lb;
  }
  __syncthreads();
  // n_ffn + 1 offsets: with 256 FFN experts the last lies past the block.
  for (unsigned i = e; i <= p.n_ffn; i += blockDim.x) expert_offsets[i] = offsets[i];
  if (e < p.n_ffn) {
    expert_counts[e] = kept[e];
    for (unsigned r = offsets[e] + kept[e]; r < offsets[e + 1]; ++r) sorted_tokens[r] = -1;
  }
}

// One warp per chunk: walks the chunk's assignments in order, 32 at a time,
// ranking each FFN assignment among earlier ones to the same expert.
// sorted_tokens[row] = token, slot_rows[t * k + s] = row (or -1: not an FFN
// expert, or past the expert's capacity).
MEMWALL_KERNEL void memwall_moe_scatter(MoeParams p, const int* topk_ids, const unsigned* chunk_offsets,
                                        const unsigned* expert_offsets, int* sorted_tokens, int* slot_rows) {
  __shared__ unsigned running[MEMWALL_MOE_MAX_EXPERTS];
  const unsigned lane = threadIdx.x;
  const unsigned c = blockIdx.x;
  for (unsigned e = lane; e < p.n_ffn; e += 32) running[e] = chunk_offsets[static_cast<uint64_t>(c) * p.n_ffn + e];
  __syncwarp();
  const uint64_t a0 = static_cast<uint64_t>(c) * p.chunk * p.top_k;
  const uint64_t a1 = min(a0 + static_cast<uint64_t>(p.chunk) * p.top_k, static_cast<uint64_t>(p.tokens) * p.top_k);
  for (uint64_t base = a0; base < a1; base += 32) {
    const uint64_t a = base + lane;
    const int e = a < a1 ? topk_ids[a] : -1;
    const bool ffn = e >= 0 && static_cast<unsigned>(e) < p.n_ffn;
    unsigned rank = 0, same = 0;
    for (unsigned j = 0; j < 32; ++j) {
      const int ej = __shfl_sync(0xffffffffu, e, j);
      if (ffn && ej == e) {
        same += 1;
        if (j < lane) rank += 1;
      }
    }
    int row = -1;
    if (ffn) {
      const unsigned pos = running[e] + rank;
      if (pos < p.capacity) {
        row = static_cast<int>(expert_offsets[e] + pos);
        sorted_tokens[row] = static_cast<int>(a / p.top_k);
      }
    }
    __syncwarp();
    if (ffn && rank == 0) running[e] += same;
    __syncwarp();
    if (a < a1) slot_rows[a] = row;
  }
}

// One block per token, threads over D.
template <typename Act>
__device__ __forceinline__ void moe_combine(const MoeParams& p, const Act* __restrict__ x,
                                            const Act* __restrict__ expert_out, const float* __restrict__ v,
                                            const int* __restrict__ topk_ids, const float* __restrict__ topk_w,
                                            const float* __restrict__ alpha, const int* __restrict__ slot_rows,
                                            Act* __restrict__ out) {
  const uint64_t t = blockIdx.x;
  const uint64_t d_model = p.hidden;
  for (uint64_t d = threadIdx.x; d < d_model; d += blockDim.x) {
    const float xv = to_f32(x[t * d_model + d]);
    float acc = 0.0f;
    for (unsigned s = 0; s < p.top_k; ++s) {
      const uint64_t a = t * p.top_k + s;
      const unsigned e = static_cast<unsigned>(topk_ids[a]);
      const float w = topk_w[a];
      if (e < p.n_ffn) {
        const int row = slot_rows[a];
        if (row >= 0) acc = fmaf(w, to_f32(expert_out[static_cast<uint64_t>(row) * d_model + d]), acc);
      } else if (e < p.n_ffn + p.n_const) {
        const float c = alpha[2 * a] * xv + alpha[2 * a + 1] * v[static_cast<uint64_t>(e - p.n_ffn) * d_model + d];
        acc = fmaf(w, c, acc);
      } else if (e < p.n_ffn + p.n_const + p.n_copy) {
        acc = fmaf(w, xv, acc);
      }
    }
    out[t * d_model + d] = from_f32<Act>(acc);
  }
}

#define MEMWALL_MOE_COMBINE_ENTRY(NAME, ACT)                                                                   \
  MEMWALL_KERNEL void NAME(MoeParams p, const ACT* x, const ACT* expert_out, const float* v, const int* topk_ids, \
                           const float* topk_w, const float* alpha, const int* slot_rows, ACT* out) {            \
    moe_combine<ACT>(p, x, expert_out, v, topk_ids, topk_w, alpha, slot_rows, out);                             \
  }

MEMWALL_MOE_COMBINE_ENTRY(memwall_moe_combine_f32, float)
MEMWALL_MOE_COMBINE_ENTRY(memwall_moe_combine_f16, __half)
MEMWALL_MOE_COMBINE_ENTRY(memwall_moe_combine_bf16, __nv_bfloat16)

// Decode attention over a paged KV cache, with split-KV and a log-sum-exp
// merge (FlashDecoding), for any page size.
//
// Cache layout: k_cache and v_cache are [num_pages, page_size, kv_heads,
// head_dim]; sequence b's key j lives in page block_tables[b][j / page_size]
// at slot j % page_size. One query token per sequence: q is [batch, heads,
// head_dim].
//
// memwall_attn_decode_split: grid (kv_heads * head_chunks, batch, splits),
// 128 threads. A block handles up to 8 query heads sharing one kv head
// (GQA/MQA: K and V are read once for all of them) over one split of the
// sequence's keys. A group of head_dim / 8 threads handles one key (16-byte
// loads), so a block works on 8 (hd 128) or 16 (hd 64) keys at a time; each
// thread keeps an online-softmax state for its 8 dimensions of every head;
// the groups' states merge through shared memory. Writes the split's
// normalized partial output (f32) and its log-sum-exp.
//
// memwall_attn_decode_merge: grid (batch * heads), head_dim threads: merges
// the splits by their log-sum-exp into the output and the row's LSE.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "memwall/common.cuh"

#define MEMWALL_DECODE_MAX_GROUP 8
#define MEMWALL_DECODE_THREADS 128

struct DecodeParams {
  uint32_t batch, heads, kv_heads, head_dim;
  uint32_t page_size, num_pages, max_pages, splits;
  float scale_log2;  // softmax scale * log2(e)
  uint32_t reserved[7];
};

namespace {

__device__ __forceinline__ void load8(const __half* p, float out[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __half* h = reinterpret_cast<const __half*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = __half2float(h[i]);
}

__device__ __forceinline__ void load8(const __nv_bfloat16* p, float out[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = __bfloat162float(h[i]);
}

__device__ __forceinline__ void store_out(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_out(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

}  // namespace

template <typename T, int HeadDim>
__device__ __forceinline__ void decode_split(const DecodeParams& p, const T* __restrict__ q,
                                             const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                                             const int* __restrict__ block_tables, const int* __restrict__ seq_lens,
                                             float* __restrict__ part_o, float* __restrict__ part_lse) {
  constexpr int kGroupThreads = HeadDim / 8;                           // threads per key
  constexpr int kGroups = MEMWALL_DECODE_THREADS / kGroupThreads;      // keys in flight
  constexpr int kG = MEMWALL_DECODE_MAX_GROUP;
  __shared__ float sq[kG][HeadDim];
  __shared__ float s_m[kGroups][kG], s_l[kGroups][kG];
  __shared__ float s_acc[kGroups][kG][HeadDim];

  const int group_size = p.heads / p.kv_heads;
  const int chunks = (group_size + kG - 1) / kG;
  const int kvh = blockIdx.x / chunks;
  const int h0 = kvh * group_size + (blockIdx.x % chunks) * kG;
  const int nh = min(kG, kvh * group_size + group_size - h0);  // heads in this block
  const int b = blockIdx.y, split = blockIdx.z;
  const int len = seq_lens[b];
  const int per = (len + static_cast<int>(p.splits) - 1) / static_cast<int>(p.splits);
  const int k_begin = min(len, split * per), k_end = min(len, k_begin + per);

  for (int i = threadIdx.x; i < kG * HeadDim; i += blockDim.x) {
    const int g = i / HeadDim, d = i % HeadDim;
    sq[g][d] = g < nh ? static_cast<float>(q[(static_cast<int64_t>(b) * p.heads + h0 + g) * HeadDim + d]) : 0.0f;
  }
  __syncthreads();

  const int grp = threadIdx.x / kGroupThreads, sub = threadIdx.x % kGroupThreads;
  const int d0 = sub * 8;
  float m[kG], l[kG], acc[kG][8];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
  }
  const int64_t row = static_cast<int64_t>(p.kv_heads) * HeadDim;  // elements per cache slot
  for (int j0 = k_begin; j0 < k_end; j0 += kGroups) {
    const int j = j0 + grp;
    // Every lane of a group takes part in the shuffles below, valid or not.
    const bool valid = j < k_end;
    float kv[8], vv[8];
    if (valid) {
      const int page = block_tables[static_cast<int64_t>(b) * p.max_pages + j / p.page_size];
      const int64_t off = (static_cast<int64_t>(page) * p.page_size + j % p.page_size) * row + kvh * HeadDim + d0;
      load8(k_cache + off, kv);
      load8(v_cache + off, vv);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) kv[i] = vv[i] = 0.0f;
    }
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      if (g >= nh) break;
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) s = fmaf(sq[g][d0 + i], kv[i], s);
#pragma unroll
      for (int o = kGroupThreads / 2; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (valid) {
        const float x = s * p.scale_log2;
        const float m_new = fmaxf(m[g], x);
        const float scale = exp2f(m[g] - m_new);  // m[g] = -inf: exp2(-inf) = 0
        const float e = exp2f(x - m_new);
        l[g] = l[g] * scale + e;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] = fmaf(acc[g][i], scale, e * vv[i]);
        m[g] = m_new;
      }
    }
  }

  // Merge the groups' states.
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    if (sub == 0) {
      s_m[grp][g] = m[g];
      s_l[grp][g] = l[g];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) s_acc[grp][g][d0 + i] = acc[g][i];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nh * HeadDim; i += blockDim.x) {
    const int g = i / HeadDim, d = i % HeadDim;
    float mm = -INFINITY;
    for (int r = 0; r < kGroups; ++r) mm = fmaxf(mm, s_m[r][g]);
    float ll = 0.0f, aa = 0.0f;
    if (mm != -INFINITY) {
      for (int r = 0; r < kGroups; ++r) {
        const float w = exp2f(s_m[r][g] - mm);
        ll += s_l[r][g] * w;
        aa += s_acc[r][g][d] * w;
      }
    }
    const int64_t bh = static_cast<int64_t>(b) * p.heads + h0 + g;
    const int64_t slot = static_cast<int64_t>(split) * p.batch * p.heads + bh;
    part_o[slot * HeadDim + d] = ll > 0.0f ? aa / ll : 0.0f;
    if (d == 0) part_lse[slot] = ll > 0.0f ? (mm + log2f(ll)) * 0.6931471805599453f : -INFINITY;
  }
}

template <typename T>
__device__ __forceinline__ void decode_merge(const DecodeParams& p, const float* __restrict__ part_o,
                                             const float* __restrict__ part_lse, T* __restrict__ out,
                                             float* __restrict__ lse) {
  const int64_t bh = blockIdx.x;
  const int64_t stride = static_cast<int64_t>(p.batch) * p.heads;
  float mx = -INFINITY;
  for (uint32_t s = 0; s < p.splits; ++s) mx = fmaxf(mx, part_lse[s * stride + bh]);
  float wsum = 0.0f;
  for (uint32_t s = 0; s < p.splits; ++s) {
    const float l = part_lse[s * stride + bh];
    wsum += l == -INFINITY ? 0.0f : expf(l - mx);
  }
  for (uint32_t d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (uint32_t s = 0; s < p.splits; ++s) {
      const float l = part_lse[s * stride + bh];
      if (l != -INFINITY) acc = fmaf(expf(l - mx) / wsum, part_o[(s * stride + bh) * p.head_dim + d], acc);
    }
    store_out(out + bh * p.head_dim + d, acc);
  }
  if (threadIdx.x == 0) lse[bh] = wsum > 0.0f ? mx + logf(wsum) : -INFINITY;
}

#define MEMWALL_DECODE_SPLIT_ENTRY(NAME, T, HD)                                                              \
  MEMWALL_KERNEL void __launch_bounds__(MEMWALL_DECODE_THREADS)                                             \
      NAME(DecodeParams p, const T* q, const T* k_cache, const T* v_cache, const int* block_tables,          \
           const int* seq_lens, float* part_o, float* part_lse) {                                            \
    decode_split<T, HD>(p, q, k_cache, v_cache, block_tables, seq_lens, part_o, part_lse);                   \
  }

MEMWALL_DECODE_SPLIT_ENTRY(memwall_attn_decode_split_f16_hd64, __half, 64)
MEMWALL_DECODE_SPLIT_ENTRY(memwall_attn_decode_split_bf16_hd64, __nv_bfloat16, 64)
MEMWALL_DECODE_SPLIT_ENTRY(memwall_attn_decode_split_f16_hd128, __half, 128)
MEMWALL_DECODE_SPLIT_ENTRY(memwall_attn_decode_split_bf16_hd128, __nv_bfloat16, 128)

#define MEMWALL_DECODE_MERGE_ENTRY(NAME, T)                                                              \
  MEMWALL_KERNEL void NAME(DecodeParams p, const float* part_o, const float* part_lse, T* out, float* lse) { \
    decode_merge<T>(p, part_o, part_lse, out, lse);                                                      \
  }

MEMWALL_DECODE_MERGE_ENTRY(memwall_attn_decode_merge_f16, __half)
MEMWALL_DECODE_MERGE_ENTRY(memwall_attn_decode_merge_bf16, __nv_bfloat16)

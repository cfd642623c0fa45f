// Fused attention forward, FlashAttention-2 style, for sm_80 and newer.
//
// One block of 4 warps computes 64 query rows of one (batch, head): each warp
// owns 16 rows. Q stays in registers as mma A fragments; K and V tiles of
// BLOCK_N keys stream through shared memory with cp.async double buffering;
// S = Q K^T and O += P V run on mma.sync m16n8k16 with f32 accumulation;
// softmax is online in the log2 domain with exp2 and the normalization by the
// row sum deferred to the end. Causal attention skips key blocks wholly above
// the diagonal (bottom-right aligned, as FlashAttention-2: query i sees keys
// j <= i + seqlen_k - seqlen_q) and masks the diagonal block. Shared-memory
// rows are XOR-swizzled in 16-byte chunks so ldmatrix reads are conflict-free.
//
// Layout: [batch, seq, heads, head_dim] with explicit element strides per
// tensor (head_dim contiguous), or variable-length batches through cumulative
// sequence offsets (cu_seqlens, batch + 1 entries) with rows packed across the
// batch. GQA/MQA: query head h reads kv head h / (heads / kv_heads). Returns
// the log-sum-exp (natural log) of each row: [batch, heads, seqlen_q], or
// [heads, total_q] for variable lengths.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "memwall/common.cuh"
#include "memwall/prim/cp_async.cuh"
#include "memwall/prim/ldmatrix.cuh"
#include "memwall/prim/mma.cuh"

// Everything but the pointers, by value (128 bytes).
struct AttnParams {
  int64_t q_batch_stride, q_row_stride, q_head_stride;  // elements
  int64_t k_batch_stride, k_row_stride, k_head_stride;
  int64_t v_batch_stride, v_row_stride, v_head_stride;
  int64_t o_batch_stride, o_row_stride, o_head_stride;
  uint32_t batch, heads, kv_heads;
  uint32_t seqlen_q, seqlen_k;  // fixed-length sizes (ignored with varlen)
  uint32_t causal, varlen;
  float scale_log2;  // softmax scale * log2(e)
};

namespace {

// Tile shapes of one head dimension (the launch plan must agree; see
// src/attention/prefill.rs, which records why each was chosen).
template <int HeadDim>
struct PrefillTraits;

// hd 64: 64 x 64 tiles. Q 8 KiB + 2 x (K 8 KiB + V 8 KiB) = 40 KiB of shared
// memory, under the 48 KiB every SM gives without opting in.
template <>
struct PrefillTraits<64> {
  static constexpr int kHeadDim = 64, kBlockM = 64, kBlockN = 64, kWarps = 4;
  static constexpr bool kQInRegs = true;
};

// hd 128: 64 x 32 tiles. Q 16 KiB + 2 x (K 8 KiB + V 8 KiB) = 48 KiB: BLOCK_N 64
// would need 80 KiB (opt-in, 2 blocks/SM on A100 instead of 4) and twice the
// S registers next to the 64 O accumulators per thread.
template <>
struct PrefillTraits<128> {
  static constexpr int kHeadDim = 128, kBlockM = 64, kBlockN = 32, kWarps = 4;
  static constexpr bool kQInRegs = true;
};

// hd 256: 64 x 32 tiles; Q 32 KiB + 2 x (K 16 KiB + V 16 KiB) = 96 KiB (the
// launch opts in). 128 O accumulators per thread leave no room for Q's 64
// fragment registers, so Q fragments are re-read from shared memory with
// ldmatrix at every use (as FlashAttention-2 does for this head dim).
template <>
struct PrefillTraits<256> {
  static constexpr int kHeadDim = 256, kBlockM = 64, kBlockN = 32, kWarps = 4;
  static constexpr bool kQInRegs = false;
};

// Offset, in elements, of (row, col) in a swizzled tile with `HeadDim`
// columns: 16-byte chunk c of row r is stored at chunk c ^ (r % 8).
template <int HeadDim>
__device__ __forceinline__ int swz(int row, int col) {
  return row * HeadDim + (((col >> 3) ^ (row & 7)) << 3) + (col & 7);
}

// Copies `rows` x HeadDim elements from global (row stride `stride`) into a
// swizzled shared tile, zero-filling rows at or past `valid`.
template <typename T, int HeadDim, int Rows, int Threads>
__device__ __forceinline__ void load_tile(T* smem, const T* gmem, int64_t stride, int valid) {
  constexpr int kChunks = HeadDim / 8;
  for (int c = threadIdx.x; c < Rows * kChunks; c += Threads) {
    const int r = c / kChunks, ch = c % kChunks;
    const bool ok = r < valid;
    const T* src = ok ? gmem + r * stride + ch * 8 : gmem;
    memwall::cp_async_16_zfill(smem + swz<HeadDim>(r, ch * 8), src, ok);
  }
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float a, float b);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  return static_cast<uint32_t>(__half_as_ushort(h.x)) | (static_cast<uint32_t>(__half_as_ushort(h.y)) << 16);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float a, float b) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return static_cast<uint32_t>(__bfloat16_as_ushort(h.x)) | (static_cast<uint32_t>(__bfloat16_as_ushort(h.y)) << 16);
}

template <typename T>
__device__ __forceinline__ void mma(float d[4], const uint32_t a[4], const uint32_t b[2]);
template <>
__device__ __forceinline__ void mma<__half>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  memwall::mma_m16n8k16_f16(d, a, b, d);
}
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  memwall::mma_m16n8k16_bf16(d, a, b, d);
}

template <typename T>
__device__ __forceinline__ void store2(T* p, float a, float b) {
  const uint32_t v = pack2<T>(a, b);
  *reinterpret_cast<uint32_t*>(p) = v;
}

}  // namespace

template <typename T, int HeadDim>
__device__ __forceinline__ void attention_prefill(const AttnParams& p, const T* __restrict__ q,
                                                  const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
                                                  float* __restrict__ lse, const int* __restrict__ cu_q,
                                                  const int* __restrict__ cu_k) {
  using Tr = PrefillTraits<HeadDim>;
  constexpr int kM = Tr::kBlockM, kN = Tr::kBlockN, kD = Tr::kHeadDim, kThreads = Tr::kWarps * 32;
  MEMWALL_DYNAMIC_SMEM(T, smem);
  T* sq = smem;
  T* sk = sq + kM * kD;        // 2 buffers of kN x kD
  T* sv = sk + 2 * kN * kD;    // 2 buffers of kN x kD

  const int m_block = blockIdx.x;
  const int bh = blockIdx.y;
  const int b = bh / p.heads, h = bh % p.heads;
  const int kvh = h / (p.heads / p.kv_heads);
  int64_t q_row0, k_row0;
  int seqlen_q, seqlen_k;
  if (p.varlen) {
    q_row0 = cu_q[b];
    k_row0 = cu_k[b];
    seqlen_q = cu_q[b + 1] - cu_q[b];
    seqlen_k = cu_k[b + 1] - cu_k[b];
  } else {
    q_row0 = 0;
    k_row0 = 0;
    seqlen_q = p.seqlen_q;
    seqlen_k = p.seqlen_k;
  }
  if (m_block * kM >= seqlen_q) return;  // the whole block: this sequence is shorter

  const int64_t qb = p.varlen ? 0 : b * p.q_batch_stride;
  const int64_t kb = p.varlen ? 0 : b * p.k_batch_stride;
  const int64_t vb = p.varlen ? 0 : b * p.v_batch_stride;
  const int64_t ob = p.varlen ? 0 : b * p.o_batch_stride;
  const T* qg = q + qb + (q_row0 + m_block * kM) * p.q_row_stride + h * p.q_head_stride;
  const T* kg = k + kb + k_row0 * p.k_row_stride + kvh * p.k_head_stride;
  const T* vg = v + vb + k_row0 * p.v_row_stride + kvh * p.v_head_stride;

  // Key blocks this query block needs: causal stops at the diagonal.
  const int diag = seqlen_k - seqlen_q;  // query i sees keys <= i + diag
  int n_end = seqlen_k;
  if (p.causal) n_end = min(seqlen_k, max(0, (m_block + 1) * kM + diag));
  const int n_blocks = (n_end + kN - 1) / kN;

  load_tile<T, kD, kM, kThreads>(sq, qg, p.q_row_stride, seqlen_q - m_block * kM);
  memwall::cp_async_commit();
  if (n_blocks > 0) {
    load_tile<T, kD, kN, kThreads>(sk, kg, p.k_row_stride, seqlen_k);
    load_tile<T, kD, kN, kThreads>(sv, vg, p.v_row_stride, seqlen_k);
  }
  memwall::cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int r0 = warp * 16;

  // Q fragments (A operand) for every 16-wide slice of the head dimension,
  // kept in registers where the traits say they fit.
  memwall::cp_async_wait<1>();
  __syncthreads();
  constexpr bool kQInRegs = Tr::kQInRegs;
  const int q_row = r0 + (lane % 8) + 8 * ((lane / 8) % 2);
  uint32_t qf[kQInRegs ? kD / 16 : 1][4];
  if (kQInRegs) {
#pragma unroll
    for (int kk = 0; kk < (kQInRegs ? kD / 16 : 0); ++kk)
      memwall::ldmatrix_x4(qf[kk], sq + swz<kD>(q_row, kk * 16 + 8 * (lane / 16)));
  }

  float acc_o[kD / 8][4];
#pragma unroll
  for (int i = 0; i < kD / 8; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc_o[i][j] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this lane's partial sums; quad-reduced at the end
  const int q_idx0 = m_block * kM + r0 + g;  // rows q_idx0 and q_idx0 + 8

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int buf = nb % 2;
    if (nb + 1 < n_blocks) {
      // Prefetch the next tiles into the other buffer (freed by the barrier
      // at the end of the previous iteration).
      const int next = (nb + 1) * kN;
      load_tile<T, kD, kN, kThreads>(sk + (1 - buf) * kN * kD, kg + next * p.k_row_stride, p.k_row_stride,
                                     seqlen_k - next);
      load_tile<T, kD, kN, kThreads>(sv + (1 - buf) * kN * kD, vg + next * p.v_row_stride, p.v_row_stride,
                                     seqlen_k - next);
    }
    memwall::cp_async_commit();
    memwall::cp_async_wait<1>();
    __syncthreads();
    const T* kt = sk + buf * kN * kD;
    const T* vt = sv + buf * kN * kD;

    // S = Q K^T for this warp's 16 rows and the block's kN keys.
    float s[kN / 8][4];
#pragma unroll
    for (int nt = 0; nt < kN / 8; ++nt) {
#pragma unroll
      for (int j = 0; j < 4; ++j) s[nt][j] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        uint32_t bf[2];
        const int row = nt * 8 + (lane % 8);
        const int col = kk * 16 + 8 * ((lane / 8) % 2);
        memwall::ldmatrix_x2(bf, kt + swz<kD>(row, col));
        if (kQInRegs) {
          mma<T>(s[nt], qf[kQInRegs ? kk : 0], bf);
        } else {
          uint32_t qa[4];
          memwall::ldmatrix_x4(qa, sq + swz<kD>(q_row, kk * 16 + 8 * (lane / 16)));
          mma<T>(s[nt], qa, bf);
        }
      }
    }

    // Mask, then the online softmax in the log2 domain.
    const int key0 = nb * kN;
    const bool need_mask = key0 + kN > seqlen_k || (p.causal && key0 + kN - 1 > m_block * kM + diag);
    float new_max[2] = {row_max[0], row_max[1]};
#pragma unroll
    for (int nt = 0; nt < kN / 8; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float x = s[nt][j] * p.scale_log2;
        if (need_mask) {
          const int key = key0 + nt * 8 + 2 * t4 + (j & 1);
          const int qi = q_idx0 + 8 * (j / 2);
          if (key >= seqlen_k || (p.causal && key > qi + diag)) x = -INFINITY;
        }
        s[nt][j] = x;
        new_max[j / 2] = fmaxf(new_max[j / 2], x);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffffu, new_max[r], 1));
      new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffffu, new_max[r], 2));
    }
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // A row with every key masked so far has max -inf: use 0 so that
      // exp2(-inf - 0) = 0 instead of NaN.
      const float m = new_max[r] == -INFINITY ? 0.0f : new_max[r];
      rescale[r] = exp2f((row_max[r] == -INFINITY ? 0.0f : row_max[r]) - m);
      row_max[r] = new_max[r];
      row_sum[r] *= rescale[r];
      new_max[r] = m;
    }
#pragma unroll
    for (int i = 0; i < kD / 8; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc_o[i][j] *= rescale[j / 2];
#pragma unroll
    for (int nt = 0; nt < kN / 8; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float e = exp2f(s[nt][j] - new_max[j / 2]);
        s[nt][j] = e;
        row_sum[j / 2] += e;
      }

    // O += P V: P's accumulator layout is the A fragment layout, two key
    // tiles per 16-key step; V^T fragments come from ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int nt = 0; nt < kD / 8; ++nt) {
        uint32_t bf[2];
        const int row = kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
        memwall::ldmatrix_x2_trans(bf, vt + swz<kD>(row, nt * 8));
        mma<T>(acc_o[nt], pa, bf);
      }
    }
    __syncthreads();  // buffer `buf` is refilled two iterations on
  }
  memwall::cp_async_wait<0>();

  // Normalize, write O and the log-sum-exp.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
  const float inv[2] = {row_sum[0] > 0.0f ? 1.0f / row_sum[0] : 0.0f, row_sum[1] > 0.0f ? 1.0f / row_sum[1] : 0.0f};
  T* og = o + ob + (q_row0 + m_block * kM) * p.o_row_stride + h * p.o_head_stride;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int local = r0 + g + 8 * r;
    if (m_block * kM + local < seqlen_q) {
#pragma unroll
      for (int nt = 0; nt < kD / 8; ++nt)
        store2<T>(og + local * p.o_row_stride + nt * 8 + 2 * t4, acc_o[nt][2 * r] * inv[r],
                  acc_o[nt][2 * r + 1] * inv[r]);
      if (t4 == 0) {
        const float l = row_sum[r] > 0.0f ? (row_max[r] + log2f(row_sum[r])) * 0.6931471805599453f : -INFINITY;
        const int64_t qi = m_block * kM + local;
        const int64_t idx = p.varlen ? static_cast<int64_t>(h) * cu_q[p.batch] + q_row0 + qi
                                     : (static_cast<int64_t>(b) * p.heads + h) * seqlen_q + qi;
        lse[idx] = l;
      }
    }
  }
}

#define MEMWALL_ATTN_PREFILL_ENTRY(NAME, T, HD)                                                             \
  MEMWALL_KERNEL void __launch_bounds__(128)                                                              \
      NAME(AttnParams p, const T* q, const T* k, const T* v, T* o, float* lse, const int* cu_q, const int* cu_k) { \
    attention_prefill<T, HD>(p, q, k, v, o, lse, cu_q, cu_k);                                              \
  }

MEMWALL_ATTN_PREFILL_ENTRY(memwall_attn_prefill_f16_hd64, __half, 64)
MEMWALL_ATTN_PREFILL_ENTRY(memwall_attn_prefill_bf16_hd64, __nv_bfloat16, 64)
MEMWALL_ATTN_PREFILL_ENTRY(memwall_attn_prefill_f16_hd128, __half, 128)
MEMWALL_ATTN_PREFILL_ENTRY(memwall_attn_prefill_bf16_hd128, __nv_bfloat16, 128)
MEMWALL_ATTN_PREFILL_ENTRY(memwall_attn_prefill_f16_hd256, __half, 256)
MEMWALL_ATTN_PREFILL_ENTRY(memwall_attn_prefill_bf16_hd256, __nv_bfloat16, 256)

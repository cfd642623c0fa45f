// Strided copy: `rows` rows of `row_words` words each, from rows `src_stride`
// bytes apart to rows `dst_stride` bytes apart. With a dense destination this
// is the pack of a 2-D strided datatype; with a dense source it is the unpack.
//
// One entry per word size (1, 2, 4, 8, 16 bytes). The launch plan picks the
// widest word that divides the row length, both strides and both base
// addresses, so that every access is naturally aligned and a warp touches
// 32 consecutive words of a row (coalesced) whenever the row is long enough.
//
// Strides are signed (MPI vector strides may be negative); the launch plan
// has already checked that every byte touched lies inside both buffers.

#include "memwall/common.cuh"

namespace {

template <typename Word>
__device__ __forceinline__ void strided_copy(const unsigned char* __restrict__ src,
                                             unsigned char* __restrict__ dst, uint64_t rows,
                                             uint64_t row_words, int64_t src_stride,
                                             int64_t dst_stride) {
  const uint64_t total = rows * row_words;
  const uint64_t step = memwall::global_thread_count();
  for (uint64_t i = memwall::global_thread_index(); i < total; i += step) {
    const uint64_t row = i / row_words;
    const uint64_t word = i - row * row_words;
    const Word* s = reinterpret_cast<const Word*>(src + static_cast<int64_t>(row) * src_stride);
    Word* d = reinterpret_cast<Word*>(dst + static_cast<int64_t>(row) * dst_stride);
    d[word] = s[word];
  }
}

}  // namespace

#define MEMWALL_STRIDED_COPY_ENTRY(NAME, WORD)                                           \
  MEMWALL_KERNEL void NAME(const unsigned char* __restrict__ src,                        \
                           unsigned char* __restrict__ dst, uint64_t rows,               \
                           uint64_t row_words, int64_t src_stride, int64_t dst_stride) { \
    strided_copy<WORD>(src, dst, rows, row_words, src_stride, dst_stride);               \
  }

MEMWALL_STRIDED_COPY_ENTRY(memwall_strided_copy_w1, uint8_t)
MEMWALL_STRIDED_COPY_ENTRY(memwall_strided_copy_w2, uint16_t)
MEMWALL_STRIDED_COPY_ENTRY(memwall_strided_copy_w4, uint32_t)
MEMWALL_STRIDED_COPY_ENTRY(memwall_strided_copy_w8, uint64_t)
MEMWALL_STRIDED_COPY_ENTRY(memwall_strided_copy_w16, memwall::Word16)

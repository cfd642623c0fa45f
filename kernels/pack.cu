// Pack and unpack of canonical datatype layouts (src/datatype/canonical.rs).
//
// memwall_pack_strided_w{1,2,4,8,16}: a layout with one segment per grid
// position, `block_words` words long, positions on an N-D grid (N <= 8,
// outermost first). One thread moves one word per iteration, grid-stride;
// consecutive threads move consecutive words of a block, then consecutive
// blocks, so both sides are coalesced when blocks are long enough.
//
// memwall_pack_segments: any layout: a table of segments (offset from the
// position, length, offset in the packed element) at every grid position.
// One warp moves one (position, segment) pair, lanes striding over its
// words, with the widest word the addresses and length allow.
//
// `typed` points at the datatype's origin (offsets may be negative);
// `dense` at the packed bytes. unpack != 0 moves dense -> typed.

#include "memwall/common.cuh"

#define MEMWALL_PACK_MAX_DIMS 8

// The position grid, outermost dimension first; unused dimensions have count 1.
struct PackDims {
  uint64_t count[MEMWALL_PACK_MAX_DIMS];
  int64_t stride[MEMWALL_PACK_MAX_DIMS];
};

// One segment of the segment table.
struct PackSegment {
  int64_t offset;   // from the grid position, in the typed buffer
  uint64_t len;     // bytes
  uint64_t packed;  // offset inside one packed position
};

namespace {

// Byte offset of grid position `index` (row-major, innermost fastest).
__device__ __forceinline__ int64_t position_offset(const PackDims& dims, uint64_t index) {
  int64_t off = 0;
#pragma unroll
  for (int k = MEMWALL_PACK_MAX_DIMS - 1; k >= 0; --k) {
    const uint64_t c = dims.count[k];
    if (c > 1) {
      const uint64_t i = index % c;
      index /= c;
      off += static_cast<int64_t>(i) * dims.stride[k];
    }
  }
  return off;
}

template <typename Word>
__device__ __forceinline__ void pack_strided(unsigned char* typed, unsigned char* dense, const PackDims& dims,
                                             uint64_t block_words, uint64_t total_words, int unpack) {
  const uint64_t step = memwall::global_thread_count();
  for (uint64_t q = memwall::global_thread_index(); q < total_words; q += step) {
    const uint64_t block = q / block_words;
    const uint64_t w = q - block * block_words;
    Word* t = reinterpret_cast<Word*>(typed + position_offset(dims, block)) + w;
    Word* d = reinterpret_cast<Word*>(dense) + q;
    if (unpack) {
      *t = *d;
    } else {
      *d = *t;
    }
  }
}

template <typename Word>
__device__ __forceinline__ void move_words(unsigned char* to, const unsigned char* from, uint64_t bytes,
                                           unsigned lane) {
  const uint64_t n = bytes / sizeof(Word);
  for (uint64_t i = lane; i < n; i += 32)
    reinterpret_cast<Word*>(to)[i] = reinterpret_cast<const Word*>(from)[i];
}

}  // namespace

#define MEMWALL_PACK_STRIDED_ENTRY(NAME, WORD)                                                       \
  MEMWALL_KERNEL void NAME(unsigned char* typed, unsigned char* dense, PackDims dims,                 \
                           uint64_t block_words, uint64_t total_words, int unpack) {                 \
    pack_strided<WORD>(typed, dense, dims, block_words, total_words, unpack);                        \
  }

MEMWALL_PACK_STRIDED_ENTRY(memwall_pack_strided_w1, uint8_t)
MEMWALL_PACK_STRIDED_ENTRY(memwall_pack_strided_w2, uint16_t)
MEMWALL_PACK_STRIDED_ENTRY(memwall_pack_strided_w4, uint32_t)
MEMWALL_PACK_STRIDED_ENTRY(memwall_pack_strided_w8, uint64_t)
MEMWALL_PACK_STRIDED_ENTRY(memwall_pack_strided_w16, memwall::Word16)

MEMWALL_KERNEL void memwall_pack_segments(unsigned char* typed, unsigned char* dense, const PackSegment* segs,
                                          uint64_t nsegs, PackDims dims, uint64_t elem_bytes, uint64_t total_items,
                                          int unpack) {
  const unsigned lane = threadIdx.x % 32;
  const uint64_t warp = memwall::global_thread_index() / 32;
  const uint64_t warps = memwall::global_thread_count() / 32;
  for (uint64_t item = warp; item < total_items; item += warps) {
    const uint64_t pos = item / nsegs;
    const PackSegment s = segs[item - pos * nsegs];
    unsigned char* t = typed + position_offset(dims, pos) + s.offset;
    unsigned char* d = dense + pos * elem_bytes + s.packed;
    unsigned char* to = unpack ? t : d;
    const unsigned char* from = unpack ? d : t;
    const uint64_t align = reinterpret_cast<uint64_t>(to) | reinterpret_cast<uint64_t>(from) | s.len;
    if (align % 16 == 0) {
      move_words<memwall::Word16>(to, from, s.len, lane);
    } else if (align % 8 == 0) {
      move_words<uint64_t>(to, from, s.len, lane);
    } else if (align % 4 == 0) {
      move_words<uint32_t>(to, from, s.len, lane);
    } else {
      move_words<uint8_t>(to, from, s.len, lane);
    }
  }
}

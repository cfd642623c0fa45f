// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16: a warp loads one,
// two or four 8x8 matrices of 16-bit elements from shared memory.
// Lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (16-byte aligned,
// 16 bytes each). Lane l receives, in register j, elements (l/4, 2(l%4)) and
// (l/4, 2(l%4)+1) of matrix j, or with .trans those of its transpose.
#pragma once

#include <stdint.h>

#ifdef MEMWALL_EMU
#include <string.h>

#include "memwall_emu/runtime.h"

namespace memwall_emu {

struct LdmatrixIn {
  const unsigned char* row;
};

template <unsigned Count, bool Trans>
inline const char* ldmatrix_result(const WarpInputs& all, unsigned lane, void* out) {
  if (all.mask != 0xffffffffu) return "ldmatrix needs all 32 lanes (mask 0xffffffff)";
  auto* regs = static_cast<uint32_t*>(out);
  for (unsigned j = 0; j < Count; ++j) {
    uint16_t e[2];
    for (unsigned h = 0; h < 2; ++h) {
      const unsigned r = lane / 4, c = 2 * (lane % 4) + h;
      const unsigned row = Trans ? c : r, col = Trans ? r : c;
      const unsigned char* p = static_cast<const LdmatrixIn*>(all.inputs[j * 8 + row])->row;
      if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return "row address is not 16-byte aligned";
      memcpy(&e[h], p + 2 * col, 2);
    }
    regs[j] = static_cast<uint32_t>(e[0]) | (static_cast<uint32_t>(e[1]) << 16);
  }
  return nullptr;
}

template <unsigned Count, bool Trans>
__attribute__((always_inline)) inline void ldmatrix(uint32_t* regs, const void* row, const char* what) {
  LdmatrixIn in{static_cast<const unsigned char*>(row)};
  uint32_t r[4];
  warp_collective(0xffffffffu, what, &in, r, &ldmatrix_result<Count, Trans>);
  for (unsigned j = 0; j < Count; ++j) regs[j] = r[j];
}

}  // namespace memwall_emu
#endif

namespace memwall {

#ifndef MEMWALL_EMU
__device__ __forceinline__ unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#endif

__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void* smem_row) {
#ifdef MEMWALL_EMU
  memwall_emu::ldmatrix<1, false>(r, smem_row, "ldmatrix.x1");
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_address(smem_row)));
#endif
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void* smem_row) {
#ifdef MEMWALL_EMU
  memwall_emu::ldmatrix<2, false>(r, smem_row, "ldmatrix.x2");
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(smem_row)));
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row) {
#ifdef MEMWALL_EMU
  memwall_emu::ldmatrix<4, false>(r, smem_row, "ldmatrix.x4");
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem_row)));
#endif
}

__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void* smem_row) {
#ifdef MEMWALL_EMU
  memwall_emu::ldmatrix<1, true>(r, smem_row, "ldmatrix.x1.trans");
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(smem_address(smem_row)));
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* smem_row) {
#ifdef MEMWALL_EMU
  memwall_emu::ldmatrix<2, true>(r, smem_row, "ldmatrix.x2.trans");
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(smem_row)));
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row) {
#ifdef MEMWALL_EMU
  memwall_emu::ldmatrix<4, true>(r, smem_row, "ldmatrix.x4.trans");
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem_row)));
#endif
}

}  // namespace memwall


// Warp-wide tensor-core multiply-accumulate, m16n8k16, f32 accumulation:
//   D (16x8 f32) = A (16x16, row-major) * B (16x8, column-major) + C
// Fragments per lane (PTX ISA "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4:
//   a[0..3]: 8 halves a_i, row g + 8*((i/2)%2), col 2t + (i%2) + 8*(i/4)
//   b[0..1]: 4 halves b_i, row (k) 2t + (i%2) + 8*(i/2), col (n) g
//   c, d[0..3]: row g + 8*(i/2), col 2t + (i%2)
// Each 32-bit register holds two 16-bit elements, the lower index in the low half.
#pragma once

#include <stdint.h>

#ifdef MEMWALL_EMU
#include "memwall_emu/half_types.h"
#include "memwall_emu/runtime.h"

namespace memwall_emu {

struct MmaIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

inline uint16_t half_of(uint32_t reg, unsigned i) { return static_cast<uint16_t>(i ? reg >> 16 : reg & 0xffffu); }

// The exact products summed in double, plus C, rounded once to f32. Tensor
// cores may round differently in the last bit; conformance tests use inputs
// whose sums are exact.
template <bool Bf16>
inline const char* mma_m16n8k16_result(const WarpInputs& all, unsigned lane, void* out) {
  if (all.mask != 0xffffffffu) return "mma.sync needs all 32 lanes (mask 0xffffffff)";
  auto elem = [](uint16_t v) { return Bf16 ? static_cast<double>(bf16_to_f32(v)) : static_cast<double>(f16_to_f32(v)); };
  auto A = [&](unsigned row, unsigned k) {
    const unsigned i = (k >= 8 ? 4u : 0u) + (row >= 8 ? 2u : 0u) + (k & 1u);
    const auto* in = static_cast<const MmaIn*>(all.inputs[(row % 8) * 4 + (k % 8) / 2]);
    return elem(half_of(in->a[i / 2], i % 2));
  };
  auto B = [&](unsigned k, unsigned n) {
    const unsigned i = (k >= 8 ? 2u : 0u) + (k & 1u);
    const auto* in = static_cast<const MmaIn*>(all.inputs[n * 4 + (k % 8) / 2]);
    return elem(half_of(in->b[i / 2], i % 2));
  };
  const auto* me = static_cast<const MmaIn*>(all.inputs[lane]);
  float* d = static_cast<float*>(out);
  const unsigned g = lane / 4, t = lane % 4;
  for (unsigned i = 0; i < 4; ++i) {
    const unsigned row = g + 8 * (i / 2), col = 2 * t + (i % 2);
    double acc = 0.0;
    for (unsigned k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    d[i] = static_cast<float>(acc + static_cast<double>(me->c[i]));
  }
  return nullptr;
}

}  // namespace memwall_emu
#endif

namespace memwall {

// d = a * b + c with f16 inputs.
__device__ __forceinline__ void mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                 const float c[4]) {
#ifdef MEMWALL_EMU
  memwall_emu::MmaIn in{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}, {c[0], c[1], c[2], c[3]}};
  float r[4];
  memwall_emu::warp_collective(0xffffffffu, "mma.sync.m16n8k16.f16", &in, r,
                               &memwall_emu::mma_m16n8k16_result<false>);
  for (int i = 0; i < 4; ++i) d[i] = r[i];
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#endif
}

// d = a * b + c with bf16 inputs.
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4]) {
#ifdef MEMWALL_EMU
  memwall_emu::MmaIn in{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}, {c[0], c[1], c[2], c[3]}};
  float r[4];
  memwall_emu::warp_collective(0xffffffffu, "mma.sync.m16n8k16.bf16", &in, r,
                               &memwall_emu::mma_m16n8k16_result<true>);
  for (int i = 0; i < 4; ++i) d[i] = r[i];
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#endif
}

}  // namespace memwall

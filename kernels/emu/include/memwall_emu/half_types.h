// __half and __nv_bfloat16 for the emulator, with CUDA's round-to-nearest-even
// conversions (NaN becomes the canonical 0x7fff, as cvt.rn does on a GPU).
//
// Arithmetic is done in float and rounded once: for add, subtract and
// multiply of two 16-bit values the float result is exact or rounded with
// enough spare bits (24 >= 2*11+2) that the second rounding is correct, so
// the result equals the GPU's native 16-bit instruction. fma goes via double.
#pragma once

#include <stdint.h>
#include <string.h>

namespace memwall_emu {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_f16_rn(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;                   // NaN -> canonical NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;          // >= 65520 rounds to infinity
  if (a < 0x33000000u) return sign;                     // < 2^-25 rounds to zero
  const int e = static_cast<int>(a >> 23);
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  if (e < 113) {                                        // half subnormal
    const int shift = 126 - e;                          // 113 - e + 13
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t h = (static_cast<uint32_t>(e - 112) << 10) | ((mant >> 13) & 0x3ffu);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is correct
  return sign | static_cast<uint16_t>(h);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0) {
    if (m == 0) return bits_f32(sign);
    int s = 0;
    while (!(m & 0x400u)) {
      m <<= 1;
      ++s;
    }
    return bits_f32(sign | (static_cast<uint32_t>(113 - s) << 23) | ((m & 0x3ffu) << 13));
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

inline uint16_t f32_to_bf16_rn(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

}  // namespace memwall_emu

struct __half {
  uint16_t __x;
  __half() = default;
  __half(float f) : __x(memwall_emu::f32_to_f16_rn(f)) {}
  __half(double d) : __half(static_cast<float>(d)) {}
  __half(int i) : __half(static_cast<float>(i)) {}
  operator float() const { return memwall_emu::f16_to_f32(__x); }
};

struct __nv_bfloat16 {
  uint16_t __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(memwall_emu::f32_to_bf16_rn(f)) {}
  __nv_bfloat16(double d) : __nv_bfloat16(static_cast<float>(d)) {}
  __nv_bfloat16(int i) : __nv_bfloat16(static_cast<float>(i)) {}
  operator float() const { return memwall_emu::bf16_to_f32(__x); }
};

struct alignas(4) __half2 {
  __half x, y;
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

// Conversions.
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__half(a), __half(b)}; }
inline __half2 __float2half2_rn(float a) { return __half2{__half(a), __half(a)}; }
inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline float __low2float(__half2 h) { return h.x; }
inline float __high2float(__half2 h) { return h.y; }
inline __half __ushort_as_half(unsigned short u) {
  __half h;
  h.__x = u;
  return h;
}
inline unsigned short __half_as_ushort(__half h) { return h.__x; }

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return static_cast<float>(b); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162{a, b}; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162{a, b}; }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 h) { return h.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 h) { return h.y; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
  __nv_bfloat16 b;
  b.__x = u;
  return b;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }

// Arithmetic, one rounding each (see the header comment).
#define MEMWALL_EMU_HALF_OPS(T)                                                          \
  inline T operator+(T a, T b) { return T(static_cast<float>(a) + static_cast<float>(b)); } \
  inline T operator-(T a, T b) { return T(static_cast<float>(a) - static_cast<float>(b)); } \
  inline T operator*(T a, T b) { return T(static_cast<float>(a) * static_cast<float>(b)); } \
  inline T operator/(T a, T b) { return T(static_cast<float>(a) / static_cast<float>(b)); } \
  inline T operator-(T a) {                                                              \
    T r = a;                                                                             \
    r.__x ^= 0x8000u;                                                                    \
    return r;                                                                            \
  }                                                                                      \
  inline T& operator+=(T& a, T b) { return a = a + b; }                                  \
  inline T& operator*=(T& a, T b) { return a = a * b; }

MEMWALL_EMU_HALF_OPS(__half)
MEMWALL_EMU_HALF_OPS(__nv_bfloat16)
#undef MEMWALL_EMU_HALF_OPS

inline __half __hadd(__half a, __half b) { return a + b; }
inline __half __hsub(__half a, __half b) { return a - b; }
inline __half __hmul(__half a, __half b) { return a * b; }
inline __half __hneg(__half a) { return -a; }
inline __half __hfma(__half a, __half b, __half c) {
  return __half(static_cast<float>(static_cast<double>(static_cast<float>(a)) * static_cast<float>(b) +
                                   static_cast<float>(c)));
}
inline __half2 __hadd2(__half2 a, __half2 b) { return __half2{a.x + b.x, a.y + b.y}; }
inline __half2 __hmul2(__half2 a, __half2 b) { return __half2{a.x * b.x, a.y * b.y}; }
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return a + b; }
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return a * b; }

// fp16.h: scalar IEEE half and bfloat16 conversions, the reference the SIMD paths are tested against.
// inline on purpose: every arch TU gets its own copy compiled with its own flags, so the
// linker can never hand an AVX-512 copy to code running on an AVX2-only CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "unit.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

inline float bits_to_float(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline std::uint32_t float_to_bits(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Exact for every half value: normals, subnormals, zeros, infinities and NaNs.
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1f;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal: value = mantissa * 2^-24; normalise it into a float.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  return bits_to_float(sign | std::uint32_t(113 - shift) << 23 | ((mantissa & 0x3ffu) << 13));
}

// Round to nearest, ties to even; overflow goes to infinity, NaN stays NaN.
inline std::uint16_t float_to_half(float f) {
  const std::uint32_t bits = float_to_bits(f);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return std::uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: scale to units of 2^-24 and round half to even.
    if (abs < 0x33000000u) return sign;  // below half of the smallest subnormal
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(abs >> 23);  // 14..24
    std::uint32_t value = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (value & 1u))) ++value;
    return std::uint16_t(sign | value);
  }
  std::uint32_t value = ((abs >> 13) - (112u << 10));
  const std::uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (value & 1u))) ++value;
  return std::uint16_t(sign | value);
}

inline float bf16_to_float(std::uint16_t b) { return bits_to_float(std::uint32_t(b) << 16); }

// The fp16 scale a Q8_0 block starts with.
inline float q8_0_scale(const void* block) {
  std::uint16_t h;
  std::memcpy(&h, block, 2);
  return half_to_float(h);
}

// Element i of a weight array of dtype D, as a float.
template <DType D>
inline float weight_at(const void* p, std::size_t i) {
  if constexpr (D == DType::f32) return static_cast<const float*>(p)[i];
  if constexpr (D == DType::f16) return half_to_float(static_cast<const std::uint16_t*>(p)[i]);
  if constexpr (D == DType::bf16) return bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
  if constexpr (D == DType::q8_0) {
    const auto* block = static_cast<const std::uint8_t*>(p) + i / kQ8_0Block * kQ8_0BlockBytes;
    return float(std::int8_t(block[2 + i % kQ8_0Block])) * q8_0_scale(block);
  }
}

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

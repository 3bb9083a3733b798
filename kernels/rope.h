// rope.h: rotate-half rotary position embedding on one head, as in HF Mistral/Llama:
// for i < h = head_dim/2: (x_i, x_{i+h}) -> (x_i cos_i - x_{i+h} sin_i, x_{i+h} cos_i + x_i sin_i).
#pragma once
#include <cstddef>

#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {
inline void rope(float* x, const float* cos, const float* sin, std::size_t head_dim) {
  const std::size_t half = head_dim / 2;
  for (std::size_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}
}  // namespace reference

namespace simd {
template <class A>
void rope(float* x, const float* cos, const float* sin, std::size_t head_dim) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t half = head_dim / 2;
  std::size_t i = 0;
  for (; i + W <= half; i += W) {
    const auto a = Floats<A>::load_unaligned(x + i), b = Floats<A>::load_unaligned(x + i + half);
    const auto c = Floats<A>::load_unaligned(cos + i), s = Floats<A>::load_unaligned(sin + i);
    (a * c - b * s).store_unaligned(x + i);
    (b * c + a * s).store_unaligned(x + i + half);
  }
  for (; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}
}  // namespace simd

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

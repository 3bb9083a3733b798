// rms_norm.h: RMSNorm, out = x / sqrt(mean(x^2) + eps) * weight (Mistral's input/post-attention/final norm).
#pragma once
#include <cmath>
#include <cstddef>

#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {
inline void rms_norm(float* out, const float* x, const float* weight, std::size_t n,
                            float eps) {
  float sum_squares = 0.0f;
  for (std::size_t i = 0; i < n; ++i) sum_squares += x[i] * x[i];
  const float scale = n ? 1.0f / std::sqrt(sum_squares / float(n) + eps) : 0.0f;
  for (std::size_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}
}  // namespace reference

namespace simd {
template <class A>
void rms_norm(float* out, const float* x, const float* weight, std::size_t n, float eps) {
  constexpr std::size_t W = Floats<A>::size;
  Floats<A> acc(0.0f);
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    const auto v = Floats<A>::load_unaligned(x + i);
    acc = fmadd<A>(v, v, acc);
  }
  float sum_squares = xsimd::hadd(acc);
  for (; i < n; ++i) sum_squares += x[i] * x[i];
  const float scale = n ? 1.0f / std::sqrt(sum_squares / float(n) + eps) : 0.0f;
  i = 0;
  for (; i + W <= n; i += W) {
    const auto v = Floats<A>::load_unaligned(x + i) * scale;
    (v * Floats<A>::load_unaligned(weight + i)).store_unaligned(out + i);
  }
  for (; i < n; ++i) out[i] = x[i] * scale * weight[i];
}
}  // namespace simd

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

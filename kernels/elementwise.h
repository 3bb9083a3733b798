// elementwise.h: SwiGLU's silu(gate) * up, the residual add, and weight-row conversion to float
// (embedding lookup).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {
inline void silu_mul(float* out, const float* gate, const float* up, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

inline void add(float* y, const float* x, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] += x[i];
}

template <DType D>
inline void to_float(float* out, const void* src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = weight_at<D>(src, i);
}
}  // namespace reference

namespace simd {
template <class A>
void silu_mul(float* out, const float* gate, const float* up, std::size_t n) {
  constexpr std::size_t W = Floats<A>::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    const auto g = Floats<A>::load_unaligned(gate + i);
    (g / (Floats<A>(1.0f) + xsimd::exp(-g)) * Floats<A>::load_unaligned(up + i))
        .store_unaligned(out + i);
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

template <class A>
void add(float* y, const float* x, std::size_t n) {
  constexpr std::size_t W = Floats<A>::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W)
    (Floats<A>::load_unaligned(y + i) + Floats<A>::load_unaligned(x + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] += x[i];
}

template <class A, DType D>
void to_float(float* out, const void* src, std::size_t n) {
  constexpr std::size_t W = Floats<A>::size;
  std::size_t i = 0;
  for (; i + W <= n; i += W) load_weights<A, D>(src, i).store_unaligned(out + i);
  for (; i < n; ++i) out[i] = weight_at<D>(src, i);
}
}  // namespace simd

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

// matvec.h: dense matrix-vector product y = W x with W [rows, cols] row-major in f32, f16, bf16 or q8_0,
// read in place from the memory-mapped checkpoint. This is the reference path effort = 1 is
// checked against, and the baseline the effort kernels are timed against.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {
template <DType D>
inline void matvec(float* y, const void* w, const float* x, std::size_t rows,
                          std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    float sum = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) sum += weight_at<D>(w, r * cols + c) * x[c];
    y[r] = sum;
  }
}
}  // namespace reference

namespace simd {

// N Q8_0 rows from `row` on: each block's 32 products are summed, then multiplied by its scale
// once (scaling every weight would double the work). The scales of kSpanBlocks blocks are
// converted W at a time first, so that a block's scale is a broadcast from memory, not a scalar
// load, convert and broadcast on the vector ports.
template <class A, std::size_t N>
void q8_0_rows(float* y, const std::uint8_t* row, std::size_t row_bytes, const float* x, std::size_t cols) {
  constexpr std::size_t W = Floats<A>::size, V = kQ8_0Block / W, kSpanBlocks = 16;
  Floats<A> acc[N];
  for (std::size_t i = 0; i < N; ++i) acc[i] = Floats<A>(0.0f);
  alignas(64) float scales[N][kSpanBlocks];
  const std::size_t blocks = cols / kQ8_0Block;
  for (std::size_t span = 0; span < blocks; span += kSpanBlocks) {
    const std::size_t span_blocks = std::min(kSpanBlocks, blocks - span);
    for (std::size_t i = 0; i < N; ++i) {
      alignas(32) std::uint16_t halves[kSpanBlocks] = {};
      for (std::size_t k = 0; k < span_blocks; ++k)
        std::memcpy(&halves[k], row + i * row_bytes + (span + k) * kQ8_0BlockBytes, 2);
      for (std::size_t k = 0; k < kSpanBlocks; k += W) load_weights<A, DType::f16>(halves, k).store_aligned(scales[i] + k);
    }
    for (std::size_t k = 0; k < span_blocks; ++k) {
      const std::size_t c = (span + k) * kQ8_0Block;
      Floats<A> xv[V];
      for (std::size_t v = 0; v < V; ++v) xv[v] = Floats<A>::load_unaligned(x + c + v * W);
      for (std::size_t i = 0; i < N; ++i) {
        const std::uint8_t* q = row + i * row_bytes + (span + k) * kQ8_0BlockBytes + 2;
        Floats<A> sum = int8_to_floats<A>(q) * xv[0];
        for (std::size_t v = 1; v < V; ++v) sum = fmadd<A>(int8_to_floats<A>(q + v * W), xv[v], sum);
        acc[i] = fmadd<A>(sum, Floats<A>(scales[i][k]), acc[i]);
      }
    }
  }
  for (std::size_t i = 0; i < N; ++i) y[i] = xsimd::hadd(acc[i]);
}

// Four rows at a time share each load of x; the four accumulator chains hide FMA latency.
template <class A, DType D>
void matvec(float* y, const void* w, const float* x, std::size_t rows, std::size_t cols) {
  if constexpr (D == DType::q8_0) {
    const auto* base = static_cast<const std::uint8_t*>(w);
    const std::size_t row_bytes = dtype_bytes(D, cols);
    std::size_t r = 0;
    for (; r + 4 <= rows; r += 4) q8_0_rows<A, 4>(y + r, base + r * row_bytes, row_bytes, x, cols);
    for (; r < rows; ++r) q8_0_rows<A, 1>(y + r, base + r * row_bytes, row_bytes, x, cols);
    return;
  }
  constexpr std::size_t W = Floats<A>::size;
  constexpr std::size_t kRowBlock = 4;
  const auto* base = static_cast<const std::uint8_t*>(w);
  const std::size_t row_bytes = dtype_bytes(D, cols);
  auto row = [&](std::size_t r) { return base + r * row_bytes; };
  std::size_t r = 0;
  for (; r + kRowBlock <= rows; r += kRowBlock) {
    Floats<A> acc[kRowBlock] = {Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f)};
    std::size_t c = 0;
    for (; c + W <= cols; c += W) {
      const auto xv = Floats<A>::load_unaligned(x + c);
      for (std::size_t b = 0; b < kRowBlock; ++b)
        acc[b] = fmadd<A>(load_weights<A, D>(row(r + b), c), xv, acc[b]);
    }
    for (std::size_t b = 0; b < kRowBlock; ++b) {
      float sum = xsimd::hadd(acc[b]);
      for (std::size_t t = c; t < cols; ++t) sum += weight_at<D>(row(r + b), t) * x[t];
      y[r + b] = sum;
    }
  }
  for (; r < rows; ++r) {
    Floats<A> acc(0.0f);
    std::size_t c = 0;
    for (; c + W <= cols; c += W)
      acc = fmadd<A>(load_weights<A, D>(row(r), c), Floats<A>::load_unaligned(x + c), acc);
    float sum = xsimd::hadd(acc);
    for (; c < cols; ++c) sum += weight_at<D>(row(r), c) * x[c];
    y[r] = sum;
  }
}
}  // namespace simd

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

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
inline void matvec(float* y, std::size_t y_stride, const void* w, const float* x, std::size_t x_stride, std::size_t n,
                   std::size_t rows, std::size_t cols) {
  for (std::size_t v = 0; v < n; ++v)
    for (std::size_t r = 0; r < rows; ++r) {
      float sum = 0.0f;
      for (std::size_t c = 0; c < cols; ++c) sum += weight_at<D>(w, r * cols + c) * x[v * x_stride + c];
      y[v * y_stride + r] = sum;
    }
}
}  // namespace reference

namespace simd {

// Vectors per pass over a block of rows: their accumulators fill the registers.
template <class A>
inline constexpr std::size_t kDenseVectors = std::is_same_v<A, Avx512> ? 4 : 2;

// R Q8_0 rows from `row` on, times N vectors: each block's 32 products are summed, then
// multiplied by its scale once (scaling every weight would double the work). The scales of
// kSpanBlocks blocks are converted W at a time first, so that a block's scale is a broadcast
// from memory, not a scalar load, convert and broadcast on the vector ports. A block's weights
// are converted once for the N vectors.
template <class A, std::size_t R, std::size_t N>
void q8_0_rows(float* y, std::size_t y_stride, const std::uint8_t* row, std::size_t row_bytes, const float* x,
               std::size_t x_stride, std::size_t cols) {
  constexpr std::size_t W = Floats<A>::size, V = kQ8_0Block / W, kSpanBlocks = 16;
  Floats<A> acc[N][R];
  for (auto& vector : acc)
    for (auto& a : vector) a = Floats<A>(0.0f);
  alignas(64) float scales[R][kSpanBlocks];
  const std::size_t blocks = cols / kQ8_0Block;
  for (std::size_t span = 0; span < blocks; span += kSpanBlocks) {
    const std::size_t span_blocks = std::min(kSpanBlocks, blocks - span);
    for (std::size_t i = 0; i < R; ++i) {
      alignas(32) std::uint16_t halves[kSpanBlocks] = {};
      for (std::size_t k = 0; k < span_blocks; ++k)
        std::memcpy(&halves[k], row + i * row_bytes + (span + k) * kQ8_0BlockBytes, 2);
      for (std::size_t k = 0; k < kSpanBlocks; k += W) load_weights<A, DType::f16>(halves, k).store_aligned(scales[i] + k);
    }
    for (std::size_t k = 0; k < span_blocks; ++k) {
      const std::size_t c = (span + k) * kQ8_0Block;
      Floats<A> wv[R][V];
      for (std::size_t i = 0; i < R; ++i)
        for (std::size_t v = 0; v < V; ++v)
          wv[i][v] = int8_to_floats<A>(row + i * row_bytes + (span + k) * kQ8_0BlockBytes + 2 + v * W);
      for (std::size_t j = 0; j < N; ++j) {
        Floats<A> xv[V];
        for (std::size_t v = 0; v < V; ++v) xv[v] = Floats<A>::load_unaligned(x + j * x_stride + c + v * W);
        for (std::size_t i = 0; i < R; ++i) {
          Floats<A> sum = wv[i][0] * xv[0];
          for (std::size_t v = 1; v < V; ++v) sum = fmadd<A>(wv[i][v], xv[v], sum);
          acc[j][i] = fmadd<A>(sum, Floats<A>(scales[i][k]), acc[j][i]);
        }
      }
    }
  }
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t i = 0; i < R; ++i) y[j * y_stride + i] = xsimd::hadd(acc[j][i]);
}

// R rows of f32/f16/bf16 from `row` on, times N vectors: each weight is loaded once for them.
template <class A, DType D, std::size_t R, std::size_t N>
void dense_rows(float* y, std::size_t y_stride, const std::uint8_t* row, std::size_t row_bytes, const float* x,
                std::size_t x_stride, std::size_t cols) {
  constexpr std::size_t W = Floats<A>::size;
  Floats<A> acc[N][R];
  for (auto& vector : acc)
    for (auto& a : vector) a = Floats<A>(0.0f);
  std::size_t c = 0;
  for (; c + W <= cols; c += W) {
    Floats<A> wv[R];
    for (std::size_t i = 0; i < R; ++i) wv[i] = load_weights<A, D>(row + i * row_bytes, c);
    for (std::size_t j = 0; j < N; ++j) {
      const auto xv = Floats<A>::load_unaligned(x + j * x_stride + c);
      for (std::size_t i = 0; i < R; ++i) acc[j][i] = fmadd<A>(wv[i], xv, acc[j][i]);
    }
  }
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t i = 0; i < R; ++i) {
      float sum = xsimd::hadd(acc[j][i]);
      for (std::size_t t = c; t < cols; ++t) sum += weight_at<D>(row + i * row_bytes, t) * x[j * x_stride + t];
      y[j * y_stride + i] = sum;
    }
}

template <class A, DType D, std::size_t R, std::size_t N>
void rows_times(float* y, std::size_t y_stride, const std::uint8_t* row, std::size_t row_bytes, const float* x,
                std::size_t x_stride, std::size_t cols) {
  if constexpr (D == DType::q8_0) q8_0_rows<A, R, N>(y, y_stride, row, row_bytes, x, x_stride, cols);
  else dense_rows<A, D, R, N>(y, y_stride, row, row_bytes, x, x_stride, cols);
}

// R rows times n vectors, kDenseVectors at a time (the rows stay in L1 for the next ones).
template <class A, DType D, std::size_t R>
void rows_times_all(float* y, std::size_t y_stride, const std::uint8_t* row, std::size_t row_bytes, const float* x,
                    std::size_t x_stride, std::size_t n, std::size_t cols) {
  constexpr std::size_t C = kDenseVectors<A>;
  std::size_t j = 0;
  for (; j + C <= n; j += C) rows_times<A, D, R, C>(y + j * y_stride, y_stride, row, row_bytes, x + j * x_stride, x_stride, cols);
  for (; j < n; ++j) rows_times<A, D, R, 1>(y + j * y_stride, y_stride, row, row_bytes, x + j * x_stride, x_stride, cols);
}

// Four rows at a time share each load of x; the four accumulator chains hide FMA latency. Each
// (row, vector) sums in the same order whatever the rows and vectors around it, so a vector's
// outputs are the same with others as alone.
template <class A, DType D>
void matvec(float* y, std::size_t y_stride, const void* w, const float* x, std::size_t x_stride, std::size_t n,
            std::size_t rows, std::size_t cols) {
  const auto* base = static_cast<const std::uint8_t*>(w);
  const std::size_t row_bytes = dtype_bytes(D, cols);
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4) rows_times_all<A, D, 4>(y + r, y_stride, base + r * row_bytes, row_bytes, x, x_stride, n, cols);
  for (; r < rows; ++r) rows_times_all<A, D, 1>(y + r, y_stride, base + r * row_bytes, row_bytes, x, x_stride, n, cols);
}
}  // namespace simd

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

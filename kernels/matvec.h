// matvec.h: dense matrix-vector product y = W x with W [rows, cols] row-major in f32, f16 or bf16,
// read in place from the memory-mapped checkpoint. This is the reference path effort = 1 is
// checked against, and the baseline the effort kernels are timed against.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "simd.h"

namespace effort::kernels {

namespace reference {
template <DType D>
static inline void matvec(float* y, const void* w, const float* x, std::size_t rows,
                          std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    float sum = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) sum += weight_at<D>(w, r * cols + c) * x[c];
    y[r] = sum;
  }
}
// Y[t] = W X[t] for n input vectors: X [n, cols], Y[t] at y + t*y_stride, each as matvec computes it.
template <DType D>
static inline void matmul(float* y, std::size_t y_stride, const void* w, const float* x, std::size_t rows,
                          std::size_t cols, std::size_t n) {
  for (std::size_t t = 0; t < n; ++t) matvec<D>(y + t * y_stride, w, x + t * cols, rows, cols);
}
}  // namespace reference

namespace simd {
// Four rows at a time share each load of x; the four accumulator chains hide FMA latency.
template <class A, DType D>
void matvec(float* y, const void* w, const float* x, std::size_t rows, std::size_t cols) {
  constexpr std::size_t W = Floats<A>::size;
  constexpr std::size_t kRowBlock = 4;
  const auto* base = static_cast<const std::uint8_t*>(w);
  const std::size_t row_bytes = cols * kDTypeBytes<D>;
  auto row = [&](std::size_t r) { return base + r * row_bytes; };
  std::size_t r = 0;
  for (; r + kRowBlock <= rows; r += kRowBlock) {
    Floats<A> acc[kRowBlock] = {Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f)};
    std::size_t c = 0;
    for (; c + W <= cols; c += W) {
      const auto xv = Floats<A>::load_unaligned(x + c);
      for (std::size_t b = 0; b < kRowBlock; ++b)
        acc[b] = fmadd<A>(load_weights<A, D>(row(r + b) + c * kDTypeBytes<D>), xv, acc[b]);
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
      acc = fmadd<A>(load_weights<A, D>(row(r) + c * kDTypeBytes<D>),
                       Floats<A>::load_unaligned(x + c), acc);
    float sum = xsimd::hadd(acc);
    for (; c < cols; ++c) sum += weight_at<D>(row(r), c) * x[c];
    y[r] = sum;
  }
}
// Many vectors per weight read: blocks of 4 rows x 4 vectors keep 16 accumulators, so each loaded
// weight serves 4 vectors from registers and a block's rows stay in L1 for all vectors. Every
// (row, vector) is the same chain of fused multiply-adds over the same lanes, the same horizontal
// add and the same scalar tail as matvec: results are bitwise equal to n matvecs.
template <class A, DType D>
void matmul(float* y, std::size_t y_stride, const void* w, const float* x, std::size_t rows, std::size_t cols,
            std::size_t n) {
  constexpr std::size_t W = Floats<A>::size;
  constexpr std::size_t kRows = 4, kVectors = 4;
  const auto* base = static_cast<const std::uint8_t*>(w);
  const std::size_t row_bytes = cols * kDTypeBytes<D>;
  const std::size_t full_cols = cols / W * W;
  for (std::size_t r = 0; r < rows; r += kRows) {
    const std::size_t nr = std::min(kRows, rows - r);
    for (std::size_t t = 0; t < n; t += kVectors) {
      const std::size_t nt = std::min(kVectors, n - t);
      Floats<A> acc[kRows][kVectors];
      for (auto& a : acc)
        for (auto& v : a) v = Floats<A>(0.0f);
      for (std::size_t c = 0; c < full_cols; c += W) {
        Floats<A> wv[kRows];
        for (std::size_t b = 0; b < nr; ++b) wv[b] = load_weights<A, D>(base + (r + b) * row_bytes + c * kDTypeBytes<D>);
        for (std::size_t v = 0; v < nt; ++v) {
          const auto xv = Floats<A>::load_unaligned(x + (t + v) * cols + c);
          for (std::size_t b = 0; b < nr; ++b) acc[b][v] = fmadd<A>(wv[b], xv, acc[b][v]);
        }
      }
      for (std::size_t b = 0; b < nr; ++b)
        for (std::size_t v = 0; v < nt; ++v) {
          float sum = xsimd::hadd(acc[b][v]);
          for (std::size_t c = full_cols; c < cols; ++c) sum += weight_at<D>(base + (r + b) * row_bytes, c) * x[(t + v) * cols + c];
          y[(t + v) * y_stride + r + b] = sum;
        }
    }
  }
}
}  // namespace simd

}  // namespace effort::kernels

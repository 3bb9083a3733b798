// panel_matmul.h: batched products Y = W X for prompt processing.
//
// A weight matrix is multiplied by a batch of n vectors one block of outputs and one chunk of
// inputs at a time. The block's weights are first unpacked to floats, input-major, into panels
// of kPanelWidth outputs (dense_panel here, bucket_panel in bucket_panel.h): the unpacking and
// the position decoding are paid once per batch, not once per vector. The panel then multiplies
// every vector of the batch from cache. Inputs are packed transposed, xt[k * x_stride + j] =
// vector j's input k, so that a vector's input is one broadcast.
//
// Legend: k_len = inputs in the chunk, n = vectors, width = outputs of the panel in use.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {

// panel[k][o] = float(w[o * cols + col0 + k]) for o < rows and k < k_len; 0 for rows <= o < 32.
// w points at the panel's first row.
template <DType D>
inline void dense_panel(float* panel, const void* w, std::size_t cols, std::size_t rows, std::size_t col0,
                               std::size_t k_len) {
  for (std::size_t k = 0; k < k_len; ++k)
    for (std::size_t o = 0; o < kPanelWidth; ++o)
      panel[k * kPanelWidth + o] = o < rows ? weight_at<D>(w, o * cols + col0 + k) : 0.0f;
}

// Y[j][o] = (accumulate ? Y[j][o] : 0) + sum_k panel[k][o] * xt[k][j] for o < width, j < n, as a
// chain of fused multiply-adds in k order. Y[j] is at y + j*y_stride.
inline void panel_matmul(float* y, std::size_t y_stride, const float* panel, const float* xt,
                                std::size_t x_stride, std::size_t k_len, std::size_t n, std::size_t width,
                                bool accumulate) {
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t o = 0; o < width; ++o) {
      float s = accumulate ? y[j * y_stride + o] : 0.0f;
      for (std::size_t k = 0; k < k_len; ++k) s = std::fma(panel[k * kPanelWidth + o], xt[k * x_stride + j], s);
      y[j * y_stride + o] = s;
    }
}

}  // namespace reference

namespace simd {

// Rows are unpacked a vector at a time, then scattered to their panel column.
template <class A, DType D>
void dense_panel(float* panel, const void* w, std::size_t cols, std::size_t rows, std::size_t col0, std::size_t k_len) {
  constexpr std::size_t W = Floats<A>::size;
  const auto* base = static_cast<const std::uint8_t*>(w);
  alignas(64) float lanes[W];
  for (std::size_t o = 0; o < kPanelWidth; ++o) {
    if (o >= rows) {
      for (std::size_t k = 0; k < k_len; ++k) panel[k * kPanelWidth + o] = 0.0f;
      continue;
    }
    const std::uint8_t* row = base + dtype_bytes(D, o * cols + col0);
    std::size_t k = 0;
    for (; k + W <= k_len; k += W) {
      load_weights<A, D>(row, k).store_aligned(lanes);
      for (std::size_t l = 0; l < W; ++l) panel[(k + l) * kPanelWidth + o] = lanes[l];
    }
    for (; k < k_len; ++k) panel[k * kPanelWidth + o] = weight_at<D>(row, k);
  }
}

// NR vectors at a time: NR x (32 / W) accumulators stay in registers over the whole chunk, each
// panel load serves NR vectors and each broadcast 32 outputs. Same chains as the reference.
template <class A, std::size_t NR>
void panel_block(float* y, std::size_t y_stride, const float* panel, const float* xt, std::size_t x_stride,
                 std::size_t k_len, bool accumulate) {
  constexpr std::size_t W = Floats<A>::size, V = kPanelWidth / W;
  Floats<A> acc[NR][V];
  for (std::size_t j = 0; j < NR; ++j)
    for (std::size_t v = 0; v < V; ++v)
      acc[j][v] = accumulate ? Floats<A>::load_unaligned(y + j * y_stride + v * W) : Floats<A>(0.0f);
  for (std::size_t k = 0; k < k_len; ++k) {
    Floats<A> w[V];
    for (std::size_t v = 0; v < V; ++v) w[v] = Floats<A>::load_aligned(panel + k * kPanelWidth + v * W);
    for (std::size_t j = 0; j < NR; ++j) {
      const Floats<A> x(xt[k * x_stride + j]);
      for (std::size_t v = 0; v < V; ++v) acc[j][v] = fmadd<A>(w[v], x, acc[j][v]);
    }
  }
  for (std::size_t j = 0; j < NR; ++j)
    for (std::size_t v = 0; v < V; ++v) acc[j][v].store_unaligned(y + j * y_stride + v * W);
}

// Vectors per block: as many as leave registers for the panel loads (32 on AVX-512, 16 on AVX2).
template <class A>
inline constexpr std::size_t kBlockVectors = Floats<A>::size == 16 ? 12 : 3;

template <class A, std::size_t... R>
void panel_tail(std::size_t count, float* y, std::size_t y_stride, const float* panel, const float* xt,
                std::size_t x_stride, std::size_t k_len, bool accumulate, std::index_sequence<R...>) {
  ((count == R + 1 ? panel_block<A, R + 1>(y, y_stride, panel, xt, x_stride, k_len, accumulate) : void()), ...);
}

// The panel must be 64-byte aligned. Partial panels (width < 32) use the reference.
template <class A>
void panel_matmul(float* y, std::size_t y_stride, const float* panel, const float* xt, std::size_t x_stride,
                  std::size_t k_len, std::size_t n, std::size_t width, bool accumulate) {
  if (width != kPanelWidth)
    return reference::panel_matmul(y, y_stride, panel, xt, x_stride, k_len, n, width, accumulate);
  constexpr std::size_t NR = kBlockVectors<A>;
  std::size_t j = 0;
  for (; j + NR <= n; j += NR) panel_block<A, NR>(y + j * y_stride, y_stride, panel, xt + j, x_stride, k_len, accumulate);
  if (j < n)
    panel_tail<A>(n - j, y + j * y_stride, y_stride, panel, xt + j, x_stride, k_len, accumulate,
                  std::make_index_sequence<NR - 1>());
}

}  // namespace simd
}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

// bucket_panel.h: unpacks a block of a bucketed matrix (layout in bucket_matvec.h) into the
// float panels that panel_matmul.h multiplies a batch with: every loaded unit's entries go to
// the panel column their position names. Runs once per batch and block; its cost is shared by
// the batch.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "bucket_matvec.h"
#include "panel_matmul.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {
namespace reference {

// panels[p][k][c] for the buckets [bucket0, bucket0 + buckets) and the inputs [col0, col0 +
// k_len): panel p holds outputs bucket0*S + 32p + c, row k the input col0 + k. Entries of units
// >= loaded_units (not loaded) are 0, so the product equals effort 1 on the loaded part.
// buckets * S must be a multiple of kPanelWidth.
inline void bucket_panel(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                                std::size_t buckets, std::size_t col0, std::size_t k_len) {
  const std::size_t S = m.bucket_size, B = m.num_buckets, in = m.num_inputs;
  std::fill(panels, panels + buckets * S * k_len, 0.0f);
  const std::size_t bucket_end = std::min(B, bucket0 + buckets);
  for (std::size_t rank = 0; rank < S; ++rank)
    for (std::size_t k = 0; k < k_len; ++k) {
      const std::size_t u = rank * in + col0 + k;
      if (u >= loaded_units) return;  // units are rank-major: the rest are not loaded either
      for (std::size_t b = bucket0; b < bucket_end; ++b) {
        const std::size_t output = (b - bucket0) * S + bucket_position(entry_bits(m, u, b), S);
        panels[(output / kPanelWidth) * k_len * kPanelWidth + k * kPanelWidth + output % kPanelWidth] = entry_weight(m, u, b);
      }
    }
}

}  // namespace reference

namespace simd {

// W entries at a time: the decode in SIMD (bucket0 is a multiple of W, which divides kQ8Block,
// so W entries share one q8 scale), the scatter to panel columns scalar. Same values as the
// reference.
template <class A, class E>
void bucket_panel_typed(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                        std::size_t buckets, std::size_t col0, std::size_t k_len) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t S = m.bucket_size, B = m.num_buckets, in = m.num_inputs;
  const std::size_t bucket_end = std::min(B, bucket0 + buckets);
  const std::size_t simd_end = bucket0 + (bucket_end - bucket0) / W * W;
  std::fill(panels, panels + buckets * S * k_len, 0.0f);
  alignas(64) float lanes[W];
  for (std::size_t rank = 0; rank < S; ++rank)
    for (std::size_t k = 0; k < k_len; ++k) {
      const std::size_t u = rank * in + col0 + k;
      if (u >= loaded_units) return;  // units are rank-major: the rest are not loaded either
      const E* unit = static_cast<const E*>(m.units) + u * B;
      float* row = panels + k * kPanelWidth;
      auto put = [&](std::size_t b, float w) {
        const std::size_t output = (b - bucket0) * S + bucket_position(int(unit[b]), S);
        row[(output / kPanelWidth) * k_len * kPanelWidth + output % kPanelWidth] = w;
      };
      for (std::size_t b = bucket0; b < simd_end; b += W) {
        Floats<A> values;
        if constexpr (std::is_same_v<E, std::int8_t>) values = int8_to_floats<A>(unit + b);
        else values = load_weights<A, DType::f16>(unit, b);
        (values * Floats<A>(entry_scale(m, u, b))).store_aligned(lanes);
        for (std::size_t l = 0; l < W; ++l) put(b + l, lanes[l]);
      }
      for (std::size_t b = simd_end; b < bucket_end; ++b) put(b, entry_weight(m, u, b));
    }
}

template <class A>
void bucket_panel(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                  std::size_t buckets, std::size_t col0, std::size_t k_len) {
  if (m.weights == BucketWeights::q8)
    return bucket_panel_typed<A, std::int8_t>(panels, m, loaded_units, bucket0, buckets, col0, k_len);
  bucket_panel_typed<A, std::uint16_t>(panels, m, loaded_units, bucket0, buckets, col0, k_len);
}

}  // namespace simd
}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

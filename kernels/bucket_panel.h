// bucket_panel.h: unpacks a block of a bucketed matrix (layout in bucket_matvec.h) into the
// float panels that panel_matmul.h multiplies a batch with: every loaded unit's entries go to
// the panel column their position names. Runs once per batch and block; its cost is shared by
// the batch, but at 256 vectors the scalar fp16 decode still took twice the products' time.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "bucket_matvec.h"
#include "panel_matmul.h"

namespace effort::kernels::reference {

// panels[p][k][c] for the buckets [bucket0, bucket0 + buckets) and the tiles [tile0, tile0 +
// tiles): panel p holds outputs bucket0*S + 32p + c, row k the tile slot tile0*G + k. Entries
// of units >= loaded_units (not loaded) are 0, so the product equals effort 1 on the loaded part.
// buckets * S must be a multiple of kPanelWidth.
static inline void bucket_panel(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                                std::size_t buckets, std::size_t tile0, std::size_t tiles) {
  const std::size_t S = m.bucket_size, G = m.group, B = m.num_buckets, T = m.num_tiles;
  const std::size_t k_len = tiles * G;
  std::fill(panels, panels + buckets * S * k_len, 0.0f);
  const std::size_t bucket_end = std::min(B, bucket0 + buckets);
  for (std::size_t rank = 0; rank < S; ++rank)
    for (std::size_t t = tile0; t < tile0 + tiles; ++t) {
      const std::size_t u = rank * T + t;
      if (u >= loaded_units) return;  // units are rank-major: the rest are not loaded either
      const std::uint16_t* unit = m.units + u * G * B;
      for (std::size_t b = bucket0; b < bucket_end; ++b) {
        const std::size_t output = (b - bucket0) * S + bucket_position(unit[b], S);
        float* column = panels + (output / kPanelWidth) * k_len * kPanelWidth + (t - tile0) * G * kPanelWidth +
                        output % kPanelWidth;
        column[0] = bucket_weight(unit[b], S);
        for (std::size_t g = 1; g < G; ++g) column[g * kPanelWidth] = half_to_float(unit[g * B + b]);
      }
    }
}

}  // namespace effort::kernels::reference

namespace effort::kernels::simd {

// W entries at a time: the fp16 decode in SIMD (LeadEntries for g = 0), the scatter to panel
// columns scalar, from the positions of the g = 0 entries. Same values as the reference.
template <class A, std::size_t S>
void bucket_panel_sized(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                        std::size_t buckets, std::size_t tile0, std::size_t tiles) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t G = m.group, B = m.num_buckets, T = m.num_tiles, k_len = tiles * G;
  const std::size_t bucket_end = std::min(B, bucket0 + buckets);
  const std::size_t simd_end = bucket0 + (bucket_end - bucket0) / W * W;
  std::fill(panels, panels + buckets * S * k_len, 0.0f);
  alignas(64) float lanes[W];
  std::size_t offset[W];
  for (std::size_t rank = 0; rank < S; ++rank)
    for (std::size_t t = tile0; t < tile0 + tiles; ++t) {
      const std::size_t u = rank * T + t;
      if (u >= loaded_units) return;  // units are rank-major: the rest are not loaded either
      const std::uint16_t* unit = m.units + u * G * B;
      float* rows = panels + (t - tile0) * G * kPanelWidth;
      for (std::size_t b = bucket0; b < simd_end; b += W) {
        LeadEntries<A, S>(unit + b).weights.store_aligned(lanes);
        for (std::size_t l = 0; l < W; ++l) {
          const std::size_t output = (b - bucket0 + l) * S + bucket_position(unit[b + l], S);
          offset[l] = (output / kPanelWidth) * k_len * kPanelWidth + output % kPanelWidth;
          rows[offset[l]] = lanes[l];
        }
        for (std::size_t g = 1; g < G; ++g) {
          load_weights<A, DType::f16>(unit + g * B + b).store_aligned(lanes);
          for (std::size_t l = 0; l < W; ++l) rows[offset[l] + g * kPanelWidth] = lanes[l];
        }
      }
      for (std::size_t b = simd_end; b < bucket_end; ++b) {
        const std::size_t output = (b - bucket0) * S + bucket_position(unit[b], S);
        float* column = rows + (output / kPanelWidth) * k_len * kPanelWidth + output % kPanelWidth;
        column[0] = bucket_weight(unit[b], S);
        for (std::size_t g = 1; g < G; ++g) column[g * kPanelWidth] = half_to_float(unit[g * B + b]);
      }
    }
}

template <class A>
void bucket_panel(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                  std::size_t buckets, std::size_t tile0, std::size_t tiles) {
  if (m.bucket_size == 8) return bucket_panel_sized<A, 8>(panels, m, loaded_units, bucket0, buckets, tile0, tiles);
  bucket_panel_sized<A, 16>(panels, m, loaded_units, bucket0, buckets, tile0, tiles);
}

}  // namespace effort::kernels::simd

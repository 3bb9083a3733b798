// bucket_view.h: a bucketed matrix as the kernels read it (layout in bucket_matvec.h), and its
// entries one at a time. No SIMD: src/ includes it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "fp16.h"
#include "kernels.h"
#include "unit.h"

namespace effort::kernels {

struct BucketView {
  const void* units;            // [S*in][B] entries: fp16 (u16), or int8 for q8
  const std::uint16_t* scales;  // q8: [S*in][num_blocks()] fp16 scales; null for f16
  const float* stats;           // [S*in]
  std::size_t num_buckets;      // B
  std::size_t num_inputs;       // in
  std::size_t bucket_size;      // S: 1, 2, 4, 8 or 16
  BucketWeights weights;

  std::size_t num_blocks() const { return (num_buckets + kQ8Block - 1) / kQ8Block; }
  std::size_t entry_bytes() const { return weights == BucketWeights::q8 ? 1 : 2; }
};

inline constexpr bool valid_bucket_size(std::size_t s) { return s == 1 || s == 2 || s == 4 || s == 8 || s == 16; }

inline namespace EFFORT_KERNEL_UNIT {

// The position an entry's low bits name (an int8 entry sign-extended: two's complement keeps
// the low bits).
inline unsigned bucket_position(int entry_bits, std::size_t size) { return unsigned(entry_bits) & unsigned(size - 1); }

// Entry b of unit u: its bits (position in the low ones), its value as stored, the scale its
// value is multiplied by (1 for fp16), and the weight it stands for.
inline int entry_bits(const BucketView& m, std::size_t u, std::size_t b) {
  return m.weights == BucketWeights::q8 ? int(static_cast<const std::int8_t*>(m.units)[u * m.num_buckets + b])
                                        : int(static_cast<const std::uint16_t*>(m.units)[u * m.num_buckets + b]);
}
inline float entry_value(const BucketView& m, std::size_t u, std::size_t b) {
  return m.weights == BucketWeights::q8 ? float(entry_bits(m, u, b)) : half_to_float(std::uint16_t(entry_bits(m, u, b)));
}
inline float entry_scale(const BucketView& m, std::size_t u, std::size_t b) {
  return m.weights == BucketWeights::q8 ? half_to_float(m.scales[u * m.num_blocks() + b / kQ8Block]) : 1.0f;
}
inline float entry_weight(const BucketView& m, std::size_t u, std::size_t b) {
  return entry_value(m, u, b) * entry_scale(m, u, b);
}

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

// bucketize.cpp: sort every bucket of 16 neighbouring outputs by |w| and keep each weight's
// position in its 4 low mantissa bits.
#include "bucketize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>

#include "effort/error.h"
#include "kernels/bucket_matvec.h"
#include "kernels/fp16.h"

namespace effort {

using kernels::kBucketSize;

BucketizedMatrix bucketize(const float* w, std::size_t out, std::size_t in, std::size_t max_probes,
                           std::uint64_t seed, const std::string& name) {
  BucketizedMatrix m;
  m.out_features = out;
  m.in_features = in;
  m.num_buckets = (out + kBucketSize - 1) / kBucketSize;
  const std::size_t B = m.num_buckets, num_rows = kBucketSize * in;
  m.bucket_rows.resize(num_rows * B);
  m.stats.assign(num_rows, 0.0f);

  std::vector<double> sums(num_rows, 0.0);
  std::array<std::uint16_t, kBucketSize> bucket;  // fp16 bits indexed by position
  std::array<unsigned, kBucketSize> order;
  for (std::size_t j = 0; j < in; ++j) {
    for (std::size_t b = 0; b < B; ++b) {
      for (unsigned p = 0; p < kBucketSize; ++p) {
        const std::size_t o = b * kBucketSize + p;
        const float value = o < out ? w[o * in + j] : 0.0f;
        if (!std::isfinite(value))
          throw Error(ErrorCode::format, "[convert] " + name + ": non-finite weight at [" + std::to_string(o) + ", " +
                                             std::to_string(j) + "]");
        bucket[p] = kernels::float_to_half(value);
      }
      std::iota(order.begin(), order.end(), 0u);
      // fp16 magnitudes order like their bits without the sign; ties keep position order.
      std::stable_sort(order.begin(), order.end(),
                       [&](unsigned a, unsigned c) { return (bucket[a] & 0x7FFF) > (bucket[c] & 0x7FFF); });
      for (std::size_t k = 0; k < kBucketSize; ++k) {
        const unsigned p = order[k];
        const auto entry = std::uint16_t((bucket[p] & 0xFFF0u) | p);
        const std::size_t r = k * in + j;
        m.bucket_rows[r * B + b] = entry;
        sums[r] += std::fabs(kernels::bucket_weight(entry));
      }
    }
  }
  for (std::size_t r = 0; r < num_rows; ++r) m.stats[r] = float(sums[r] / double(B));

  // Probes: a uniform sample of bucket rows without replacement (every row when there are
  // fewer than max_probes), so the cutoff's order statistic estimates the fraction of rows
  // dispatched without bias.
  std::vector<std::uint32_t> all(num_rows);
  std::iota(all.begin(), all.end(), 0u);
  const std::size_t n = std::min(max_probes, num_rows);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t pick = i + std::size_t(rng() % (num_rows - i));
    std::swap(all[i], all[pick]);
  }
  m.probe_rows.assign(all.begin(), all.begin() + std::ptrdiff_t(n));
  std::sort(m.probe_rows.begin(), m.probe_rows.end());
  for (auto r : m.probe_rows) m.probe_weights.push_back(m.stats[r]);
  return m;
}

std::vector<float> decode_buckets(const std::uint16_t* bucket_rows, std::size_t out, std::size_t in,
                                  std::size_t num_rows) {
  const std::size_t B = (out + kBucketSize - 1) / kBucketSize;
  std::vector<float> w(out * in, 0.0f);
  for (std::size_t r = 0; r < num_rows; ++r) {
    const std::size_t j = r % in;
    for (std::size_t b = 0; b < B; ++b) {
      const std::uint16_t entry = bucket_rows[r * B + b];
      const std::size_t o = b * kBucketSize + kernels::bucket_position(entry);
      if (o < out) w[o * in + j] = kernels::bucket_weight(entry);
    }
  }
  return w;
}

}  // namespace effort

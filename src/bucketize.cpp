// bucketize.cpp: order the inputs into tiles, sort every (tile, bucket) by combined |w|, and
// keep each rank's position in the 4 low mantissa bits of its first weight.
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

BucketizedMatrix bucketize(const float* w, std::size_t out, std::size_t in, const BucketizeOptions& options,
                           const std::string& name) {
  if (options.group == 0 || options.group > 64)
    throw Error(ErrorCode::invalid_argument, "[convert] " + name + ": group must be in [1, 64]");
  if (options.bucket_size != 8 && options.bucket_size != 16)
    throw Error(ErrorCode::invalid_argument, "[convert] " + name + ": bucket_size must be 8 or 16");
  if (!options.input_scale.empty() && options.input_scale.size() != in)
    throw Error(ErrorCode::invalid_argument, "[convert] " + name + ": input_scale has " +
                                                 std::to_string(options.input_scale.size()) + " entries, expected " + std::to_string(in));
  BucketizedMatrix m;
  m.out_features = out;
  m.in_features = in;
  m.group = options.group;
  m.bucket_size = options.bucket_size;
  const std::size_t S = m.bucket_size;
  m.num_buckets = (out + S - 1) / S;
  m.num_tiles = (in + m.group - 1) / m.group;
  const std::size_t B = m.num_buckets, T = m.num_tiles, G = m.group;

  std::vector<std::uint16_t> w16(out * in);
  for (std::size_t i = 0; i < w16.size(); ++i) {
    if (!std::isfinite(w[i]))
      throw Error(ErrorCode::format, "[convert] " + name + ": non-finite weight at [" + std::to_string(i / in) + ", " +
                                         std::to_string(i % in) + "]");
    w16[i] = kernels::float_to_half(w[i]);
  }
  auto weight16 = [&](std::size_t o, std::size_t j) -> std::uint16_t { return o < out && j < in ? w16[o * in + j] : 0; };

  // Tile order: inputs by descending typical magnitude; G = 1 keeps the natural order.
  std::vector<float> scale = options.input_scale;
  m.input_order.resize(T * G);
  std::iota(m.input_order.begin(), m.input_order.begin() + std::ptrdiff_t(in), 0u);
  std::fill(m.input_order.begin() + std::ptrdiff_t(in), m.input_order.end(), std::uint32_t(in));
  if (G > 1) {
    std::vector<double> magnitude(in, 0.0);
    for (std::size_t j = 0; j < in; ++j) {
      if (!scale.empty()) {
        magnitude[j] = scale[j];
      } else {
        for (std::size_t o = 0; o < out; ++o) magnitude[j] += std::fabs(double(kernels::half_to_float(w16[o * in + j])));
      }
    }
    std::stable_sort(m.input_order.begin(), m.input_order.begin() + std::ptrdiff_t(in),
                     [&](std::uint32_t a, std::uint32_t b) { return magnitude[a] > magnitude[b]; });
  }

  m.units.resize(S * T * G * B);
  std::vector<double> sums(S * G * T, 0.0);
  std::array<double, 16> combined;
  std::array<unsigned, 16> order;
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t b = 0; b < B; ++b) {
      for (unsigned p = 0; p < S; ++p) {
        combined[p] = 0;
        for (std::size_t g = 0; g < G; ++g) {
          const std::uint32_t j = m.input_order[t * G + g];
          const double s = j < in && !scale.empty() ? scale[j] : 1.0;
          combined[p] += s * std::fabs(double(kernels::half_to_float(weight16(b * S + p, j))));
        }
      }
      std::iota(order.begin(), order.begin() + std::ptrdiff_t(S), 0u);
      // Ties keep position order, so conversion is reproducible.
      std::stable_sort(order.begin(), order.begin() + std::ptrdiff_t(S),
                       [&](unsigned a, unsigned c) { return combined[a] > combined[c]; });
      for (std::size_t k = 0; k < S; ++k) {
        const unsigned p = order[k];
        std::uint16_t* unit = &m.units[(k * T + t) * G * B];
        for (std::size_t g = 0; g < G; ++g) {
          const std::uint16_t h = weight16(b * S + p, m.input_order[t * G + g]);
          const std::uint16_t entry = g == 0 ? std::uint16_t((h & ~(S - 1)) | p) : h;
          unit[g * B + b] = entry;
          sums[(k * G + g) * T + t] += std::fabs(g == 0 ? kernels::bucket_weight(entry, S) : kernels::half_to_float(entry));
        }
      }
    }
  }
  m.stats.resize(sums.size());
  for (std::size_t i = 0; i < sums.size(); ++i) m.stats[i] = float(sums[i] / double(B));

  // Probes: a uniform sample of units without replacement (every unit when there are fewer
  // than max_probes), so the cutoff's order statistic estimates the share of units dispatched
  // without bias.
  const std::size_t num_units = S * T, n = std::min(options.max_probes, num_units);
  std::vector<std::uint32_t> all(num_units);
  std::iota(all.begin(), all.end(), 0u);
  std::mt19937_64 rng(options.seed);
  for (std::size_t i = 0; i < n; ++i) std::swap(all[i], all[i + std::size_t(rng() % (num_units - i))]);
  m.probe_units.assign(all.begin(), all.begin() + std::ptrdiff_t(n));
  std::sort(m.probe_units.begin(), m.probe_units.end());
  for (auto u : m.probe_units)
    for (std::size_t g = 0; g < G; ++g) m.probe_stats.push_back(m.stats[((u / T) * G + g) * T + u % T]);
  return m;
}

std::string layout_name(std::size_t bucket_size, std::size_t group) {
  return "buckets" + std::to_string(bucket_size) + (group > 1 ? "-g" + std::to_string(group) : "");
}

BucketMatrix as_matrix(const BucketizedMatrix& m, std::size_t loaded_units) {
  BucketMatrix v;
  v.view = kernels::BucketView{m.units.data(), m.stats.data(), m.num_buckets, m.num_tiles, m.group, m.bucket_size};
  v.input_order = m.input_order.data();
  v.out_features = m.out_features;
  v.in_features = m.in_features;
  v.loaded_units = loaded_units;
  for (std::size_t i = 0; i < m.probe_units.size(); ++i)
    if (m.probe_units[i] < loaded_units) {
      v.probe_units.push_back(m.probe_units[i]);
      v.probe_stats.insert(v.probe_stats.end(), m.probe_stats.begin() + std::ptrdiff_t(i * m.group),
                           m.probe_stats.begin() + std::ptrdiff_t((i + 1) * m.group));
    }
  return v;
}

std::vector<float> decode_buckets(const BucketMatrix& m, std::size_t num_units) {
  const std::size_t B = m.view.num_buckets, T = m.view.num_tiles, G = m.view.group, S = m.view.bucket_size;
  const std::size_t in = m.in_features;
  std::vector<float> w(m.out_features * in, 0.0f);
  for (std::size_t u = 0; u < num_units; ++u) {
    const std::uint16_t* unit = m.view.units + u * G * B;
    const std::size_t t = u % T;
    for (std::size_t b = 0; b < B; ++b) {
      const std::size_t o = b * S + kernels::bucket_position(unit[b], S);
      for (std::size_t g = 0; g < G; ++g) {
        const std::uint32_t j = m.input_order[t * G + g];
        if (o < m.out_features && j < in)
          w[o * in + j] = g == 0 ? kernels::bucket_weight(unit[b], S) : kernels::half_to_float(unit[g * B + b]);
      }
    }
  }
  return w;
}

}  // namespace effort

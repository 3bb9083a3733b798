// bucketize.cpp: sort every (input, bucket) by |w| and keep each rank's position in the low
// bits of its fp16 weight.
#include "model/bucketize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>

#include "effort/error.h"
#include "kernels/bucket_view.h"
#include "kernels/fp16.h"

namespace effort {

std::uint16_t encode_with_position(float w, unsigned position, std::size_t size) {
  const std::uint16_t h = kernels::float_to_half(w);
  if (size == 1) return h;
  // Within one sign, fp16 magnitudes are ordered like their bit patterns: the nearest values
  // with the wanted low bits are those next to h's own group of `size` patterns. Nearest to h,
  // not to w, so that F32 and F16 sources give the same file.
  const float target = kernels::half_to_float(h);
  const std::uint16_t sign = h & 0x8000u;
  const int magnitude = h & 0x7fff, step = int(size);
  const int base = (magnitude & ~(step - 1)) | int(position);
  std::uint16_t best = 0;
  float best_distance = INFINITY;
  for (int candidate : {base - step, base, base + step}) {
    if (candidate < 0 || candidate >= 0x7c00) continue;  // below zero, or infinity and NaN
    const std::uint16_t bits = std::uint16_t(sign | candidate);
    const float distance = std::fabs(kernels::half_to_float(bits) - target);
    // A tie (h halfway between two candidates) goes to the one whose bit above the position
    // bits is 0, as round-half-to-even does: up as often as down, so no bias.
    if (distance < best_distance || (distance == best_distance && (candidate & step) == 0))
      best = bits, best_distance = distance;
  }
  return best;
}

std::int8_t encode_q8_with_position(float v, unsigned position, std::size_t size) {
  const int step = int(size);
  // Integers with the wanted low bits lie `step` apart; the group of `step` integers holding
  // floor(v) has one, and the nearest is it or a neighbour.
  const int base = (int(std::floor(v)) & ~(step - 1)) | int(position);
  int best = 0;
  float best_distance = INFINITY;
  for (int candidate : {base - step, base, base + step}) {
    if (candidate < -127 || candidate > 127) continue;  // -127..127: the kernels negate entries
    const float distance = std::fabs(float(candidate) - v);
    if (distance < best_distance || (distance == best_distance && (candidate & step) == 0))
      best = candidate, best_distance = distance;
  }
  return std::int8_t(best);
}

BucketizedMatrix bucketize(const float* w, std::size_t out, std::size_t in, const BucketizeOptions& options,
                           const std::string& name) {
  if (!kernels::valid_bucket_size(options.bucket_size))
    throw Error(ErrorCode::invalid_argument, "[convert] " + name + ": bucket size must be 1, 2, 4, 8 or 16, got " +
                                                 std::to_string(options.bucket_size));
  BucketizedMatrix m;
  m.out_features = out;
  m.in_features = in;
  m.bucket_size = options.bucket_size;
  m.weights = options.weights;
  const std::size_t S = m.bucket_size;
  m.num_buckets = (out + S - 1) / S;
  const std::size_t B = m.num_buckets;
  const bool q8 = m.weights == kernels::BucketWeights::q8;
  const std::size_t blocks = (B + kernels::kQ8Block - 1) / kernels::kQ8Block;

  for (std::size_t i = 0; i < out * in; ++i)
    if (!std::isfinite(w[i]))
      throw Error(ErrorCode::format, "[convert] " + name + ": non-finite weight at [" + std::to_string(i / in) + ", " +
                                         std::to_string(i % in) + "]");
  auto weight = [&](std::size_t o, std::size_t j) { return o < out ? w[o * in + j] : 0.0f; };

  m.units.resize(S * in * B * (q8 ? 1 : 2));
  if (q8) m.scales.resize(S * in * blocks);
  auto* f16_units = reinterpret_cast<std::uint16_t*>(m.units.data());
  auto* q8_units = reinterpret_cast<std::int8_t*>(m.units.data());
  std::vector<double> sums(S * in, 0.0);
  // One input column at a time: each rank's weights (fp16-rounded, so that F32 and F16 sources
  // give the same file) and positions, then each unit row encoded.
  std::vector<float> ranked(S * B);
  std::vector<unsigned> positions(S * B);
  std::array<float, 16> magnitude;
  std::array<unsigned, 16> order;
  for (std::size_t j = 0; j < in; ++j) {
    for (std::size_t b = 0; b < B; ++b) {
      for (unsigned p = 0; p < S; ++p) magnitude[p] = std::fabs(kernels::half_to_float(kernels::float_to_half(weight(b * S + p, j))));
      std::iota(order.begin(), order.begin() + std::ptrdiff_t(S), 0u);
      // Ties keep position order, so conversion is reproducible.
      std::stable_sort(order.begin(), order.begin() + std::ptrdiff_t(S),
                       [&](unsigned a, unsigned c) { return magnitude[a] > magnitude[c]; });
      for (std::size_t k = 0; k < S; ++k) {
        ranked[k * B + b] = kernels::half_to_float(kernels::float_to_half(weight(b * S + order[k], j)));
        positions[k * B + b] = order[k];
      }
    }
    for (std::size_t k = 0; k < S; ++k) {
      const std::size_t u = k * in + j;
      const float* w_row = ranked.data() + k * B;
      const unsigned* p_row = positions.data() + k * B;
      if (!q8) {
        for (std::size_t b = 0; b < B; ++b) {
          f16_units[u * B + b] = encode_with_position(w_row[b], p_row[b], S);
          sums[u] += std::fabs(kernels::half_to_float(f16_units[u * B + b]));
        }
        continue;
      }
      // q8: a scale per block of kQ8Block entries, in fp16. Integers with given low bits lie S
      // apart and reach 128 - S + position at most: absmax maps to 128 - S/2 (127 for S = 2), so
      // that every weight has a candidate within S/2 steps.
      for (std::size_t block = 0; block < blocks; ++block) {
        const std::size_t b0 = block * kernels::kQ8Block, b1 = std::min(B, b0 + kernels::kQ8Block);
        float absmax = 0.0f;
        for (std::size_t b = b0; b < b1; ++b) absmax = std::max(absmax, std::fabs(w_row[b]));
        const std::uint16_t scale = kernels::float_to_half(absmax / (128.0f - float(S) / 2));
        m.scales[u * blocks + block] = scale;
        const float d = kernels::half_to_float(scale);
        for (std::size_t b = b0; b < b1; ++b) {
          // A zero scale keeps the positions; the weights decode to 0 whatever the entries.
          const std::int8_t q = encode_q8_with_position(d > 0 ? w_row[b] / d : 0.0f, p_row[b], S);
          q8_units[u * B + b] = q;
          sums[u] += std::fabs(float(q) * d);
        }
      }
    }
  }
  m.stats.resize(sums.size());
  for (std::size_t i = 0; i < sums.size(); ++i) m.stats[i] = float(sums[i] / double(B));

  // Probes: a uniform sample of units without replacement (every unit when there are fewer
  // than max_probes), so the cutoff's order statistic estimates the share of units dispatched
  // without bias.
  const std::size_t num_units = S * in, n = std::min(options.max_probes, num_units);
  std::vector<std::uint32_t> all(num_units);
  std::iota(all.begin(), all.end(), 0u);
  std::mt19937_64 rng(options.seed);
  for (std::size_t i = 0; i < n; ++i) std::swap(all[i], all[i + std::size_t(rng() % (num_units - i))]);
  m.probe_units.assign(all.begin(), all.begin() + std::ptrdiff_t(n));
  std::sort(m.probe_units.begin(), m.probe_units.end());
  for (auto u : m.probe_units) m.probe_stats.push_back(m.stats[u]);
  return m;
}

std::string layout_name(std::size_t bucket_size, kernels::BucketWeights weights) {
  return "buckets" + std::to_string(bucket_size) + (weights == kernels::BucketWeights::q8 ? "-q8" : "");
}

std::string weights_name(kernels::BucketWeights weights) { return weights == kernels::BucketWeights::q8 ? "q8" : "f16"; }

BucketMatrix as_matrix(const BucketizedMatrix& m, std::size_t loaded_units) {
  BucketMatrix v;
  v.view = kernels::BucketView{m.units.data(), m.scales.empty() ? nullptr : m.scales.data(), m.stats.data(),
                               m.num_buckets, m.in_features, m.bucket_size, m.weights};
  v.out_features = m.out_features;
  v.in_features = m.in_features;
  v.loaded_units = loaded_units;
  for (std::size_t i = 0; i < m.probe_units.size(); ++i)
    if (m.probe_units[i] < loaded_units) {
      v.probe_units.push_back(m.probe_units[i]);
      v.probe_inputs.push_back(std::uint32_t(m.probe_units[i] % m.in_features));
      v.probe_stats.push_back(m.probe_stats[i]);
    }
  return v;
}

std::vector<float> decode_buckets(const BucketMatrix& m, std::size_t num_units) {
  const std::size_t B = m.view.num_buckets, S = m.view.bucket_size, in = m.in_features;
  std::vector<float> w(m.out_features * in, 0.0f);
  for (std::size_t u = 0; u < num_units; ++u) {
    const std::size_t j = u % in;
    for (std::size_t b = 0; b < B; ++b) {
      const std::size_t o = b * S + kernels::bucket_position(kernels::entry_bits(m.view, u, b), S);
      if (o < m.out_features) w[o * in + j] = kernels::entry_weight(m.view, u, b);
    }
  }
  return w;
}

}  // namespace effort

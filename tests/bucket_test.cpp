// bucket_test.cpp: the bucketed layout and the effort kernels: round trip, structure, SIMD vs
// scalar reference, the cutoff, and how quality and work fall with effort.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "model/bucketize.h"
#include "kernels/bucket_view.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "model/linear.h"
#include "test_util.h"

using namespace effort;
using kernels::Arch;

namespace {

std::vector<float> gaussian(std::size_t n, std::mt19937& rng, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Heavy-tailed activations (Student t, 3 degrees of freedom), like real hidden states.
std::vector<float> heavy_tailed(std::size_t n, std::mt19937& rng) {
  std::student_t_distribution<float> d(3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double cosine(const std::vector<double>& a, const float* b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

std::vector<double> exact_product(const std::vector<float>& w, const std::vector<float>& x, std::size_t out, std::size_t in) {
  std::vector<double> y(out, 0.0);
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t j = 0; j < in; ++j) y[o] += double(w[o * in + j]) * x[j];
  return y;
}

using kernels::BucketWeights;
constexpr BucketWeights kWeights[] = {BucketWeights::f16, BucketWeights::q8};

BucketizedMatrix convert(const std::vector<float>& w, std::size_t out, std::size_t in, std::size_t bucket_size,
                         BucketWeights weights = BucketWeights::f16, std::uint64_t seed = 7) {
  BucketizeOptions o;
  o.bucket_size = bucket_size;
  o.weights = weights;
  o.seed = seed;
  return bucketize(w.data(), out, in, o, "w");
}

constexpr std::size_t kBucketSizes[] = {1, 2, 4, 8, 16};

// Runs one effort product; returns y and the fraction of multiply-adds done.
std::pair<std::vector<float>, double> run(const BucketMatrix& m, const std::vector<float>& x, float effort, Arch arch, int threads = 1) {
  ThreadPool pool(threads);
  BucketScratch scratch({&m});
  EffortState state;
  state.set_all(effort);
  std::vector<float> y(m.out_features);
  matvec(Matrix(m), 0, MatrixKind::up_proj, x.data(), y.data(), Compute{kernels::kernel_table(arch), pool, &state, &scratch});
  return {y, state.stats.fraction(MatrixKind::up_proj)};
}

// How far the int8 multipliers of a q8 product (kernels/bucket_matvec_q8.h) can move output o
// from the float product of the decoded weights, at effort 1 (every loaded unit listed, in
// order): a unit's multiplier x * scale is off by at most half its group's step, the step is
// the group's largest multiplier / 127, and the group of list entry u lies within kQ8Group - 1
// entries of it. fp16 entries: 0.
double q8_quantization_bound(const BucketMatrix& m, const std::vector<float>& x, std::size_t loaded, std::size_t o) {
  const auto& v = m.view;
  if (v.weights != BucketWeights::q8) return 0.0;
  const std::size_t b = o / v.bucket_size, reach = kernels::kQ8Group - 1;
  auto multiplier = [&](std::size_t u) { return std::fabs(double(x[u % v.num_inputs]) * kernels::entry_scale(v, u, b)); };
  double bound = 0;
  for (std::size_t u = 0; u < loaded; ++u) {
    double largest = 0;
    for (std::size_t n = u > reach ? u - reach : 0; n < std::min(loaded, u + reach + 1); ++n) largest = std::max(largest, multiplier(n));
    // Half a step for each part the entry is in: S = 2, the total and (if odd) position 1;
    // otherwise its position's, if that is o's.
    const int bits = kernels::entry_bits(v, u, b);
    const double parts = v.bucket_size == 2 ? 1.0 + (bits & 1) : kernels::bucket_position(bits, v.bucket_size) == o % v.bucket_size;
    bound += parts * std::fabs(kernels::entry_value(v, u, b)) * largest / 254.0;
  }
  return bound * (1 + 1e-6);  // (and the step's own float rounding)
}

std::vector<Arch> arches() {
  std::vector<Arch> a;
  for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512})
    if (kernels::arch_supported(arch)) a.push_back(arch);
  return a;
}

}  // namespace

TEST_CASE("a weight's position goes into the nearest fp16 that has those low bits", "[effort]") {
  std::mt19937 rng(9);
  std::vector<float> weights = {0.0f, -0.0f, 1e-7f, -3e-8f, 65504.0f, -65000.0f, 1.0f, 0.999f};
  for (auto v : gaussian(200, rng, 0.02f)) weights.push_back(v);
  for (std::size_t size : kBucketSizes)
    for (float w : weights)
      for (unsigned p = 0; p < size; ++p) {
        CAPTURE(size, w, p);
        const std::uint16_t e = encode_with_position(w, p, size);
        REQUIRE(kernels::bucket_position(e, size) == p);
        // Brute force over every finite fp16 with those low bits, for the nearest to fp16(w).
        const float target = kernels::half_to_float(kernels::float_to_half(w));
        float best = INFINITY;
        int nearest = 0;
        for (std::uint32_t bits = p; bits < 0x10000; bits += std::uint32_t(size)) {
          if ((bits & 0x7c00) == 0x7c00) continue;
          const float d = std::fabs(kernels::half_to_float(std::uint16_t(bits)) - target);
          if (d < best) best = d, nearest = 0;
          if (d == best) ++nearest;
        }
        REQUIRE(std::fabs(kernels::half_to_float(e) - target) == best);
        // A tie goes to the candidate whose bit above the position bits is 0 (zero itself, +0
        // and -0, is one value with two patterns: not a tie).
        if (nearest == 2 && target != 0.0f) REQUIRE((e & size) == 0);
      }
}

TEST_CASE("a q8 entry is the nearest of -127..127 with the position's low bits", "[effort]") {
  std::mt19937 rng(10);
  std::vector<float> values = {0.0f, -0.0f, 127.0f, -127.0f, 127.4f, -128.0f, 0.5f, -0.5f, 1.5f, 2.0f, -2.0f};
  for (auto v : gaussian(300, rng, 50.0f)) values.push_back(std::clamp(v, -127.0f, 127.0f));
  for (std::size_t size : kBucketSizes)
    for (float v : values)
      for (unsigned p = 0; p < size; ++p) {
        CAPTURE(size, v, p);
        const int q = encode_q8_with_position(v, p, size);
        REQUIRE(kernels::bucket_position(q, size) == p);
        // Brute force over every int8 but -128 (the kernels negate entries) with those low bits.
        float best = INFINITY;
        int nearest = 0;
        for (int c = -127; c <= 127; ++c) {
          if (kernels::bucket_position(c, size) != p) continue;
          const float d = std::fabs(float(c) - v);
          if (d < best) best = d, nearest = 0;
          if (d == best) ++nearest;
        }
        REQUIRE(std::fabs(float(q) - v) == best);
        if (nearest == 2) REQUIRE((q & int(size)) == 0);  // ties as round-half-to-even
      }
}

TEST_CASE("buckets are sorted, hold every position once, and stats are their means", "[effort]") {
  std::mt19937 rng(2);
  const std::size_t out = 48, in = 10;
  const auto w = gaussian(out * in, rng, 1.0f);
  for (std::size_t S : kBucketSizes)
  for (BucketWeights weights : kWeights) {
    CAPTURE(S, int(weights));
    const auto b = convert(w, out, in, S, weights);
    const auto v = as_matrix(b, b.num_units()).view;
    REQUIRE(b.num_buckets == out / S);
    for (std::size_t j = 0; j < in; ++j)
      for (std::size_t bucket = 0; bucket < b.num_buckets; ++bucket) {
        unsigned seen = 0;
        float previous = INFINITY;
        for (std::size_t k = 0; k < S; ++k) {
          const std::size_t u = k * in + j;
          const unsigned p = kernels::bucket_position(kernels::entry_bits(v, u, bucket), S);
          seen |= 1u << p;
          const float original = w[(bucket * S + p) * in + j];
          if (weights == BucketWeights::f16) {
            // The entry is the weight at the position it names, moved by at most S/2 fp16 steps
            // (2^-10 relative each, 2^-24 for subnormal halves) to carry its position bits.
            REQUIRE(kernels::entry_scale(v, u, bucket) == 1.0f);
            REQUIRE(std::fabs(kernels::entry_weight(v, u, bucket) - original) <=
                    (0.5 + double(S) / 2) * (std::fabs(original) * 0x1p-10 + 0x1p-24));
          } else {
            // Its block's scale is fp16(absmax / (128 - S/2)) over the unit row's rank-k weights in
            // the block, and the entry is at most S/2 steps from the weight, plus the fp16
            // rounding of the weight and of the scale (which can push |w| / scale past 128 - S/2).
            float absmax = 0;
            const std::size_t block = bucket / kernels::kQ8Block * kernels::kQ8Block;
            for (std::size_t c = block; c < std::min(b.num_buckets, block + kernels::kQ8Block); ++c) {
              const float wc = w[(c * S + kernels::bucket_position(kernels::entry_bits(v, u, c), S)) * in + j];
              absmax = std::max(absmax, std::fabs(kernels::half_to_float(kernels::float_to_half(wc))));
            }
            const float d = kernels::entry_scale(v, u, bucket);
            REQUIRE(d == kernels::half_to_float(kernels::float_to_half(absmax / (128.0f - float(S) / 2))));
            REQUIRE(std::fabs(kernels::entry_weight(v, u, bucket) - original) <= (double(S) / 2 + 0.1) * d + std::fabs(original) * 0x1p-10);
          }
          // Sorted by the fp16 magnitude before the position bits moved it.
          const float rounded = std::fabs(kernels::half_to_float(kernels::float_to_half(original)));
          REQUIRE(rounded <= previous);
          previous = rounded;
        }
        REQUIRE(seen == (1u << S) - 1);
      }
    for (std::size_t r = 0; r < S * in; ++r) {
      double sum = 0;
      for (std::size_t bucket = 0; bucket < b.num_buckets; ++bucket) sum += std::fabs(kernels::entry_weight(v, r, bucket));
      REQUIRE(b.stats[r] == Approx(sum / double(b.num_buckets)).epsilon(1e-6));
    }
    // Fewer rows than max_probes: every row is a probe, in order, with its stat.
    REQUIRE(b.probe_units.size() == S * in);
    for (std::size_t i = 0; i < b.probe_units.size(); ++i) {
      REQUIRE(b.probe_units[i] == i);
      REQUIRE(b.probe_stats[i] == b.stats[i]);
    }
  }
}

TEST_CASE("SIMD dispatch and bucket product equal the scalar reference bit for bit", "[effort]") {
  std::mt19937 rng(3);
  // Bucket counts on and off both arches' 8- and 16-bucket tiles, lists on and off the groups of 8.
  for (auto [out, in] : {std::pair<std::size_t, std::size_t>{16, 1}, {40, 7}, {256, 33}, {272, 64}, {1024, 100}, {100, 19}, {172, 64}, {64, 172}}) {
    const auto w = gaussian(out * in, rng, 0.02f);
    const auto x = heavy_tailed(in, rng);
    for (std::size_t size : kBucketSizes)
    for (BucketWeights weights : kWeights) {
      const auto b = convert(w, out, in, size, weights);
      const BucketMatrix m = as_matrix(b, b.num_units());
      const auto& ref = kernels::kernel_table(Arch::scalar);
      for (float cutoff : {-1.0f, 0.0f, 0.01f, 0.05f}) {
        const std::size_t units = b.num_units() - std::min<std::size_t>(3, b.num_units() - 1);  // a partial last rank
        std::vector<std::uint32_t> list_ref(units), list(units + kernels::kDispatchSlack);
        std::vector<float> xs_ref(units), xs(units + kernels::kDispatchSlack);
        const std::size_t n_ref = ref.bucket_dispatch(list_ref.data(), xs_ref.data(), m.view, x.data(), units, cutoff);
        std::vector<float> yr(b.num_buckets * size + 1, 7.0f);
        ref.bucket_matvec(yr.data(), 0, m.view, list_ref.data(), xs_ref.data(), n_ref, 1, 0, b.num_buckets);
        REQUIRE(yr.back() == 7.0f);  // nothing written past the padded outputs
        for (Arch arch : arches()) {
          CAPTURE(kernels::arch_name(arch), out, in, size, int(weights), cutoff);
          const auto& k = kernels::kernel_table(arch);
          const std::size_t n = k.bucket_dispatch(list.data(), xs.data(), m.view, x.data(), units, cutoff);
          REQUIRE(n == n_ref);
          REQUIRE(std::equal(list.begin(), list.begin() + std::ptrdiff_t(n), list_ref.begin()));
          REQUIRE(std::equal(xs.begin(), xs.begin() + std::ptrdiff_t(n), xs_ref.begin()));
          std::vector<float> y(b.num_buckets * size + 1, 7.0f);
          k.bucket_matvec(y.data(), 0, m.view, list.data(), xs.data(), n, 1, 0, b.num_buckets);
          REQUIRE(y == yr);
        }
      }
    }
  }
}

TEST_CASE("a bucket product of several vectors gives each its single-vector product, bit for bit", "[effort]") {
  std::mt19937 rng(11);
  // Bucket counts on and off the tiles and the 64-bucket ranges; lists on and off the groups.
  for (auto [out, in] : {std::pair<std::size_t, std::size_t>{40, 7}, {272, 64}, {300, 33}, {1024, 100}}) {
    const auto w = gaussian(out * in, rng, 0.02f);
    const auto x0 = heavy_tailed(in, rng);
    for (std::size_t size : kBucketSizes)
    for (BucketWeights weights : kWeights) {
      const auto b = convert(w, out, in, size, weights);
      const BucketMatrix m = as_matrix(b, b.num_units());
      const std::size_t B = b.num_buckets, padded = B * size;
      const auto& ref = kernels::kernel_table(Arch::scalar);
      std::vector<std::uint32_t> list(b.num_units() + kernels::kDispatchSlack);
      std::vector<float> xs0(list.size());
      const std::size_t count = ref.bucket_dispatch(list.data(), xs0.data(), m.view, x0.data(), b.num_units(), 0.01f);
      for (std::size_t n : {std::size_t(2), std::size_t(3), std::size_t(5), kernels::kMaxVectors}) {
        // Each vector's inputs for the listed units; some zero (a vector not taking a unit).
        std::vector<float> xs(count * n);
        for (std::size_t i = 0; i < count; ++i)
          for (std::size_t v = 0; v < n; ++v) xs[i * n + v] = v == 0 ? xs0[i] : rng() % 5 == 0 ? 0.0f : heavy_tailed(1, rng)[0];
        for (Arch arch : arches()) {
          CAPTURE(kernels::arch_name(arch), out, in, size, int(weights), n);
          const auto& k = kernels::kernel_table(arch);
          std::vector<float> y(n * padded, 7.0f), split(n * padded, 7.0f);
          k.bucket_matvec(y.data(), padded, m.view, list.data(), xs.data(), count, n, 0, B);
          // Ranges of buckets write only their own outputs, the values unchanged.
          const std::size_t cut = std::min(B, kernels::kBucketRangeAlign * (1 + rng() % 4));
          k.bucket_matvec(split.data(), padded, m.view, list.data(), xs.data(), count, n, 0, cut);
          k.bucket_matvec(split.data(), padded, m.view, list.data(), xs.data(), count, n, cut, B);
          REQUIRE(split == y);
          std::vector<float> yr(n * padded);
          ref.bucket_matvec(yr.data(), padded, m.view, list.data(), xs.data(), count, n, 0, B);
          REQUIRE(y == yr);
          for (std::size_t v = 0; v < n; ++v) {
            std::vector<float> column(count), single(padded);
            for (std::size_t i = 0; i < count; ++i) column[i] = xs[i * n + v];
            k.bucket_matvec(single.data(), 0, m.view, list.data(), column.data(), count, 1, 0, B);
            REQUIRE(std::equal(single.begin(), single.end(), y.begin() + std::ptrdiff_t(v * padded)));
          }
        }
      }
    }
  }
}

TEST_CASE("effort products of several vectors equal each vector's own, at any effort and thread count", "[effort]") {
  std::mt19937 rng(12);
  const std::size_t out = 600, in = 300;
  const auto w = gaussian(out * in, rng, 0.02f);
  for (BucketWeights weights : kWeights) {
    const auto b = convert(w, out, in, 2, weights);
    const BucketMatrix m = as_matrix(b, b.num_units());
    const std::size_t n = 4;
    std::vector<float> x(n * in);
    for (float& v : x) v = heavy_tailed(1, rng)[0];
    for (float effort : {1.0f, 0.5f}) {
      for (Arch arch : arches())
      for (int threads : {1, 3}) {
        CAPTURE(int(weights), effort, kernels::arch_name(arch), threads);
        ThreadPool pool(threads);
        BucketScratch scratch({&m});
        EffortState state;
        state.set_all(effort);
        const Compute compute{kernels::kernel_table(arch), pool, &state, &scratch};
        std::vector<float> together(n * out);
        std::vector<EffortState*> states(n, &state);
        matvec(Matrix(m), 0, MatrixKind::up_proj, x.data(), together.data(), states, compute);
        const double fraction = state.stats.fraction(MatrixKind::up_proj);
        for (std::size_t v = 0; v < n; ++v) {
          const auto [alone, alone_fraction] = run(m, std::vector<float>(x.begin() + std::ptrdiff_t(v * in), x.begin() + std::ptrdiff_t((v + 1) * in)), effort, arch);
          REQUIRE(std::equal(alone.begin(), alone.end(), together.begin() + std::ptrdiff_t(v * out)));
        }
        REQUIRE(fraction == Approx(effort).margin(0.02));
      }
    }
  }
}

TEST_CASE("effort 1 is the dense product of the decoded weights, for every bucket size", "[effort]") {
  std::mt19937 rng(4);
  const std::size_t out = 300, in = 200;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  for (std::size_t size : kBucketSizes)
  for (BucketWeights weights : kWeights) {
    const auto b = convert(w, out, in, size, weights);
    const auto decoded = decode_buckets(as_matrix(b, b.num_units()), b.num_units());
    const auto exact = exact_product(decoded, x, out, in);
    for (Arch arch : arches()) {
      const auto [y, fraction] = run(as_matrix(b, b.num_units()), x, 1.0f, arch);
      CAPTURE(size, int(weights), kernels::arch_name(arch));
      REQUIRE(fraction == 1.0);
      double total_bound = 0, total_magnitude = 0;
      for (std::size_t o = 0; o < out; ++o) {
        // The terms that reach output o: its own, and for S = 2 (position 0 = bucket total less
        // position 1) the whole bucket's.
        double magnitude = 0;
        const std::size_t first = size == 2 ? o / 2 * 2 : o, last = size == 2 ? std::min(out, first + 2) : o + 1;
        for (std::size_t r = first; r < last; ++r)
          for (std::size_t j = 0; j < in; ++j) magnitude += std::fabs(double(decoded[r * in + j]) * x[j]);
        // fp32 fused sums of up to 2*in terms and one subtraction: Higham's bound
        // (2*in + 1) * 2^-24 * sum|terms| (a decoded q8 weight is
        // exact in fp32); for q8, plus the int8 multipliers' rounding.
        const double q8_bound = q8_quantization_bound(as_matrix(b, b.num_units()), x, b.num_units(), o);
        REQUIRE(std::fabs(y[o] - exact[o]) <= double(2 * in + 2) * 0x1p-24 * magnitude + q8_bound);
        total_bound += q8_bound, total_magnitude += magnitude;
      }
      // The bound is a test: for these heavy-tailed inputs it is 1.5-2.2% of the terms.
      CAPTURE(total_bound / total_magnitude);
      REQUIRE(total_bound <= 0.05 * total_magnitude);
    }
  }
}

TEST_CASE("the batched product is effort 1 for every vector: arches, bucket sizes, partial loading, threads", "[effort]") {
  std::mt19937 rng(12);
  const std::size_t out = 300, in = 200, n = 14;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(n * in, rng);
  for (std::size_t size : kBucketSizes)
  for (BucketWeights weights : kWeights) {
    const auto b = convert(w, out, in, size, weights);
    for (std::size_t kept : {b.num_units(), b.num_units() * 3 / 4 + 5}) {  // all, and a partial load
      const BucketMatrix m = as_matrix(b, kept);
      const auto decoded = decode_buckets(m, kept);
      std::vector<float> one;
      for (auto [arch, threads] : {std::pair{Arch::scalar, 1}, {Arch::avx2, 1}, {Arch::avx512, 1}, {kernels::best_arch(), 2},
                                   {kernels::best_arch(), 3}}) {
        if (!kernels::arch_supported(arch)) continue;
        if (test::kSanitized && threads == 1 && arch != kernels::best_arch()) continue;  // the sanitizers look for memory errors: one arch
        CAPTURE(size, int(weights), kept, kernels::arch_name(arch), threads);
        ThreadPool pool(threads);
        EffortState state;
        std::vector<float> y(n * out), packed;
        matmul(Matrix(m), MatrixKind::up_proj, x.data(), y.data(), n, Compute{kernels::kernel_table(arch), pool, &state, nullptr},
               packed);
        REQUIRE(state.stats.fraction(MatrixKind::up_proj) == Approx(double(kept) / double(b.num_units())));
        // Every arch sums each output in the same order, and one thread sums it whole.
        if (one.empty()) one = y;
        REQUIRE(y == one);
        for (std::size_t j = 0; j < n; ++j) {
          const std::vector<float> xj(x.begin() + std::ptrdiff_t(j * in), x.begin() + std::ptrdiff_t((j + 1) * in));
          const auto exact = exact_product(decoded, xj, out, in);
          for (std::size_t o = 0; o < out; ++o) {
            double magnitude = 0;
            for (std::size_t i = 0; i < in; ++i) magnitude += std::fabs(double(decoded[o * in + i]) * xj[i]);
            // fp32 fused sums over the inputs: Higham's bound.
            REQUIRE(std::fabs(y[j * out + o] - exact[o]) <= double(in) * 0x1p-24 * magnitude);
          }
        }
      }
    }
  }
}

TEST_CASE("the cutoff is the exact order statistic of the probe importances", "[effort]") {
  std::vector<float> p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 1.0f) == -1.0f);  // every unit
  p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 0.4f) == 3.0f);   // t = 2: the third largest; 2 probes are above it
  p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 0.01f) == 4.0f);  // t clamps to 1: at least the largest passes
  p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 0.9f) == 1.0f);   // t = round(4.5) = 4 (ties away from zero)
  // The radix select against nth_element on importances as they come: random magnitudes over
  // many octaves, zeros, exact ties, subnormals, a single value.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> octave(-40, 10);
  for (std::size_t n : {1, 2, 3, 17, 1000, 4096}) {
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> values(n);
      for (auto& v : values) {
        v = std::exp2(octave(rng));
        if (kind == 1 && rng() % 3 == 0) v = 0.0f;
        if (kind == 2) v = float(rng() % 7);  // ties everywhere
        if (kind == 3) v = std::numeric_limits<float>::denorm_min() * float(rng() % 1000);
      }
      for (float e : {0.01f, 0.125f, 0.25f, 0.375f, 0.5f, 0.75f, 0.99f, 1.0f}) {
        const auto t = std::size_t(std::clamp<double>(std::round(double(e) * double(n)), 1.0, double(n)));
        std::vector<float> sorted = values;
        std::sort(sorted.begin(), sorted.end(), std::greater<float>());
        std::vector<float> work = values;
        CAPTURE(n, kind, e);
        REQUIRE(effort_cutoff(work, n, e) == (t >= n ? -1.0f : sorted[t]));
      }
    }
  }
}

TEST_CASE("the work done tracks effort and quality falls smoothly", "[effort]") {
  // A Mistral-7B k_proj shape (1024 x 4096): 4096 probes sampled among S*4096 units.
  std::mt19937 rng(5);
  const std::size_t out = 1024, in = 4096;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  const auto exact = exact_product(w, x, out, in);
  for (auto [size, weights] : {std::pair{2, BucketWeights::f16}, {16, BucketWeights::f16}, {2, BucketWeights::q8}}) {
    const auto b = convert(w, out, in, std::size_t(size), weights, 11);
    double previous_cos = 1.0;
    // Under the sanitizers three efforts (they look for memory errors; the numbers are checked
    // in the optimised pass).
    const std::vector<float> efforts = test::kSanitized ? std::vector<float>{1.0f, 0.5f, 0.01f}
                                                        : std::vector<float>{1.0f, 0.75f, 0.5f, 0.25f, 0.125f, 0.0625f, 0.01f};
    for (float effort : efforts) {
      const auto [y, fraction] = run(as_matrix(b, b.num_units()), x, effort, kernels::best_arch(), 2);
      CAPTURE(size, int(weights), effort, fraction);
      // 4096 probes: the dispatched fraction's sampling error is about sqrt(e(1-e)/4096) <= 0.8%;
      // allow 3%.
      REQUIRE(std::fabs(fraction - effort) <= 0.03);
      const double cos = cosine(exact, y.data());
      CAPTURE(cos);
      REQUIRE(std::isfinite(cos));
      REQUIRE(cos > 0.3);  // never a zero or unrelated vector
      REQUIRE(cos <= previous_cos + 1e-4);
      previous_cos = cos;
      // Every weight in fp16, moved by at most S/2 steps for its position bits; q8: an int8 of
      // 7 bits beside the position bit (measured 0.99993).
      if (effort == 1.0f) REQUIRE(cos > (weights == BucketWeights::q8 ? 0.9997 : 0.9999));
      // Measured: 0.994 (S = 16) and 0.990 (S = 2) with these heavy-tailed inputs.
      if (effort == 0.5f) REQUIRE(cos > 0.98);
    }
  }
}

TEST_CASE("the effort product does not depend on the thread count", "[effort]") {
  std::mt19937 rng(6);
  const std::size_t out = 2048, in = 512;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  for (std::size_t size : kBucketSizes)
  for (BucketWeights weights : kWeights) {
    const auto b = convert(w, out, in, size, weights, 3);
    for (float effort : {1.0f, 0.3f, 0.02f}) {
      const auto one = run(as_matrix(b, b.num_units()), x, effort, kernels::best_arch(), 1).first;
      for (int threads : test::kSanitized ? std::vector<int>{3} : std::vector<int>{2, 3, 16}) REQUIRE(run(as_matrix(b, b.num_units()), x, effort, kernels::best_arch(), threads).first == one);
    }
  }
}

TEST_CASE("partial loading equals the full matrix with the trailing units removed", "[effort]") {
  std::mt19937 rng(7);
  const std::size_t out = 96, in = 80;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  for (auto [size, weights] : {std::pair{std::size_t(2), BucketWeights::f16}, {16, BucketWeights::f16}, {2, BucketWeights::q8}}) {
    const auto b = convert(w, out, in, size, weights, 3);
    const std::size_t kept = size * in * 3 / 4;  // mem_fraction 0.75
    const auto exact = exact_product(decode_buckets(as_matrix(b, kept), kept), x, out, in);
    const auto [y, fraction] = run(as_matrix(b, kept), x, 1.0f, kernels::best_arch());
    REQUIRE(fraction == 0.75);
    for (std::size_t o = 0; o < out; ++o)
      REQUIRE(std::fabs(y[o] - exact[o]) <= 1e-5 + q8_quantization_bound(as_matrix(b, kept), x, kept, o));
  }
}

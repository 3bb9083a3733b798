// bucket_test.cpp: the bucketed layout and the effort kernels: round trip, structure, SIMD vs
// scalar reference, the cutoff, and how quality and work fall with effort.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "bucketize.h"
#include "kernels/bucket_matvec.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "linear.h"

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

BucketizedMatrix convert(const std::vector<float>& w, std::size_t out, std::size_t in, std::size_t group,
                         std::uint64_t seed = 7, std::vector<float> input_scale = {}, std::size_t bucket_size = 16) {
  BucketizeOptions o;
  o.group = group;
  o.bucket_size = bucket_size;
  o.seed = seed;
  o.input_scale = std::move(input_scale);
  return bucketize(w.data(), out, in, o, "w");
}

std::size_t all_units(const BucketizedMatrix& b) { return b.bucket_size * b.num_tiles; }

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

std::vector<Arch> arches() {
  std::vector<Arch> a;
  for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512})
    if (kernels::arch_supported(arch)) a.push_back(arch);
  return a;
}

}  // namespace

TEST_CASE("decoding the buckets gives the fp16 weights up to the position bits, for every group", "[effort]") {
  std::mt19937 rng(1);
  for (auto [out, in] : {std::pair<std::size_t, std::size_t>{64, 32}, {172, 64}, {16, 1}, {5, 3}}) {
    auto w = gaussian(out * in, rng, 0.02f);
    w[0] = 0.0f;
    w[1] = 1e-7f;  // an fp16 subnormal
    for (auto [group, size] : {std::pair<std::size_t, std::size_t>{1, 16}, {2, 16}, {3, 16}, {8, 16}, {1, 8}, {4, 8}}) {
      const auto b = convert(w, out, in, group, 7, {}, size);
      REQUIRE(b.num_buckets == (out + size - 1) / size);
      const auto decoded = decode_buckets(as_matrix(b, all_units(b)), all_units(b));
      for (std::size_t i = 0; i < w.size(); ++i) {
        const float w16 = kernels::half_to_float(kernels::float_to_half(w[i]));
        // Replacing the low 4 of fp16's 10 mantissa bits by 0b1000 moves a weight by at most
        // 8 units of its last place: 2^-7 relative for normal halves, 8 * 2^-24 for subnormals
        // (half that for buckets of 8, with 3 bits). Only the g = 0 weights carry position
        // bits; the others are exact fp16.
        const float bound = std::max(std::fabs(w16) * 0x1p-7f, 8 * 0x1p-24f) * (size == 8 ? 0.5f : 1.0f);
        REQUIRE(std::fabs(decoded[i] - w16) <= bound);
      }
    }
  }
}

TEST_CASE("buckets are sorted, hold every position once, and stats are their means", "[effort]") {
  std::mt19937 rng(2);
  const std::size_t out = 48, in = 10;
  const auto w = gaussian(out * in, rng, 1.0f);
  const auto b = convert(w, out, in, 1);
  for (std::size_t j = 0; j < in; ++j) REQUIRE(b.input_order[j] == j);  // canonical: natural order
  for (std::size_t j = 0; j < in; ++j)
    for (std::size_t bucket = 0; bucket < b.num_buckets; ++bucket) {
      unsigned seen = 0;
      float previous = INFINITY;
      for (std::size_t k = 0; k < 16; ++k) {
        const std::uint16_t e = b.units[(k * in + j) * b.num_buckets + bucket];
        seen |= 1u << kernels::bucket_position(e, 16);
        REQUIRE(std::fabs(kernels::bucket_weight(e, 16)) <= previous);
        previous = std::fabs(kernels::bucket_weight(e, 16));
        // The entry really is the weight at the position it names (fp16, position bits aside).
        const float original = w[(bucket * 16 + kernels::bucket_position(e, 16)) * in + j];
        REQUIRE(std::fabs(kernels::bucket_weight(e, 16) - original) <= std::fabs(original) * 0x1p-7f + 1e-3f * 0x1p-7f);
      }
      REQUIRE(seen == 0xFFFFu);
    }
  for (std::size_t r = 0; r < 16 * in; ++r) {
    double sum = 0;
    for (std::size_t bucket = 0; bucket < b.num_buckets; ++bucket) sum += std::fabs(kernels::bucket_weight(b.units[r * b.num_buckets + bucket], 16));
    REQUIRE(b.stats[r] == Approx(sum / double(b.num_buckets)).epsilon(1e-6));
  }
  // Fewer rows than max_probes: every row is a probe, in order, with its stat.
  REQUIRE(b.probe_units.size() == 16 * in);
  for (std::size_t i = 0; i < b.probe_units.size(); ++i) {
    REQUIRE(b.probe_units[i] == i);
    REQUIRE(b.probe_stats[i] == b.stats[i]);
  }
}

TEST_CASE("SIMD dispatch and bucket product equal the scalar reference bit for bit", "[effort]") {
  std::mt19937 rng(3);
  for (auto [out, in] : {std::pair<std::size_t, std::size_t>{16, 1}, {40, 7}, {256, 33}, {272, 64}, {1024, 100}}) {
    const auto w = gaussian(out * in, rng, 0.02f);
    const auto x = heavy_tailed(in, rng);
    for (auto [group, size] : {std::pair<std::size_t, std::size_t>{1, 16}, {2, 16}, {3, 16}, {4, 16}, {8, 16}, {16, 16},
                               {1, 8}, {8, 8}}) {
      const auto b = convert(w, out, in, group, 7, {}, size);
      const BucketMatrix m = as_matrix(b, all_units(b));
      // Inputs in tile order, as linear.cpp lays them out.
      std::vector<float> xg(b.num_tiles * group), abs_xg(xg.size());
      for (std::size_t slot = 0; slot < xg.size(); ++slot) {
        const auto j = b.input_order[slot];
        xg[(slot % group) * b.num_tiles + slot / group] = j < in ? x[j] : 0.0f;
      }
      for (std::size_t i = 0; i < xg.size(); ++i) abs_xg[i] = std::fabs(xg[i]);
      const auto& ref = kernels::kernel_table(Arch::scalar);
      for (float cutoff : {-1.0f, 0.0f, 0.01f, 0.05f}) {
        const std::size_t units = all_units(b) - 3;  // a partial last rank
        std::vector<std::uint32_t> list_ref(units), list(units);
        const std::size_t n_ref = ref.bucket_dispatch(list_ref.data(), m.view, abs_xg.data(), units, cutoff);
        for (Arch arch : arches()) {
          CAPTURE(kernels::arch_name(arch), out, in, group, size, cutoff);
          const auto& k = kernels::kernel_table(arch);
          const std::size_t n = k.bucket_dispatch(list.data(), m.view, abs_xg.data(), units, cutoff);
          REQUIRE(n == n_ref);
          REQUIRE(std::equal(list.begin(), list.begin() + std::ptrdiff_t(n), list_ref.begin()));
          // A bucket range that starts and ends off the SIMD tile grid.
          const std::size_t begin = b.num_buckets > 2 ? 1 : 0, end = b.num_buckets;
          std::vector<float> y(b.num_buckets * size + 1, 7.0f), yr(b.num_buckets * size + 1, 7.0f);
          k.bucket_matvec(y.data(), m.view, xg.data(), list.data(), n, begin, end);
          ref.bucket_matvec(yr.data(), m.view, xg.data(), list.data(), n, begin, end);
          REQUIRE(y == yr);
          REQUIRE(y.back() == 7.0f);  // nothing written past the range
        }
      }
    }
  }
}

TEST_CASE("effort 1 is the dense product of the decoded weights, for every group", "[effort]") {
  std::mt19937 rng(4);
  const std::size_t out = 300, in = 200;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  for (auto [group, size] : {std::pair<std::size_t, std::size_t>{1, 16}, {4, 16}, {8, 16}, {3, 16}, {1, 8}}) {
    const auto b = convert(w, out, in, group, 7, {}, size);
    const auto exact = exact_product(decode_buckets(as_matrix(b, all_units(b)), all_units(b)), x, out, in);
    for (Arch arch : arches()) {
      const auto [y, fraction] = run(as_matrix(b, all_units(b)), x, 1.0f, arch);
      CAPTURE(group, size, kernels::arch_name(arch));
      // Padding inputs (tiles rounded up to G) count as multiply-adds: (in rounded up) / in.
      REQUIRE(fraction == 1.0);  // padding inputs count in both the work done and the dense work
      for (std::size_t o = 0; o < out; ++o) {
        double magnitude = 0;
        for (std::size_t j = 0; j < in; ++j) magnitude += std::fabs(double(w[o * in + j]) * x[j]);
        // fp32 sums of 16*in terms: within 16*in * 2^-24 * sum|terms| (Higham), 2% for the
        // fp16 rounding of the weights inside the magnitude.
        REQUIRE(std::fabs(y[o] - exact[o]) <= 16 * in * 0x1p-24 * magnitude * 1.02);
      }
    }
  }
}

TEST_CASE("the batched product is effort 1 for every vector: arches, groups, sizes, partial loading, threads", "[effort]") {
  std::mt19937 rng(12);
  const std::size_t out = 300, in = 200, n = 14;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(n * in, rng);
  for (auto [group, size] : {std::pair<std::size_t, std::size_t>{1, 16}, {4, 16}, {3, 16}, {1, 8}, {4, 8}}) {
    const auto b = convert(w, out, in, group, 7, {}, size);
    for (std::size_t kept : {all_units(b), size / 2 * b.num_tiles + 5}) {  // all, and a partial load
      const BucketMatrix m = as_matrix(b, kept);
      const auto decoded = decode_buckets(m, kept);
      std::vector<float> one;
      for (auto [arch, threads] : {std::pair{Arch::scalar, 1}, {Arch::avx2, 1}, {Arch::avx512, 1}, {kernels::best_arch(), 2},
                                   {kernels::best_arch(), 3}}) {
        if (!kernels::arch_supported(arch)) continue;
        CAPTURE(group, size, kept, kernels::arch_name(arch), threads);
        ThreadPool pool(threads);
        EffortState state;
        std::vector<float> y(n * out), packed;
        matmul(Matrix(m), MatrixKind::up_proj, x.data(), y.data(), n, Compute{kernels::kernel_table(arch), pool, &state, nullptr},
               packed);
        REQUIRE(state.stats.fraction(MatrixKind::up_proj) == Approx(double(kept) / double(all_units(b))));
        // Every arch sums each output in the same order, and one thread sums it whole.
        if (one.empty()) one = y;
        REQUIRE(y == one);
        for (std::size_t j = 0; j < n; ++j) {
          const std::vector<float> xj(x.begin() + std::ptrdiff_t(j * in), x.begin() + std::ptrdiff_t((j + 1) * in));
          const auto exact = exact_product(decoded, xj, out, in);
          for (std::size_t o = 0; o < out; ++o) {
            double magnitude = 0;
            for (std::size_t i = 0; i < in; ++i) magnitude += std::fabs(double(decoded[o * in + i]) * xj[i]);
            // fp32 sums over the padded input slots (<= in + G): Higham's bound.
            REQUIRE(std::fabs(y[j * out + o] - exact[o]) <= double(in + group) * 0x1p-24 * magnitude);
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
}

TEST_CASE("the work done tracks effort and quality falls smoothly", "[effort]") {
  // A Mistral-7B k_proj shape (1024 x 4096): 65536 units for G = 1, 4096 probes sampled.
  std::mt19937 rng(5);
  const std::size_t out = 1024, in = 4096;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  const auto exact = exact_product(w, x, out, in);
  for (std::size_t group : {1, 8}) {
    const auto b = convert(w, out, in, group, 11);
    double previous_cos = 1.0;
    for (float effort : {1.0f, 0.75f, 0.5f, 0.25f, 0.125f, 0.0625f, 0.01f}) {
      const auto [y, fraction] = run(as_matrix(b, all_units(b)), x, effort, kernels::best_arch(), 2);
      CAPTURE(group, effort, fraction);
      // 4096 probes (or all 8192 units for G = 8): the dispatched fraction's sampling error is
      // about sqrt(e(1-e)/4096) <= 0.8%; allow 3%.
      REQUIRE(std::fabs(fraction - effort) <= 0.03);
      const double cos = cosine(exact, y.data());
      CAPTURE(cos);
      REQUIRE(std::isfinite(cos));
      REQUIRE(cos > 0.3);  // never a zero or unrelated vector
      REQUIRE(cos <= previous_cos + 1e-4);
      previous_cos = cos;
      if (effort == 1.0f) REQUIRE(cos > 0.9999);  // every weight, fp16 with 6-bit mantissas on g = 0
      // The canonical layout sorts each input's own weights. A group shares one order among G
      // random Gaussian columns, which have no common structure, so its low-effort quality here
      // is much lower (measured: cos 0.91 at effort 0.5 for G = 8): only the canonical bound.
      if (effort >= 0.5f && group == 1) REQUIRE(cos > 0.99);
    }
  }
}

TEST_CASE("the effort product does not depend on the thread count", "[effort]") {
  std::mt19937 rng(6);
  const std::size_t out = 2048, in = 512;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  for (std::size_t group : {1, 8}) {
    const auto b = convert(w, out, in, group, 3);
    for (float effort : {1.0f, 0.3f}) {
      const auto one = run(as_matrix(b, all_units(b)), x, effort, kernels::best_arch(), 1).first;
      for (int threads : {2, 3}) REQUIRE(run(as_matrix(b, all_units(b)), x, effort, kernels::best_arch(), threads).first == one);
    }
  }
}

TEST_CASE("partial loading equals the full matrix with the trailing units removed", "[effort]") {
  std::mt19937 rng(7);
  const std::size_t out = 96, in = 80;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto x = heavy_tailed(in, rng);
  for (std::size_t group : {1, 4}) {
    const auto b = convert(w, out, in, group, 3);
    const std::size_t kept = 12 * b.num_tiles;  // mem_fraction 0.75
    const auto exact = exact_product(decode_buckets(as_matrix(b, kept), kept), x, out, in);
    const auto [y, fraction] = run(as_matrix(b, kept), x, 1.0f, kernels::best_arch());
    REQUIRE(fraction == 0.75);
    for (std::size_t o = 0; o < out; ++o) REQUIRE(y[o] == Approx(exact[o]).margin(1e-5));
  }
}

TEST_CASE("calibrated tiles put the largest inputs together", "[effort]") {
  std::mt19937 rng(8);
  const std::size_t out = 32, in = 16;
  const auto w = gaussian(out * in, rng, 0.02f);
  std::vector<float> scale(in, 1.0f);
  scale[3] = 50.0f, scale[11] = 40.0f, scale[7] = 30.0f, scale[0] = 20.0f;  // outlier inputs
  const auto b = convert(w, out, in, 4, 7, scale);
  REQUIRE(std::vector<std::uint32_t>(b.input_order.begin(), b.input_order.begin() + 4) == std::vector<std::uint32_t>{3, 11, 7, 0});
}

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

BucketMatrix view(const BucketizedMatrix& b, std::size_t loaded_rows) {
  BucketMatrix m{b.bucket_rows.data(), b.stats.data(), b.out_features, b.in_features, b.num_buckets, loaded_rows, {}, {}};
  for (std::size_t i = 0; i < b.probe_rows.size(); ++i)
    if (b.probe_rows[i] < loaded_rows) {
      m.probe_rows.push_back(b.probe_rows[i]);
      m.probe_weights.push_back(b.probe_weights[i]);
    }
  return m;
}

// Runs one effort product; returns y and the fraction of rows dispatched.
std::pair<std::vector<float>, double> run(const BucketMatrix& m, const std::vector<float>& x, float effort, Arch arch, int threads = 1) {
  ThreadPool pool(threads);
  BucketScratch scratch{std::vector<std::uint32_t>(m.loaded_rows), std::vector<float>(m.loaded_rows),
                        std::vector<float>(m.probe_rows.size()), std::vector<float>(m.num_buckets * 16)};
  EffortState state;
  for (auto& e : state.effort) e = effort;
  std::vector<float> y(m.out_features);
  matvec(Matrix(m), MatrixKind::up_proj, x.data(), y.data(), Compute{kernels::kernel_table(arch), pool, &state, &scratch});
  return {y, state.stats.fraction(MatrixKind::up_proj)};
}

std::vector<Arch> arches() {
  std::vector<Arch> a;
  for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512})
    if (kernels::arch_supported(arch)) a.push_back(arch);
  return a;
}

}  // namespace

TEST_CASE("decoding the buckets gives the fp16 weights up to the position bits", "[effort]") {
  std::mt19937 rng(1);
  for (auto [out, in] : {std::pair<std::size_t, std::size_t>{64, 32}, {172, 64}, {16, 1}, {5, 3}}) {
    auto w = gaussian(out * in, rng, 0.02f);
    w[0] = 0.0f;
    w[1] = 1e-7f;  // an fp16 subnormal
    const auto b = bucketize(w.data(), out, in, 4096, 7, "w");
    REQUIRE(b.num_buckets == (out + 15) / 16);
    const auto decoded = decode_buckets(b.bucket_rows.data(), out, in, 16 * in);
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float w16 = kernels::half_to_float(kernels::float_to_half(w[i]));
      // Replacing the low 4 of fp16's 10 mantissa bits by 0b1000 moves a weight by at most
      // 8 units of its last place: 2^-7 relative for normal halves, 8 * 2^-24 for subnormals.
      const float bound = std::max(std::fabs(w16) * 0x1p-7f, 8 * 0x1p-24f);
      REQUIRE(std::fabs(decoded[i] - w16) <= bound);
    }
  }
}

TEST_CASE("buckets are sorted, hold every position once, and stats are their means", "[effort]") {
  std::mt19937 rng(2);
  const std::size_t out = 48, in = 10;
  const auto w = gaussian(out * in, rng, 1.0f);
  const auto b = bucketize(w.data(), out, in, 4096, 7, "w");
  for (std::size_t j = 0; j < in; ++j)
    for (std::size_t bucket = 0; bucket < b.num_buckets; ++bucket) {
      unsigned seen = 0;
      float previous = INFINITY;
      for (std::size_t k = 0; k < 16; ++k) {
        const std::uint16_t e = b.bucket_rows[(k * in + j) * b.num_buckets + bucket];
        seen |= 1u << kernels::bucket_position(e);
        REQUIRE(std::fabs(kernels::bucket_weight(e)) <= previous);
        previous = std::fabs(kernels::bucket_weight(e));
        // The entry really is the weight at the position it names (fp16, position bits aside).
        const float original = w[(bucket * 16 + kernels::bucket_position(e)) * in + j];
        REQUIRE(std::fabs(kernels::bucket_weight(e) - original) <= std::fabs(original) * 0x1p-7f + 1e-3f * 0x1p-7f);
      }
      REQUIRE(seen == 0xFFFFu);
    }
  for (std::size_t r = 0; r < 16 * in; ++r) {
    double sum = 0;
    for (std::size_t bucket = 0; bucket < b.num_buckets; ++bucket) sum += std::fabs(kernels::bucket_weight(b.bucket_rows[r * b.num_buckets + bucket]));
    REQUIRE(b.stats[r] == Approx(sum / double(b.num_buckets)).epsilon(1e-6));
  }
  // Fewer rows than max_probes: every row is a probe, in order, with its stat.
  REQUIRE(b.probe_rows.size() == 16 * in);
  for (std::size_t i = 0; i < b.probe_rows.size(); ++i) {
    REQUIRE(b.probe_rows[i] == i);
    REQUIRE(b.probe_weights[i] == b.stats[i]);
  }
}

TEST_CASE("SIMD dispatch and bucket product equal the scalar reference bit for bit", "[effort]") {
  std::mt19937 rng(3);
  for (auto [out, in] : {std::pair<std::size_t, std::size_t>{16, 1}, {40, 7}, {256, 33}, {272, 64}, {1024, 100}}) {
    const auto w = gaussian(out * in, rng, 0.02f);
    const auto b = bucketize(w.data(), out, in, 4096, 7, "w");
    const auto x = heavy_tailed(in, rng);
    for (float cutoff : {-1.0f, 0.0f, 0.01f, 0.05f}) {
      std::vector<std::uint32_t> rows_ref(16 * in), rows(16 * in);
      std::vector<float> x_ref(16 * in), xs(16 * in);
      const auto& ref = kernels::kernel_table(Arch::scalar);
      const std::size_t n_ref = ref.bucket_dispatch(rows_ref.data(), x_ref.data(), b.stats.data(), x.data(), in, 16 * in, cutoff);
      std::vector<float> y_ref(b.num_buckets * 16 + 1, 7.0f);
      ref.bucket_matvec(y_ref.data(), b.bucket_rows.data(), b.num_buckets, rows_ref.data(), x_ref.data(), n_ref, 0, b.num_buckets);
      REQUIRE(y_ref.back() == 7.0f);
      for (Arch arch : arches()) {
        CAPTURE(kernels::arch_name(arch), out, in, cutoff);
        const auto& k = kernels::kernel_table(arch);
        const std::size_t n = k.bucket_dispatch(rows.data(), xs.data(), b.stats.data(), x.data(), in, 16 * in - 3, cutoff);
        const std::size_t n_ref_short = ref.bucket_dispatch(rows_ref.data(), x_ref.data(), b.stats.data(), x.data(), in, 16 * in - 3, cutoff);
        REQUIRE(n == n_ref_short);
        REQUIRE(std::equal(rows.begin(), rows.begin() + std::ptrdiff_t(n), rows_ref.begin()));
        REQUIRE(std::equal(xs.begin(), xs.begin() + std::ptrdiff_t(n), x_ref.begin()));
        // A bucket range that starts and ends off the SIMD tile grid.
        const std::size_t begin = b.num_buckets > 2 ? 1 : 0, end = b.num_buckets;
        std::vector<float> y(b.num_buckets * 16, 7.0f), yr(b.num_buckets * 16, 7.0f);
        k.bucket_matvec(y.data(), b.bucket_rows.data(), b.num_buckets, rows.data(), xs.data(), n, begin, end);
        ref.bucket_matvec(yr.data(), b.bucket_rows.data(), b.num_buckets, rows.data(), xs.data(), n, begin, end);
        REQUIRE(y == yr);
      }
    }
  }
}

TEST_CASE("effort 1 is the dense product of the decoded weights", "[effort]") {
  std::mt19937 rng(4);
  const std::size_t out = 300, in = 200;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto b = bucketize(w.data(), out, in, 4096, 7, "w");
  const auto x = heavy_tailed(in, rng);
  const auto exact = exact_product(decode_buckets(b.bucket_rows.data(), out, in, 16 * in), x, out, in);
  for (Arch arch : arches()) {
    const auto [y, fraction] = run(view(b, 16 * in), x, 1.0f, arch);
    REQUIRE(fraction == 1.0);
    for (std::size_t o = 0; o < out; ++o) {
      double magnitude = 0;
      for (std::size_t j = 0; j < in; ++j) magnitude += std::fabs(double(w[o * in + j]) * x[j]);
      // fp32 sums of 16*in terms in row order: within 16*in * 2^-24 * sum|terms| (Higham).
      REQUIRE(std::fabs(y[o] - exact[o]) <= 16 * in * 0x1p-24 * magnitude * 1.02);
    }
  }
}

TEST_CASE("the cutoff is the exact order statistic of the probe products", "[effort]") {
  std::vector<float> p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 1.0f) == -1.0f);  // every row
  p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 0.4f) == 3.0f);   // t = 2: the third largest; 2 probes are above it
  p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 0.01f) == 4.0f);  // t clamps to 1: at least the largest passes
  p = {5, 1, 4, 2, 3};
  REQUIRE(effort_cutoff(p, 5, 0.9f) == 1.0f);   // t = round(4.5) = 4 (ties away from zero)
}

TEST_CASE("the work done tracks effort and quality falls smoothly", "[effort]") {
  // A Mistral-7B k_proj shape (1024 x 4096): 65536 bucket rows, 4096 probes sampled from them.
  std::mt19937 rng(5);
  const std::size_t out = 1024, in = 4096;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto b = bucketize(w.data(), out, in, 4096, 11, "w");
  const auto x = heavy_tailed(in, rng);
  const auto exact = exact_product(w, x, out, in);
  double previous_cos = 1.0;
  for (float effort : {1.0f, 0.75f, 0.5f, 0.25f, 0.125f, 0.0625f, 0.01f}) {
    const auto [y, fraction] = run(view(b, 16 * in), x, effort, kernels::best_arch(), 2);
    CAPTURE(effort, fraction);
    // 4096 probes out of 65536 rows: the dispatched fraction's sampling error is about
    // sqrt(e(1-e)/4096) <= 0.8%; allow 3%.
    REQUIRE(std::fabs(fraction - effort) <= 0.03);
    const double cos = cosine(exact, y.data());
    CAPTURE(cos);
    REQUIRE(std::isfinite(cos));
    REQUIRE(cos > 0.3);  // never a zero or unrelated vector
    REQUIRE(cos <= previous_cos + 1e-4);
    previous_cos = cos;
    if (effort >= 0.5f) REQUIRE(cos > 0.99);
  }
}

TEST_CASE("the effort product does not depend on the thread count", "[effort]") {
  std::mt19937 rng(6);
  const std::size_t out = 2048, in = 512;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto b = bucketize(w.data(), out, in, 4096, 3, "w");
  const auto x = heavy_tailed(in, rng);
  for (float effort : {1.0f, 0.3f}) {
    const auto one = run(view(b, 16 * in), x, effort, kernels::best_arch(), 1).first;
    for (int threads : {2, 3}) REQUIRE(run(view(b, 16 * in), x, effort, kernels::best_arch(), threads).first == one);
  }
}

TEST_CASE("partial loading equals the full matrix with the trailing rows removed", "[effort]") {
  std::mt19937 rng(7);
  const std::size_t out = 96, in = 80;
  const auto w = gaussian(out * in, rng, 0.02f);
  const auto b = bucketize(w.data(), out, in, 4096, 3, "w");
  const auto x = heavy_tailed(in, rng);
  const std::size_t kept = 12 * in;  // mem_fraction 0.75
  const auto exact = exact_product(decode_buckets(b.bucket_rows.data(), out, in, kept), x, out, in);
  const auto [y, fraction] = run(view(b, kept), x, 1.0f, kernels::best_arch());
  REQUIRE(fraction == 0.75);
  for (std::size_t o = 0; o < out; ++o) REQUIRE(y[o] == Approx(exact[o]).margin(1e-5));
}

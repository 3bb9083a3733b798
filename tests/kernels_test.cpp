// kernels_test.cpp: every kernel of every arch this CPU runs, against the scalar reference, over
// awkward sizes and misaligned pointers.
#include <immintrin.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/panel_matmul.h"
#include "test_util.h"

using namespace effort::kernels;

namespace {

const std::size_t kSizes[] = {0, 1, 7, 15, 16, 17, 4095, 4096};
const std::size_t kMisalign[] = {0, 1, 3};  // in elements: pointers off the 64-byte grid

std::vector<Arch> simd_arches() {
  std::vector<Arch> arches;
  for (Arch a : {Arch::avx2, Arch::avx512})
    if (arch_supported(a)) arches.push_back(a);
  if (arches.empty()) WARN("no SIMD arch supported on this CPU: only the scalar kernels run");
  return arches;
}

// Small integers: every product and partial sum is exact in fp32, so any summation order gives
// the same bits and a SIMD result must equal the reference exactly.
std::vector<float> small_ints(std::size_t n, std::mt19937& rng, int range = 8) {
  std::uniform_int_distribution<int> d(-range, range);
  std::vector<float> v(n);
  for (auto& x : v) x = float(d(rng));
  return v;
}

std::vector<float> normals(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Weight storage of a dtype holding the given (exactly representable) values.
std::vector<std::uint8_t> encode(DType dtype, const std::vector<float>& values) {
  std::vector<std::uint8_t> bytes(values.size() * dtype_bytes(dtype, 1) + 64);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::f32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const std::uint16_t h = dtype == DType::f16 ? float_to_half(values[i])
                                                  : std::uint16_t(float_to_bits(values[i]) >> 16);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

// Misaligned copies of a vector: the same values starting `offset` floats into a buffer.
struct Shifted {
  std::vector<float> storage;
  float* data;
  Shifted(const std::vector<float>& v, std::size_t offset) : storage(v.size() + offset + 16) {
    data = storage.data() + offset;
    std::copy(v.begin(), v.end(), data);
  }
};

}  // namespace

TEST_CASE("fp16 decode matches the hardware for all 65536 halves", "[kernels]") {
  if (!arch_supported(Arch::avx2)) {
    WARN("skipped: no F16C on this CPU");
    return;
  }
  const auto hardware = [](std::uint16_t h) __attribute__((target("f16c"))) { return _cvtsh_ss(h); };
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float mine = half_to_float(std::uint16_t(h)), theirs = hardware(std::uint16_t(h));
    if (std::isnan(theirs)) {
      REQUIRE(std::isnan(mine));
    } else {
      REQUIRE(float_to_bits(mine) == float_to_bits(theirs));
    }
  }
}

TEST_CASE("fp16 encode rounds to nearest even like the hardware", "[kernels]") {
  if (!arch_supported(Arch::avx2)) {
    WARN("skipped: no F16C on this CPU");
    return;
  }
  const auto hardware = [](float f) __attribute__((target("f16c"))) {
    return std::uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
  };
  std::mt19937 rng(1);
  std::uniform_int_distribution<std::uint32_t> bits;
  // Random bit patterns cover every exponent, including subnormal and overflowing halves (a
  // tenth of them under the sanitizers, which look for memory errors, not rounding).
  for (int i = 0; i < (test::kSanitized ? 200000 : 2000000); ++i) {
    const float f = bits_to_float(bits(rng));
    if (std::isnan(f)) continue;
    REQUIRE(float_to_half(f) == hardware(f));
  }
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f, INFINITY})
    REQUIRE(float_to_half(f) == hardware(f));
}

TEST_CASE("SIMD kernels equal the scalar reference", "[kernels]") {
  const KernelTable& ref = kernel_table(Arch::scalar);
  for (Arch arch : simd_arches()) {
    const KernelTable& simd = kernel_table(arch);
    std::mt19937 rng(42);
    for (std::size_t n : kSizes) {
      for (std::size_t off : kMisalign) {
        CAPTURE(arch_name(arch), n, off);
        const auto x = small_ints(n, rng), y = small_ints(n, rng), w = small_ints(n, rng);
        Shifted sx(x, off), sw(w, off), a(x, off), b(x, off);

        // rms_norm: exact inputs, same operation order after the sum: bitwise equal.
        ref.rms_norm(a.data, sx.data, sw.data, n, 1e-5f);
        simd.rms_norm(b.data, sx.data, sw.data, n, 1e-5f);
        REQUIRE(std::equal(a.data, a.data + n, b.data));

        // add: elementwise, exact.
        Shifted ya(y, off), yb(y, off);
        ref.add(ya.data, sx.data, n);
        simd.add(yb.data, sx.data, n);
        REQUIRE(std::equal(ya.data, ya.data + n, yb.data));

        // rope on a head of n (even part): same products and sums per element, exact.
        const std::size_t head_dim = n & ~std::size_t(1);
        const auto cs = normals(head_dim / 2 + 1, rng), sn = normals(head_dim / 2 + 1, rng);
        const auto head = normals(n, rng);
        Shifted ra(head, off), rb(head, off);
        ref.rope(ra.data, cs.data(), sn.data(), head_dim);
        simd.rope(rb.data, cs.data(), sn.data(), head_dim);
        REQUIRE(std::equal(ra.data, ra.data + n, rb.data));

        // silu_mul: xsimd's exp differs from libm's by a few ulp; 1e-6 relative covers that.
        const auto g = normals(n, rng, 4.0f), u = normals(n, rng);
        Shifted sg(g, off), su(u, off), oa(g, off), ob(g, off);
        ref.silu_mul(oa.data, sg.data, su.data, n);
        simd.silu_mul(ob.data, sg.data, su.data, n);
        for (std::size_t i = 0; i < n; ++i) REQUIRE(ob.data[i] == Approx(oa.data[i]).epsilon(1e-6).margin(1e-30));

        // to_float of every dtype: exact conversions.
        for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
          const auto bytes = encode(dtype, x);
          std::vector<float> ca(n + 1), cb(n + 1);
          ref.to_float[int(dtype)](ca.data(), bytes.data(), n);
          simd.to_float[int(dtype)](cb.data(), bytes.data(), n);
          REQUIRE(ca == cb);
          for (std::size_t i = 0; i < n; ++i) REQUIRE(ca[i] == x[i]);
        }
      }
    }
  }
}

TEST_CASE("matvec of every dtype and arch equals the reference exactly on integer data", "[kernels]") {
  std::mt19937 rng(7);
  const std::pair<std::size_t, std::size_t> shapes[] = {{0, 5}, {5, 0}, {1, 1}, {7, 15}, {9, 16}, {17, 17}, {3, 4095}, {6, 4096}, {33, 100}};
  std::vector<Arch> arches = simd_arches();
  arches.push_back(Arch::scalar);
  for (auto [rows, cols] : shapes) {
    // |w|,|x| <= 8 and cols <= 4096: partial sums stay below 2^24, so fp32 sums are exact and
    // every arch must give the double-precision product bit for bit.
    const auto w = small_ints(rows * cols, rng), x = small_ints(cols, rng);
    std::vector<double> exact(rows, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) exact[r] += double(w[r * cols + c]) * x[c];
    for (Arch arch : arches) {
      for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
        for (std::size_t off : kMisalign) {
          CAPTURE(arch_name(arch), dtype_name(dtype), rows, cols, off);
          auto bytes = encode(dtype, w);
          bytes.insert(bytes.begin(), off * dtype_bytes(dtype, 1), 0);
          Shifted sx(x, off);
          std::vector<float> y(rows + 1, -1.0f);
          kernel_table(arch).matvec[int(dtype)](y.data(), 0, bytes.data() + off * dtype_bytes(dtype, 1), sx.data, 0, 1, rows, cols);
          for (std::size_t r = 0; r < rows; ++r) REQUIRE(double(y[r]) == exact[r]);
          REQUIRE(y[rows] == -1.0f);  // nothing written past the end
        }
      }
    }
  }
}

TEST_CASE("matvec of several vectors gives each its single-vector product, bit for bit", "[kernels]") {
  std::mt19937 rng(8);
  std::vector<Arch> arches = simd_arches();
  arches.push_back(Arch::scalar);
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{7, 64}, {9, 100}, {33, 256}}) {
    const auto w = normals(rows * cols, rng, 0.02f);
    for (std::size_t n : {2, 3, 5, 9}) {
      const auto x = normals(n * cols, rng);
      for (Arch arch : arches)
        for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::q8_0}) {
          if (dtype == DType::q8_0 && cols % kQ8_0Block) continue;
          CAPTURE(arch_name(arch), dtype_name(dtype), rows, cols, n);
          std::vector<std::uint8_t> bytes;
          if (dtype == DType::q8_0) {
            // Blocks of an fp16 scale and 32 int8, the weights' signs and sizes roughly kept.
            for (std::size_t b = 0; b < rows * cols / kQ8_0Block; ++b) {
              const std::uint16_t scale = float_to_half(0.001f * float(1 + b % 7));
              bytes.push_back(std::uint8_t(scale & 0xFF)), bytes.push_back(std::uint8_t(scale >> 8));
              for (std::size_t i = 0; i < kQ8_0Block; ++i)
                bytes.push_back(std::uint8_t(std::int8_t(std::clamp(w[b * kQ8_0Block + i] * 2000.0f, -127.0f, 127.0f))));
            }
          } else {
            bytes = encode(dtype, w);
          }
          const auto& k = kernel_table(arch);
          std::vector<float> together(n * rows), alone(rows);
          k.matvec[int(dtype)](together.data(), rows, bytes.data(), x.data(), cols, n, rows, cols);
          for (std::size_t v = 0; v < n; ++v) {
            k.matvec[int(dtype)](alone.data(), 0, bytes.data(), x.data() + v * cols, 0, 1, rows, cols);
            REQUIRE(std::equal(alone.begin(), alone.end(), together.begin() + std::ptrdiff_t(v * rows)));
          }
        }
    }
  }
}

TEST_CASE("matvec on real-valued data stays within the fp32 summation bound", "[kernels]") {
  std::mt19937 rng(3);
  const std::size_t rows = 64, cols = 4096;
  const auto w = normals(rows * cols, rng, 0.02f), x = normals(cols, rng);
  for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512}) {
    if (!arch_supported(arch)) continue;
    std::vector<float> y(rows);
    kernel_table(arch).matvec[int(DType::f32)](y.data(), 0, w.data(), x.data(), 0, 1, rows, cols);
    for (std::size_t r = 0; r < rows; ++r) {
      double exact = 0, magnitude = 0;
      for (std::size_t c = 0; c < cols; ++c) {
        exact += double(w[r * cols + c]) * x[c];
        magnitude += std::fabs(double(w[r * cols + c]) * x[c]);
      }
      // Any fp32 summation order errs by at most cols * 2^-24 * sum|terms| (Higham's bound).
      REQUIRE(std::fabs(y[r] - exact) <= cols * 0x1p-24 * magnitude);
    }
  }
}

TEST_CASE("attention equals the reference and a double-precision softmax", "[kernels]") {
  std::mt19937 rng(11);
  for (std::size_t n_keys : kSizes) {
    for (std::size_t head_dim : {std::size_t(1), std::size_t(8), std::size_t(17), std::size_t(128)}) {
      const std::size_t stride = head_dim + 3;  // keys interleaved with other heads' data
      const auto q = normals(head_dim, rng), k = normals(n_keys * stride, rng), v = normals(n_keys * stride, rng);
      const float scale = 1.0f / std::sqrt(float(head_dim));
      std::vector<double> exact(head_dim, 0.0), s(n_keys);
      double max_s = -1e300, sum = 0;
      for (std::size_t t = 0; t < n_keys; ++t) {
        double dot = 0;
        for (std::size_t d = 0; d < head_dim; ++d) dot += double(q[d]) * k[t * stride + d];
        s[t] = dot * scale;
        max_s = std::max(max_s, s[t]);
      }
      for (auto& e : s) sum += (e = std::exp(e - max_s));
      for (std::size_t t = 0; t < n_keys; ++t)  // no keys: the output is zero
        for (std::size_t d = 0; d < head_dim; ++d) exact[d] += s[t] / sum * v[t * stride + d];
      for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512}) {
        if (!arch_supported(arch)) continue;
        CAPTURE(arch_name(arch), n_keys, head_dim);
        std::vector<float> out(head_dim), scores(n_keys);
        kernel_table(arch).attention(out.data(), q.data(), k.data(), v.data(), n_keys, stride, head_dim, scale, scores.data());
        // Inputs are O(1): fp32 dot products and exp differ from double by ~1e-6 relative, and the
        // output is a convex combination of O(1) values.
        for (std::size_t d = 0; d < head_dim; ++d) REQUIRE(out[d] == Approx(exact[d]).margin(2e-5));
      }
    }
  }
}

TEST_CASE("attention does not overflow on huge scores", "[kernels]") {
  // Without max-subtraction exp(1000) is inf and the output NaN.
  // Scores 1000 and 900: softmax puts weight 1 - e^-100 on the first key.
  const std::vector<float> q = {100.0f, 100.0f}, k = {10.0f, 0.0f, 9.0f, 0.0f}, v = {1.0f, 2.0f, 3.0f, 4.0f};
  for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512}) {
    if (!arch_supported(arch)) continue;
    std::vector<float> out(2), scores(2);
    kernel_table(arch).attention(out.data(), q.data(), k.data(), v.data(), 2, 2, 2, 1.0f, scores.data());
    REQUIRE(out[0] == 1.0f);
    REQUIRE(out[1] == 2.0f);
  }
}

TEST_CASE("arch names parse and unknown ones are rejected", "[kernels]") {
  for (Arch a : {Arch::scalar, Arch::avx2, Arch::avx512}) REQUIRE(parse_arch(arch_name(a)) == a);
  REQUIRE_THROWS_WITH(parse_arch("neon"), Catch::Contains("unknown kernel arch 'neon'"));
  REQUIRE(arch_supported(best_arch()));
}

TEST_CASE("dense panels and panel products equal the scalar reference on every arch", "[kernels]") {
  std::mt19937 rng(9);
  // Panel rows up to 32 (partial panels pad with zeros); chunks and offsets off the SIMD width.
  const std::size_t rows_list[] = {1, 7, 32}, cols = 150, col0 = 3, k_len = 131;
  for (std::size_t rows : rows_list)
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      // Small integers are exact in every dtype, so every arch unpacks the same floats.
      const auto w = small_ints(rows * cols, rng);
      const auto bytes = encode(dtype, w);
      std::vector<float> expected(k_len * kPanelWidth);
      kernel_table(Arch::scalar).dense_panel[int(dtype)](expected.data(), bytes.data(), cols, rows, col0, k_len);
      for (std::size_t k = 0; k < k_len; ++k)
        for (std::size_t o = 0; o < kPanelWidth; ++o)
          REQUIRE(expected[k * kPanelWidth + o] == (o < rows ? w[o * cols + col0 + k] : 0.0f));
      for (Arch arch : simd_arches()) {
        CAPTURE(arch_name(arch), dtype_name(dtype), rows);
        std::vector<float> panel(k_len * kPanelWidth, -1.0f);
        kernel_table(arch).dense_panel[int(dtype)](panel.data(), bytes.data(), cols, rows, col0, k_len);
        REQUIRE(panel == expected);
      }
    }
  // Vector counts around both arches' blocks (12 and 3 vectors), full and partial widths.
  for (std::size_t n : {1, 2, 3, 5, 12, 13, 25}) {
    for (std::size_t width : {std::size_t(32), std::size_t(9)}) {
      for (bool accumulate : {false, true}) {
        alignas(64) float panel[64 * kPanelWidth];
        const auto p = normals(64 * kPanelWidth, rng), xt = normals(64 * 30, rng), y0 = normals(n * 40, rng);
        std::copy(p.begin(), p.end(), panel);
        std::vector<float> expected(y0);
        reference::panel_matmul(expected.data(), 40, panel, xt.data(), 30, 64, n, width, accumulate);
        // The same chain of fused multiply-adds per output: bit for bit.
        for (Arch arch : simd_arches()) {
          CAPTURE(arch_name(arch), n, width, accumulate);
          std::vector<float> y(y0);
          kernel_table(arch).panel_matmul(y.data(), 40, panel, xt.data(), 30, 64, n, width, accumulate);
          REQUIRE(y == expected);
        }
        // Against the definition, in double: the reference's sums are fp32 over 64 terms plus
        // the start value, within 65 * 2^-24 * sum of magnitudes (Higham's bound).
        for (std::size_t j = 0; j < n; ++j)
          for (std::size_t o = 0; o < 40; ++o) {
            double exact = o < width && accumulate ? y0[j * 40 + o] : o < width ? 0.0 : y0[j * 40 + o];
            double magnitude = std::fabs(exact);
            for (std::size_t k = 0; o < width && k < 64; ++k) {
              exact += double(panel[k * kPanelWidth + o]) * xt[k * 30 + j];
              magnitude += std::fabs(double(panel[k * kPanelWidth + o]) * xt[k * 30 + j]);
            }
            REQUIRE(std::fabs(expected[j * 40 + o] - exact) <= 65 * 0x1p-24 * magnitude);
          }
      }
    }
  }
}

TEST_CASE("Q8_0 weights read in place give the products of their dequantized values, on every arch", "[kernels]") {
  std::mt19937 rng(11);
  const std::size_t rows = 37, cols = 256;  // rows of 8 blocks; panels of chunks of 128 inputs
  std::vector<std::uint8_t> q8(rows * dtype_bytes(DType::q8_0, cols));
  std::vector<float> dequantized(rows * cols);
  std::uniform_int_distribution<int> q(-128, 127);
  for (std::size_t block = 0; block < rows * cols / kQ8_0Block; ++block) {
    std::uint8_t* bytes = q8.data() + block * kQ8_0BlockBytes;
    const std::uint16_t scale = float_to_half(std::fabs(normals(1, rng, 0.01f)[0]));
    std::memcpy(bytes, &scale, 2);
    for (std::size_t i = 0; i < kQ8_0Block; ++i) {
      bytes[2 + i] = std::uint8_t(q(rng));
      // int8 x fp16 has at most 19 significant bits: exact in F32.
      dequantized[block * kQ8_0Block + i] = float(std::int8_t(bytes[2 + i])) * half_to_float(scale);
    }
  }
  const auto x = normals(cols, rng);
  std::vector<Arch> arches = simd_arches();
  arches.push_back(Arch::scalar);
  for (Arch arch : arches) {
    CAPTURE(arch_name(arch));
    const KernelTable& k = kernel_table(arch);
    std::vector<float> y(rows);
    k.matvec[int(DType::q8_0)](y.data(), 0, q8.data(), x.data(), 0, 1, rows, cols);
    for (std::size_t r = 0; r < rows; ++r) {
      double exact = 0, magnitude = 0;
      for (std::size_t c = 0; c < cols; ++c) {
        exact += double(dequantized[r * cols + c]) * x[c];
        magnitude += std::fabs(double(dequantized[r * cols + c]) * x[c]);
      }
      // Blocks summed then scaled: fp32 roundings along any term's path are at most the 32 of
      // its block, the scale product, one per block of the row, and the final lane sums:
      // Higham's bound with cols + 8 of them.
      REQUIRE(std::fabs(y[r] - exact) <= double(cols + 8) * 0x1p-24 * magnitude);
    }
    // Rows and panels decode to the F32 copy's floats exactly.
    std::vector<float> row(cols);
    k.to_float[int(DType::q8_0)](row.data(), q8.data() + 5 * dtype_bytes(DType::q8_0, cols), cols);
    REQUIRE(std::equal(row.begin(), row.end(), dequantized.begin() + 5 * cols));
    for (std::size_t col0 : {std::size_t(0), std::size_t(128)}) {
      std::vector<float> panel(128 * kPanelWidth), panel_f32(128 * kPanelWidth);
      k.dense_panel[int(DType::q8_0)](panel.data(), q8.data(), cols, 32, col0, 128);
      k.dense_panel[int(DType::f32)](panel_f32.data(), dequantized.data(), cols, 32, col0, 128);
      REQUIRE(panel == panel_f32);
    }
  }
}

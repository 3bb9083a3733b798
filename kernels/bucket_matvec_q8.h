// bucket_matvec_q8.h: the effort product over 8-bit entries (layout in bucket_matvec.h) as
// integer dot products.
//
// The listed units go kQ8Group at a time in list order. For a group and a block of kQ8Block
// buckets, each unit's multiplier x_j * scale(u, block) is quantized to int8 against the
// group's largest: q = round(127 * m / max|m|), step d = max|m| / 127. Each bucket's
// entries times q are summed in int32, exactly, and the sum times d is added to the outputs in
// group order. Integer sums do not depend on their order, so every arch computes the same
// floats as the reference, bit for bit, whatever its lanes and tiles.
//
// The SIMD kernels put four units' entries of one bucket in each 32-bit lane and multiply them
// by the four units' multipliers in one instruction: AVX512-VNNI's vpdpbusd (unsigned x signed
// bytes), or AVX2's vpmaddubsw + vpmaddwd. The multipliers go in as |q| (unsigned) and a
// negative one's row is negated on load: the product is the same, and negation keeps the
// parity that is buckets of 2's position bit. (Entries are in [-127, 127]: format 4 on.)
// For buckets of 2 a second dot product over the entries with the bit set gives position 1,
// as in the float kernel; for larger buckets one per position, against the position each row's
// negation turned it into.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "bucket_view.h"
#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

// Below this largest multiplier a group's block counts as zero: 127 / max stays finite.
inline constexpr float kQ8SmallestMax = 0x1p-120f;

namespace reference {

// The step d of a block and the int8 multipliers q[r] of n <= kQ8Group units' multipliers.
// A non-finite multiplier makes d NaN and every q 0, so the outputs are NaN as a float
// product's would be (the sum of m * 0 is NaN when any m is: it tests them all at once).
inline float q8_quantize(std::int32_t* q, const float* mult, std::size_t n) {
  float largest = 0.0f, nan_probe = 0.0f;
  for (std::size_t r = 0; r < n; ++r) {
    largest = std::max(largest, std::fabs(mult[r]));
    nan_probe += mult[r] * 0.0f;
  }
  const bool finite = nan_probe == nan_probe;
  const float inv = finite && largest >= kQ8SmallestMax ? 127.0f / largest : 0.0f;
  for (std::size_t r = 0; r < n; ++r) q[r] = finite ? std::int32_t(std::nearbyint(mult[r] * inv)) : 0;
  return finite ? largest / 127.0f : std::numeric_limits<float>::quiet_NaN();
}

// Outputs of buckets [bucket_begin, bucket_end), as the SIMD kernels compute them.
inline void bucket_matvec_q8_range(float* y, const BucketView& m, const std::uint32_t* units, const float* xs,
                                   std::size_t count, std::size_t bucket_begin, std::size_t bucket_end) {
  const std::size_t S = m.bucket_size, B = m.num_buckets;
  const auto* entries = static_cast<const std::int8_t*>(m.units);
  for (std::size_t o = bucket_begin * S; o < bucket_end * S; ++o) y[o] = 0.0f;
  for (std::size_t g = 0; g < count; g += kQ8Group) {
    const std::size_t n = std::min(kQ8Group, count - g);
    for (std::size_t block = bucket_begin / kQ8Block; block * kQ8Block < bucket_end; ++block) {
      float mult[kQ8Group];
      for (std::size_t r = 0; r < n; ++r) mult[r] = xs[g + r] * half_to_float(m.scales[std::size_t(units[g + r]) * m.num_blocks() + block]);
      std::int32_t q[kQ8Group];
      const float d = q8_quantize(q, mult, n);
      for (std::size_t b = std::max(bucket_begin, block * kQ8Block); b < std::min(bucket_end, (block + 1) * kQ8Block); ++b) {
        // S == 2: sums[0] is the bucket's total, sums[1] position 1's part.
        std::int32_t sums[16] = {};
        for (std::size_t r = 0; r < n; ++r) {
          const int e = entries[std::size_t(units[g + r]) * B + b];
          if (S == 2) {
            sums[0] += e * q[r];
            if (e & 1) sums[1] += e * q[r];
          } else {
            sums[bucket_position(e, S)] += e * q[r];
          }
        }
        for (std::size_t p = 0; p < S; ++p) y[b * S + p] = std::fma(float(sums[p]), d, y[b * S + p]);
      }
    }
  }
  if (S == 2)
    for (std::size_t b = bucket_begin; b < bucket_end; ++b) y[b * 2] -= y[b * 2 + 1];
}

}  // namespace reference

namespace simd {

// What the kernel needs of an arch: V holds kTile entries of one row, or after interleave()
// kTile/4 lanes of four rows' entries; Sign says whether a row is negated.
template <class A>
struct Int8Ops;

// Both arches interleave within 128-bit lanes: lane l of interleaved vector k holds bucket
// 16 * (l / 4) + 4 * k + l % 4 of the tile.
inline constexpr std::size_t interleaved_bucket(std::size_t k, std::size_t lane) { return 16 * (lane / 4) + 4 * k + lane % 4; }

#if defined(__AVX512F__)
template <>
struct Int8Ops<Avx512> {
  using V = __m512i;
  using Sign = __mmask64;
  static constexpr std::size_t kTile = 64;  // buckets: two blocks, lanes 0-7 and 8-15
  static Sign sign(bool negative) { return negative ? ~Sign(0) : Sign(0); }
  static V load(const std::int8_t* p, Sign negate) {
    const V v = _mm512_loadu_si512(p);
    return _mm512_mask_sub_epi8(v, negate, _mm512_setzero_si512(), v);
  }
  static V zero() { return _mm512_setzero_si512(); }
  static void interleave(const V* r, V* out) {
    const V ab_lo = _mm512_unpacklo_epi8(r[0], r[1]), ab_hi = _mm512_unpackhi_epi8(r[0], r[1]);
    const V cd_lo = _mm512_unpacklo_epi8(r[2], r[3]), cd_hi = _mm512_unpackhi_epi8(r[2], r[3]);
    out[0] = _mm512_unpacklo_epi16(ab_lo, cd_lo), out[1] = _mm512_unpackhi_epi16(ab_lo, cd_lo);
    out[2] = _mm512_unpacklo_epi16(ab_hi, cd_hi), out[3] = _mm512_unpackhi_epi16(ab_hi, cd_hi);
  }
  // acc + the sums of four products of unsigned bytes of mult and signed bytes of e.
  static V dot(V acc, V mult, V e) { return _mm512_dpbusd_epi32(acc, mult, e); }
  static V odd(V e) { return _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(e, _mm512_set1_epi8(1)), e); }
  static V at(V e, std::size_t size, V position) {
    const V low = _mm512_and_si512(e, _mm512_set1_epi8(char(size - 1)));
    return _mm512_maskz_mov_epi8(_mm512_cmpeq_epi8_mask(low, position), e);
  }
  // The tile's two blocks' values, block t for lanes 8t to 8t + 7.
  static V per_block(const std::int32_t* v) {
    return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                    _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v))));
  }
  static Floats<Avx512> per_block(const float* v) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v)))));
  }
  static V broadcast(std::int32_t v) { return _mm512_set1_epi32(v); }
  static Floats<Avx512> to_floats(V v) { return _mm512_cvtepi32_ps(v); }
};
#elif defined(__AVX2__)
template <>
struct Int8Ops<Avx2> {
  using V = __m256i;
  using Sign = __m256i;
  static constexpr std::size_t kTile = 32;  // buckets: one block
  static Sign sign(bool negative) { return _mm256_set1_epi8(negative ? -1 : 1); }
  static V load(const std::int8_t* p, Sign negate) {
    return _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), negate);
  }
  static V zero() { return _mm256_setzero_si256(); }
  static void interleave(const V* r, V* out) {
    const V ab_lo = _mm256_unpacklo_epi8(r[0], r[1]), ab_hi = _mm256_unpackhi_epi8(r[0], r[1]);
    const V cd_lo = _mm256_unpacklo_epi8(r[2], r[3]), cd_hi = _mm256_unpackhi_epi8(r[2], r[3]);
    out[0] = _mm256_unpacklo_epi16(ab_lo, cd_lo), out[1] = _mm256_unpackhi_epi16(ab_lo, cd_lo);
    out[2] = _mm256_unpacklo_epi16(ab_hi, cd_hi), out[3] = _mm256_unpackhi_epi16(ab_hi, cd_hi);
  }
  // Pairs of products fit int16: 2 * 127 * 127 (|q| and |entry| <= 127) < 32767.
  static V dot(V acc, V mult, V e) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(mult, e), _mm256_set1_epi16(1)));
  }
  static V odd(V e) { return _mm256_and_si256(e, _mm256_cmpeq_epi8(_mm256_and_si256(e, _mm256_set1_epi8(1)), _mm256_set1_epi8(1))); }
  static V at(V e, std::size_t size, V position) {
    const V low = _mm256_and_si256(e, _mm256_set1_epi8(char(size - 1)));
    return _mm256_and_si256(e, _mm256_cmpeq_epi8(low, position));
  }
  static V per_block(const std::int32_t* v) { return _mm256_set1_epi32(*v); }
  static Floats<Avx2> per_block(const float* v) { return _mm256_set1_ps(*v); }
  static V broadcast(std::int32_t v) { return _mm256_set1_epi32(v); }
  static Floats<Avx2> to_floats(V v) { return _mm256_cvtepi32_ps(v); }
};
#endif

// One group's multipliers over a span of kSpan buckets (whole tiles), computed at its start:
// per block, the step and each quad's four |q| packed in an int32 (byte i: row 4j + i).
template <class A>
struct Q8Group {
  static constexpr std::size_t kSpan = 512, kBlocks = kSpan / kQ8Block, kQuads = kQ8Group / 4;
  using Ops = Int8Ops<A>;
  const std::int8_t* rows[kQ8Group];
  const std::uint16_t* scales[kQ8Group];
  float x[kQ8Group];
  typename Ops::Sign negate[kQ8Group];
  std::size_t n;
  alignas(64) float steps[kBlocks];
  alignas(64) std::int32_t quads[kQuads][kBlocks];
  // For buckets of 4 and more: the position p of every row's entries after its negation, by quad.
  typename Ops::V positions[16][kQuads];

  Q8Group(const BucketView& m, const std::uint32_t* units, const float* xs, std::size_t count, std::size_t S) : n(count) {
    const auto* entries = static_cast<const std::int8_t*>(m.units);
    for (std::size_t r = 0; r < kQ8Group; ++r) {
      // Missing rows of a short group read the first row's entries with multiplier 0.
      const std::size_t u = units[r < n ? r : 0];
      rows[r] = entries + u * m.num_buckets, scales[r] = m.scales + u * m.num_blocks();
      x[r] = r < n ? xs[r] : 0.0f;
      negate[r] = Ops::sign(x[r] < 0.0f);
    }
    if (S > 2)
      for (std::size_t p = 0; p < S; ++p)
        for (std::size_t j = 0; j < kQuads; ++j) {
          std::uint32_t packed = 0;
          for (std::size_t i = 0; i < 4; ++i) {
            const unsigned position = x[4 * j + i] < 0.0f ? unsigned(-int(p)) & unsigned(S - 1) : unsigned(p);
            packed |= position << (8 * i);
          }
          positions[p][j] = Ops::broadcast(std::int32_t(packed));
        }
  }

  // Blocks [first, first + count) of the span: reference::q8_quantize, W blocks at a time.
  void start_span(std::size_t first, std::size_t count) {
    using F = Floats<A>;
    // A tile past the last block (a short last tile) reads a zero step and multipliers.
    if (count < kBlocks) {
      steps[count] = 0.0f;
      for (auto& quad : quads) quad[count] = 0;
    }
    using I = xsimd::batch<std::int32_t, A>;
    constexpr std::size_t W = F::size;
    std::size_t k = 0;
    for (; k + W <= count; k += W) {
      F mult[kQ8Group], largest(0.0f), nan_probe(0.0f);
      for (std::size_t r = 0; r < kQ8Group; ++r) {
        mult[r] = r < n ? xsimd::abs(load_weights<A, DType::f16>(scales[r], first + k) * F(x[r])) : F(0.0f);
        largest = xsimd::max(largest, mult[r]);
        nan_probe = nan_probe + mult[r] * F(0.0f);
      }
      const auto finite = nan_probe == nan_probe;
      const F inv = xsimd::select(finite & (largest >= F(kQ8SmallestMax)), F(127.0f) / largest, F(0.0f));
      xsimd::select(finite, largest / F(127.0f), F(std::numeric_limits<float>::quiet_NaN())).store_aligned(steps + k);
      for (std::size_t j = 0; j < kQuads; ++j) {
        I packed(0);
        for (std::size_t i = 0; i < 4; ++i)
          packed = packed | (xsimd::nearbyint_as_int(xsimd::select(finite, mult[4 * j + i] * inv, F(0.0f))) << int(8 * i));
        packed.store_aligned(quads[j] + k);
      }
    }
    for (; k < count; ++k) {
      float mult[kQ8Group];
      for (std::size_t r = 0; r < n; ++r) mult[r] = x[r] * half_to_float(scales[r][first + k]);
      std::int32_t q[kQ8Group] = {};
      steps[k] = reference::q8_quantize(q, mult, n);
      for (std::size_t j = 0; j < kQuads; ++j) {
        std::uint32_t packed = 0;
        for (std::size_t i = 0; i < 4; ++i) packed |= std::uint32_t(std::abs(q[4 * j + i])) << (8 * i);
        quads[j][k] = std::int32_t(packed);
      }
    }
  }
};


// One tile of kTile buckets for a group, from rows[r] on (the tile's first entries) and the
// span's block `block`: its int32 sums per position, then y (+)= sum * step. y holds the tile's
// accumulators as [interleaved vector k][position p][lane].
template <class A, std::size_t S>
inline void q8_tile(float* y, const std::int8_t* const* rows, const Q8Group<A>& group, std::size_t block) {
  using Ops = Int8Ops<A>;
  using V = typename Ops::V;
  constexpr std::size_t W = Floats<A>::size;
  V sums[4][S];
  for (auto& k : sums)
    for (V& v : k) v = Ops::zero();
  for (std::size_t j = 0; j < Q8Group<A>::kQuads; ++j) {
    V loaded[4], lanes[4];
    for (std::size_t i = 0; i < 4; ++i) loaded[i] = Ops::load(rows[4 * j + i], group.negate[4 * j + i]);
    Ops::interleave(loaded, lanes);
    const V mult = Ops::per_block(group.quads[j] + block);
    for (std::size_t k = 0; k < 4; ++k) {
      if constexpr (S == 1) {
        sums[k][0] = Ops::dot(sums[k][0], mult, lanes[k]);
      } else if constexpr (S == 2) {
        sums[k][0] = Ops::dot(sums[k][0], mult, lanes[k]);  // the total
        sums[k][1] = Ops::dot(sums[k][1], mult, Ops::odd(lanes[k]));
      } else {
        for (std::size_t p = 0; p < S; ++p) sums[k][p] = Ops::dot(sums[k][p], mult, Ops::at(lanes[k], S, group.positions[p][j]));
      }
    }
  }
  const Floats<A> step = Ops::per_block(group.steps + block);
  for (std::size_t k = 0; k < 4; ++k)
    for (std::size_t p = 0; p < S; ++p) {
      float* acc = y + (k * S + p) * W;
      fmadd<A>(Ops::to_floats(sums[k][p]), step, Floats<A>::load_unaligned(acc)).store_unaligned(acc);
    }
}

// The kernel: groups of kQ8Group units streamed along their rows a span at a time, the next
// group's rows prefetched at the same offsets. The last buckets, short of a whole tile, are one
// more tile whose rows are copied into zero-padded buffers and whose accumulators are local.
template <class A, std::size_t S>
void bucket_matvec_q8_sized(float* y, const BucketView& m, const std::uint32_t* units, const float* xs, std::size_t count) {
  using Ops = Int8Ops<A>;
  using Group = Q8Group<A>;
  constexpr std::size_t T = Ops::kTile, W = Floats<A>::size, kLine = 64;
  const std::size_t B = m.num_buckets, tiles_end = B / T * T, tail = B - tiles_end;
  std::fill(y, y + tiles_end * S, 0.0f);
  alignas(64) float tail_y[T * S] = {};
  alignas(64) std::int8_t tail_rows[kQ8Group][T] = {};
  const auto* entries = static_cast<const std::int8_t*>(m.units);
  for (std::size_t g = 0; g < count; g += kQ8Group) {
    const std::size_t n = std::min(kQ8Group, count - g), next = g + kQ8Group;
    Group group(m, units + g, xs + g, n, S);
    const std::int8_t* ahead[kQ8Group];
    const std::int8_t* rows[kQ8Group];
    for (std::size_t r = 0; r < kQ8Group; ++r)
      ahead[r] = next + r < count ? entries + std::size_t(units[next + r]) * B : group.rows[r];
    for (std::size_t span0 = 0; span0 < tiles_end; span0 += Group::kSpan) {
      const std::size_t span_end = std::min(tiles_end, span0 + Group::kSpan);
      group.start_span(span0 / kQ8Block, (span_end - span0) / kQ8Block);
      for (std::size_t b = span0; b < span_end; b += T) {
        for (std::size_t r = 0; r < kQ8Group; ++r) rows[r] = group.rows[r] + b;
        q8_tile<A, S>(y + b * S, rows, group, (b - span0) / kQ8Block);
        if (b % kLine == 0)
          for (std::size_t r = 0; r < kQ8Group; ++r) __builtin_prefetch(ahead[r] + b);
      }
    }
    if (tail) {
      group.start_span(tiles_end / kQ8Block, (tail + kQ8Block - 1) / kQ8Block);
      for (std::size_t r = 0; r < kQ8Group; ++r) std::copy(group.rows[r] + tiles_end, group.rows[r] + B, tail_rows[r]), rows[r] = tail_rows[r];
      q8_tile<A, S>(tail_y, rows, group, 0);
    }
  }
  // [k][p][lane] per tile -> output order; for S = 2 position 0 is the total less position 1.
  auto put = [&](const float* tile, std::size_t b0, std::size_t buckets) {
    for (std::size_t k = 0; k < 4; ++k)
      for (std::size_t l = 0; l < W; ++l) {
        const std::size_t bucket = interleaved_bucket(k, l);
        if (bucket >= buckets) continue;
        const float* at = tile + k * S * W + l;
        float* out = y + (b0 + bucket) * S;
        for (std::size_t p = 0; p < S; ++p) out[p] = at[p * W];
        if constexpr (S == 2) out[0] -= out[1];
      }
  };
  alignas(64) float lanes[T * S];
  for (std::size_t b = 0; b < tiles_end; b += T) {
    std::copy(y + b * S, y + (b + T) * S, lanes);
    put(lanes, b, T);
  }
  if (tail) put(tail_y, tiles_end, tail);
}

template <class A>
void bucket_matvec_q8(float* y, const BucketView& m, const std::uint32_t* units, const float* xs, std::size_t count) {
  switch (m.bucket_size) {
    case 1: return bucket_matvec_q8_sized<A, 1>(y, m, units, xs, count);
    case 2: return bucket_matvec_q8_sized<A, 2>(y, m, units, xs, count);
    case 4: return bucket_matvec_q8_sized<A, 4>(y, m, units, xs, count);
    case 8: return bucket_matvec_q8_sized<A, 8>(y, m, units, xs, count);
    default: return bucket_matvec_q8_sized<A, 16>(y, m, units, xs, count);
  }
}

}  // namespace simd
}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

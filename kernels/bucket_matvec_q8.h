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

// One vector's outputs of buckets [bucket_begin, bucket_end), as the SIMD kernels compute them;
// its input for listed unit i is xs[i * stride].
inline void bucket_matvec_q8_range(float* y, const BucketView& m, const std::uint32_t* units, const float* xs,
                                   std::size_t stride, std::size_t count, std::size_t bucket_begin,
                                   std::size_t bucket_end) {
  const std::size_t S = m.bucket_size, B = m.num_buckets;
  const auto* entries = static_cast<const std::int8_t*>(m.units);
  for (std::size_t o = bucket_begin * S; o < bucket_end * S; ++o) y[o] = 0.0f;
  for (std::size_t g = 0; g < count; g += kQ8Group) {
    const std::size_t n = std::min(kQ8Group, count - g);
    for (std::size_t block = bucket_begin / kQ8Block; block * kQ8Block < bucket_end; ++block) {
      float mult[kQ8Group];
      for (std::size_t r = 0; r < n; ++r) mult[r] = xs[(g + r) * stride] * half_to_float(m.scales[std::size_t(units[g + r]) * m.num_blocks() + block]);
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
  static V load(const std::int8_t* p) { return _mm512_loadu_si512(p); }
  // The signs of a quad's four rows, for its interleaved lanes (byte i of each 32-bit lane is
  // row i), and the lanes with them applied.
  using Pattern = __mmask64;
  static Pattern pattern(const bool* negative) {
    Pattern p = 0;
    for (std::size_t i = 0; i < 4; ++i)
      if (negative[i]) p |= Pattern(0x1111111111111111ull) << i;
    return p;
  }
  static V apply(V lanes, Pattern p) { return _mm512_mask_sub_epi8(lanes, p, _mm512_setzero_si512(), lanes); }
  // Vectors per decode of a tile: their sums [vectors][4][S] and the tile's lanes fill the registers.
  static constexpr std::size_t kChunk = 2;
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
  static V load(const std::int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  using Pattern = __m256i;
  static Pattern pattern(const bool* negative) {
    std::uint32_t packed = 0;
    for (std::size_t i = 0; i < 4; ++i) packed |= std::uint32_t(negative[i] ? 0xFF : 0x01) << (8 * i);
    return _mm256_set1_epi32(std::int32_t(packed));
  }
  static V apply(V lanes, Pattern p) { return _mm256_sign_epi8(lanes, p); }
  // Sixteen registers hold one vector's sums and the tile's lanes: one vector per decode.
  static constexpr std::size_t kChunk = 1;
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

// A group of up to kQ8Group listed units' rows and scales, shared by every vector. Missing rows
// of a short group read the first row's entries, with multiplier 0.
struct Q8Rows {
  const std::int8_t* rows[kQ8Group];
  const std::uint16_t* scales[kQ8Group];
  std::size_t n;
  Q8Rows(const BucketView& m, const std::uint32_t* units, std::size_t count) : n(count) {
    const auto* entries = static_cast<const std::int8_t*>(m.units);
    for (std::size_t r = 0; r < kQ8Group; ++r) {
      const std::size_t u = units[r < n ? r : 0];
      rows[r] = entries + u * m.num_buckets, scales[r] = m.scales + u * m.num_blocks();
    }
  }
};

// One vector's multipliers for a group over a span of kSpan buckets (whole tiles), computed at
// its start: per block, the step and each quad's four |q| packed in an int32 (byte i: row 4j + i).
template <class A>
struct Q8Multipliers {
  static constexpr std::size_t kSpan = 512, kBlocks = kSpan / kQ8Block, kQuads = kQ8Group / 4;
  using Ops = Int8Ops<A>;
  float x[kQ8Group];
  std::size_t n;
  typename Ops::Sign negate[kQ8Group];       // one vector: rows negated as they are loaded
  typename Ops::Pattern patterns[kQuads];    // several: the signs applied to the shared lanes
  alignas(64) float steps[kBlocks];
  alignas(64) std::int32_t quads[kQuads][kBlocks];
  // For buckets of 4 and more: the position p of every row's entries after its negation, by quad.
  typename Ops::V positions[16][kQuads];

  // The inputs of rows [0, count) are xs[r * stride].
  void set(const float* xs, std::size_t stride, std::size_t count, std::size_t S) {
    n = count;
    bool negative[kQ8Group];
    for (std::size_t r = 0; r < kQ8Group; ++r) {
      x[r] = r < n ? xs[r * stride] : 0.0f;
      negative[r] = x[r] < 0.0f;
      negate[r] = Ops::sign(negative[r]);
    }
    for (std::size_t j = 0; j < kQuads; ++j) patterns[j] = Ops::pattern(negative + 4 * j);
    if (S > 2)
      for (std::size_t p = 0; p < S; ++p)
        for (std::size_t j = 0; j < kQuads; ++j) {
          std::uint32_t packed = 0;
          for (std::size_t i = 0; i < 4; ++i) {
            const unsigned position = negative[4 * j + i] ? unsigned(-int(p)) & unsigned(S - 1) : unsigned(p);
            packed |= position << (8 * i);
          }
          positions[p][j] = Ops::broadcast(std::int32_t(packed));
        }
  }

  // Blocks [first, first + count) of the span: reference::q8_quantize, W blocks at a time.
  void start_span(const Q8Rows& rows, std::size_t first, std::size_t count) {
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
        mult[r] = r < n ? xsimd::abs(load_weights<A, DType::f16>(rows.scales[r], first + k) * F(x[r])) : F(0.0f);
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
      for (std::size_t r = 0; r < n; ++r) mult[r] = x[r] * half_to_float(rows.scales[r][first + k]);
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

// One tile of kTile buckets for a group and N vectors, from rows[r] on (the tile's first
// entries) and the span's block `block`: each vector's int32 sums per position, then its y (+)=
// sum * step. Vector v's accumulators are at y + v * y_stride, as [interleaved vector k]
// [position p][lane]. One vector negates its rows as they load; several share the loaded,
// interleaved lanes and apply each one's signs to them (negation keeps the position bits'
// parity, and the integer sums are the same either way).
template <class A, std::size_t S, std::size_t N>
inline void q8_tile(float* y, std::size_t y_stride, const std::int8_t* const* rows, const Q8Multipliers<A>* mult,
                    std::size_t block) {
  using Ops = Int8Ops<A>;
  using V = typename Ops::V;
  constexpr std::size_t W = Floats<A>::size, kQuads = Q8Multipliers<A>::kQuads;
  V sums[N][4][S];
  for (auto& vector : sums)
    for (auto& k : vector)
      for (V& v : k) v = Ops::zero();
  for (std::size_t j = 0; j < kQuads; ++j) {
    V loaded[4], lanes[4];
    for (std::size_t i = 0; i < 4; ++i)
      loaded[i] = N == 1 ? Ops::load(rows[4 * j + i], mult[0].negate[4 * j + i]) : Ops::load(rows[4 * j + i]);
    Ops::interleave(loaded, lanes);
    for (std::size_t v = 0; v < N; ++v) {
      const V q = Ops::per_block(mult[v].quads[j] + block);
      for (std::size_t k = 0; k < 4; ++k) {
        const V e = N == 1 ? lanes[k] : Ops::apply(lanes[k], mult[v].patterns[j]);
        if constexpr (S == 1) {
          sums[v][k][0] = Ops::dot(sums[v][k][0], q, e);
        } else if constexpr (S == 2) {
          sums[v][k][0] = Ops::dot(sums[v][k][0], q, e);  // the total
          sums[v][k][1] = Ops::dot(sums[v][k][1], q, Ops::odd(e));
        } else {
          for (std::size_t p = 0; p < S; ++p) sums[v][k][p] = Ops::dot(sums[v][k][p], q, Ops::at(e, S, mult[v].positions[p][j]));
        }
      }
    }
  }
  for (std::size_t v = 0; v < N; ++v) {
    const Floats<A> step = Ops::per_block(mult[v].steps + block);
    for (std::size_t k = 0; k < 4; ++k)
      for (std::size_t p = 0; p < S; ++p) {
        float* acc = y + v * y_stride + (k * S + p) * W;
        fmadd<A>(Ops::to_floats(sums[v][k][p]), step, Floats<A>::load_unaligned(acc)).store_unaligned(acc);
      }
  }
}

// A tile for n vectors, Ops::kChunk at a time.
template <class A, std::size_t S>
inline void q8_tile_vectors(float* y, std::size_t y_stride, const std::int8_t* const* rows, const Q8Multipliers<A>* mult,
                            std::size_t n, std::size_t block) {
  constexpr std::size_t C = Int8Ops<A>::kChunk;
  std::size_t v = 0;
  for (; v + C <= n; v += C) q8_tile<A, S, C>(y + v * y_stride, y_stride, rows, mult + v, block);
  for (; v < n; ++v) q8_tile<A, S, 1>(y + v * y_stride, y_stride, rows, mult + v, block);
}

// The kernel: groups of kQ8Group units streamed along their rows' bucket range a span at a
// time, the next group's rows prefetched at the same offsets. The last buckets, short of a whole
// tile, are one more tile whose rows are copied into zero-padded buffers and whose accumulators
// are local.
template <class A, std::size_t S>
void bucket_matvec_q8_sized(float* y, std::size_t y_stride, const BucketView& m, const std::uint32_t* units,
                            const float* xs, std::size_t count, std::size_t n, std::size_t bucket_begin,
                            std::size_t bucket_end) {
  using Ops = Int8Ops<A>;
  using Mult = Q8Multipliers<A>;
  constexpr std::size_t T = Ops::kTile, W = Floats<A>::size, kLine = 64;
  const std::size_t B = m.num_buckets, tiles_end = bucket_begin + (bucket_end - bucket_begin) / T * T,
                    tail = bucket_end - tiles_end;
  for (std::size_t v = 0; v < n; ++v)
    std::fill(y + v * y_stride + bucket_begin * S, y + v * y_stride + tiles_end * S, 0.0f);
  alignas(64) float tail_y[kMaxVectors][T * S];
  for (std::size_t v = 0; v < n; ++v) std::fill(tail_y[v], tail_y[v] + T * S, 0.0f);
  alignas(64) std::int8_t tail_rows[kQ8Group][T] = {};
  Mult mult[kMaxVectors];
  const auto* entries = static_cast<const std::int8_t*>(m.units);
  for (std::size_t g = 0; g < count; g += kQ8Group) {
    const std::size_t group_size = std::min(kQ8Group, count - g), next = g + kQ8Group;
    const Q8Rows group(m, units + g, group_size);
    for (std::size_t v = 0; v < n; ++v) mult[v].set(xs + g * n + v, n, group_size, S);
    const std::int8_t* ahead[kQ8Group];
    const std::int8_t* rows[kQ8Group];
    for (std::size_t r = 0; r < kQ8Group; ++r)
      ahead[r] = next + r < count ? entries + std::size_t(units[next + r]) * B : group.rows[r];
    for (std::size_t span0 = bucket_begin; span0 < tiles_end; span0 += Mult::kSpan) {
      const std::size_t span_end = std::min(tiles_end, span0 + Mult::kSpan);
      for (std::size_t v = 0; v < n; ++v) mult[v].start_span(group, span0 / kQ8Block, (span_end - span0) / kQ8Block);
      for (std::size_t b = span0; b < span_end; b += T) {
        for (std::size_t r = 0; r < kQ8Group; ++r) rows[r] = group.rows[r] + b;
        q8_tile_vectors<A, S>(y + b * S, y_stride, rows, mult, n, (b - span0) / kQ8Block);
        if (b % kLine == 0)
          for (std::size_t r = 0; r < kQ8Group; ++r) __builtin_prefetch(ahead[r] + b);
      }
    }
    if (tail) {
      for (std::size_t v = 0; v < n; ++v) mult[v].start_span(group, tiles_end / kQ8Block, (tail + kQ8Block - 1) / kQ8Block);
      for (std::size_t r = 0; r < kQ8Group; ++r)
        std::copy(group.rows[r] + tiles_end, group.rows[r] + bucket_end, tail_rows[r]), rows[r] = tail_rows[r];
      q8_tile_vectors<A, S>(tail_y[0], T * S, rows, mult, n, 0);
    }
  }
  // [k][p][lane] per tile -> output order; for S = 2 position 0 is the total less position 1.
  auto put = [&](float* out_y, const float* tile, std::size_t b0, std::size_t buckets) {
    for (std::size_t k = 0; k < 4; ++k)
      for (std::size_t l = 0; l < W; ++l) {
        const std::size_t bucket = interleaved_bucket(k, l);
        if (bucket >= buckets) continue;
        const float* at = tile + k * S * W + l;
        float* out = out_y + (b0 + bucket) * S;
        for (std::size_t p = 0; p < S; ++p) out[p] = at[p * W];
        if constexpr (S == 2) out[0] -= out[1];
      }
  };
  alignas(64) float lanes[T * S];
  for (std::size_t v = 0; v < n; ++v) {
    float* yv = y + v * y_stride;
    for (std::size_t b = bucket_begin; b < tiles_end; b += T) {
      std::copy(yv + b * S, yv + (b + T) * S, lanes);
      put(yv, lanes, b, T);
    }
    if (tail) put(yv, tail_y[v], tiles_end, tail);
  }
}

template <class A>
void bucket_matvec_q8(float* y, std::size_t y_stride, const BucketView& m, const std::uint32_t* units, const float* xs,
                      std::size_t count, std::size_t n, std::size_t bucket_begin, std::size_t bucket_end) {
  switch (m.bucket_size) {
    case 1: return bucket_matvec_q8_sized<A, 1>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    case 2: return bucket_matvec_q8_sized<A, 2>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    case 4: return bucket_matvec_q8_sized<A, 4>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    case 8: return bucket_matvec_q8_sized<A, 8>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    default: return bucket_matvec_q8_sized<A, 16>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
  }
}

}  // namespace simd
}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

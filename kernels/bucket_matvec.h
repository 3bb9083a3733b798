// bucket_matvec.h: the effort product y ~= W x over a bucketed matrix.
//
// Layout (built by src/bucketize.cpp), for W [out, in], bucket size S (16 or 8) and group size
// G: the inputs, in the order input_order gives, are cut into T = ceil(in/G) tiles of G inputs
// (padded with zero inputs). Outputs are cut into B = ceil(out/S) buckets of S neighbours. For
// every tile t and bucket b, the S positions of the bucket are sorted once, by the tile's
// combined |w| descending; rank k names the k-th position. A unit (k, t) holds G rows of B
// entries: entry [g][b] is the weight of the tile's input g at the bucket's rank-k position, as
// fp16. The g = 0 entry keeps that position in its log2(S) low mantissa bits (decoded with those
// bits set to their midpoint, 0b1000 or 0b100); the other entries are plain fp16. Units are
// stored rank-major, unit u = k*T+t, so the least important units come last. stats [S][G][T]:
// stats[k][g][t] = mean over buckets of |entry [g][b]| of unit (k, t). S = 16, G = 1 with the
// identity order is the canonical layout of the original: one row per (rank, input), position
// bits in every weight.
//
// A product runs in two steps. Dispatch picks the units whose importance
// sum_g |xg[g][t]| * stats[k][g][t] (xg = the inputs in tile order, by group slot) exceeds the
// cutoff, in ascending unit order; bucket_matvec multiplies them: per unit and bucket,
// s = sum_g x * w (fused multiply-adds in g order), then y[b*S + position] += s.
//
// Legend: S = bucket_size, T = num_tiles, G = group, B = num_buckets, xg = inputs [G][T].
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "simd.h"

namespace effort::kernels {

// The weight of a g = 0 entry of a bucket of `size` outputs: its bits with the position bits set
// to their midpoint, so the rounding from dropping them has no bias that depends on the position.
static inline float bucket_weight(std::uint16_t entry, std::size_t size) {
  return half_to_float(std::uint16_t((entry & ~(size - 1)) | (size / 2)));
}
static inline unsigned bucket_position(std::uint16_t entry, std::size_t size) { return entry & unsigned(size - 1); }

struct BucketView {
  const std::uint16_t* units;  // [S*T][G][B]
  const float* stats;          // [S][G][T]
  std::size_t num_buckets;     // B
  std::size_t num_tiles;       // T
  std::size_t group;           // G
  std::size_t bucket_size;     // S: 16 or 8
};

namespace reference {

// Importance of unit u = k*T + t.
static inline float unit_importance(const BucketView& m, const float* abs_xg, std::size_t u) {
  const std::size_t k = u / m.num_tiles, t = u % m.num_tiles;
  float c = 0.0f;
  for (std::size_t g = 0; g < m.group; ++g)
    c = std::fma(abs_xg[g * m.num_tiles + t], m.stats[(k * m.group + g) * m.num_tiles + t], c);
  return c;
}

// Appends the units u < num_units whose importance exceeds the cutoff; returns how many.
static inline std::size_t bucket_dispatch(std::uint32_t* units, const BucketView& m, const float* abs_xg,
                                          std::size_t num_units, float cutoff) {
  std::size_t count = 0;
  for (std::size_t u = 0; u < num_units; ++u)
    if (unit_importance(m, abs_xg, u) > cutoff) units[count++] = std::uint32_t(u);
  return count;
}

// y[b*16 .. b*16+16) for buckets b in [bucket_begin, bucket_end) = the listed units' products,
// added in list order. Other outputs are untouched.
static inline void bucket_matvec(float* y, const BucketView& m, const float* xg, const std::uint32_t* units,
                                 std::size_t count, std::size_t bucket_begin, std::size_t bucket_end) {
  const std::size_t B = m.num_buckets, T = m.num_tiles, G = m.group, S = m.bucket_size;
  for (std::size_t o = bucket_begin * S; o < bucket_end * S; ++o) y[o] = 0.0f;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint16_t* unit = m.units + std::size_t(units[i]) * G * B;
    const std::size_t t = units[i] % T;
    for (std::size_t b = bucket_begin; b < bucket_end; ++b) {
      float s = xg[t] * bucket_weight(unit[b], S);
      for (std::size_t g = 1; g < G; ++g) s = std::fma(xg[g * T + t], half_to_float(unit[g * B + b]), s);
      y[b * S + bucket_position(unit[b], S)] += s;
    }
  }
}

}  // namespace reference

namespace simd {

// Floats<A>::size entries of a g = 0 row of buckets of S outputs: midpoint-decoded weights and
// positions.
template <class A, std::size_t S>
struct LeadEntries;

#if defined(__AVX512F__)
template <std::size_t S>
struct LeadEntries<Avx512, S> {
  Floats<Avx512> weights;
  __m256i positions;  // 16-bit lanes: compared as they are (AVX-512BW), no widening
  explicit LeadEntries(const std::uint16_t* p) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i mid = _mm256_or_si256(_mm256_and_si256(raw, _mm256_set1_epi16(short(~(S - 1)))), _mm256_set1_epi16(S / 2));
    weights = _mm512_cvtph_ps(mid);
    positions = _mm256_and_si256(raw, _mm256_set1_epi16(short(S - 1)));
  }
  // acc + s where the entry's position is q, acc elsewhere: one masked add.
  Floats<Avx512> add_at(int q, Floats<Avx512> acc, Floats<Avx512> s) const {
    return _mm512_mask_add_ps(acc, _mm256_cmpeq_epi16_mask(positions, _mm256_set1_epi16(short(q))), acc, s);
  }
};
#elif defined(__AVX2__)
template <std::size_t S>
struct LeadEntries<Avx2, S> {
  Floats<Avx2> weights;
  __m256i positions;
  explicit LeadEntries(const std::uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mid = _mm_or_si128(_mm_and_si128(raw, _mm_set1_epi16(short(~(S - 1)))), _mm_set1_epi16(S / 2));
    weights = _mm256_cvtph_ps(mid);
    positions = _mm256_and_si256(_mm256_cvtepu16_epi32(raw), _mm256_set1_epi32(S - 1));
  }
  Floats<Avx2> add_at(int q, Floats<Avx2> acc, Floats<Avx2> s) const {
    return acc + Floats<Avx2>(_mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(positions, _mm256_set1_epi32(q))), s));
  }
};
#endif

// W = Floats<A>::size units' importances at a time, for units of one rank: same fused
// multiply-adds in the same order as the reference, so the same units pass.
template <class A>
std::size_t bucket_dispatch(std::uint32_t* units, const BucketView& m, const float* abs_xg, std::size_t num_units,
                            float cutoff) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t T = m.num_tiles, G = m.group;
  std::size_t count = 0;
  for (std::size_t rank_start = 0; rank_start < num_units; rank_start += T) {
    const std::size_t k = rank_start / T, n = std::min(T, num_units - rank_start);
    const float* stats = m.stats + k * G * T;
    std::size_t t = 0;
    for (; t + W <= n; t += W) {
      Floats<A> c(0.0f);
      for (std::size_t g = 0; g < G; ++g)
        c = fmadd<A>(Floats<A>::load_unaligned(abs_xg + g * T + t), Floats<A>::load_unaligned(stats + g * T + t), c);
      std::uint64_t pass = greater_mask<A>(c, Floats<A>(cutoff));
      while (pass) {
        units[count++] = std::uint32_t(rank_start + t + unsigned(__builtin_ctzll(pass)));
        pass &= pass - 1;
      }
    }
    for (; t < n; ++t)
      if (reference::unit_importance(m, abs_xg, rank_start + t) > cutoff) units[count++] = std::uint32_t(rank_start + t);
  }
  return count;
}

// Units are taken in chunks of kChunkUnits (their bytes fit in L2); within a chunk, tile by tile
// of W = Floats<A>::size buckets, S accumulators acc[q] whose lane l sums what lands on output
// (tile + l)*S + q. Per unit: s = sum_g x_g * w_g over the G rows (dense fused multiply-adds),
// then s goes to the accumulator its position selects: one routing step per G weights. Between
// chunks a tile's accumulators wait in y (as [q][l]), transposed to y's order at the end. Each
// weight byte is read once; each output sums its units in list order, as in the reference.
inline constexpr std::size_t kChunkUnits = 64;

template <class A, std::size_t G, std::size_t S>
void bucket_matvec_group(float* y, const BucketView& m, const float* xg, const std::uint32_t* units, std::size_t count,
                         std::size_t bucket_begin, std::size_t bucket_end) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t B = m.num_buckets, T = m.num_tiles;
  const std::size_t tiles_end = bucket_begin + (bucket_end - bucket_begin) / W * W;
  for (std::size_t o = bucket_begin * S; o < tiles_end * S; ++o) y[o] = 0.0f;
  for (std::size_t chunk = 0; chunk < count; chunk += kChunkUnits) {
    const std::size_t chunk_end = std::min(count, chunk + kChunkUnits);
    const std::size_t next_end = std::min(count, chunk_end + kChunkUnits);
    for (std::size_t tile = bucket_begin; tile < tiles_end; tile += W) {
      float* parked = y + tile * S;  // [S][W] while accumulating
      Floats<A> acc[S];
      for (std::size_t q = 0; q < S; ++q) acc[q] = Floats<A>::load_unaligned(parked + q * W);
      for (std::size_t i = chunk; i < chunk_end; ++i) {
        const std::uint16_t* unit = m.units + std::size_t(units[i]) * G * B + tile;
        const std::size_t t = units[i] % T;
        const LeadEntries<A, S> lead(unit);
        Floats<A> s = lead.weights * Floats<A>(xg[t]);
        for (std::size_t g = 1; g < G; ++g)
          s = fmadd<A>(Floats<A>(xg[g * T + t]), load_weights<A, DType::f16>(unit + g * B), s);
        for (std::size_t q = 0; q < S; ++q) acc[q] = lead.add_at(int(q), acc[q], s);
      }
      for (std::size_t q = 0; q < S; ++q) acc[q].store_unaligned(parked + q * W);
      // The next chunk's units, the same part of each of their G rows: one chunk ahead of use.
      for (std::size_t i = chunk_end; i < next_end; ++i)
        for (std::size_t g = 0; g < G; ++g) __builtin_prefetch(m.units + (std::size_t(units[i]) * G + g) * B + tile);
    }
  }
  alignas(64) float lanes[S * W];
  for (std::size_t tile = bucket_begin; tile < tiles_end; tile += W) {
    float* region = y + tile * S;
    std::copy(region, region + S * W, lanes);
    for (std::size_t q = 0; q < S; ++q)
      for (std::size_t l = 0; l < W; ++l) region[l * S + q] = lanes[q * W + l];
  }
  if (tiles_end < bucket_end) reference::bucket_matvec(y, m, xg, units, count, tiles_end, bucket_end);
}

// Group and bucket sizes are template parameters so that the G rows and S accumulators unroll;
// other group sizes use the reference.
template <class A, std::size_t S>
void bucket_matvec_sized(float* y, const BucketView& m, const float* xg, const std::uint32_t* units, std::size_t count,
                         std::size_t bucket_begin, std::size_t bucket_end) {
  switch (m.group) {
    case 1: return bucket_matvec_group<A, 1, S>(y, m, xg, units, count, bucket_begin, bucket_end);
    case 2: return bucket_matvec_group<A, 2, S>(y, m, xg, units, count, bucket_begin, bucket_end);
    case 4: return bucket_matvec_group<A, 4, S>(y, m, xg, units, count, bucket_begin, bucket_end);
    case 8: return bucket_matvec_group<A, 8, S>(y, m, xg, units, count, bucket_begin, bucket_end);
    case 16: return bucket_matvec_group<A, 16, S>(y, m, xg, units, count, bucket_begin, bucket_end);
    default: return reference::bucket_matvec(y, m, xg, units, count, bucket_begin, bucket_end);
  }
}

template <class A>
void bucket_matvec(float* y, const BucketView& m, const float* xg, const std::uint32_t* units, std::size_t count,
                   std::size_t bucket_begin, std::size_t bucket_end) {
  if (m.bucket_size == 8) return bucket_matvec_sized<A, 8>(y, m, xg, units, count, bucket_begin, bucket_end);
  bucket_matvec_sized<A, 16>(y, m, xg, units, count, bucket_begin, bucket_end);
}

}  // namespace simd
}  // namespace effort::kernels

// bucket_matvec.h: the effort product y ~= W x over a bucketed matrix (the canonical layout).
//
// Layout (built by src/bucketize.cpp): W [out, in] is transposed to input-major and each input's
// column is cut into B = padded_out/16 buckets of 16 neighbouring outputs; each bucket is sorted
// by |w| descending. Bucket row r = k*in + j holds, for every bucket b, the rank-k weight of
// bucket b for input j as fp16 whose 4 low mantissa bits are replaced by its position in the
// bucket (output b*16 + pos). rows [B] u16 each, rank-major. stats[r] = mean |weight| of row r.
//
// A product runs in two steps: dispatch picks the rows whose stats[r]*|x_j| exceeds the cutoff
// (in ascending row order); bucket_matvec multiplies those rows and routes every product to its
// output. Legend: in = input features, B = num_buckets, rows = bucket rows.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "simd.h"

namespace effort::kernels {

inline constexpr std::size_t kBucketSize = 16;

// The weight a bucket entry stands for: its bits with the low nibble set to the midpoint 0b1000,
// so the rounding from dropping 4 mantissa bits has no bias that depends on the position.
static inline float bucket_weight(std::uint16_t entry) { return half_to_float(std::uint16_t((entry & 0xFFF0u) | 0x8u)); }
static inline unsigned bucket_position(std::uint16_t entry) { return entry & 0xFu; }

namespace reference {

// Appends the rows r < num_rows with stats[r] * |x[r % in]| > cutoff to rows/row_x (row_x gets
// x[r % in]); returns how many. Rows come out ascending.
static inline std::size_t bucket_dispatch(std::uint32_t* rows, float* row_x, const float* stats, const float* x,
                                          std::size_t in, std::size_t num_rows, float cutoff) {
  std::size_t count = 0;
  for (std::size_t r = 0; r < num_rows; ++r) {
    const float xj = x[r % in];
    if (stats[r] * std::fabs(xj) > cutoff) {
      rows[count] = std::uint32_t(r);
      row_x[count++] = xj;
    }
  }
  return count;
}

// y[b*16 .. b*16+16) for buckets b in [bucket_begin, bucket_end) = sum over the listed rows, in
// list order, of row_x * weight, routed by position bits. Other outputs are untouched.
static inline void bucket_matvec(float* y, const std::uint16_t* bucket_rows, std::size_t num_buckets,
                                 const std::uint32_t* rows, const float* row_x, std::size_t count,
                                 std::size_t bucket_begin, std::size_t bucket_end) {
  for (std::size_t o = bucket_begin * kBucketSize; o < bucket_end * kBucketSize; ++o) y[o] = 0.0f;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint16_t* row = bucket_rows + std::size_t(rows[i]) * num_buckets;
    for (std::size_t b = bucket_begin; b < bucket_end; ++b)
      y[b * kBucketSize + bucket_position(row[b])] += row_x[i] * bucket_weight(row[b]);
  }
}

}  // namespace reference

namespace simd {

// Loads Floats<A>::size bucket entries: their weights (midpoint-decoded) and positions.
template <class A>
struct BucketEntries;

#if defined(__AVX512F__)
template <>
struct BucketEntries<Avx512> {
  Floats<Avx512> weights;
  __m512i positions;
  explicit BucketEntries(const std::uint16_t* p) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i mid = _mm256_or_si256(_mm256_and_si256(raw, _mm256_set1_epi16(short(0xFFF0))), _mm256_set1_epi16(8));
    weights = _mm512_cvtph_ps(mid);
    positions = _mm512_and_si512(_mm512_cvtepu16_epi32(raw), _mm512_set1_epi32(15));
  }
  // p where the entry's position is q, 0 elsewhere.
  Floats<Avx512> at_position(int q, Floats<Avx512> p) const {
    return _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(positions, _mm512_set1_epi32(q)), p);
  }
};
#elif defined(__AVX2__)
template <>
struct BucketEntries<Avx2> {
  Floats<Avx2> weights;
  __m256i positions;
  explicit BucketEntries(const std::uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mid = _mm_or_si128(_mm_and_si128(raw, _mm_set1_epi16(short(0xFFF0))), _mm_set1_epi16(8));
    weights = _mm256_cvtph_ps(mid);
    positions = _mm256_and_si256(_mm256_cvtepu16_epi32(raw), _mm256_set1_epi32(15));
  }
  Floats<Avx2> at_position(int q, Floats<Avx2> p) const {
    return _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(positions, _mm256_set1_epi32(q))), p);
  }
};
#endif

// Rank by rank, W rows at a time: one compare per row, then the passing rows are appended in
// ascending order from the comparison's bit mask. Same products and compares as the reference.
template <class A>
std::size_t bucket_dispatch(std::uint32_t* rows, float* row_x, const float* stats, const float* x, std::size_t in,
                            std::size_t num_rows, float cutoff) {
  constexpr std::size_t W = Floats<A>::size;
  std::size_t count = 0;
  for (std::size_t rank_start = 0; rank_start < num_rows; rank_start += in) {
    const std::size_t n = std::min(in, num_rows - rank_start);
    const float* s = stats + rank_start;
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
      const auto xj = Floats<A>::load_unaligned(x + j);
      std::uint64_t pass = greater_mask<A>(Floats<A>::load_unaligned(s + j) * xsimd::abs(xj), Floats<A>(cutoff));
      while (pass) {
        const unsigned l = unsigned(__builtin_ctzll(pass));
        pass &= pass - 1;
        rows[count] = std::uint32_t(rank_start + j + l);
        row_x[count++] = x[j + l];
      }
    }
    for (; j < n; ++j) {
      if (s[j] * std::fabs(x[j]) > cutoff) {
        rows[count] = std::uint32_t(rank_start + j);
        row_x[count++] = x[j];
      }
    }
  }
  return count;
}

// Rows are taken in chunks of kChunkRows (their bytes fit in L2); within a chunk, tile by tile
// of W = Floats<A>::size buckets, 16 accumulators acc[q] whose lane l sums the products landing
// on output (tile + l)*16 + q: decode W entries, multiply by x_j, add each product into the
// accumulator its position selects. Between chunks a tile's accumulators wait in y (as [q][l]),
// and are transposed to y's [l][q] order at the end. Each weight byte is read from memory once,
// and each output still sums its rows in list order, as in the reference: bitwise equal to it.
inline constexpr std::size_t kChunkRows = 64;

template <class A>
void bucket_matvec(float* y, const std::uint16_t* bucket_rows, std::size_t num_buckets, const std::uint32_t* rows,
                   const float* row_x, std::size_t count, std::size_t bucket_begin, std::size_t bucket_end) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t tiles_end = bucket_begin + (bucket_end - bucket_begin) / W * W;
  for (std::size_t o = bucket_begin * kBucketSize; o < tiles_end * kBucketSize; ++o) y[o] = 0.0f;
  for (std::size_t chunk = 0; chunk < count; chunk += kChunkRows) {
    const std::size_t chunk_end = std::min(count, chunk + kChunkRows);
    const std::size_t next_end = std::min(count, chunk_end + kChunkRows);
    for (std::size_t tile = bucket_begin; tile < tiles_end; tile += W) {
      float* parked = y + tile * kBucketSize;  // [16][W] while accumulating
      Floats<A> acc[kBucketSize];
      for (std::size_t q = 0; q < kBucketSize; ++q) acc[q] = Floats<A>::load_unaligned(parked + q * W);
      for (std::size_t i = chunk; i < chunk_end; ++i) {
        const BucketEntries<A> e(bucket_rows + std::size_t(rows[i]) * num_buckets + tile);
        const Floats<A> p = e.weights * Floats<A>(row_x[i]);
        for (std::size_t q = 0; q < kBucketSize; ++q) acc[q] += e.at_position(int(q), p);
      }
      for (std::size_t q = 0; q < kBucketSize; ++q) acc[q].store_unaligned(parked + q * W);
      // The next chunk's rows, the same part of them: one chunk ahead of use.
      for (std::size_t i = chunk_end; i < next_end; ++i)
        __builtin_prefetch(bucket_rows + std::size_t(rows[i]) * num_buckets + tile);
    }
  }
  alignas(64) float lanes[kBucketSize * W];
  for (std::size_t tile = bucket_begin; tile < tiles_end; tile += W) {
    float* region = y + tile * kBucketSize;
    std::copy(region, region + kBucketSize * W, lanes);
    for (std::size_t q = 0; q < kBucketSize; ++q)
      for (std::size_t l = 0; l < W; ++l) region[l * kBucketSize + q] = lanes[q * W + l];
  }
  if (tiles_end < bucket_end)
    reference::bucket_matvec(y, bucket_rows, num_buckets, rows, row_x, count, tiles_end, bucket_end);
}

}  // namespace simd
}  // namespace effort::kernels

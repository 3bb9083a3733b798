// bucket_matvec.h: the effort product y ~= W x over a bucketed matrix.
//
// Layout (built by src/model/bucketize.cpp), for W [out, in] and bucket size S (1, 2, 4, 8 or 16):
// outputs are cut into B = ceil(out/S) buckets of S neighbours. For every input j and bucket b
// the bucket's S weights of column j are sorted by |w| descending; rank k names the k-th. Unit
// u = k*in + j is a row of B entries: entry b is the rank-k weight of bucket b in column j.
// Entries are fp16 (weights f16) or int8 (weights q8: one fp16 scale per block of kQ8Block
// entries along the unit row, weight = entry * scale, entries in [-127, 127]). Either way an
// entry is the value nearest to the weight whose log2(S) low bits are its position in the
// bucket (so decoding is a plain convert, with no bias). Units are rank-major, so the least important come last.
// stats[u] = mean over buckets of |weight b of unit u|. S = 16 is the original's canonical
// layout; S = 1 keeps whole input columns.
//
// A product runs in two steps. Dispatch lists the units whose importance |x_j| * stats[u]
// exceeds the cutoff, in ascending unit order, with their inputs x_j. bucket_matvec multiplies
// a list: every listed unit's entry b, times its x, is added to output b*S + position (for q8,
// x times the block's scale in int8, as integer dot products: bucket_matvec_q8.h). For S = 2 it
// sums a bucket's total and its position-1 part, and position 0 is their difference: one plain
// and one masked multiply-add per weight instead of two masked ones.
//
// Legend: S = bucket_size, B = num_buckets, in = num_inputs, W = SIMD lanes (floats).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "bucket_matvec_q8.h"
#include "bucket_view.h"
#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {

// Appends the units u < num_units whose importance exceeds the cutoff, and their inputs;
// returns how many.
inline std::size_t bucket_dispatch(std::uint32_t* units, float* xs, const BucketView& m, const float* x,
                                          std::size_t num_units, float cutoff) {
  std::size_t count = 0;
  for (std::size_t u = 0; u < num_units; ++u) {
    const float xj = x[u % m.num_inputs];
    if (std::fabs(xj) * m.stats[u] > cutoff) {
      units[count] = std::uint32_t(u);
      xs[count++] = xj;
    }
  }
  return count;
}

// Outputs of buckets [bucket_begin, bucket_end), summed over the listed units in list order.
// fp16 entries; q8 ones are bucket_matvec_q8.h's.
inline void bucket_matvec_range(float* y, const BucketView& m, const std::uint32_t* units, const float* xs,
                                       std::size_t count, std::size_t bucket_begin, std::size_t bucket_end) {
  if (m.weights == BucketWeights::q8) return bucket_matvec_q8_range(y, m, units, xs, count, bucket_begin, bucket_end);
  const std::size_t S = m.bucket_size;
  for (std::size_t o = bucket_begin * S; o < bucket_end * S; ++o) y[o] = 0.0f;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t u = units[i];
    for (std::size_t b = bucket_begin; b < bucket_end; ++b) {
      const float w = entry_value(m, u, b), x = xs[i];
      if (S == 2) {
        y[b * 2] = std::fma(w, x, y[b * 2]);  // the total, until the end
        if (entry_bits(m, u, b) & 1) y[b * 2 + 1] = std::fma(w, x, y[b * 2 + 1]);
      } else {
        float& out = y[b * S + bucket_position(entry_bits(m, u, b), S)];
        out = std::fma(w, x, out);
      }
    }
  }
  if (S == 2)
    for (std::size_t b = bucket_begin; b < bucket_end; ++b) y[b * 2] -= y[b * 2 + 1];
}

// y[0 .. B*S) = the listed units' products (outputs past out are padding).
inline void bucket_matvec(float* y, const BucketView& m, const std::uint32_t* units, const float* xs,
                                 std::size_t count) {
  bucket_matvec_range(y, m, units, xs, count, 0, m.num_buckets);
}

}  // namespace reference

namespace simd {

// Position routing of W fp16 entries: acc[q] += w * x where the entry's position is q (for
// S = 2: acc[0] += w * x everywhere, acc[1] where the position bit is set).
template <class A, std::size_t S>
struct Router;

#if defined(__AVX512F__)
template <std::size_t S>
struct Router<Avx512, S> {
  using F = Floats<Avx512>;
  static void route(F* acc, const std::uint16_t* p, F x) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const F w = _mm512_cvtph_ps(raw);
    if constexpr (S == 1) {
      acc[0] = _mm512_fmadd_ps(w, x, acc[0]);
    } else if constexpr (S == 2) {
      acc[0] = _mm512_fmadd_ps(w, x, acc[0]);
      acc[1] = _mm512_mask3_fmadd_ps(w, x, acc[1], _mm256_test_epi16_mask(raw, _mm256_set1_epi16(1)));
    } else {
      const __m256i low = _mm256_and_si256(raw, _mm256_set1_epi16(short(S - 1)));
      for (std::size_t q = 0; q < S; ++q)
        acc[q] = _mm512_mask3_fmadd_ps(w, x, acc[q], _mm256_cmpeq_epi16_mask(low, _mm256_set1_epi16(short(q))));
    }
  }
};
#elif defined(__AVX2__)
template <std::size_t S>
struct Router<Avx2, S> {
  using F = Floats<Avx2>;
  // Without mask registers a masked multiply-add is one of weights zeroed elsewhere: the same
  // result, since acc + 0*x == acc for finite x.
  static void route(F* acc, const std::uint16_t* p, F x) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256 w = _mm256_cvtph_ps(raw);
    if constexpr (S == 1) {
      acc[0] = _mm256_fmadd_ps(w, x, acc[0]);
    } else {
      const __m256i positions = _mm256_and_si256(_mm256_cvtepu16_epi32(raw), _mm256_set1_epi32(int(S - 1)));
      if constexpr (S == 2) {
        acc[0] = _mm256_fmadd_ps(w, x, acc[0]);
        const __m256 odd = _mm256_castsi256_ps(_mm256_cmpeq_epi32(positions, _mm256_set1_epi32(1)));
        acc[1] = _mm256_fmadd_ps(_mm256_and_ps(w, odd), x, acc[1]);
      } else {
        for (std::size_t q = 0; q < S; ++q) {
          const __m256 at = _mm256_castsi256_ps(_mm256_cmpeq_epi32(positions, _mm256_set1_epi32(int(q))));
          acc[q] = _mm256_fmadd_ps(_mm256_and_ps(w, at), x, acc[q]);
        }
      }
    }
  }
};
#endif

// The stream kernel for fp16 entries. Units go kGroup at a time; each is streamed along its
// whole row, so kGroup memory streams are in flight, and the next group's rows are prefetched
// at the same offsets. A tile of W buckets keeps its S accumulators [S][W] in y while the group
// passes (y is L1/L2 sized: out floats), loaded and stored once per group; y is put in output
// order at the end. Tiles are taken kTiles at a time so that kTiles * S accumulator chains of
// fused multiply-adds run side by side: one chain would wait on the FMA latency at every unit.
// Each output sums its units in list order, as the reference does, so the results are equal.
inline constexpr std::size_t kGroup = 8;

template <class A, std::size_t S>
inline constexpr std::size_t kTiles = std::max<std::size_t>(1, (std::is_same_v<A, Avx512> ? 8 : 4) / S);

// Tiles [b, end) in steps of T tiles, for the N units of a group; `ahead` are the rows to
// prefetch at the same offsets.
template <class A, std::size_t S, std::size_t N, std::size_t T>
inline std::size_t stream_tiles(float* y, const std::uint16_t* const* rows, const std::uint16_t* const* ahead,
                                const Floats<A>* x, std::size_t b, std::size_t end) {
  constexpr std::size_t W = Floats<A>::size;
  constexpr std::size_t kLine = 32;  // entries per cache line
  for (; b + T * W <= end; b += T * W) {
    Floats<A> acc[T][S];
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t q = 0; q < S; ++q) acc[t][q] = Floats<A>::load_unaligned(y + (b + t * W) * S + q * W);
    for (std::size_t r = 0; r < N; ++r) {
      for (std::size_t t = 0; t < T; ++t) Router<A, S>::route(acc[t], rows[r] + b + t * W, x[r]);
    }
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t q = 0; q < S; ++q) acc[t][q].store_unaligned(y + (b + t * W) * S + q * W);
    if (T * W >= kLine || b % kLine == 0)
      for (std::size_t e = 0; e < T * W; e += kLine)
        for (std::size_t r = 0; r < N; ++r) __builtin_prefetch(ahead[r] + b + e);
  }
  return b;
}

template <class A, std::size_t S, std::size_t N>
inline void stream_group(float* y, const BucketView& m, const std::uint32_t* units, const float* xs,
                         const std::uint32_t* next, std::size_t num_next, std::size_t tiles_end) {
  const auto* entries = static_cast<const std::uint16_t*>(m.units);
  const std::uint16_t* rows[N];
  const std::uint16_t* ahead[N];
  Floats<A> x[N];
  for (std::size_t r = 0; r < N; ++r) {
    rows[r] = entries + std::size_t(units[r]) * m.num_buckets;
    // The last group has no next one: it prefetches its own rows, already on their way.
    ahead[r] = r < num_next ? entries + std::size_t(next[r]) * m.num_buckets : rows[r];
    x[r] = Floats<A>(xs[r]);
  }
  const std::size_t b = stream_tiles<A, S, N, kTiles<A, S>>(y, rows, ahead, x, 0, tiles_end);
  stream_tiles<A, S, N, 1>(y, rows, ahead, x, b, tiles_end);
}

template <class A, std::size_t S>
void bucket_matvec_sized(float* y, const BucketView& m, const std::uint32_t* units, const float* xs, std::size_t count) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t B = m.num_buckets, tiles_end = B / W * W;
  std::fill(y, y + tiles_end * S, 0.0f);
  for (std::size_t i = 0; i < count; i += kGroup) {
    const std::size_t next = std::min(count, i + kGroup), num_next = std::min(count, next + kGroup) - next;
    if (i + kGroup <= count) {
      stream_group<A, S, kGroup>(y, m, units + i, xs + i, units + next, num_next, tiles_end);
    } else {
      for (std::size_t r = i; r < count; ++r) stream_group<A, S, 1>(y, m, units + r, xs + r, nullptr, 0, tiles_end);
    }
  }
  // [S][W] per tile -> output order; for S = 2 position 0 is the total less position 1.
  alignas(64) float lanes[S * W];
  for (std::size_t b = 0; b < tiles_end; b += W) {
    float* region = y + b * S;
    std::copy(region, region + S * W, lanes);
    if constexpr (S == 2)
      for (std::size_t l = 0; l < W; ++l) lanes[l] -= lanes[W + l];
    for (std::size_t q = 0; q < S; ++q)
      for (std::size_t l = 0; l < W; ++l) region[l * S + q] = lanes[q * W + l];
  }
  if (tiles_end < B) reference::bucket_matvec_range(y, m, units, xs, count, tiles_end, B);
}

template <class A>
void bucket_matvec(float* y, const BucketView& m, const std::uint32_t* units, const float* xs, std::size_t count) {
  if (m.weights == BucketWeights::q8) return bucket_matvec_q8<A>(y, m, units, xs, count);
  switch (m.bucket_size) {
    case 1: return bucket_matvec_sized<A, 1>(y, m, units, xs, count);
    case 2: return bucket_matvec_sized<A, 2>(y, m, units, xs, count);
    case 4: return bucket_matvec_sized<A, 4>(y, m, units, xs, count);
    case 8: return bucket_matvec_sized<A, 8>(y, m, units, xs, count);
    default: return bucket_matvec_sized<A, 16>(y, m, units, xs, count);
  }
}

// W inputs' importances at a time, rank by rank; the same float products as the reference, so
// the same units pass. AVX-512 compresses the passing units and inputs in registers and stores
// whole vectors (kDispatchSlack).
template <class A>
std::size_t bucket_dispatch(std::uint32_t* units, float* xs, const BucketView& m, const float* x, std::size_t num_units,
                            float cutoff) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t in = m.num_inputs;
  std::size_t count = 0;
  for (std::size_t rank_start = 0; rank_start < num_units; rank_start += in) {
    const std::size_t n = std::min(in, num_units - rank_start);
    const float* stats = m.stats + rank_start;
    std::size_t j = 0;
    for (; j + W <= n; j += W) {
      const auto xv = Floats<A>::load_unaligned(x + j);
      const auto importance = xsimd::abs(xv) * Floats<A>::load_unaligned(stats + j);
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<A, Avx512>) {
        const __mmask16 pass = _mm512_cmp_ps_mask(importance, _mm512_set1_ps(cutoff), _CMP_GT_OQ);
        const __m512i ids = _mm512_add_epi32(_mm512_set1_epi32(int(rank_start + j)),
                                             _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        // Compressed in registers, stored whole: a compress store to memory is microcoded on
        // Zen 4 (about 3x slower over a whole dispatch); the slack past the list takes the rest.
        _mm512_storeu_si512(units + count, _mm512_maskz_compress_epi32(pass, ids));
        _mm512_storeu_ps(xs + count, _mm512_maskz_compress_ps(pass, xv));
        count += std::size_t(__builtin_popcount(pass));
        continue;
      }
#endif
      std::uint64_t pass = greater_mask<A>(importance, Floats<A>(cutoff));
      while (pass) {
        const unsigned l = unsigned(__builtin_ctzll(pass));
        units[count] = std::uint32_t(rank_start + j + l);
        xs[count++] = x[j + l];
        pass &= pass - 1;
      }
    }
    for (; j < n; ++j)
      if (std::fabs(x[j]) * stats[j] > cutoff) {
        units[count] = std::uint32_t(rank_start + j);
        xs[count++] = x[j];
      }
  }
  return count;
}

}  // namespace simd
}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

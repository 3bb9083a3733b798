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

// One vector's outputs of buckets [bucket_begin, bucket_end), summed over the listed units in
// list order; its input for listed unit i is xs[i * stride]. fp16 entries; q8 ones are
// bucket_matvec_q8.h's.
inline void bucket_matvec_range(float* y, const BucketView& m, const std::uint32_t* units, const float* xs,
                                std::size_t stride, std::size_t count, std::size_t bucket_begin, std::size_t bucket_end) {
  if (m.weights == BucketWeights::q8)
    return bucket_matvec_q8_range(y, m, units, xs, stride, count, bucket_begin, bucket_end);
  const std::size_t S = m.bucket_size;
  for (std::size_t o = bucket_begin * S; o < bucket_end * S; ++o) y[o] = 0.0f;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t u = units[i];
    for (std::size_t b = bucket_begin; b < bucket_end; ++b) {
      const float w = entry_value(m, u, b), x = xs[i * stride];
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

// Every vector, one after the other (kernels.h has the contract).
inline void bucket_matvec(float* y, std::size_t y_stride, const BucketView& m, const std::uint32_t* units,
                          const float* xs, std::size_t count, std::size_t n, std::size_t bucket_begin,
                          std::size_t bucket_end) {
  for (std::size_t v = 0; v < n; ++v)
    bucket_matvec_range(y + v * y_stride, m, units, xs + v, n, count, bucket_begin, bucket_end);
}

}  // namespace reference

namespace simd {

// W fp16 entries decoded once, then routed into the accumulators of each vector that takes
// them: acc[q] += w * x where the entry's position is q (for S = 2: acc[0] += w * x everywhere,
// acc[1] where the position bit is set).
template <class A, std::size_t S>
struct Router;

#if defined(__AVX512F__)
template <std::size_t S>
struct Router<Avx512, S> {
  using F = Floats<Avx512>;
  struct Entries {
    F w;
    __mmask16 at[S > 2 ? S : 1];  // S = 2: the position bit; S > 2: where each position is
  };
  static Entries decode(const std::uint16_t* p) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    Entries e;
    e.w = _mm512_cvtph_ps(raw);
    if constexpr (S == 2) {
      e.at[0] = _mm256_test_epi16_mask(raw, _mm256_set1_epi16(1));
    } else if constexpr (S > 2) {
      const __m256i low = _mm256_and_si256(raw, _mm256_set1_epi16(short(S - 1)));
      for (std::size_t q = 0; q < S; ++q) e.at[q] = _mm256_cmpeq_epi16_mask(low, _mm256_set1_epi16(short(q)));
    }
    return e;
  }
  static void route(F* acc, const Entries& e, F x) {
    if constexpr (S == 1) {
      acc[0] = _mm512_fmadd_ps(e.w, x, acc[0]);
    } else if constexpr (S == 2) {
      acc[0] = _mm512_fmadd_ps(e.w, x, acc[0]);
      acc[1] = _mm512_mask3_fmadd_ps(e.w, x, acc[1], e.at[0]);
    } else {
      for (std::size_t q = 0; q < S; ++q) acc[q] = _mm512_mask3_fmadd_ps(e.w, x, acc[q], e.at[q]);
    }
  }
};
#elif defined(__AVX2__)
template <std::size_t S>
struct Router<Avx2, S> {
  using F = Floats<Avx2>;
  // Without mask registers a masked multiply-add is one of weights zeroed elsewhere: the same
  // result, since acc + 0*x == acc for finite x.
  struct Entries {
    __m256 w[S];  // S = 2: the weights, and those at position 1; otherwise those at each position
  };
  static Entries decode(const std::uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256 w = _mm256_cvtph_ps(raw);
    Entries e;
    if constexpr (S == 1) {
      e.w[0] = w;
    } else {
      const __m256i positions = _mm256_and_si256(_mm256_cvtepu16_epi32(raw), _mm256_set1_epi32(int(S - 1)));
      for (std::size_t q = S == 2 ? 1 : 0; q < S; ++q)
        e.w[q] = _mm256_and_ps(w, _mm256_castsi256_ps(_mm256_cmpeq_epi32(positions, _mm256_set1_epi32(int(q)))));
      if constexpr (S == 2) e.w[0] = w;
    }
    return e;
  }
  static void route(F* acc, const Entries& e, F x) {
    for (std::size_t q = 0; q < S; ++q) acc[q] = _mm256_fmadd_ps(e.w[q], x, acc[q]);
  }
};
#endif

// The stream kernel for fp16 entries. Units go kGroup at a time; each is streamed along its
// bucket range, so kGroup memory streams are in flight, and the next group's rows are prefetched
// at the same offsets. A tile of W buckets keeps each vector's S accumulators [S][W] in that
// vector's y while the group passes (L1/L2 sized), loaded and stored once per group; y is put
// in output order at the end. One vector takes kTiles tiles at a time, so that kTiles * S
// accumulator chains of fused multiply-adds run side by side (one chain would wait on the FMA
// latency at every unit). Several vectors take one tile each, kChunk of them per decode of the
// tile's entries (their accumulators fill the registers), further chunks decoding the same
// entries again from L1. Each output sums its units in list order, as the reference does, so
// the results are equal.
inline constexpr std::size_t kGroup = 8;
inline constexpr std::size_t kChunk = 4;

template <class A, std::size_t S>
inline constexpr std::size_t kTiles = std::max<std::size_t>(1, (std::is_same_v<A, Avx512> ? 8 : 4) / S);

// A group of R units as the kernel passes it: their rows, the rows to prefetch at the same
// offsets, and each vector's input for each unit.
template <class A, std::size_t R>
struct StreamGroup {
  const std::uint16_t* rows[R];
  const std::uint16_t* ahead[R];
  Floats<A> x[R][kMaxVectors];
};

// Vectors [v0, v0 + N) over the T tiles from bucket b.
template <class A, std::size_t S, std::size_t R, std::size_t T, std::size_t N>
inline void stream_step(float* y, std::size_t y_stride, const StreamGroup<A, R>& g, std::size_t v0, std::size_t b) {
  constexpr std::size_t W = Floats<A>::size;
  Floats<A> acc[N][T][S];
  auto at = [&](std::size_t v, std::size_t t, std::size_t q) { return y + (v0 + v) * y_stride + (b + t * W) * S + q * W; };
  for (std::size_t v = 0; v < N; ++v)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t q = 0; q < S; ++q) acc[v][t][q] = Floats<A>::load_unaligned(at(v, t, q));
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t t = 0; t < T; ++t) {
      const auto entries = Router<A, S>::decode(g.rows[r] + b + t * W);
      for (std::size_t v = 0; v < N; ++v) Router<A, S>::route(acc[v][t], entries, g.x[r][v0 + v]);
    }
  for (std::size_t v = 0; v < N; ++v)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t q = 0; q < S; ++q) acc[v][t][q].store_unaligned(at(v, t, q));
}

// The group over tiles [b, end) for n vectors.
template <class A, std::size_t S, std::size_t R>
inline void stream_group(float* y, std::size_t y_stride, const StreamGroup<A, R>& g, std::size_t n, std::size_t b,
                         std::size_t end) {
  constexpr std::size_t W = Floats<A>::size;
  constexpr std::size_t kLine = 32;  // entries per cache line
  auto prefetch = [&](std::size_t from, std::size_t entries) {
    if (entries >= kLine || from % kLine == 0)
      for (std::size_t e = 0; e < entries; e += kLine)
        for (std::size_t r = 0; r < R; ++r) __builtin_prefetch(g.ahead[r] + from + e);
  };
  if (n == 1) {
    constexpr std::size_t T = kTiles<A, S>;
    for (; b + T * W <= end; b += T * W) {
      stream_step<A, S, R, T, 1>(y, y_stride, g, 0, b);
      prefetch(b, T * W);
    }
  }
  for (; b + W <= end; b += W) {
    std::size_t v = 0;
    for (; v + kChunk <= n; v += kChunk) stream_step<A, S, R, 1, kChunk>(y, y_stride, g, v, b);
    if (n - v == 3) stream_step<A, S, R, 1, 3>(y, y_stride, g, v, b);
    if (n - v == 2) stream_step<A, S, R, 1, 2>(y, y_stride, g, v, b);
    if (n - v == 1) stream_step<A, S, R, 1, 1>(y, y_stride, g, v, b);
    prefetch(b, W);
  }
}

// Units [i, i + R) of the list as a group; the next group's rows (none after the last group: it
// prefetches its own rows, already on their way).
template <class A, std::size_t R>
inline void fill_group(StreamGroup<A, R>& g, const BucketView& m, const std::uint32_t* units, const float* xs,
                       std::size_t count, std::size_t n, std::size_t i) {
  const auto* entries = static_cast<const std::uint16_t*>(m.units);
  const std::size_t next = i / kGroup * kGroup + kGroup;
  for (std::size_t r = 0; r < R; ++r) {
    g.rows[r] = entries + std::size_t(units[i + r]) * m.num_buckets;
    g.ahead[r] = next + r < count ? entries + std::size_t(units[next + r]) * m.num_buckets : g.rows[r];
    for (std::size_t v = 0; v < n; ++v) g.x[r][v] = Floats<A>(xs[(i + r) * n + v]);
  }
}

template <class A, std::size_t S>
void bucket_matvec_sized(float* y, std::size_t y_stride, const BucketView& m, const std::uint32_t* units,
                         const float* xs, std::size_t count, std::size_t n, std::size_t bucket_begin,
                         std::size_t bucket_end) {
  constexpr std::size_t W = Floats<A>::size;
  const std::size_t tiles_end = bucket_begin + (bucket_end - bucket_begin) / W * W;
  for (std::size_t v = 0; v < n; ++v)
    std::fill(y + v * y_stride + bucket_begin * S, y + v * y_stride + tiles_end * S, 0.0f);
  for (std::size_t i = 0; i < count; i += kGroup) {
    if (i + kGroup <= count) {
      StreamGroup<A, kGroup> g;
      fill_group(g, m, units, xs, count, n, i);
      stream_group<A, S, kGroup>(y, y_stride, g, n, bucket_begin, tiles_end);
    } else {
      for (std::size_t r = i; r < count; ++r) {
        StreamGroup<A, 1> g;
        fill_group(g, m, units, xs, count, n, r);
        stream_group<A, S, 1>(y, y_stride, g, n, bucket_begin, tiles_end);
      }
    }
  }
  // [S][W] per tile -> output order; for S = 2 position 0 is the total less position 1.
  alignas(64) float lanes[S * W];
  for (std::size_t v = 0; v < n; ++v)
    for (std::size_t b = bucket_begin; b < tiles_end; b += W) {
      float* region = y + v * y_stride + b * S;
      std::copy(region, region + S * W, lanes);
      if constexpr (S == 2)
        for (std::size_t l = 0; l < W; ++l) lanes[l] -= lanes[W + l];
      for (std::size_t q = 0; q < S; ++q)
        for (std::size_t l = 0; l < W; ++l) region[l * S + q] = lanes[q * W + l];
    }
  if (tiles_end < bucket_end) reference::bucket_matvec(y, y_stride, m, units, xs, count, n, tiles_end, bucket_end);
}

template <class A>
void bucket_matvec(float* y, std::size_t y_stride, const BucketView& m, const std::uint32_t* units, const float* xs,
                   std::size_t count, std::size_t n, std::size_t bucket_begin, std::size_t bucket_end) {
  if (m.weights == BucketWeights::q8)
    return bucket_matvec_q8<A>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
  switch (m.bucket_size) {
    case 1: return bucket_matvec_sized<A, 1>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    case 2: return bucket_matvec_sized<A, 2>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    case 4: return bucket_matvec_sized<A, 4>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    case 8: return bucket_matvec_sized<A, 8>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
    default: return bucket_matvec_sized<A, 16>(y, y_stride, m, units, xs, count, n, bucket_begin, bucket_end);
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

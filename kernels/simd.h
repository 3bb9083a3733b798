// simd.h: what the SIMD kernel bodies share: xsimd, the arch types we compile, and loads of
// fp16/bf16 weights as float batches (xsimd 8 has no half type, so these use intrinsics).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "fp16.h"
#include "kernels.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {
namespace simd {

using Avx2 = xsimd::fma3<xsimd::avx2>;
using Avx512 = xsimd::avx512bw;

template <class A>
using Floats = xsimd::batch<float, A>;

// Loads Floats<A>::size weights of one dtype, from weight i of a row on, as floats (for q8_0, i
// is a multiple of the lanes: they share a block's scale). Defined below.
template <class A, DType D>
Floats<A> load_weights(const void* row, std::size_t i);

// Floats<A>::size int8 values as floats.
template <class A>
Floats<A> int8_to_floats(const void* p);

// The primary template is q8_0's, for every arch (int8 lanes times the block's scale); the other
// dtypes are specialized per arch below.
template <class A, DType D>
Floats<A> load_weights(const void* row, std::size_t i) {
  static_assert(D == DType::q8_0);
  const auto* block = static_cast<const std::uint8_t*>(row) + i / kQ8_0Block * kQ8_0BlockBytes;
  return int8_to_floats<A>(block + 2 + i % kQ8_0Block) * Floats<A>(q8_0_scale(block));
}

// Bit l set where a[l] > b[l].
template <class A>
std::uint64_t greater_mask(Floats<A> a, Floats<A> b);

// a * b + c with one rounding. (xsimd 8.1 has no AVX-512 fma: its generic fallback rounds twice.)
template <class A>
Floats<A> fmadd(Floats<A> a, Floats<A> b, Floats<A> c);

#if defined(__AVX512F__)
template <>
inline Floats<Avx512> load_weights<Avx512, DType::f32>(const void* row, std::size_t i) {
  return _mm512_loadu_ps(static_cast<const float*>(row) + i);
}
template <>
inline Floats<Avx512> load_weights<Avx512, DType::f16>(const void* row, std::size_t i) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const std::uint16_t*>(row) + i)));
}
template <>
inline Floats<Avx512> load_weights<Avx512, DType::bf16>(const void* row, std::size_t i) {
  const auto* p = reinterpret_cast<const __m256i*>(static_cast<const std::uint16_t*>(row) + i);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p)), 16));
}
template <>
inline Floats<Avx512> int8_to_floats<Avx512>(const void* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))));
}
template <>
inline std::uint64_t greater_mask<Avx512>(Floats<Avx512> a, Floats<Avx512> b) {
  return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ);
}
template <>
inline Floats<Avx512> fmadd<Avx512>(Floats<Avx512> a, Floats<Avx512> b, Floats<Avx512> c) {
  return _mm512_fmadd_ps(a, b, c);
}
#elif defined(__AVX2__)
template <>
inline Floats<Avx2> load_weights<Avx2, DType::f32>(const void* row, std::size_t i) {
  return _mm256_loadu_ps(static_cast<const float*>(row) + i);
}
template <>
inline Floats<Avx2> load_weights<Avx2, DType::f16>(const void* row, std::size_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(row) + i)));
}
template <>
inline Floats<Avx2> load_weights<Avx2, DType::bf16>(const void* row, std::size_t i) {
  const auto* p = reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(row) + i);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p)), 16));
}
template <>
inline Floats<Avx2> int8_to_floats<Avx2>(const void* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))));
}
template <>
inline std::uint64_t greater_mask<Avx2>(Floats<Avx2> a, Floats<Avx2> b) {
  return std::uint64_t(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)));
}
template <>
inline Floats<Avx2> fmadd<Avx2>(Floats<Avx2> a, Floats<Avx2> b, Floats<Avx2> c) {
  return _mm256_fmadd_ps(a, b, c);
}
#endif

}  // namespace simd
}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

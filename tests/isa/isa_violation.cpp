// isa_violation.cpp: compiled with AVX-512 and AVX2 flags into no unit's namespace, so that the
// ISA check can be seen to fail (tests/CMakeLists.txt): it must name both functions.
#include <immintrin.h>

namespace effort::kernels::generic {

void leaked_avx512_add(float* y, const float* x) { _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(y))); }
void leaked_avx2_add(float* y, const float* x) { _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(y))); }

}  // namespace effort::kernels::generic

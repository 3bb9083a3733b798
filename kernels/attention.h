// attention.h: one query head attending over cached keys/values:
// out = sum_t softmax_t(scale * q.k_t) v_t, with the max subtracted before exp so large scores
// cannot overflow. The caller passes only the keys the query may see (causal, sliding window).
#pragma once
#include <cmath>
#include <cstddef>

#include "simd.h"

namespace effort::kernels {

namespace reference {
static inline void attention(float* out, const float* q, const float* k, const float* v,
                             std::size_t n_keys, std::size_t kv_stride, std::size_t head_dim,
                             float scale, float* scores) {
  for (std::size_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  if (n_keys == 0) return;
  float max_score = -INFINITY;
  for (std::size_t t = 0; t < n_keys; ++t) {
    const float* key = k + t * kv_stride;
    float dot = 0.0f;
    for (std::size_t d = 0; d < head_dim; ++d) dot += q[d] * key[d];
    scores[t] = dot * scale;
    max_score = scores[t] > max_score ? scores[t] : max_score;
  }
  float sum = 0.0f;
  for (std::size_t t = 0; t < n_keys; ++t) {
    scores[t] = std::exp(scores[t] - max_score);
    sum += scores[t];
  }
  for (std::size_t t = 0; t < n_keys; ++t) {
    const float p = scores[t] / sum;
    const float* value = v + t * kv_stride;
    for (std::size_t d = 0; d < head_dim; ++d) out[d] += p * value[d];
  }
}
}  // namespace reference

namespace simd {
template <class A>
void attention(float* out, const float* q, const float* k, const float* v, std::size_t n_keys,
               std::size_t kv_stride, std::size_t head_dim, float scale, float* scores) {
  constexpr std::size_t W = Floats<A>::size;
  for (std::size_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  if (n_keys == 0) return;
  float max_score = -INFINITY;
  for (std::size_t t = 0; t < n_keys; ++t) {
    const float* key = k + t * kv_stride;
    Floats<A> acc(0.0f);
    std::size_t d = 0;
    for (; d + W <= head_dim; d += W)
      acc = fmadd<A>(Floats<A>::load_unaligned(q + d), Floats<A>::load_unaligned(key + d), acc);
    float dot = xsimd::hadd(acc);
    for (; d < head_dim; ++d) dot += q[d] * key[d];
    scores[t] = dot * scale;
    max_score = scores[t] > max_score ? scores[t] : max_score;
  }
  Floats<A> sums(0.0f);
  std::size_t t = 0;
  for (; t + W <= n_keys; t += W) {
    const auto e = xsimd::exp(Floats<A>::load_unaligned(scores + t) - max_score);
    e.store_unaligned(scores + t);
    sums += e;
  }
  float sum = xsimd::hadd(sums);
  for (; t < n_keys; ++t) {
    scores[t] = std::exp(scores[t] - max_score);
    sum += scores[t];
  }
  const float inv_sum = 1.0f / sum;
  for (t = 0; t < n_keys; ++t) {
    const Floats<A> p(scores[t] * inv_sum);
    const float* value = v + t * kv_stride;
    std::size_t d = 0;
    for (; d + W <= head_dim; d += W)
      fmadd<A>(p, Floats<A>::load_unaligned(value + d), Floats<A>::load_unaligned(out + d))
          .store_unaligned(out + d);
    for (; d < head_dim; ++d) out[d] += scores[t] * inv_sum * value[d];
  }
}
}  // namespace simd

}  // namespace effort::kernels

// attention.h: one query head attending over cached keys/values:
// out = sum_t softmax_t(scale * q.k_t) v_t, with the max subtracted before exp so large scores
// cannot overflow. The caller passes only the keys the query may see (causal, sliding window).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "simd.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

namespace reference {
inline void attention(float* out, const float* q, const float* k, const float* v,
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
// Four keys at a time: four independent fused multiply-add chains hide the FMA latency that one
// key's chain would wait on. The weighted sum keeps up to four vectors of `out` in registers
// while every key streams past, instead of a load and store of `out` per key. Each score and
// each output lane sums in the same order as one key at a time would.
template <class A>
void attention(float* out, const float* q, const float* k, const float* v, std::size_t n_keys,
               std::size_t kv_stride, std::size_t head_dim, float scale, float* scores) {
  constexpr std::size_t W = Floats<A>::size, kKeys = 4, kLanes = 4;
  for (std::size_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  if (n_keys == 0) return;
  const std::size_t full = head_dim / W * W;
  auto tail_dot = [&](const float* key, float dot) {
    for (std::size_t d = full; d < head_dim; ++d) dot += q[d] * key[d];
    return dot;
  };
  float max_score = -INFINITY;
  std::size_t t = 0;
  for (; t + kKeys <= n_keys; t += kKeys) {
    Floats<A> acc[kKeys] = {Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f)};
    for (std::size_t d = 0; d < full; d += W) {
      const auto qv = Floats<A>::load_unaligned(q + d);
      for (std::size_t i = 0; i < kKeys; ++i)
        acc[i] = fmadd<A>(qv, Floats<A>::load_unaligned(k + (t + i) * kv_stride + d), acc[i]);
    }
    for (std::size_t i = 0; i < kKeys; ++i) {
      scores[t + i] = tail_dot(k + (t + i) * kv_stride, xsimd::hadd(acc[i])) * scale;
      max_score = scores[t + i] > max_score ? scores[t + i] : max_score;
    }
  }
  for (; t < n_keys; ++t) {
    Floats<A> acc(0.0f);
    for (std::size_t d = 0; d < full; d += W)
      acc = fmadd<A>(Floats<A>::load_unaligned(q + d), Floats<A>::load_unaligned(k + t * kv_stride + d), acc);
    scores[t] = tail_dot(k + t * kv_stride, xsimd::hadd(acc)) * scale;
    max_score = scores[t] > max_score ? scores[t] : max_score;
  }
  Floats<A> sums(0.0f);
  for (t = 0; t + W <= n_keys; t += W) {
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
  for (std::size_t d0 = 0; d0 < full; d0 += kLanes * W) {
    const std::size_t lanes = std::min(kLanes, (full - d0) / W);
    Floats<A> acc[kLanes] = {Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f), Floats<A>(0.0f)};
    for (t = 0; t < n_keys; ++t) {
      const Floats<A> p(scores[t] * inv_sum);
      const float* value = v + t * kv_stride + d0;
      for (std::size_t j = 0; j < lanes; ++j) acc[j] = fmadd<A>(p, Floats<A>::load_unaligned(value + j * W), acc[j]);
    }
    for (std::size_t j = 0; j < lanes; ++j) acc[j].store_unaligned(out + d0 + j * W);
  }
  for (t = 0; t < n_keys; ++t)
    for (std::size_t d = full; d < head_dim; ++d) out[d] += scores[t] * inv_sum * v[t * kv_stride + d];
}
}  // namespace simd

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

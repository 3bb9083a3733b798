// transformer.cpp: the forward pass. Composes kernels; never touches intrinsics.
#include "transformer.h"

#include <algorithm>
#include <cmath>

namespace effort {

Activations::Activations(const ModelConfig& c, int kv_capacity)
    : residual(std::size_t(c.hidden_size)),
      normed(residual.size()),
      q(std::size_t(c.num_attention_heads) * std::size_t(c.head_dim)),
      k(std::size_t(c.num_key_value_heads) * std::size_t(c.head_dim)),
      v(k.size()),
      attended(q.size()),
      gate(std::size_t(c.intermediate_size)),
      up(gate.size()),
      scores(std::size_t(c.num_attention_heads) * std::size_t(kv_capacity)),
      cos(std::size_t(c.head_dim / 2)),
      sin(cos.size()),
      logits(std::size_t(c.vocab_size)) {}

Transformer::Transformer(const ModelConfig& config, const ModelWeights& weights)
    : config_(config), weights_(weights) {
  const int half = config.head_dim / 2;
  for (int i = 0; i < half; ++i)
    inv_freq_.push_back(std::pow(config.rope_theta, -2.0 * i / config.head_dim));
}

void Transformer::rotary_table(int position, Activations& act) const {
  for (std::size_t i = 0; i < inv_freq_.size(); ++i) {
    const double angle = position * inv_freq_[i];
    act.cos[i] = float(std::cos(angle));
    act.sin[i] = float(std::sin(angle));
  }
}

void Transformer::forward(Token token, int position, KvCache& cache, Activations& act,
                          const Compute& compute) const {
  const auto& k = compute.kernels;
  const auto& embed = weights_.embed_tokens;
  k.to_float[int(embed.dtype)](act.residual.data(), embed.row(std::size_t(token)), embed.cols);
  rotary_table(position, act);
  const float eps = float(config_.rms_norm_eps);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[std::size_t(l)];
    k.rms_norm(act.normed.data(), act.residual.data(), layer.input_layernorm.data(),
               act.residual.size(), eps);
    attention_block(layer, l, position, cache, act, compute);
    k.rms_norm(act.normed.data(), act.residual.data(), layer.post_attention_layernorm.data(),
               act.residual.size(), eps);
    mlp_block(layer, l, act, compute);
  }
  k.rms_norm(act.normed.data(), act.residual.data(), weights_.norm.data(), act.residual.size(), eps);
  matvec(weights_.lm_head, act.normed.data(), act.logits.data(), compute);
}

void Transformer::project(const Matrix& w, int layer, MatrixKind kind, const std::vector<float>& x,
                          std::vector<float>& y, const Compute& compute) const {
  if (compute.observer) (*compute.observer)(layer, kind, std::span<const float>(x.data(), in_features(w)));
  matvec(w, kind, x.data(), y.data(), compute);
}

void Transformer::attention_block(const LayerWeights& layer, int l, int position, KvCache& cache,
                                  Activations& act, const Compute& compute) const {
  const auto& k = compute.kernels;
  const std::size_t head_dim = std::size_t(config_.head_dim);
  const std::size_t kv_dim = act.k.size();
  project(layer.q_proj, l, MatrixKind::q_proj, act.normed, act.q, compute);
  project(layer.k_proj, l, MatrixKind::k_proj, act.normed, act.k, compute);
  project(layer.v_proj, l, MatrixKind::v_proj, act.normed, act.v, compute);
  for (std::size_t h = 0; h < std::size_t(config_.num_attention_heads); ++h)
    k.rope(act.q.data() + h * head_dim, act.cos.data(), act.sin.data(), head_dim);
  for (std::size_t h = 0; h < std::size_t(config_.num_key_value_heads); ++h)
    k.rope(act.k.data() + h * head_dim, act.cos.data(), act.sin.data(), head_dim);

  float* keys = cache.keys(l);
  float* values = cache.values(l);
  const std::size_t slot = std::size_t(cache.slot(position));
  std::copy(act.k.begin(), act.k.end(), keys + slot * kv_dim);
  std::copy(act.v.begin(), act.v.end(), values + slot * kv_dim);

  // Grouped-query attention: query head h reads KV head h / (heads per KV head).
  const std::size_t n_keys = std::size_t(cache.visible(position));
  const std::size_t group = std::size_t(config_.num_attention_heads / config_.num_key_value_heads);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const std::size_t capacity = std::size_t(cache.capacity());
  // Heads go to threads only when each thread gets enough work to pay for waking it.
  const std::size_t head_grain = std::max<std::size_t>(1, 16384 / (n_keys * head_dim));
  compute.pool.parallel_for(std::size_t(config_.num_attention_heads), head_grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t h = begin; h < end; ++h) {
      const std::size_t kv_offset = (h / group) * head_dim;
      k.attention(act.attended.data() + h * head_dim, act.q.data() + h * head_dim, keys + kv_offset,
                  values + kv_offset, n_keys, kv_dim, head_dim, scale, act.scores.data() + h * capacity);
    }
  });
  project(layer.o_proj, l, MatrixKind::o_proj, act.attended, act.normed, compute);
  k.add(act.residual.data(), act.normed.data(), act.residual.size());
}

void Transformer::mlp_block(const LayerWeights& layer, int l, Activations& act, const Compute& compute) const {
  const auto& k = compute.kernels;
  project(layer.gate_proj, l, MatrixKind::gate_proj, act.normed, act.gate, compute);
  project(layer.up_proj, l, MatrixKind::up_proj, act.normed, act.up, compute);
  k.silu_mul(act.gate.data(), act.gate.data(), act.up.data(), act.gate.size());
  project(layer.down_proj, l, MatrixKind::down_proj, act.gate, act.normed, compute);
  k.add(act.residual.data(), act.normed.data(), act.residual.size());
}

}  // namespace effort

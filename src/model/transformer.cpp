// transformer.cpp: the forward pass. Composes kernels; never touches intrinsics.
//
// Two loops over the layers, on purpose. forward() runs one token: each projection is a matvec
// at its effort (a cutoff per token, the stream kernel), and a layer may be the last (early
// exit, then propagate_kv). forward_batch() runs several tokens: each projection is one product
// of all their vectors (the effort product of several vectors, or at effort 1 the weights
// unpacked into panels once for a long prompt), attention goes token by token over the growing
// caches, and only the tokens whose logits are wanted go through the last layer's attention and
// MLP. Exits would split a batch's tokens between layers, so a batch runs every layer.
#include "model/transformer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "model/lora.h"
#include "model/top_k.h"

namespace effort {

std::vector<std::pair<std::vector<float> Activations::*, std::size_t>> Activations::buffers(const ModelConfig& c,
                                                                                           int kv_capacity) {
  const std::size_t h = std::size_t(c.hidden_size), q = std::size_t(c.num_attention_heads) * std::size_t(c.head_dim),
                    kv = std::size_t(c.num_key_value_heads) * std::size_t(c.head_dim), i = std::size_t(c.intermediate_size),
                    experts = std::size_t(c.num_local_experts);
  return {{&Activations::residual, h},
          {&Activations::normed, h},
          {&Activations::q, q},
          {&Activations::k, kv},
          {&Activations::v, kv},
          {&Activations::attended, q},
          {&Activations::gate, i},
          {&Activations::up, i},
          {&Activations::scores, std::size_t(c.num_attention_heads) * std::size_t(kv_capacity)},
          {&Activations::cos, std::size_t(c.head_dim / 2)},
          {&Activations::sin, std::size_t(c.head_dim / 2)},
          {&Activations::logits, std::size_t(c.vocab_size)},
          {&Activations::router, experts},
          {&Activations::expert_out, experts ? h : 0},
          {&Activations::expert_sum, experts ? h : 0}};
}

Activations::Activations(const ModelConfig& c, int kv_capacity) {
  for (const auto& [buffer, n] : buffers(c, kv_capacity)) (this->*buffer).resize(n);
}

std::uint64_t Activations::bytes(const ModelConfig& c, int kv_capacity) {
  std::uint64_t n = 0;
  for (const auto& buffer : buffers(c, kv_capacity)) n += buffer.second;
  return sizeof(float) * n;
}

std::vector<std::pair<std::vector<float> BatchActivations::*, std::size_t>> BatchActivations::buffers(const ModelConfig& c,
                                                                                                     std::size_t n) {
  const std::size_t h = std::size_t(c.hidden_size), q = std::size_t(c.num_attention_heads) * std::size_t(c.head_dim),
                    kv = std::size_t(c.num_key_value_heads) * std::size_t(c.head_dim), i = std::size_t(c.intermediate_size);
  return {{&BatchActivations::residual, n * h},
          {&BatchActivations::normed, n * h},
          {&BatchActivations::q, n * q},
          {&BatchActivations::attended, n * q},
          {&BatchActivations::k, n * kv},
          {&BatchActivations::v, n * kv},
          {&BatchActivations::gate, n * i},
          {&BatchActivations::up, n * i},
          {&BatchActivations::cos, n * std::size_t(c.head_dim / 2)},
          {&BatchActivations::sin, n * std::size_t(c.head_dim / 2)},
          {&BatchActivations::packed_x, n * std::max(h, i)}};
}

BatchActivations::BatchActivations(const ModelConfig& c, std::size_t n) : capacity(n) {
  for (const auto& [buffer, size] : buffers(c, n)) (this->*buffer).resize(size);
}

std::uint64_t BatchActivations::bytes(const ModelConfig& c, std::size_t n) {
  std::uint64_t total = 0;
  for (const auto& buffer : buffers(c, n)) total += buffer.second;
  // moe_batch's per-layer scratch, allocated as it runs: router logits, gathered rows, SwiGLU,
  // outputs, sums.
  if (c.num_local_experts)
    total += n * (std::uint64_t(c.num_local_experts) + 3 * std::uint64_t(c.hidden_size) + 2 * std::uint64_t(c.intermediate_size));
  return sizeof(float) * total;
}

Transformer::Transformer(const ModelConfig& config, const ModelWeights& weights)
    : config_(config), weights_(weights) {
  const int half = config.head_dim / 2;
  for (int i = 0; i < half; ++i)
    inv_freq_.push_back(std::pow(config.rope_theta, -2.0 * i / config.head_dim));
}

void Transformer::shift_cache(KvCache& cache, int keep, int discard, int used, Activations& act,
                              const Compute& compute) const {
  const std::size_t head_dim = std::size_t(config_.head_dim), kv_dim = std::size_t(config_.num_key_value_heads) * head_dim;
  rotary_table(-discard, act);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    float* keys = cache.keys(l);
    float* values = cache.values(l);
    for (int p = keep + discard; p < used; ++p) {
      float* key = keys + std::size_t(p - discard) * kv_dim;
      std::copy_n(keys + std::size_t(p) * kv_dim, kv_dim, key);
      std::copy_n(values + std::size_t(p) * kv_dim, kv_dim, values + std::size_t(p - discard) * kv_dim);
      for (std::size_t h = 0; h < kv_dim; h += head_dim) compute.kernels.rope(key + h, act.cos.data(), act.sin.data(), head_dim);
    }
  }
}

void Transformer::rotary_table(int position, Activations& act) const {
  for (std::size_t i = 0; i < inv_freq_.size(); ++i) {
    const double angle = position * inv_freq_[i];
    act.cos[i] = float(std::cos(angle));
    act.sin[i] = float(std::sin(angle));
  }
}

void Transformer::forward(Token token, int position, KvCache& cache, Activations& act, const Compute& compute,
                          ExitState* exit) const {
  const auto& k = compute.kernels;
  const auto& embed = weights_.embed_tokens;
  k.to_float[int(embed.dtype)](act.residual.data(), embed.row(std::size_t(token)), embed.cols);
  rotary_table(position, act);
  const float eps = float(config_.rms_norm_eps);
  const int n = config_.num_hidden_layers;
  // Exits are allowed after warm-up, with the previous token's candidates, and not too often.
  const bool may_exit = exit && exit->options.enabled && position >= exit->options.warmup &&
                        !exit->candidates.empty() && exit->consecutive_exits < exit->options.max_consecutive;
  Token streak_top = -1;
  int streak = 0, layers = n;
  for (int l = 0; l < n; ++l) {
    const LayerWeights& layer = weights_.layers[std::size_t(l)];
    const bool check = may_exit && exit->threshold[std::size_t(l)] <= 1.0f;
    if (check) exit->before = act.residual;
    k.rms_norm(act.normed.data(), act.residual.data(), layer.input_layernorm.data(),
               act.residual.size(), eps);
    attention_block(layer, l, position, cache, act, compute);
    k.rms_norm(act.normed.data(), act.residual.data(), layer.post_attention_layernorm.data(),
               act.residual.size(), eps);
    mlp_block(layer, l, act, compute);
    if (check && should_exit(l, position, *exit, streak_top, streak, act, compute)) {
      propagate_kv(l, position, cache, act, compute);
      layers = l + 1;
      break;
    }
  }
  k.rms_norm(act.normed.data(), act.residual.data(), weights_.norm.data(), act.residual.size(), eps);
  head(act.normed.data(), act.logits.data(), act, compute);
  if (exit && exit->options.enabled) {
    exit->consecutive_exits = layers < n ? exit->consecutive_exits + 1 : 0;
    exit->layers_run += layers;
    exit->tokens += 1;
    exit->take_candidates(act.logits);
  }
}

void Transformer::forward_batch(std::span<const BatchToken> tokens, Activations& act, BatchActivations& batch,
                                const Compute& compute, BatchProducts products) const {
  const auto& k = compute.kernels;
  const std::size_t n = tokens.size(), H = std::size_t(config_.hidden_size);
  const std::size_t head_dim = std::size_t(config_.head_dim), half = head_dim / 2;
  const std::size_t q_dim = act.q.size(), kv_dim = act.k.size(), inter = act.gate.size();
  const float eps = float(config_.rms_norm_eps);
  const auto& embed = weights_.embed_tokens;
  auto scratch = [&](std::size_t t) -> Activations& { return tokens[t].act ? *tokens[t].act : act; };
  // Each token's compute: its effort state (for the head and the stats) and adapters.
  std::vector<Compute> token_compute;
  std::vector<EffortState*> states;
  std::size_t first = n;  // tokens [first, n) want logits
  for (std::size_t t = 0; t < n; ++t) {
    const BatchToken& token = tokens[t];
    token_compute.push_back(Compute{k, compute.pool, token.effort, compute.scratch, nullptr, token.adapters});
    states.push_back(token.effort);
    if (token.logits && first == n) first = t;
    k.to_float[int(embed.dtype)](&batch.residual[t * H], embed.row(std::size_t(token.token)), embed.cols);
    rotary_table(token.position, act);
    std::copy(act.cos.begin(), act.cos.end(), &batch.cos[t * half]);
    std::copy(act.sin.begin(), act.sin.end(), &batch.sin[t * half]);
  }
  // Rows [from, n) of x through w, then each token's adapters: effort products kMaxVectors at a
  // time, or one product of the unpacked weights for all (whose tokens share compute's adapters).
  std::size_t from = 0;
  auto project_rows = [&](int l, const Matrix& w, MatrixKind kind, const std::vector<float>& x, std::vector<float>& y) {
    const std::size_t in = in_features(w), out = out_features(w);
    if (products == BatchProducts::unpacked) {
      matmul(w, kind, &x[from * in], &y[from * out], n - from, compute, batch.packed_x);
      if (!compute.adapters.empty()) apply_lora(compute.adapters, l, kind, &x[from * in], &y[from * out], n - from, compute);
      return;
    }
    for (std::size_t t = from; t < n; t += kernels::kMaxVectors) {
      const std::size_t m = std::min(kernels::kMaxVectors, n - t);
      matvec(w, l, kind, &x[t * in], &y[t * out], std::span<EffortState* const>(&states[t], m), compute);
    }
    for (std::size_t t = from; t < n; ++t)
      if (!tokens[t].adapters.empty())
        apply_lora(tokens[t].adapters, l, kind, &x[t * in], &y[t * out], 1, token_compute[t]);
  };
  auto norm_rows = [&](const std::vector<float>& weight) {
    for (std::size_t t = from; t < n; ++t) k.rms_norm(&batch.normed[t * H], &batch.residual[t * H], weight.data(), H, eps);
  };
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[std::size_t(l)];
    norm_rows(layer.input_layernorm);
    project_rows(l, layer.k_proj, MatrixKind::k_proj, batch.normed, batch.k);
    project_rows(l, layer.v_proj, MatrixKind::v_proj, batch.normed, batch.v);
    for (std::size_t t = from; t < n; ++t) {
      const auto start = Clock::now();
      store_kv(l, tokens[t].position, &batch.k[t * kv_dim], &batch.v[t * kv_dim], &batch.cos[t * half],
               &batch.sin[t * half], *tokens[t].cache, compute);
      tokens[t].effort->stats.attention_seconds += seconds_since(start);
    }
    // The last layer's keys and values are needed for every token, the rest of it only for the
    // tokens whose logits are wanted.
    if (l == config_.num_hidden_layers - 1) from = first;
    project_rows(l, layer.q_proj, MatrixKind::q_proj, batch.normed, batch.q);
    for (std::size_t t = from; t < n; ++t) {
      const auto start = Clock::now();
      attend(l, tokens[t].position, &batch.q[t * q_dim], &batch.attended[t * q_dim], &batch.cos[t * half],
             &batch.sin[t * half], *tokens[t].cache, scratch(t).scores.data(), compute);
      tokens[t].effort->stats.attention_seconds += seconds_since(start);
    }
    project_rows(l, layer.o_proj, MatrixKind::o_proj, batch.attended, batch.normed);
    for (std::size_t t = from; t < n; ++t) k.add(&batch.residual[t * H], &batch.normed[t * H], H);
    norm_rows(layer.post_attention_layernorm);
    if (!layer.experts.empty() && products == BatchProducts::unpacked) {
      moe_batch(layer, l, from, n, batch, act, compute);
      continue;
    }
    if (!layer.experts.empty()) {
      // Experts differ per token: each runs its own, as forward() does.
      for (std::size_t t = from; t < n; ++t) {
        std::copy_n(&batch.residual[t * H], H, act.residual.begin());
        std::copy_n(&batch.normed[t * H], H, act.normed.begin());
        moe_block(layer, l, act, token_compute[t]);
        std::copy_n(act.residual.begin(), H, &batch.residual[t * H]);
      }
      continue;
    }
    project_rows(l, layer.gate_proj, MatrixKind::gate_proj, batch.normed, batch.gate);
    project_rows(l, layer.up_proj, MatrixKind::up_proj, batch.normed, batch.up);
    for (std::size_t t = from; t < n; ++t) k.silu_mul(&batch.gate[t * inter], &batch.gate[t * inter], &batch.up[t * inter], inter);
    project_rows(l, layer.down_proj, MatrixKind::down_proj, batch.gate, batch.normed);
    for (std::size_t t = from; t < n; ++t) k.add(&batch.residual[t * H], &batch.normed[t * H], H);
  }
  norm_rows(weights_.norm);
  // Exact heads in one dense product of all their vectors (each weight read once); the others
  // (head effort below 1) token by token.
  std::vector<std::size_t> exact;
  for (std::size_t t = from; t < n; ++t) {
    if (exact_head(*tokens[t].effort)) exact.push_back(t);
    else head(&batch.normed[t * H], tokens[t].logits, scratch(t), token_compute[t]);
  }
  if (exact.empty()) return;
  const auto start = Clock::now();
  const DenseMatrix& lm_head = weights_.lm_head;
  const std::size_t vocab = lm_head.rows, m = exact.size();
  std::vector<float> x(m * H), logits(m * vocab);
  for (std::size_t i = 0; i < m; ++i) std::copy_n(&batch.normed[exact[i] * H], H, &x[i * H]);
  matvec(lm_head, x.data(), logits.data(), compute, m);
  const double seconds = seconds_since(start) / double(m);
  for (std::size_t i = 0; i < m; ++i) {
    std::copy_n(&logits[i * vocab], vocab, tokens[exact[i]].logits);
    EffortStats& stats = tokens[exact[i]].effort->stats;
    stats.head_bytes += double(vocab) * double(kernels::dtype_bytes(lm_head.dtype, lm_head.cols)) / double(m);
    stats.head_seconds += seconds;
  }
}

bool Transformer::exact_head(const EffortState& state) const {
  return !weights_.head_buckets || state.head_effort >= 1.0f;
}

void Transformer::head(const float* normed, float* logits, Activations& act, const Compute& compute) const {
  EffortState& state = *compute.effort;
  const auto start = Clock::now();
  const DenseMatrix& exact = weights_.lm_head;
  const double row_bytes = double(kernels::dtype_bytes(exact.dtype, exact.cols));
  if (exact_head(state)) {
    matvec(exact, normed, logits, compute);
    state.stats.head_bytes += double(exact.rows) * row_bytes;
    state.stats.head_seconds += seconds_since(start);
    return;
  }
  const std::size_t vocab = exact.rows;
  const BucketWork work = matvec(*weights_.head_buckets, state.head_effort, normed, logits, compute);
  top_k(std::span<const float>(logits, vocab), state.head_candidates, act.head_candidates);
  act.head_exact.resize(act.head_candidates.size());
  float lowest = INFINITY;
  for (std::size_t i = 0; i < act.head_candidates.size(); ++i) {
    compute.kernels.matvec[int(exact.dtype)](&act.head_exact[i], 0, exact.row(std::size_t(act.head_candidates[i])), normed,
                                             0, 1, 1, exact.cols);
    lowest = std::min(lowest, act.head_exact[i]);
  }
  // The estimates of the rest stay (sampling keeps the tail's mass), capped so that the argmax
  // is an exact logit.
  for (std::size_t t = 0; t < vocab; ++t) logits[t] = std::min(logits[t], lowest);
  for (std::size_t i = 0; i < act.head_candidates.size(); ++i) logits[act.head_candidates[i]] = act.head_exact[i];
  state.stats.head_bytes += work.bytes + double(act.head_candidates.size()) * row_bytes;
  state.stats.head_seconds += seconds_since(start);
}

bool Transformer::should_exit(int l, int position, ExitState& exit, Token& streak_top, int& streak,
                              const Activations& act, const Compute& compute) const {
  struct AddTime {
    ExitState& e;
    Clock::time_point start;
    ~AddTime() { e.check_seconds += seconds_since(start); }
  } add_time{exit, Clock::now()};
  const std::size_t n = act.residual.size();
  if (exit.options.min_saturation > 0) {
    double ab = 0, aa = 0, bb = 0;
    for (std::size_t i = 0; i < n; ++i)
      ab += double(exit.before[i]) * act.residual[i], aa += double(exit.before[i]) * exit.before[i],
          bb += double(act.residual[i]) * act.residual[i];
    if (ab / std::sqrt(aa * bb) < exit.options.min_saturation) return false;
  }
  // The head over the candidates only: a check costs candidates x hidden_size multiply-adds.
  exit.final_normed.resize(n);
  compute.kernels.rms_norm(exit.final_normed.data(), act.residual.data(), weights_.norm.data(), n,
                           float(config_.rms_norm_eps));
  const auto& head = weights_.lm_head;
  float z1 = -INFINITY, z2 = -INFINITY;
  Token top = -1;
  for (Token c : exit.candidates) {
    float z;
    compute.kernels.matvec[int(head.dtype)](&z, 0, head.row(std::size_t(c)), exit.final_normed.data(), 0, 1, 1, head.cols);
    if (z > z1) {
      z2 = z1, z1 = z, top = c;
    } else if (z > z2) {
      z2 = z;
    }
  }
  streak = top == streak_top ? streak + 1 : 1;
  streak_top = top;
  const double threshold = exit.threshold[std::size_t(l)];
  const double confidence = 1.0 - std::exp(-double(z1 - z2));
  if (exit.options.record_signals) {
    exit.signals.push_back({position, l, top, float(confidence)});
    return false;
  }
  return threshold < 1.0 && streak >= exit.options.patience && confidence >= threshold;
}

void Transformer::propagate_kv(int last, int position, KvCache& cache, Activations& act, const Compute& compute) const {
  for (int l = last + 1; l < config_.num_hidden_layers; ++l) {
    const LayerWeights& layer = weights_.layers[std::size_t(l)];
    compute.kernels.rms_norm(act.normed.data(), act.residual.data(), layer.input_layernorm.data(), act.residual.size(),
                             float(config_.rms_norm_eps));
    project(layer.k_proj, l, MatrixKind::k_proj, act.normed, act.k, compute);
    project(layer.v_proj, l, MatrixKind::v_proj, act.normed, act.v, compute);
    store_kv(l, position, act.k.data(), act.v.data(), act.cos.data(), act.sin.data(), cache, compute);
  }
}

void Transformer::project(const Matrix& w, int layer, MatrixKind kind, const std::vector<float>& x,
                          std::vector<float>& y, const Compute& compute) const {
  if (compute.observer) (*compute.observer)(layer, kind, std::span<const float>(x.data(), in_features(w)));
  matvec(w, layer, kind, x.data(), y.data(), compute);
  if (!compute.adapters.empty()) apply_lora(compute.adapters, layer, kind, x.data(), y.data(), 1, compute);
}

void Transformer::store_kv(int l, int position, float* key, const float* value, const float* cos, const float* sin,
                           KvCache& cache, const Compute& compute) const {
  const std::size_t head_dim = std::size_t(config_.head_dim), kv_dim = std::size_t(config_.num_key_value_heads) * head_dim;
  for (std::size_t h = 0; h < kv_dim; h += head_dim) compute.kernels.rope(key + h, cos, sin, head_dim);
  const std::size_t slot = std::size_t(cache.slot(position));
  std::copy_n(key, kv_dim, cache.keys(l) + slot * kv_dim);
  std::copy_n(value, kv_dim, cache.values(l) + slot * kv_dim);
}

void Transformer::attend(int l, int position, float* query, float* attended, const float* cos, const float* sin,
                         KvCache& cache, float* scores, const Compute& compute) const {
  const auto& k = compute.kernels;
  const std::size_t head_dim = std::size_t(config_.head_dim), heads = std::size_t(config_.num_attention_heads);
  const std::size_t kv_dim = std::size_t(config_.num_key_value_heads) * head_dim;
  for (std::size_t h = 0; h < heads; ++h) k.rope(query + h * head_dim, cos, sin, head_dim);
  // Grouped-query attention: query head h reads KV head h / (heads per KV head).
  const float* keys = cache.keys(l);
  const float* values = cache.values(l);
  const std::size_t n_keys = std::size_t(cache.visible(position));
  const std::size_t group = heads / std::size_t(config_.num_key_value_heads);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const std::size_t capacity = std::size_t(cache.capacity());
  // Heads go to threads only when each thread gets enough work to pay for waking it.
  const std::size_t head_grain = std::max<std::size_t>(1, 16384 / (n_keys * head_dim));
  compute.pool.parallel_for(heads, head_grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t h = begin; h < end; ++h) {
      const std::size_t kv_offset = (h / group) * head_dim;
      k.attention(attended + h * head_dim, query + h * head_dim, keys + kv_offset, values + kv_offset, n_keys, kv_dim,
                  head_dim, scale, scores + h * capacity);
    }
  });
}

void Transformer::attention_block(const LayerWeights& layer, int l, int position, KvCache& cache,
                                  Activations& act, const Compute& compute) const {
  project(layer.q_proj, l, MatrixKind::q_proj, act.normed, act.q, compute);
  project(layer.k_proj, l, MatrixKind::k_proj, act.normed, act.k, compute);
  project(layer.v_proj, l, MatrixKind::v_proj, act.normed, act.v, compute);
  const auto attention_start = Clock::now();
  store_kv(l, position, act.k.data(), act.v.data(), act.cos.data(), act.sin.data(), cache, compute);
  attend(l, position, act.q.data(), act.attended.data(), act.cos.data(), act.sin.data(), cache, act.scores.data(), compute);
  compute.effort->stats.attention_seconds += seconds_since(attention_start);
  project(layer.o_proj, l, MatrixKind::o_proj, act.attended, act.normed, compute);
  compute.kernels.add(act.residual.data(), act.normed.data(), act.residual.size());
}

void Transformer::mlp_block(const LayerWeights& layer, int l, Activations& act, const Compute& compute) const {
  if (!layer.experts.empty()) return moe_block(layer, l, act, compute);
  const auto& k = compute.kernels;
  project(layer.gate_proj, l, MatrixKind::gate_proj, act.normed, act.gate, compute);
  project(layer.up_proj, l, MatrixKind::up_proj, act.normed, act.up, compute);
  k.silu_mul(act.gate.data(), act.gate.data(), act.up.data(), act.gate.size());
  project(layer.down_proj, l, MatrixKind::down_proj, act.gate, act.normed, compute);
  k.add(act.residual.data(), act.normed.data(), act.residual.size());
}

namespace {

// Mixtral's routing (HF MixtralSparseMoeBlock): the top k experts by router logit (ties to the
// lower index), weighted by their softmax renormalised over the chosen, i.e. the softmax over
// the chosen alone. Fills chosen and weights with k entries, best first.
void route(std::span<const float> logits, std::size_t k, std::vector<int>& chosen, std::vector<float>& weights) {
  top_k(logits, k, chosen);
  const double max_logit = logits[std::size_t(chosen[0])];
  double total = 0;
  for (int e : chosen) total += std::exp(double(logits[std::size_t(e)]) - max_logit);
  weights.resize(k);
  for (std::size_t j = 0; j < k; ++j) weights[j] = float(std::exp(double(logits[std::size_t(chosen[j])]) - max_logit) / total);
}

}  // namespace

// The chosen experts' SwiGLU outputs summed with their weights; only their weights are read.
void Transformer::moe_block(const LayerWeights& layer, int l, Activations& act, const Compute& compute) const {
  const auto& k = compute.kernels;
  matvec(layer.router, act.normed.data(), act.router.data(), compute);
  route(act.router, std::size_t(config_.num_experts_per_tok), act.chosen_experts, act.expert_weights);
  std::fill(act.expert_sum.begin(), act.expert_sum.end(), 0.0f);
  auto& uses = compute.effort->stats.expert_uses;
  uses.resize(layer.experts.size());
  for (std::size_t j = 0; j < act.chosen_experts.size(); ++j) {
    const int e = act.chosen_experts[j];
    uses[std::size_t(e)] += 1;
    const ExpertWeights& expert = layer.experts[std::size_t(e)];
    project(expert.gate_proj, l, MatrixKind::gate_proj, act.normed, act.gate, compute);
    project(expert.up_proj, l, MatrixKind::up_proj, act.normed, act.up, compute);
    k.silu_mul(act.gate.data(), act.gate.data(), act.up.data(), act.gate.size());
    project(expert.down_proj, l, MatrixKind::down_proj, act.gate, act.expert_out, compute);
    for (std::size_t i = 0; i < act.expert_sum.size(); ++i) act.expert_sum[i] += act.expert_weights[j] * act.expert_out[i];
  }
  k.add(act.residual.data(), act.expert_sum.data(), act.residual.size());
}

// Rows [first, n) of a batch: every token routed, then each expert once over the tokens that
// chose it (their rows gathered into one matmul), its outputs added to those tokens' sums with
// their weights. Sums run in expert order rather than rank order: the token-by-token result
// to rounding.
void Transformer::moe_batch(const LayerWeights& layer, int l, std::size_t first, std::size_t n, BatchActivations& batch,
                            Activations& act, const Compute& compute) const {
  const auto& k = compute.kernels;
  const std::size_t H = std::size_t(config_.hidden_size), I = std::size_t(config_.intermediate_size),
                    E = layer.experts.size(), rows = n - first;
  std::vector<float> logits(rows * E);
  matmul(layer.router, &batch.normed[first * H], logits.data(), rows, compute, batch.packed_x);
  std::vector<std::vector<std::pair<std::size_t, float>>> routed(E);  // per expert: (row, weight)
  auto& uses = compute.effort->stats.expert_uses;
  uses.resize(E);
  for (std::size_t t = 0; t < rows; ++t) {
    route(std::span<const float>(&logits[t * E], E), std::size_t(config_.num_experts_per_tok), act.chosen_experts,
          act.expert_weights);
    for (std::size_t j = 0; j < act.chosen_experts.size(); ++j) {
      routed[std::size_t(act.chosen_experts[j])].emplace_back(first + t, act.expert_weights[j]);
      uses[std::size_t(act.chosen_experts[j])] += 1;
    }
  }
  std::vector<float> sums(rows * H, 0.0f), x, gate, up, out;
  for (std::size_t e = 0; e < E; ++e) {
    const std::size_t m = routed[e].size();
    if (!m) continue;
    x.resize(m * H), gate.resize(m * I), up.resize(m * I), out.resize(m * H);
    for (std::size_t j = 0; j < m; ++j) std::copy_n(&batch.normed[routed[e][j].first * H], H, &x[j * H]);
    const ExpertWeights& expert = layer.experts[e];
    matmul(expert.gate_proj, MatrixKind::gate_proj, x.data(), gate.data(), m, compute, batch.packed_x);
    matmul(expert.up_proj, MatrixKind::up_proj, x.data(), up.data(), m, compute, batch.packed_x);
    k.silu_mul(gate.data(), gate.data(), up.data(), m * I);
    matmul(expert.down_proj, MatrixKind::down_proj, gate.data(), out.data(), m, compute, batch.packed_x);
    for (std::size_t j = 0; j < m; ++j) {
      float* sum = &sums[(routed[e][j].first - first) * H];
      for (std::size_t i = 0; i < H; ++i) sum[i] += routed[e][j].second * out[j * H + i];
    }
  }
  for (std::size_t t = 0; t < rows; ++t) k.add(&batch.residual[(first + t) * H], &sums[t * H], H);
}

}  // namespace effort

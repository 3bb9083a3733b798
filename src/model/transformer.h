// transformer.h: the Mistral decoder (embedding, N x [RMSNorm -> GQA attention -> residual ->
// RMSNorm -> SwiGLU MLP -> residual], final norm, lm_head) for one token at a time.
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "effort/config.h"
#include "effort/types.h"
#include "model/early_exit.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/weights.h"

namespace effort {

// Activations of one token, allocated once per session.
struct Activations {
  explicit Activations(const ModelConfig& c, int kv_capacity);
  // Each float buffer and its length: the one table the constructor allocates and bytes() sums.
  static std::vector<std::pair<std::vector<float> Activations::*, std::size_t>> buffers(const ModelConfig& c,
                                                                                        int kv_capacity);
  // What the constructor allocates, known before allocating it.
  static std::uint64_t bytes(const ModelConfig& c, int kv_capacity);
  std::vector<float> residual;  // [hidden_size]
  std::vector<float> normed;    // [hidden_size]
  std::vector<float> q;         // [num_attention_heads * head_dim]
  std::vector<float> k, v;      // [num_key_value_heads * head_dim]
  std::vector<float> attended;  // [num_attention_heads * head_dim]
  std::vector<float> gate, up;  // [intermediate_size]
  std::vector<float> scores;    // [num_attention_heads, kv_capacity]
  std::vector<float> cos, sin;  // [head_dim / 2] rotary table of the current position
  std::vector<float> logits;    // [vocab_size]
  // Mixtral: router logits [num_local_experts], one expert's output and the weighted sum
  // [hidden_size] (empty for a dense MLP), and the experts chosen for the token.
  std::vector<float> router, expert_out, expert_sum;
  std::vector<int> chosen_experts;    // the token's experts, best first
  std::vector<float> expert_weights;  // and their weights
  // The head below effort 1: its candidate tokens and their exact logits.
  std::vector<Token> head_candidates;
  std::vector<float> head_exact;
};

// Activations of up to `capacity` prompt tokens processed together, allocated once per session.
struct BatchActivations {
  BatchActivations(const ModelConfig& c, std::size_t capacity);
  static std::vector<std::pair<std::vector<float> BatchActivations::*, std::size_t>> buffers(const ModelConfig& c,
                                                                                             std::size_t capacity);
  // As Activations::bytes, with the Mixtral batch's scratch.
  static std::uint64_t bytes(const ModelConfig& c, std::size_t capacity);
  std::size_t capacity;
  std::vector<float> residual, normed;  // [capacity, hidden_size]
  std::vector<float> q, attended;       // [capacity, num_attention_heads * head_dim]
  std::vector<float> k, v;              // [capacity, num_key_value_heads * head_dim]
  std::vector<float> gate, up;          // [capacity, intermediate_size]
  std::vector<float> cos, sin;          // [capacity, head_dim / 2]
  std::vector<float> packed_x;          // matmul's transposed inputs [input slots, capacity]
};

// One token of a pass over several (Transformer::forward_batch): its position, the cache its
// keys and values go into, the effort it runs at (and is counted in), its adapters, and where
// its next-token logits go (null: none wanted).
struct BatchToken {
  Token token = 0;
  int position = 0;
  KvCache* cache = nullptr;
  EffortState* effort = nullptr;
  std::span<const ActiveLora> adapters;
  float* logits = nullptr;
  Activations* act = nullptr;  // its scratch for attention and the head (null: the batch's)
};

// How a batch multiplies its tokens' vectors (Transformer::forward_batch).
enum class BatchProducts { effort, unpacked };

class Transformer {
 public:
  Transformer(const ModelConfig& config, const ModelWeights& weights);

  // Runs `token` at `position`: stores its keys/values in `cache` and leaves the next-token
  // logits in act.logits. The caller checks token and position ranges. With `exit`, the pass
  // may stop at a check layer (see EarlyExitOptions).
  void forward(Token token, int position, KvCache& cache, Activations& act, const Compute& compute,
               ExitState* exit = nullptr) const;

  // Runs tokens together, through every layer: each projection is one effort product of all
  // their vectors (linear.h), attention goes token by token. Each token's logits are, bit for
  // bit, what forward() without exits gives when the tokens run alone in order. Tokens of one
  // cache come in position order and must not wrap its ring (a later token would overwrite
  // keys an earlier one attends to); those with logits are a suffix (a prompt's last token
  // alone, a check's every token), the rest stop at the last layer's keys and values. act is
  // scratch (scores, the head's candidates); batch holds at least tokens.size().
  // With BatchProducts::unpacked (effort 1, tokens sharing compute's adapters and effort
  // state), the weights are unpacked into float panels once for all the tokens (matmul): for a
  // long prompt, where that pays; the logits are then forward()'s to rounding, not bit for bit.
  void forward_batch(std::span<const BatchToken> tokens, Activations& act, BatchActivations& batch,
                     const Compute& compute, BatchProducts products = BatchProducts::effort) const;

  // Drops positions [keep, keep + discard) from the first `used` of the cache: the later ones
  // move down by `discard` slots, their keys rotated back by as many positions (RoPE rotations
  // compose, so rotating a key by -d moves it from position p to p - d); values move as they
  // are. Needs slot == position (no sliding-window ring).
  void shift_cache(KvCache& cache, int keep, int discard, int used, Activations& act, const Compute& compute) const;

 private:
  void attention_block(const LayerWeights& layer, int l, int position, KvCache& cache,
                       Activations& act, const Compute& compute) const;
  // The token at `position`, layer l: its key heads rotated, then key and value stored in the
  // cache (one row of kv_dim each).
  void store_kv(int l, int position, float* key, const float* value, const float* cos, const float* sin, KvCache& cache,
                const Compute& compute) const;
  // Its query heads rotated, then attention over the cache up to its position into `attended`
  // (scores: scratch of num_attention_heads x capacity).
  void attend(int l, int position, float* query, float* attended, const float* cos, const float* sin, KvCache& cache,
              float* scores, const Compute& compute) const;
  void mlp_block(const LayerWeights& layer, int l, Activations& act, const Compute& compute) const;
  void moe_block(const LayerWeights& layer, int l, Activations& act, const Compute& compute) const;
  void moe_batch(const LayerWeights& layer, int l, std::size_t first, std::size_t n, BatchActivations& batch,
                 Activations& act, const Compute& compute) const;
  void rotary_table(int position, Activations& act) const;
  // Whether to exit after layer l; updates the streak of agreeing checks.
  bool should_exit(int l, int position, ExitState& exit, Token& streak_top, int& streak, const Activations& act,
                   const Compute& compute) const;
  // Keys and values of the layers after `last`, from the current hidden state.
  void propagate_kv(int last, int position, KvCache& cache, Activations& act, const Compute& compute) const;
  // The output head over `normed` into `logits` ([vocab_size]) at the head effort: exact at 1
  // (or without a bucketed head); below, a product at that effort ranks every token, the top
  // head_candidates get exact logits and the rest keep their estimates, capped at the lowest
  // exact one. So the argmax is always an exact logit, and greedy decoding is exact whenever
  // the true argmax is among the candidates.
  void head(const float* normed, float* logits, Activations& act, const Compute& compute) const;
  // Whether a token at this effort state gets the exact head (head effort 1, or no bucketed head).
  bool exact_head(const EffortState& state) const;
  // y = w x at the session's effort for `kind`, shown to the observer first.
  void project(const Matrix& w, int layer, MatrixKind kind, const std::vector<float>& x, std::vector<float>& y,
               const Compute& compute) const;

  const ModelConfig& config_;
  const ModelWeights& weights_;
  std::vector<double> inv_freq_;  // [head_dim / 2]: rope_theta^(-2i/head_dim)
};

}  // namespace effort

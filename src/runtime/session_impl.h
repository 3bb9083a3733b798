// session_impl.h: what a Session holds (its KV cache, activations, thread pool, effort and
// early-exit state) and the steps of a generation: feeding tokens (session.cpp), speculative
// rounds and their checks (speculative.cpp).
#pragma once
#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "effort/effort.h"
#include "model/early_exit.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/thread_pool.h"
#include "model/transformer.h"
#include "runtime/model_impl.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"

namespace effort {

// Prompt tokens per batch: enough that unpacking the weights once per batch costs little next
// to the products, few enough that the batch activations stay small.
inline constexpr std::size_t kPromptBatch = 256;

// Session options resolved against the machine and the model; each throws effort::Error
// (invalid_argument) naming a bad value.
kernels::Arch choose_arch(const std::string& requested);
int choose_threads(int requested);
int choose_context(const ModelConfig& c, int requested);
BucketScratch make_bucket_scratch(const ModelWeights& weights);

struct Session::Impl {
  Impl(std::shared_ptr<const Model::Impl> shared, const SessionOptions& options)
      : model_data(std::move(shared)),
        model(*model_data),
        arch(choose_arch(options.kernel_arch)),
        kernel_table(kernels::kernel_table(arch)),
        pool(choose_threads(options.num_threads)),
        context_length(choose_context(model.config, options.context_length)),
        cache(model.config.num_hidden_layers,
              model.config.sliding_window ? std::min(context_length, model.config.sliding_window) : context_length,
              model.config.num_key_value_heads * model.config.head_dim),
        act(model.config, cache.capacity()),
        scratch(make_bucket_scratch(model.weights)),
        effort(model.config.num_hidden_layers) {}

  Compute compute() {
    return Compute{kernel_table, pool, &effort, &scratch, observer ? &observer : nullptr, active_adapters};
  }

  void check_token(Token token) const {
    if (token < 0 || token >= model.config.vocab_size)
      throw Error(ErrorCode::invalid_argument, "[session] token id " + std::to_string(token) +
                                                   " is outside the vocabulary [0, " +
                                                   std::to_string(model.config.vocab_size) + ")");
  }

  void check_room(std::size_t tokens) const {
    if (history.size() + tokens > std::size_t(context_length))
      throw Error(ErrorCode::invalid_argument,
                  "[session] " + std::to_string(tokens) + " more tokens do not fit the context: " +
                      std::to_string(history.size()) + " of " + std::to_string(context_length) + " positions used");
  }

  // Runs one token through the model (range and room already checked).
  void run(Token token) {
    // While speculating, early exit is for the drafts: everything else runs every layer.
    const bool may_exit = !speculating || drafting;
    model.transformer->forward(token, int(history.size()), cache, act, compute(), may_exit ? &exit : nullptr);
    history.push_back(token);
  }

  // Feeds the token generation left pending (at the generation effort), then `tokens`, after
  // checking them all. Prompt tokens run at the prompt effort, in batches when nothing needs
  // them one at a time; other tokens run one at a time at the generation effort.
  void feed(std::span<const Token> tokens, bool prompt) {
    for (Token t : tokens) check_token(t);
    check_room(tokens.size() + (pending ? 1 : 0));
    if (pending) {
      run(*pending);
      pending.reset();
    }
    if (tokens.empty()) return;
    // The prompt's effort replaces the generation's while it runs, and its work is not counted
    // in the effort stats, which describe generation.
    struct GenerationEffort {
      EffortState& state;
      EffortState saved;
      ~GenerationEffort() { state = std::move(saved); }
    };
    std::optional<GenerationEffort> generation_effort;
    if (prompt) {
      generation_effort.emplace(GenerationEffort{effort, effort});
      effort.set_all(prompt_effort);
      effort.head_effort = head_effort_following(prompt_effort);
    }
    while (!tokens.empty()) {
      const std::size_t n = std::min(tokens.size(), kPromptBatch);
      if (prompt && n > 1 && together(n)) {
        // One pass over the weights, every layer, for the last token's logits: unpacked for a
        // long prompt at effort 1, otherwise as token by token.
        const bool unpack = n >= kMinUnpacked && prompt_effort >= 1.0f && model.unpacks_prompts();
        run_together(tokens.first(n), false, unpack ? BatchProducts::unpacked : BatchProducts::effort);
        if (exit.options.enabled) exit.take_candidates(act.logits);
      } else {
        for (Token t : tokens.first(n)) run(t);
      }
      tokens = tokens.subspan(n);
    }
  }

  // Whether n tokens from the end of the history can run in one forward_batch: no observer (it
  // would see them layer by layer), no exit signals to record, and positions that do not wrap
  // the KV ring.
  bool together(std::size_t n) const {
    return !observer && !exit.options.record_signals && history.size() + n <= std::size_t(cache.capacity());
  }

  // Runs tokens from the end of the history in one forward_batch (together() holds): every
  // one's logits into check_logits with all_logits, otherwise the last one's into act.logits.
  void run_together(std::span<const Token> tokens, bool all_logits, BatchProducts products = BatchProducts::effort) {
    const std::size_t n = tokens.size(), vocab = act.logits.size();
    if (all_logits) check_logits.resize(n * vocab);
    std::vector<BatchToken> batch_tokens(n);
    for (std::size_t t = 0; t < n; ++t) {
      float* logits = all_logits ? &check_logits[t * vocab] : t + 1 == n ? act.logits.data() : nullptr;
      batch_tokens[t] = BatchToken{tokens[t], int(history.size() + t), &cache, &effort, active_adapters, logits};
    }
    model.transformer->forward_batch(batch_tokens, act, batch(), compute(), products);
    history.insert(history.end(), tokens.begin(), tokens.end());
  }

  // A pending token stays pending: it runs after the shifted history, at its new end.
  void shift(int keep, int discard) {
    const int used = int(history.size());
    if (keep < 0 || discard < 0 || keep + discard > used)
      throw Error(ErrorCode::invalid_argument, "[session] context shift: keep " + std::to_string(keep) + " and discard " +
                                                   std::to_string(discard) + " do not fit the " + std::to_string(used) +
                                                   " tokens held");
    if (cache.capacity() < context_length)
      throw Error(ErrorCode::invalid_argument, "[session] context shift needs a KV cache that holds the whole context; "
                                               "this model's sliding window (" + std::to_string(cache.capacity()) +
                                               ") is shorter than the context (" + std::to_string(context_length) + ")");
    model.transformer->shift_cache(cache, keep, discard, used, act, compute());
    history.erase(history.begin() + keep, history.begin() + keep + discard);
    ++context_shifts;
  }

  // One round of self-speculative decoding from the pending token: `drafts` tokens at
  // draft_effort, one check of them all at the generation effort (every layer), then the tokens
  // that stand and the check's own next token handed to emit(token, logits) in order, until it
  // returns false. Leaves the session as plain decoding would: the cache holds the tokens handed
  // over but the last, which is pending, with the check's keys and values. (speculative.cpp)
  using Emit = std::function<bool(Token, std::span<const float>)>;
  void speculate(int drafts, float draft_effort, Sampler& sampler, DraftLength& length, GenerationStats& stats,
                 const Emit& emit);
  // Runs `tokens` from the end of the history at the generation effort through every layer,
  // leaving each one's next-token logits in check_logits: in one batch when it can.
  void check(std::span<const Token> tokens);

  BatchActivations& batch() {
    if (!batch_activations) batch_activations.emplace(model.config, kPromptBatch);
    return *batch_activations;
  }

  // Prompts of fewer tokens, below effort 1, or of float weights, run as products of several
  // vectors (bitwise forward()'s logits, each weight read from memory once per 16 tokens); from
  // this many at effort 1, bucketed and Q8_0 weights are unpacked into panels once
  // per batch (1.6-2.1 s on the 8-layer 7B-shaped model with 2 threads), which pays from about
  // 128 tokens on (docs/benchmarks.md).
  static constexpr std::size_t kMinUnpacked = 128;

  std::shared_ptr<const Model::Impl> model_data;  // keeps the weights alive
  const Model::Impl& model;
  kernels::Arch arch;
  const kernels::KernelTable& kernel_table;  // looked up once: the CPU does not change
  ThreadPool pool;
  int context_length;
  KvCache cache;
  Activations act;
  BucketScratch scratch;
  EffortState effort;
  float prompt_effort = 1.0f;
  // set_head_effort's value (0: follow) and set_effort(float)'s, which the head follows down to
  // kHeadEffortFloor (while a prompt runs, the prompt effort).
  float head_effort_setting = 0.0f, overall_effort = 1.0f;
  float head_effort_following(float followed) const {
    return head_effort_setting > 0 ? head_effort_setting : std::max(followed, kHeadEffortFloor);
  }
  std::vector<AdapterUse> adapters;
  std::vector<ActiveLora> active_adapters;  // adapters' data, as the transformer takes them
  ActivationObserver observer;
  ExitState exit;
  std::optional<BatchActivations> batch_activations;  // allocated on the first batched prompt
  std::vector<Token> history;   // tokens in the KV cache, in order
  std::vector<float> check_logits;  // [tokens, vocab_size]: a speculative check's logits
  bool speculating = false, drafting = false;  // in a speculative generate(); running its drafts
  int context_shifts = 0;
  // The last generated token: sampled but not yet run, so that a finished generation costs no
  // extra forward pass. The next call that feeds tokens runs it first.
  std::optional<Token> pending;
};

}  // namespace effort

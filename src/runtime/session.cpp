// session.cpp: one conversation: its KV cache, activations, thread pool and the generate loop.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <thread>
#include <utility>

#include "effort/effort.h"
#include "kernels/bucket_view.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "runtime/memory.h"
#include "runtime/model_impl.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"
#include "runtime/stop_rules.h"
#include "model/thread_pool.h"
#include "model/transformer.h"

namespace effort {

namespace {

kernels::Arch choose_arch(const std::string& requested) {
  std::string name = requested;
  if (name.empty()) {
    const char* forced = std::getenv("EFFORT_FORCE_ARCH");  // the one debug override
    if (forced && *forced) name = forced;
  }
  try {
    const kernels::Arch arch = name.empty() ? kernels::best_arch() : kernels::parse_arch(name);
    kernels::kernel_table(arch);  // throws when this CPU cannot run it
    return arch;
  } catch (const std::invalid_argument& e) {
    throw Error(ErrorCode::invalid_argument, std::string("[session] kernel_arch: ") + e.what());
  }
}

int choose_threads(int requested) {
  if (requested < 0)
    throw Error(ErrorCode::invalid_argument, "[session] num_threads must be >= 0, got " + std::to_string(requested));
  return requested ? requested : int(std::max(1u, std::thread::hardware_concurrency()));
}

// Prompt tokens per batch: enough that unpacking the weights once per batch costs little next
// to the products, few enough that the batch activations stay small.
constexpr std::size_t kPromptBatch = 256;

int choose_context(const ModelConfig& c, int requested) {
  if (requested < 0)
    throw Error(ErrorCode::invalid_argument, "[session] context_length must be >= 0, got " + std::to_string(requested));
  if (requested > c.max_position_embeddings)
    throw Error(ErrorCode::invalid_argument, "[session] context_length " + std::to_string(requested) +
                                                 " exceeds the model's max_position_embeddings " +
                                                 std::to_string(c.max_position_embeddings));
  const int context = requested ? requested : std::min(c.max_position_embeddings, 4096);
  const int slots = c.sliding_window ? std::min(context, c.sliding_window) : context;
  const std::uint64_t kv = KvCache::bytes(c.num_hidden_layers, slots, c.num_key_value_heads * c.head_dim);
  const std::uint64_t activations = Activations::bytes(c, slots) + BatchActivations::bytes(c, kPromptBatch);
  require_memory(kv + activations,
                 "[session] a context of " + std::to_string(context) + " tokens (KV cache " + format_bytes(kv) +
                     ", activations " + format_bytes(activations) + ")",
                 "ask for a shorter context (context_length, -c)");
  return context;
}

// Scratch for the largest bucketed matrix of the model.
BucketScratch make_bucket_scratch(const ModelWeights& weights) {
  std::vector<const BucketMatrix*> matrices;
  for (const auto& layer : weights.layers)
    for_each_projection(layer, [&](const Matrix& m, MatrixKind, int) {
      if (const auto* b = std::get_if<BucketMatrix>(&m)) matrices.push_back(b);
    });
  return BucketScratch(matrices);
}

void check_effort(float effort) {
  if (!(effort > 0.0f && effort <= 1.0f))
    throw Error(ErrorCode::invalid_argument, "[session] effort must be in (0, 1], got " + std::to_string(effort));
}


}  // namespace

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
    }
    while (!tokens.empty()) {
      const std::size_t n = std::min(tokens.size(), kPromptBatch);
      if (prompt && batchable(n, prompt_effort)) {
        model.transformer->prefill(tokens.first(n), int(history.size()), cache, act, batch(), compute());
        history.insert(history.end(), tokens.begin(), tokens.begin() + std::ptrdiff_t(n));
        if (exit.options.enabled) exit.take_candidates(act.logits);
      } else {
        for (Token t : tokens.first(n)) run(t);
      }
      tokens = tokens.subspan(n);
    }
  }

  // Batches run at effort 1, see no observer, record no exit signals, need positions that do
  // not wrap the KV ring (a later token would overwrite keys an earlier one still attends to),
  // and at least kMinBatch tokens.
  bool batchable(std::size_t n, float batch_effort) const {
    return n >= kMinBatch && batch_effort >= 1.0f && !observer && !exit.options.record_signals &&
           history.size() + n <= std::size_t(cache.capacity());
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
  // over but the last, which is pending, with the check's keys and values.
  template <class Emit>
  void speculate(int drafts, float draft_effort, Sampler& sampler, DraftLength& length, GenerationStats& stats,
                 Emit& emit) {
    const int start = int(history.size());
    const auto& eos = model.config.eos_token_ids;
    // In a ring, positions past the capacity overwrite ones still in the window.
    std::optional<KvCache::Saved> saved;
    if (start + drafts >= cache.capacity()) saved = cache.save(start, drafts + 1);
    const EffortStats before = effort.stats;

    std::vector<Token> tokens = {*pending};
    std::vector<Distribution> draft_distributions;
    const auto generation_effort = effort.effort;
    effort.set_all(draft_effort);
    drafting = true;
    while (int(tokens.size()) <= drafts && std::find(eos.begin(), eos.end(), tokens.back()) == eos.end()) {
      run(tokens.back());
      if (sampler.greedy()) {
        tokens.push_back(sampler.sample(act.logits, history));
      } else {
        draft_distributions.push_back(sampler.distribution(act.logits, history));
        tokens.push_back(sampler.draw(draft_distributions.back()));
      }
    }
    drafting = false;
    effort.effort = generation_effort;
    history.resize(std::size_t(start));
    if (saved) cache.restore(*saved, start);
    const int drafted = int(tokens.size()) - 1;
    const EffortStats after_drafts = effort.stats;
    check(tokens);
    const std::size_t vocab = act.logits.size();
    auto logits_after = [&](int i) { return std::span<const float>(&check_logits[std::size_t(i) * vocab], vocab); };
    auto history_to = [&](int i) { return std::span<const Token>(history).first(std::size_t(start + i + 1)); };

    // The drafts that stand, then the check's next token: a correction, or one more.
    int accepted = 0;
    std::optional<Token> next;
    for (int i = 1; i <= drafted && !next; ++i) {
      if (sampler.greedy()) {
        const Token target = sampler.sample(logits_after(i - 1), history_to(i - 1));
        if (target != tokens[std::size_t(i)]) next = target;
      } else {
        const Distribution& target = sampler.distribution(logits_after(i - 1), history_to(i - 1));
        const double u_accept = sampler.uniform(), u_redraw = sampler.uniform();
        const DraftVerdict verdict =
            judge_draft(tokens[std::size_t(i)], target, draft_distributions[std::size_t(i - 1)], u_accept, u_redraw);
        if (!verdict.accepted) next = verdict.token;
      }
      if (!next) ++accepted;
    }
    if (!next) next = sampler.sample(logits_after(accepted), history_to(accepted));
    stats.drafted += drafted;
    stats.accepted += accepted;
    ++stats.checks;
    if (exit.options.enabled) exit.take_candidates(logits_after(accepted));
    length.update(drafted, accepted);
    // The stats compare with plain decoding: all the work done, against one dense pass per
    // token the round advanced.
    for (int k = 0; k < kNumMatrixKinds; ++k) {
      const double check_dense = effort.stats.dense[k] - after_drafts.dense[k];
      effort.stats.dense[k] = before.dense[k] + check_dense / double(tokens.size()) * double(accepted + 1);
    }

    // Hand over; `kept` counts the tokens handed over, the last of which stays pending.
    int kept = 0;
    for (int i = 1; i <= accepted + 1; ++i) {
      const Token token = i <= accepted ? tokens[std::size_t(i)] : *next;
      const Token previous = *pending;
      pending.reset();
      const bool more = emit(token, logits_after(i - 1));
      if (pending) kept = i;
      else pending = previous;  // an end-of-sequence token is not handed over
      if (!more) break;
    }
    history.resize(std::size_t(start + kept));
    if (saved) cache.restore(*saved, start + kept);
  }

  // Runs `tokens` from the end of the history at the generation effort through every layer,
  // leaving each one's next-token logits in check_logits: in one batch when it can.
  void check(std::span<const Token> tokens) {
    const std::size_t n = tokens.size(), vocab = act.logits.size();
    check_logits.resize(n * vocab);
    float lowest = 1.0f;
    for (const auto& layer : effort.effort) lowest = std::min(lowest, *std::min_element(layer.begin(), layer.end()));
    if (batchable(n, lowest)) {
      model.transformer->prefill(tokens, int(history.size()), cache, act, batch(), compute(), check_logits.data());
      history.insert(history.end(), tokens.begin(), tokens.end());
      return;
    }
    for (std::size_t t = 0; t < n; ++t) {
      model.transformer->forward(tokens[t], int(history.size()), cache, act, compute(), nullptr);
      history.push_back(tokens[t]);
      std::copy(act.logits.begin(), act.logits.end(), check_logits.begin() + std::ptrdiff_t(t * vocab));
    }
  }

  BatchActivations& batch() {
    if (!batch_activations) batch_activations.emplace(model.config, kPromptBatch);
    return *batch_activations;
  }

  // Fewer tokens run one at a time: a batch converts every weight into panels once (1.6 s on the
  // 8-layer 7B-shaped model with 2 threads, against 0.15 s for a whole token's products), which
  // pays from 11 (F16) to 18 (q8 buckets) tokens on.
  static constexpr std::size_t kMinBatch = 16;

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

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Session Model::new_session(const SessionOptions& options) const {
  return Session(std::make_unique<Session::Impl>(impl_, options));
}

std::span<const float> Session::forward(Token token) {
  impl_->feed(std::span<const Token>(&token, 1), false);
  return impl_->act.logits;
}

std::span<const float> Session::prefill(std::span<const Token> tokens) {
  impl_->feed(tokens, true);
  if (impl_->history.empty())
    throw Error(ErrorCode::invalid_argument, "[session] no tokens: logits need at least one token");
  return impl_->act.logits;
}

GenerateResult Session::generate(std::string_view prompt, const GenerateOptions& options, const OnToken& on_token) {
  const Tokenizer* tokenizer = impl_->model.tokenizer ? &*impl_->model.tokenizer : nullptr;
  if (!tokenizer)
    throw Error(ErrorCode::invalid_argument, "[session] this model has no tokenizer: give the prompt as token ids");
  const bool empty = impl_->history.empty() && !impl_->pending;
  const auto tokens = tokenizer->encode(prompt, empty);
  return generate(std::span<const Token>(tokens), options, on_token);
}

GenerateResult Session::generate(std::span<const Token> prompt, const GenerateOptions& options, const OnToken& on_token) {
  if (options.max_new_tokens < 0)
    throw Error(ErrorCode::invalid_argument, "[generate] max_new_tokens must be >= 0, got " +
                                                 std::to_string(options.max_new_tokens));
  const SpeculativeOptions& spec = options.speculative;
  const bool speculate = spec.draft_effort > 0;
  if (speculate) {
    if (!(spec.draft_effort < 1))
      throw Error(ErrorCode::invalid_argument, "[generate] draft effort must be in (0, 1), got " + std::to_string(spec.draft_effort));
    if (!impl_->model.bucketed())
      throw Error(ErrorCode::invalid_argument, "[generate] speculative decoding drafts at a lower effort, which needs a "
                                               ".effort model (convert it with effort-convert)");
    if (spec.draft_max < 0 || spec.draft_max > DraftLength::kMax)
      throw Error(ErrorCode::invalid_argument, "[generate] draft_max must be in [0, " + std::to_string(DraftLength::kMax) +
                                                   "], got " + std::to_string(spec.draft_max));
  }
  Sampler sampler(options.sampling);
  AnswerStop answer_stop(options.stop_gap, options.stop_burnout);
  Impl& s = *impl_;
  GenerateResult result;
  s.speculating = speculate;
  struct EndSpeculation {
    Impl& s;
    ~EndSpeculation() { s.speculating = s.drafting = false; }
  } end_speculation{s};

  const auto prompt_start = Clock::now();
  prefill(prompt);
  result.stats.prompt_tokens = int(prompt.size());
  result.stats.prompt_seconds = seconds_since(prompt_start);

  const Tokenizer* tokenizer = s.model.tokenizer ? &*s.model.tokenizer : nullptr;
  bool at_start = true;  // nothing but control tokens so far: the text starts with what comes next
  for (Token t : s.history) at_start = at_start && tokenizer && tokenizer->is_control(t);
  std::optional<StreamDecoder> decoder;
  if (tokenizer) decoder.emplace(*tokenizer, at_start);
  const auto& eos = s.model.config.eos_token_ids;

  // Hands a token sampled from `logits` to the caller; false once generation ends with it (or
  // before it, for an end-of-sequence token). The last token handed over stays pending.
  bool stopped = false;
  auto emit = [&](Token token, std::span<const float> logits) {
    const auto confident_stop = answer_stop.observe(logits);
    if (options.stop_at_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
      result.stop_reason = StopReason::eos;
      return !(stopped = true);
    }
    result.tokens.push_back(token);
    s.pending = token;
    const std::string text = decoder ? decoder->push(token) : std::string();
    if (on_token && !on_token(token, text)) {
      result.stop_reason = StopReason::callback;
      return !(stopped = true);
    }
    if (confident_stop) {
      result.stop_reason = *confident_stop;
      return !(stopped = true);
    }
    if (int(result.tokens.size()) >= options.max_new_tokens) {
      result.stop_reason = StopReason::max_new_tokens;
      return !(stopped = true);
    }
    return true;
  };

  const auto gen_start = Clock::now();
  DraftLength draft_length(spec.draft_max);
  if (options.max_new_tokens > 0) emit(sampler.sample(s.act.logits, s.history), s.act.logits);
  else stopped = true;
  while (!stopped) {
    if (int(s.history.size()) >= s.context_length && options.context_shift) {
      const int keep = std::clamp(options.keep, 0, int(s.history.size()));
      s.shift(keep, (int(s.history.size()) - keep) / 2);
    }
    if (int(s.history.size()) >= s.context_length) {
      result.stop_reason = StopReason::context_full;
      break;
    }
    // Drafts that fit the context and the tokens still wanted (a check adds one of its own).
    const int wanted = options.max_new_tokens - int(result.tokens.size());
    const int drafts = speculate ? std::min({draft_length.next(), wanted - 1, s.context_length - int(s.history.size()) - 1}) : 0;
    if (drafts <= 0) {
      s.feed({}, false);  // runs the pending token
      emit(sampler.sample(s.act.logits, s.history), s.act.logits);
      continue;
    }
    s.speculate(drafts, spec.draft_effort, sampler, draft_length, result.stats, emit);
  }
  if (decoder && on_token) {
    const std::string rest = decoder->flush();
    if (!rest.empty() && !result.tokens.empty()) on_token(result.tokens.back(), rest);
  }
  result.stats.generated_tokens = int(result.tokens.size());
  result.stats.generation_seconds = seconds_since(gen_start);
  return result;
}

void Session::set_effort(float effort) {
  for (int k = 0; k < kNumMatrixKinds; ++k) set_effort(MatrixKind(k), effort);
}

void Session::set_effort(MatrixKind kind, float effort) {
  for (int l = 0; l < impl_->model.config.num_hidden_layers; ++l) set_layer_effort(l, kind, effort);
}

void Session::set_layer_effort(int layer, float effort) {
  for (int k = 0; k < kNumMatrixKinds; ++k) set_layer_effort(layer, MatrixKind(k), effort);
}

void Session::set_layer_effort(int layer, MatrixKind kind, float effort) {
  check_effort(effort);
  if (effort < 1.0f && !impl_->model.bucketed())
    throw Error(ErrorCode::invalid_argument,
                "[session] effort below 1 needs a bucketed .effort model (convert it with effort-convert)");
  if (layer < 0 || layer >= impl_->model.config.num_hidden_layers)
    throw Error(ErrorCode::invalid_argument, "[session] layer " + std::to_string(layer) + " is outside [0, " +
                                                 std::to_string(impl_->model.config.num_hidden_layers) + ")");
  impl_->effort.effort[std::size_t(layer)][std::size_t(kind)] = effort;
}

void Session::set_prompt_effort(float effort) {
  check_effort(effort);
  if (effort < 1.0f && !impl_->model.bucketed())
    throw Error(ErrorCode::invalid_argument,
                "[session] prompt effort below 1 needs a bucketed .effort model (convert it with effort-convert)");
  impl_->prompt_effort = effort;
}
float Session::prompt_effort() const { return impl_->prompt_effort; }

float Session::effort(MatrixKind kind) const { return impl_->effort.effort[0][std::size_t(kind)]; }
float Session::layer_effort(int layer, MatrixKind kind) const {
  return impl_->effort.effort.at(std::size_t(layer))[std::size_t(kind)];
}
const EffortStats& Session::effort_stats() const { return impl_->effort.stats; }
void Session::reset_effort_stats() {
  impl_->effort.stats = EffortStats{};
  impl_->exit.layers_run = impl_->exit.tokens = impl_->exit.check_seconds = 0;
}
void Session::set_activation_observer(ActivationObserver observer) { impl_->observer = std::move(observer); }

void Session::set_adapters(std::vector<AdapterUse> adapters) {
  std::vector<ActiveLora> active;
  for (const AdapterUse& use : adapters) {
    if (use.adapter.impl_->model != &impl_->model)
      throw Error(ErrorCode::invalid_argument, "[session] adapter " + use.adapter.name() + " was loaded for another model");
    if (!std::isfinite(use.scale))
      throw Error(ErrorCode::invalid_argument, "[session] adapter " + use.adapter.name() + ": scale must be finite");
    active.push_back({&use.adapter.impl_->lora, use.scale});
  }
  impl_->adapters = std::move(adapters);  // keeps the data `active` points into alive
  impl_->active_adapters = std::move(active);
}

const std::vector<AdapterUse>& Session::adapters() const { return impl_->adapters; }

void Session::set_early_exit(const EarlyExitOptions& options) {
  const int n = impl_->model.config.num_hidden_layers;
  auto bad = [](const std::string& what) { throw Error(ErrorCode::invalid_argument, "[early exit] " + what); };
  auto check_threshold = [&](float t) {
    if (!(t >= 0.0f && t <= 1.0f)) bad("threshold must be in [0, 1], got " + std::to_string(t));
  };
  auto check_layer = [&](int l) {
    if (l < 0 || l >= n - 1)
      bad("check layer " + std::to_string(l) + " is outside [0, " + std::to_string(n - 1) +
          ") (a check after the last layer would skip nothing)");
  };
  check_threshold(options.threshold);
  for (int l : options.check_layers) check_layer(l);
  for (const auto& [l, t] : options.layer_thresholds) {
    check_layer(l);
    check_threshold(t);
  }
  if (options.patience < 1) bad("patience must be >= 1, got " + std::to_string(options.patience));
  if (options.warmup < 0) bad("warmup must be >= 0, got " + std::to_string(options.warmup));
  if (options.max_consecutive < 1) bad("max_consecutive must be >= 1, got " + std::to_string(options.max_consecutive));
  if (options.candidates < 2 || options.candidates > impl_->model.config.vocab_size)
    bad("candidates must be in [2, vocab_size], got " + std::to_string(options.candidates));
  if (!(options.min_saturation >= 0.0f && options.min_saturation <= 1.0f))
    bad("min_saturation must be in [0, 1], got " + std::to_string(options.min_saturation));

  std::vector<int> layers = options.check_layers;
  if (layers.empty()) {
    // Three checks spread over the second half, never after the last two layers; a model too
    // shallow for two such checks may check before its last layer too.
    const int first = n / 2, last = n - first >= 4 ? n - 3 : n - 2;
    for (int i = 0; i < 3 && first <= last; ++i) {
      const int l = first + (last - first) * i / 2;
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
    }
  }
  std::vector<float> threshold(std::size_t(n), 2.0f);  // > 1: no check
  for (int l : layers) threshold[std::size_t(l)] = options.threshold;
  for (const auto& [l, t] : options.layer_thresholds) threshold[std::size_t(l)] = t;
  const auto checks = std::count_if(threshold.begin(), threshold.end(), [](float t) { return t <= 1.0f; });
  if (options.enabled && !options.record_signals && checks < options.patience)
    bad("patience " + std::to_string(options.patience) + " needs at least that many check layers, and " +
        std::to_string(checks) + " are set for this " + std::to_string(n) + "-layer model (lower the patience or add check layers)");
  ExitState& e = impl_->exit;
  e.options = options;
  e.threshold = std::move(threshold);
  e.candidates.clear();
  e.consecutive_exits = 0;
}

void Session::shift_context(int keep, int discard) { impl_->shift(keep, discard); }
int Session::context_shifts() const { return impl_->context_shifts; }

double Session::exit_check_seconds() const { return impl_->exit.check_seconds; }

std::vector<ExitSignal> Session::take_exit_signals() { return std::exchange(impl_->exit.signals, {}); }

double Session::average_layers() const {
  const ExitState& e = impl_->exit;
  return e.tokens > 0 ? e.layers_run / e.tokens : double(impl_->model.config.num_hidden_layers);
}

Session::KvView Session::kv_cache(int layer) const {
  const KvCache& cache = impl_->cache;
  if (layer < 0 || layer >= cache.num_layers())
    throw Error(ErrorCode::invalid_argument, "[session] layer " + std::to_string(layer) + " is outside [0, " +
                                                 std::to_string(cache.num_layers()) + ")");
  const std::size_t n = std::size_t(cache.capacity()) * std::size_t(impl_->model.config.num_key_value_heads) *
                        std::size_t(impl_->model.config.head_dim);
  return {std::span<const float>(cache.keys(layer), n), std::span<const float>(cache.values(layer), n)};
}

int Session::position() const { return int(impl_->history.size()); }
int Session::context_length() const { return impl_->context_length; }
void Session::reset() {
  impl_->history.clear();
  impl_->pending.reset();
  impl_->exit.candidates.clear();
  impl_->exit.consecutive_exits = 0;
}
std::string_view Session::kernel_arch() const { return kernels::arch_name(impl_->arch); }
int Session::num_threads() const { return impl_->pool.size(); }

}  // namespace effort

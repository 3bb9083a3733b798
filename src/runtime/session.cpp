// session.cpp: one conversation: choosing its resources, feeding it tokens, the generate loop,
// and its settings.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <thread>
#include <utility>

#include "kernels/bucket_view.h"
#include "runtime/memory.h"
#include "runtime/session_impl.h"
#include "runtime/stop_rules.h"

namespace effort {

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
  if (weights.head_buckets) matrices.push_back(&*weights.head_buckets);
  return BucketScratch(matrices);
}

namespace {
void check_effort(float effort) {
  if (!(effort > 0.0f && effort <= 1.0f))
    throw Error(ErrorCode::invalid_argument, "[session] effort must be in (0, 1], got " + std::to_string(effort));
}
}  // namespace

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

std::span<const float> Session::forward_all(std::span<const Token> tokens) {
  Impl& s = *impl_;
  for (Token t : tokens) s.check_token(t);
  s.check_room(tokens.size() + (s.pending ? 1 : 0));
  s.feed({}, false);  // a pending token first
  s.check(tokens);
  return s.check_logits;
}

void Session::check_together(std::span<Session* const> sessions) {
  if (sessions.empty()) return;
  const Impl& lead = *sessions[0]->impl_;
  if (sessions.size() > kPromptBatch)
    throw Error(ErrorCode::invalid_argument, "[session] sessions decoded together: at most " + std::to_string(kPromptBatch) +
                                                 ", got " + std::to_string(sessions.size()));
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    const Impl& s = *sessions[i]->impl_;
    if (&s.model != &lead.model)
      throw Error(ErrorCode::invalid_argument, "[session] sessions decoded together: session " + std::to_string(i) +
                                                   " is of another model");
    for (std::size_t j = 0; j < i; ++j)
      if (sessions[j] == sessions[i])
        throw Error(ErrorCode::invalid_argument, "[session] sessions decoded together: session " + std::to_string(i) +
                                                     " is also session " + std::to_string(j));
    if (s.exit.options.enabled || s.observer)
      throw Error(ErrorCode::invalid_argument, "[session] sessions decoded together: session " + std::to_string(i) +
                                                   " has early exit or an activation observer, which need its "
                                                   "tokens run alone");
  }
}

std::vector<std::span<const float>> Session::forward_together(std::span<Session* const> sessions,
                                                              std::span<const Token> tokens) {
  if (sessions.size() != tokens.size())
    throw Error(ErrorCode::invalid_argument, "[session] forward_together: " + std::to_string(sessions.size()) +
                                                 " sessions but " + std::to_string(tokens.size()) + " tokens");
  if (sessions.empty()) return {};
  check_together(sessions);
  Impl& lead = *sessions[0]->impl_;
  std::vector<BatchToken> batch;
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    Impl& s = *sessions[i]->impl_;
    s.check_token(tokens[i]);
    s.check_room(1 + (s.pending ? 1 : 0));
  }
  for (Session* session : sessions) session->impl_->feed({}, false);  // pending tokens first
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    Impl& s = *sessions[i]->impl_;
    batch.push_back(BatchToken{tokens[i], int(s.history.size()), &s.cache, &s.effort, s.active_adapters,
                               s.act.logits.data(), &s.act});
  }
  lead.model.transformer->forward_batch(batch, lead.act, lead.batch(), lead.compute());
  std::vector<std::span<const float>> logits;
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    Impl& s = *sessions[i]->impl_;
    s.history.push_back(tokens[i]);
    logits.push_back(s.act.logits);
  }
  return logits;
}

GenerateResult Session::generate(std::string_view prompt, const GenerateOptions& options, const OnToken& on_token) {
  const Tokenizer* tokenizer = impl_->model.tokenizer ? &*impl_->model.tokenizer : nullptr;
  if (!tokenizer)
    throw Error(ErrorCode::invalid_argument, "[session] this model has no tokenizer: give the prompt as token ids");
  const bool empty = impl_->history.empty() && !impl_->pending;
  const auto tokens = tokenizer->encode(prompt, empty);
  return generate(std::span<const Token>(tokens), options, on_token);
}

namespace {

void check_generate_options(const GenerateOptions& options, const Session::Impl& s) {
  if (options.max_new_tokens < 0)
    throw Error(ErrorCode::invalid_argument, "[generate] max_new_tokens must be >= 0, got " +
                                                 std::to_string(options.max_new_tokens));
  const SpeculativeOptions& spec = options.speculative;
  if (spec.draft_effort > 0) {
    if (!(spec.draft_effort < 1))
      throw Error(ErrorCode::invalid_argument, "[generate] draft effort must be in (0, 1), got " + std::to_string(spec.draft_effort));
    if (!s.model.bucketed())
      throw Error(ErrorCode::invalid_argument, "[generate] speculative decoding drafts at a lower effort, which needs a "
                                               ".effort model (convert it with effort-convert)");
    if (spec.draft_max < 0 || spec.draft_max > DraftLength::kMax)
      throw Error(ErrorCode::invalid_argument, "[generate] draft_max must be in [0, " + std::to_string(DraftLength::kMax) +
                                                   "], got " + std::to_string(spec.draft_max));
  }
}

// One generation: its sampler, stop rules and text decoder, and its result so far. generate()
// runs one; generate_together() several, a token of each per pass over the weights.
class Generation {
 public:
  Generation(Session& session, Session::Impl& s, const GenerateOptions& options, const OnToken& on_token)
      : sampler(options.sampling), session_(session), s_(s), options_(options), on_token_(on_token),
        answer_stop_(options.stop_gap, options.stop_burnout) {}

  // Feeds the prompt and hands over the first token.
  void start(std::span<const Token> prompt) {
    const auto prompt_start = Clock::now();
    session_.prefill(prompt);
    result.stats.prompt_tokens = int(prompt.size());
    result.stats.prompt_seconds = seconds_since(prompt_start);
    const Tokenizer* tokenizer = s_.model.tokenizer ? &*s_.model.tokenizer : nullptr;
    bool at_start = true;  // nothing but control tokens so far: the text starts with what comes next
    for (Token t : s_.history) at_start = at_start && tokenizer && tokenizer->is_control(t);
    if (tokenizer) decoder_.emplace(*tokenizer, at_start);
    generation_start_ = Clock::now();
    if (options_.max_new_tokens > 0) emit_sampled();
    else stopped = true;
  }

  // Whether another token can be run: the context shifted when full (if allowed), or the end.
  bool can_continue() {
    if (stopped) return false;
    if (int(s_.history.size()) >= s_.context_length && options_.context_shift) {
      const int keep = std::clamp(options_.keep, 0, int(s_.history.size()));
      s_.shift(keep, (int(s_.history.size()) - keep) / 2);
    }
    if (int(s_.history.size()) >= s_.context_length) {
      result.stop_reason = StopReason::context_full;
      stopped = true;
    }
    return !stopped;
  }

  // Hands a token sampled from `logits` to the caller; false once generation ends with it (or
  // before it, for an end-of-sequence token). The last token handed over stays pending.
  bool emit(Token token, std::span<const float> logits) {
    const auto confident_stop = answer_stop_.observe(logits);
    const auto& eos = s_.model.config.eos_token_ids;
    if (options_.stop_at_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
      result.stop_reason = StopReason::eos;
      return !(stopped = true);
    }
    result.tokens.push_back(token);
    s_.pending = token;
    const std::string text = decoder_ ? decoder_->push(token) : std::string();
    if (on_token_ && !on_token_(token, text)) {
      result.stop_reason = StopReason::callback;
      return !(stopped = true);
    }
    if (confident_stop) {
      result.stop_reason = *confident_stop;
      return !(stopped = true);
    }
    if (int(result.tokens.size()) >= options_.max_new_tokens) {
      result.stop_reason = StopReason::max_new_tokens;
      return !(stopped = true);
    }
    return true;
  }
  // The next token from the logits the last pass left.
  void emit_sampled() { emit(sampler.sample(s_.act.logits, s_.history), s_.act.logits); }

  GenerateResult finish() {
    if (decoder_ && on_token_) {
      const std::string rest = decoder_->flush();
      if (!rest.empty() && !result.tokens.empty()) on_token_(result.tokens.back(), rest);
    }
    result.stats.generated_tokens = int(result.tokens.size());
    result.stats.generation_seconds = seconds_since(generation_start_);
    return std::move(result);
  }

  // What speculation drives directly: the sampler, the result's stats, and whether it ended.
  Sampler sampler;
  GenerateResult result;
  bool stopped = false;

 private:
  Session& session_;
  Session::Impl& s_;
  const GenerateOptions& options_;
  const OnToken& on_token_;
  AnswerStop answer_stop_;
  std::optional<StreamDecoder> decoder_;
  Clock::time_point generation_start_;
};

}  // namespace

GenerateResult Session::generate(std::span<const Token> prompt, const GenerateOptions& options, const OnToken& on_token) {
  Impl& s = *impl_;
  check_generate_options(options, s);
  const SpeculativeOptions& spec = options.speculative;
  const bool speculate = spec.draft_effort > 0;
  s.speculating = speculate;
  struct EndSpeculation {
    Impl& s;
    ~EndSpeculation() { s.speculating = s.drafting = false; }
  } end_speculation{s};
  Generation g(*this, s, options, on_token);
  g.start(prompt);
  DraftLength draft_length(spec.draft_max, spec.draft_effort);
  const auto emit = [&](Token token, std::span<const float> logits) { return g.emit(token, logits); };
  while (g.can_continue()) {
    // Drafts that fit the context and the tokens still wanted (a check adds one of its own).
    const int wanted = options.max_new_tokens - int(g.result.tokens.size());
    const int drafts = speculate ? std::min({draft_length.next(), wanted - 1, s.context_length - int(s.history.size()) - 1}) : 0;
    if (drafts <= 0) {
      s.feed({}, false);  // runs the pending token
      g.emit_sampled();
      continue;
    }
    s.speculate(drafts, spec.draft_effort, g.sampler, draft_length, g.result.stats, emit);
  }
  return g.finish();
}

std::vector<GenerateResult> Session::generate_together(std::span<Session* const> sessions,
                                                       std::span<const std::vector<Token>> prompts,
                                                       std::span<const GenerateOptions> options,
                                                       const OnSessionToken& on_token) {
  if (prompts.size() != sessions.size() || options.size() != sessions.size())
    throw Error(ErrorCode::invalid_argument, "[generate] generate_together: " + std::to_string(sessions.size()) +
                                                 " sessions, " + std::to_string(prompts.size()) + " prompts and " +
                                                 std::to_string(options.size()) + " options");
  check_together(sessions);
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    check_generate_options(options[i], *sessions[i]->impl_);
    if (options[i].speculative.draft_effort > 0)
      throw Error(ErrorCode::invalid_argument, "[generate] generate_together: session " + std::to_string(i) +
                                                   " asks for speculative decoding, which runs a session alone");
  }
  std::vector<OnToken> callbacks;
  for (std::size_t i = 0; i < sessions.size(); ++i)
    callbacks.push_back(on_token ? OnToken([&on_token, i](Token t, std::string_view text) { return on_token(i, t, text); })
                                 : OnToken());
  std::vector<std::unique_ptr<Generation>> generations;
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    generations.push_back(std::make_unique<Generation>(*sessions[i], *sessions[i]->impl_, options[i], callbacks[i]));
    generations.back()->start(prompts[i]);
  }
  while (true) {
    // The pending token of every generation that goes on, all in one pass.
    std::vector<Session*> running;
    std::vector<Token> tokens;
    std::vector<Generation*> stepping;
    for (std::size_t i = 0; i < sessions.size(); ++i) {
      if (!generations[i]->can_continue()) continue;
      Impl& s = *sessions[i]->impl_;
      tokens.push_back(*s.pending);
      s.pending.reset();
      running.push_back(sessions[i]);
      stepping.push_back(generations[i].get());
    }
    if (running.empty()) break;
    forward_together(running, tokens);
    for (Generation* g : stepping) g->emit_sampled();
  }
  std::vector<GenerateResult> results;
  for (auto& g : generations) results.push_back(g->finish());
  return results;
}

void Session::set_effort(float effort) {
  for (int k = 0; k < kNumMatrixKinds; ++k) set_effort(MatrixKind(k), effort);
  impl_->overall_effort = effort;
  impl_->effort.head_effort = impl_->head_effort_following(impl_->overall_effort);
}

void Session::set_head_effort(float effort) {
  if (effort != 0.0f) check_effort(effort);
  if (effort > 0.0f && effort < 1.0f && !impl_->model.weights.head_buckets)
    throw Error(ErrorCode::invalid_argument,
                "[session] head effort below 1 needs a .effort model with a bucketed head (files converted "
                "before head effort have none: convert the model again)");
  impl_->head_effort_setting = effort;
  impl_->effort.head_effort = impl_->head_effort_following(impl_->overall_effort);
}

void Session::set_head_candidates(int candidates) {
  if (candidates < 1 || candidates > impl_->model.config.vocab_size)
    throw Error(ErrorCode::invalid_argument, "[session] head candidates must be in [1, " +
                                                 std::to_string(impl_->model.config.vocab_size) + "], got " +
                                                 std::to_string(candidates));
  impl_->effort.head_candidates = std::size_t(candidates);
}

float Session::head_effort() const { return impl_->model.weights.head_buckets ? impl_->effort.head_effort : 1.0f; }

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

void Session::set_early_exit(const EarlyExitOptions& options) { impl_->exit.configure(options, impl_->model.config); }

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

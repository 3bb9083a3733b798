// effort.h: load a Mistral-family model and generate text with it. The one public header.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "effort/config.h"
#include "effort/error.h"
#include "effort/tokenizer.h"
#include "effort/types.h"

namespace effort {

struct LoadOptions {
  // Fraction of each bucketed matrix's rows to map, in (0, 1]. The rows are stored least
  // important last, so 0.75 drops the smallest quarter of every bucket's weights and their
  // memory. Needs a .effort model.
  float mem_fraction = 1.0f;
  // true: weights are read through a memory mapping of the file (instant load, shared page
  // cache). false: the weights in use are copied into process memory with transparent huge
  // pages, as llama.cpp's --no-mmap: slower to load, faster to run where TLB misses are costly
  // (measured 1.5x generation speed on this project's VMs).
  bool use_mmap = true;
  // Read a .effort file whole before running and check every tensor's checksum (effort-run
  // --verify). Loading checks the header, shapes and ranges always; the data only with this.
  bool verify = false;
};

struct SessionOptions {
  int num_threads = 0;      // 0: every hardware thread
  int context_length = 0;   // KV cache positions; 0: min(max_position_embeddings, 4096)
  std::string kernel_arch;  // "": the best this CPU runs (or $EFFORT_FORCE_ARCH); "scalar", "avx2", "avx512"
};

struct SamplingOptions {
  float temperature = 0.8f;         // 0: greedy (argmax)
  int top_k = 40;                   // 0: no top-k cut
  float top_p = 0.95f;              // (0, 1]; 1: no nucleus cut
  float min_p = 0.05f;              // [0, 1]: drop tokens less likely than min_p times the top one; 0: off
  float repetition_penalty = 1.0f;  // > 0; 1: off. Divides positive logits, multiplies negative ones
  int repetition_window = 64;       // how many recent tokens the penalty looks at
  std::uint64_t seed = 0;           // same seed, same options, same prompt: same tokens
};

// Self-speculative decoding: the session drafts tokens cheaply with its own model at a lower
// effort (and, with the session's early exit enabled, exiting early), then checks them all in
// one pass at its own effort, which keeps the longest prefix the full pass agrees with, plus the
// full pass's next token. The output is the full model's: greedy gives the same tokens as
// without speculation; sampling keeps a draft token with probability min(1, p/q) and otherwise
// draws from max(0, p - q) normalised, so tokens follow the full model's distribution.
struct SpeculativeOptions {
  float draft_effort = 0;  // (0, 1): on, with drafts at this effort; 0: off
  // Tokens drafted per check, 1..16; 0: adaptive, from the running acceptance rate a: the
  // longest draft k with a^k >= 1/2 (from the tokens only, so a seed's tokens are reproducible).
  int draft_max = 0;
};

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplingOptions sampling;
  bool stop_at_eos = true;  // stop when the model emits an end-of-sequence token
  // End the answer once the top-1/top-2 logit gap of the next-token logits exceeds stop_gap
  // ("Gap"), or once the summed change of that gap over the answer exceeds stop_burnout
  // ("Burnout"); the token sampled at that step is the answer's last. 0: off.
  float stop_gap = 0.0f;
  float stop_burnout = 0.0f;
  // When the context is full: drop the older half of the tokens after the first `keep` and go
  // on (llama.cpp's context shift), instead of stopping with StopReason::context_full.
  bool context_shift = false;
  int keep = 0;
  SpeculativeOptions speculative;  // needs a .effort model
};

enum class StopReason { max_new_tokens, eos, callback, context_full, gap, burnout };

struct GenerationStats {
  int prompt_tokens = 0;
  double prompt_seconds = 0;
  int generated_tokens = 0;
  double generation_seconds = 0;
  // Speculative decoding: tokens drafted and kept, and the checks (full passes) run.
  int drafted = 0, accepted = 0, checks = 0;
};

struct GenerateResult {
  std::vector<Token> tokens;  // the generated tokens (the prompt excluded)
  StopReason stop_reason = StopReason::max_new_tokens;
  GenerationStats stats;
};

// Called for every generated token with its text (possibly empty while a UTF-8 character is
// incomplete, always empty without a tokenizer); return false to stop.
using OnToken = std::function<bool(Token token, std::string_view text)>;

// How chat turns are written for a model: the family of the chat template in its metadata,
// recognised by its markers as llama.cpp does; Mistral's [INST] format when there is none.
enum class ChatFormat { mistral, llama2, chatml, zephyr };
ChatFormat detect_chat_format(std::string_view jinja);
std::string_view chat_format_name(ChatFormat format);
// One user turn, up to where the answer begins; the system prompt goes into the first turn.
// Special tokens are written as text: encode it with Tokenizer::encode_with_special.
std::string chat_user_turn(ChatFormat format, std::string_view system, std::string_view user, bool first);
// What closes an answer, fed after it (the model stops before it): e.g. "</s>" or "<|im_end|>\n".
std::string chat_answer_end(ChatFormat format);

class Session;

// A LoRA adapter loaded for one model (Model::load_adapter), applied at run time: each
// projection it targets gives W x + s * B (A x), s = the use's scale * alpha / rank, with W x at
// the session's effort (the effort applies to the base weights, the adapter runs whole).
// Read-only; any number of sessions may use it, and it keeps its data alive while they do.
class Adapter {
 public:
  const std::string& name() const;  // the file's or folder's stem: what requests choose it by
  std::string_view format() const;  // "peft" or "gguf"
  int rank() const;                 // the largest rank of its pairs
  float alpha() const;
  int num_pairs() const;  // the (layer, projection) pairs it adapts

  struct Impl;

 private:
  friend class Model;
  friend class Session;
  explicit Adapter(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// An adapter and the scale it runs at (llama.cpp's --lora-scaled; 1 for --lora).
struct AdapterUse {
  Adapter adapter;
  float scale = 1.0f;
};

// Weights, config and tokenizer, loaded once; read-only and shared by any number of sessions
// (each session keeps the model's data alive, so a session may outlive its Model object).
class Model {
 public:
  // path: a .effort file (from effort-convert), or a checkpoint that runs dense (effort 1
  // only): a Hugging Face folder (config.json + *.safetensors [+ tokenizer.model]) or a
  // llama/mistral GGUF file (F32, F16, BF16 memory-mapped; q/k rows and Q8_0 converted copies).
  // Throws effort::Error naming the file and what was expected.
  static Model load(const std::filesystem::path& path, const LoadOptions& options = {});
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelConfig& config() const;
  // nullptr when the model came without a tokenizer; it then runs on token ids.
  const Tokenizer* tokenizer() const;
  Session new_session(const SessionOptions& options = {}) const;
  // True for a .effort model, whose projections run at adjustable effort.
  bool bucketed() const;
  // True for a .effort model whose head is bucketed too (Session::set_head_effort below 1).
  bool bucketed_head() const;
  // How the projections are stored: "dense", or "bucketsS" for buckets of S outputs.
  std::string layout() const;
  // The chat template of the model's metadata (GGUF tokenizer.chat_template, HF
  // tokenizer_config.json, carried into .effort files); empty when none.
  const std::string& chat_template() const;
  ChatFormat chat_format() const;  // detect_chat_format(chat_template())
  // A LoRA adapter for this model: a PEFT folder (adapter_config.json +
  // adapter_model.safetensors, F32/F16/BF16) or its .safetensors file, or a llama.cpp GGUF
  // adapter. Throws effort::Error naming the file and what does not fit this model.
  Adapter load_adapter(const std::filesystem::path& path) const;

  struct Impl;

 private:
  explicit Model(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// One conversation: owns its KV cache, scratch buffers and thread pool. Not thread-safe.
class Session {
 public:
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  // Feeds one token at position(), at the generation effort, and returns the logits for the
  // next position (valid until the next call).
  std::span<const float> forward(Token token);
  // Feeds prompt tokens in order, at the prompt effort; returns the logits after the last one.
  // At prompt effort 1, from 128 tokens on, .effort and Q8_0 models run them in batches through
  // weights unpacked to floats, which gives forward()'s logits to rounding; fewer, any number
  // below effort 1, or float weights, run as passes of up to 256 tokens through every layer, each
  // weight read once per 16 tokens, which gives forward()'s logits bit for bit.
  std::span<const float> prefill(std::span<const Token> tokens);
  // Feeds tokens in order at the generation effort, all in one pass over the weights, and
  // returns every one's next-token logits, [tokens.size()][vocab_size] (valid until the next
  // call): bit for bit what forward() gives for each in turn, early exit aside (a pass runs
  // every layer). What a speculative check does; for scoring a text.
  std::span<const float> forward_all(std::span<const Token> tokens);
  // Runs tokens[i] in sessions[i] (distinct sessions of one model), all in one pass over the
  // weights, each at its own position, generation effort, head effort and adapters, with its
  // own KV cache; returns each one's next-token logits (valid until that session's next call),
  // bit for bit what sessions[i]->forward(tokens[i]) gives. The first session's threads do the
  // work. Sessions with early exit or an activation observer are refused: a pass runs every
  // layer, and would show the observer its tokens interleaved.
  static std::vector<std::span<const float>> forward_together(std::span<Session* const> sessions,
                                                              std::span<const Token> tokens);
  // Generates for several sessions of one model together: prompts[i] is fed to sessions[i]
  // alone, then each step runs the next token of every generation still going in one pass
  // (forward_together), each sampled and stopped by its own options[i] (sampler, seed, stop
  // rules, limits, context shift) and handed to on_token(i, token, text). Each result is what
  // sessions[i]->generate(prompts[i], options[i]) gives alone, token for token. Speculative
  // decoding runs a session alone and is refused here, as are the sessions forward_together
  // refuses.
  using OnSessionToken = std::function<bool(std::size_t session, Token token, std::string_view text)>;
  static std::vector<GenerateResult> generate_together(std::span<Session* const> sessions,
                                                       std::span<const std::vector<Token>> prompts,
                                                       std::span<const GenerateOptions> options,
                                                       const OnSessionToken& on_token = {});
  // Feeds the prompt, then samples up to max_new_tokens. The last token generated is held
  // pending, not yet run through the model, so that a finished generation costs no extra pass:
  // position() does not count it, and the next forward(), prefill() or generate() runs it first
  // (at the generation effort, at position()), then its own tokens. A chat turn thus continues
  // where the last ended; reset() drops it with the rest.
  GenerateResult generate(std::span<const Token> prompt, const GenerateOptions& options = {},
                          const OnToken& on_token = {});
  // Encodes text (with BOS when the session is empty) and generates; needs a tokenizer.
  GenerateResult generate(std::string_view prompt, const GenerateOptions& options = {},
                          const OnToken& on_token = {});

  // Fraction of each projection's multiply-adds to do, in (0, 1], from the next matvec on.
  // Below 1 needs a bucketed model. The first form sets every kind.
  void set_effort(float effort);
  void set_effort(MatrixKind kind, float effort);
  // A per-layer schedule (e.g. lower effort in the middle layers): one layer, all or one kind.
  void set_layer_effort(int layer, float effort);
  void set_layer_effort(int layer, MatrixKind kind, float effort);
  // Effort of every projection while prompt tokens run (prefill, generate's prompt), in (0, 1];
  // default 1. Below 1 needs a bucketed model and runs the prompt token by token.
  void set_prompt_effort(float effort);
  float prompt_effort() const;
  // The output head's effort, in (0, 1], or 0 (the default): the value last given to
  // set_effort(float) (while a prompt runs, the prompt effort), but not below 0.25. Below 1, on
  // a .effort file with a bucketed head, a product at this effort ranks the vocabulary, the top
  // head candidates (default 64) get exact logits, the rest keep their estimates capped below
  // those: greedy is exact whenever the true argmax is a candidate. 1 keeps the head exact at
  // any projection effort.
  void set_head_effort(float effort);
  void set_head_candidates(int candidates);  // in [1, vocab_size]
  float head_effort() const;                 // the effective one
  float effort(MatrixKind kind) const;  // layer 0's
  float layer_effort(int layer, MatrixKind kind) const;
  const EffortStats& effort_stats() const;
  void reset_effort_stats();
  // The LoRA adapters applied from the next token on, replacing the previous ones (empty:
  // none). Each must have been loaded for this session's model.
  void set_adapters(std::vector<AdapterUse> adapters);
  const std::vector<AdapterUse>& adapters() const;
  // Calls observer with every projection's input from now on (empty: stop). For calibration.
  void set_activation_observer(ActivationObserver observer);
  // Throws effort::Error naming the bad field; takes effect from the next token.
  void set_early_exit(const EarlyExitOptions& options);
  // Layers run per token (exits included) since the last reset_effort_stats().
  double average_layers() const;
  // Seconds spent in exit checks since the last reset_effort_stats(): the scheduler's own cost.
  double exit_check_seconds() const;
  // The signals recorded with EarlyExitOptions::record_signals, handed over and cleared.
  std::vector<ExitSignal> take_exit_signals();

  // Drops `discard` tokens after the first `keep` from the KV cache; the later ones move down,
  // as if they had been fed at their new positions (to fp32 rounding). Needs a cache that holds
  // the whole context (no sliding window shorter than it).
  void shift_context(int keep, int discard);
  int context_shifts() const;  // how many shift_context() calls, generate's included

  // The keys and values held for `layer`: one row of num_key_value_heads * head_dim floats per
  // cache slot (slot = position, or position % sliding_window in a ring). For inspection.
  struct KvView {
    std::span<const float> keys, values;
  };
  KvView kv_cache(int layer) const;

  int position() const;        // tokens in the KV cache
  int context_length() const;  // the most it can hold
  void reset();                // empty the KV cache
  std::string_view kernel_arch() const;
  int num_threads() const;

  struct Impl;

 private:
  friend class Model;
  // What forward_together and generate_together refuse, named (effort::Error).
  static void check_together(std::span<Session* const> sessions);
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace effort

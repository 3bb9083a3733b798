// effort-run: generate text (or token ids) from a prompt, or chat, and print one stats line.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <tuple>

#include "cli.h"
#include "exit_flags.h"
#include "effort/effort.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-run [options]
  -m, --model PATH       a .effort file, a GGUF file (F32/F16/BF16 or quantized: runs dense) or a Hugging
                         Face checkpoint folder
                         (default: $EFFORT_MODEL, else the fixture model)
      --effort E         fraction of each projection's multiply-adds to do, in (0, 1] (default 1;
                         below 1 needs a .effort model)
      --effort-map LIST  per-kind efforts overriding --effort, e.g. down=0.2,up=0.3
                         (kinds: q, k, v, o, gate, up, down)
      --effort-layers LIST  per-layer efforts overriding the above, e.g. 8-23=0.4,24=0.6 (0-based)
      --head-effort E    effort of the output head, in (0, 1] (default --effort): below 1 a
                         product at E picks --head-candidates tokens whose logits are exact
      --head-candidates K  (default 64)
      --prompt-effort E  effort while the prompt runs, in (0, 1] (default 1: batched, full quality)
      --no-mmap          copy the weights into memory (huge pages) instead of mapping the file:
                         slower to load, faster to run where TLB misses are costly
      --mem-fraction F   map only the leading F of each bucketed matrix, in (0, 1] (default 1)
      --verify           read a .effort file whole and check every tensor's checksum first
      --lora FILE        apply a LoRA adapter at run time: a PEFT folder (or its .safetensors)
                         or a llama.cpp GGUF adapter; repeat for several
      --lora-scaled FILE S  the same at scale S
  -p, --prompt TEXT      prompt text (BOS is added), - reads it from standard input; default:
                         generate from BOS alone
  -f, --file FILE        prompt text from a file
      --prompt-ids LIST  prompt as comma-separated token ids, fed as given
  -n, --n-predict N      tokens to generate (default 256)
      --temp T           temperature, 0 = greedy (default 0.8)
      --top-k K          keep the K most likely tokens, 0 = all (default 40)
      --top-p P          nucleus mass in (0, 1] (default 0.95)
      --min-p P          drop tokens less than P times as likely as the top one, in [0, 1],
                         0 = off (default 0.05, as llama.cpp)
      --repeat-penalty R penalty > 0 on the last --repeat-last-n tokens, 1 = off (default 1)
      --repeat-last-n N  (default 64)
      --seed S           sampling seed (default: random, printed in the stats line)
  -t, --threads N        threads (default: all hardware threads)
  -c, --ctx-size N       context positions (default: min(model maximum, 4096))
      --arch NAME        kernels: scalar, avx2 or avx512 (default: the best this CPU runs)
      --early-exit       stop a token's pass at a check layer once the head is confident
      --exit-threshold T confidence 1-exp(-(top-2 logit gap)) needed, in [0, 1] (default 0.9)
      --exit-layers LIST 0-based layers to check after (default: three in the second half)
      --exit-patience P  agreeing checks needed (default 2)
      --exit-warmup W    no exits before W tokens (default 16)
      --exit-max-consecutive C  exits in a row before a full-depth token (default 8)
      --exit-calibration FILE  per-layer thresholds from effort-eval --calibrate
      --stop-gap G       end the answer once the top-2 logit gap exceeds G (default 0: off)
      --stop-burnout B   end it once the gap's summed change exceeds B (default 0: off)
      --ids              print generated token ids, comma-separated, instead of text
      --draft-effort E   self-speculative decoding: draft tokens at effort E in (0, 1), check
                         them in one pass at --effort; the output is that of --effort alone
      --draft-max K      tokens drafted per check, 1..16 (default: adaptive)
      --draft-exit       drafts exit early too (with the --exit-* options); checks run every layer
      --ignore-eos       keep generating past end-of-sequence
      --context-shift    when the context is full, drop the older half of the tokens after the
                         first --keep and go on (llama.cpp's context shift) instead of stopping
      --keep N           tokens at the start never dropped by --context-shift (default 0)
      --chat             chat on standard input, in the format of the model's chat template
                         (Mistral [INST], Llama-2 <<SYS>>, ChatML or Zephyr; [INST] without one)
      --system TEXT      a system prompt for --chat
  -v, --verbose          print the model's whole configuration at load
      --version          print the version
  -h, --help             this text
A one-line summary of the model goes to stderr at load; a stats line follows the output.
)";

struct Options {
  std::string model;
  std::string prompt;
  std::vector<Token> prompt_ids;
  bool have_prompt_ids = false;
  GenerateOptions generate;
  bool seed_given = false;
  SessionOptions session;
  bool print_ids = false;
  bool chat = false;
  bool draft_exit = false;
  std::string system;
  bool verbose = false;
  float effort = 1.0f;
  float prompt_effort = 1.0f;
  float head_effort = 0.0f;  // 0: --effort's
  int head_candidates = 0;   // 0: the session's default
  EarlyExitOptions early_exit;
  std::vector<std::pair<MatrixKind, float>> effort_map;
  std::vector<std::tuple<int, int, float>> effort_layers;  // first, last, effort
  LoadOptions load;
  std::vector<std::pair<std::string, float>> adapters;  // path, scale
};

Options parse(int argc, char** argv) {
  Options o;
  o.generate.max_new_tokens = 256;
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-m" || f == "--model") o.model = args.value();
    else if (f == "-p" || f == "--prompt") {
      o.prompt = args.value();
      if (o.prompt == "-") o.prompt = cli::read_all(std::cin, "standard input");
    } else if (f == "-f" || f == "--file") o.prompt = cli::read_file(f, args.value());
    else if (f == "--prompt-ids") {
      o.prompt_ids = cli::parse_id_list(f, args.value());
      o.have_prompt_ids = true;
    } else if (f == "-n" || f == "--n-predict") o.generate.max_new_tokens = int(cli::parse_int(f, args.value(), 0, 1 << 24));
    else if (f == "--temp") o.generate.sampling.temperature = float(cli::parse_number(f, args.value(), 0, 1e6));
    else if (f == "--top-k") o.generate.sampling.top_k = int(cli::parse_int(f, args.value(), 0, 1 << 30));
    else if (f == "--top-p") o.generate.sampling.top_p = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--min-p") o.generate.sampling.min_p = float(cli::parse_number(f, args.value(), 0, 1));
    else if (f == "--repeat-penalty") o.generate.sampling.repetition_penalty = float(cli::parse_number(f, args.value(), 0, 1e6, true));
    else if (f == "--repeat-last-n") o.generate.sampling.repetition_window = int(cli::parse_int(f, args.value(), 0, 1 << 30));
    else if (f == "--seed") {
      o.generate.sampling.seed = cli::parse_u64(f, args.value());
      o.seed_given = true;
    } else if (f == "-t" || f == "--threads") o.session.num_threads = int(cli::parse_int(f, args.value(), 1, 1024));
    else if (f == "-c" || f == "--ctx-size") o.session.context_length = int(cli::parse_int(f, args.value(), 1, 1 << 24));
    else if (f == "--arch") o.session.kernel_arch = args.value();
    else if (f == "--effort") o.effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--head-effort") o.head_effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--head-candidates") o.head_candidates = cli::parse_int(f, args.value(), 1, 1 << 24);
    else if (f == "--prompt-effort") o.prompt_effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--effort-map") o.effort_map = cli::parse_effort_map(f, args.value());
    else if (f == "--effort-layers") o.effort_layers = cli::parse_effort_layers(f, args.value());
    else if (f == "--no-mmap") o.load.use_mmap = false;
    else if (f == "--verify") o.load.verify = true;
    else if (f == "--lora") o.adapters.emplace_back(args.value(), 1.0f);
    else if (f == "--lora-scaled") {
      const std::string path = args.value();
      o.adapters.emplace_back(path, float(cli::parse_number(f, args.value(), -1e6, 1e6)));
    }
    else if (f == "--mem-fraction") o.load.mem_fraction = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--early-exit") o.early_exit.enabled = true;
    else if (f == "--exit-threshold") o.early_exit.threshold = float(cli::parse_number(f, args.value(), 0, 1));
    else if (cli::read_exit_schedule_flag(f, args, o.early_exit)) continue;
    else if (f == "--exit-calibration") cli::apply_exit_calibration(args.value(), o.early_exit);
    else if (f == "--stop-gap") o.generate.stop_gap = float(cli::parse_number(f, args.value(), 0, 1e6));
    else if (f == "--stop-burnout") o.generate.stop_burnout = float(cli::parse_number(f, args.value(), 0, 1e9));
    else if (f == "--ids") o.print_ids = true;
    else if (f == "--draft-effort") o.generate.speculative.draft_effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--draft-max") o.generate.speculative.draft_max = int(cli::parse_int(f, args.value(), 1, 16));
    else if (f == "--draft-exit") o.draft_exit = true;
    else if (f == "--ignore-eos") o.generate.stop_at_eos = false;
    else if (f == "--context-shift") o.generate.context_shift = true;
    else if (f == "--keep") o.generate.keep = int(cli::parse_int(f, args.value(), 0, 1 << 24));
    else if (f == "--chat") o.chat = true;
    else if (f == "--system") o.system = args.value();
    else if (f == "-v" || f == "--verbose") o.verbose = true;
    else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }
  if (o.have_prompt_ids && !o.prompt.empty()) throw cli::UsageError("give either -p or --prompt-ids, not both");
  if (o.chat && (o.have_prompt_ids || o.print_ids)) throw cli::UsageError("--chat takes no --prompt-ids or --ids");
  if (o.have_prompt_ids && o.prompt_ids.empty()) throw cli::UsageError("--prompt-ids: expected at least one id");
  if (!o.system.empty() && !o.chat) throw cli::UsageError("--system applies to --chat only");
  const SpeculativeOptions& spec = o.generate.speculative;
  if (spec.draft_effort >= 1) throw cli::UsageError("--draft-effort: expected a number in (0, 1), got 1");
  if ((spec.draft_max || o.draft_exit) && spec.draft_effort == 0)
    throw cli::UsageError("--draft-max and --draft-exit apply to speculative decoding: add --draft-effort E");
  if (spec.draft_effort > 0 && o.early_exit.enabled && !o.draft_exit)
    throw cli::UsageError("--early-exit would change the checks' output; with --draft-effort, use --draft-exit");
  if (o.draft_exit) o.early_exit.enabled = true;  // the session's early exit runs in the drafts only
  if (!o.seed_given) o.generate.sampling.seed = std::random_device{}();
  if (o.model.empty()) o.model = cli::default_model();
  return o;
}

// Prints tokens as they come: text, or ids separated by commas.
struct Printer {
  bool ids;
  bool first = true;
  bool operator()(Token token, std::string_view text) {
    if (ids) {
      std::printf("%s%d", first ? "" : ",", token);
    } else {
      std::fwrite(text.data(), 1, text.size(), stdout);
    }
    first = false;
    std::fflush(stdout);
    return true;
  }
};

void print_stats(const GenerationStats& s, const Session& session, std::uint64_t seed) {
  auto rate = [](int n, double sec) { return sec > 0 ? n / sec : 0.0; };
  const EffortStats& e = session.effort_stats();
  char part[48];
  std::snprintf(part, sizeof part, "mult %.1f%%", 100 * e.overall());
  std::string mults = part;
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    std::snprintf(part, sizeof part, " %s %.1f%%", std::string(matrix_kind_name(MatrixKind(k))).c_str(),
                  100 * e.fraction(MatrixKind(k)));
    mults += part;
  }
  std::snprintf(part, sizeof part, " | head effort %g", session.head_effort());
  mults += part;
  if (!e.expert_uses.empty()) {
    double total = 0;
    for (double u : e.expert_uses) total += u;
    std::string uses = "\n[experts] chosen:";
    for (std::size_t i = 0; i < e.expert_uses.size(); ++i) {
      std::snprintf(part, sizeof part, " %zu %.0f%%", i, total > 0 ? 100 * e.expert_uses[i] / total : 0.0);
      uses += part;
    }
    std::fputs(uses.c_str(), stderr);
  }
  if (s.checks > 0)
    std::fprintf(stderr, "\n[speculative] drafted %d, accepted %d (%.1f%%), %.2f tokens per check",
                 s.drafted, s.accepted, s.drafted ? 100.0 * s.accepted / s.drafted : 0.0,
                 double(s.generated_tokens) / s.checks);
  std::fprintf(stderr,
               "\n[stats] prompt %d tokens %.1f tok/s | generation %d tokens %.1f tok/s | %s | layers %.2f | "
               "peak rss %.0f MB | threads %d | %.*s | seed %llu\n",
               s.prompt_tokens, rate(s.prompt_tokens, s.prompt_seconds), s.generated_tokens,
               rate(s.generated_tokens, s.generation_seconds), mults.c_str(), session.average_layers(), cli::peak_rss_mb(),
               session.num_threads(),
               int(session.kernel_arch().size()), session.kernel_arch().data(), (unsigned long long)seed);
}

int run_chat(const Model& model, Session& session, const Options& o) {
  const Tokenizer* tokenizer = model.tokenizer();
  if (!tokenizer) throw Error(ErrorCode::invalid_argument, "--chat needs a model with a tokenizer");
  const bool interactive = isatty(STDIN_FILENO);
  const ChatFormat format = model.chat_format();
  std::fprintf(stderr, "[chat] %.*s format (%s)\n", int(chat_format_name(format).size()), chat_format_name(format).data(),
               model.chat_template().empty() ? "the model has no chat template: Mistral's [INST] format"
                                             : "from the model's chat template");
  GenerationStats total;
  std::string line;
  for (;;) {
    if (interactive) std::fputs("\n> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    const bool first = session.position() == 0;
    const auto turn = tokenizer->encode_with_special(chat_user_turn(format, o.system, line, first), first);
    Printer printer{false};
    const auto result = session.generate(std::span<const Token>(turn), o.generate, std::ref(printer));
    std::fputc('\n', stdout);
    std::fflush(stdout);
    // The template closes every answer (with </s>, <|im_end|>, ...); the model stopped before it.
    if (result.stop_reason == StopReason::eos) session.prefill(tokenizer->encode_with_special(chat_answer_end(format), false));
    total.prompt_tokens += result.stats.prompt_tokens;
    total.prompt_seconds += result.stats.prompt_seconds;
    total.generated_tokens += result.stats.generated_tokens;
    total.generation_seconds += result.stats.generation_seconds;
    total.drafted += result.stats.drafted;
    total.accepted += result.stats.accepted;
    total.checks += result.stats.checks;
    if (result.stop_reason == StopReason::context_full) {
      std::fprintf(stderr, "[context full: all %d positions used; start again with a larger -c]\n", session.context_length());
      break;
    }
  }
  print_stats(total, session, o.generate.sampling.seed);
  return 0;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const Model model = Model::load(o.model, o.load);
  cli::print_model_summary(o.model, model, o.verbose);
  Session session = model.new_session(o.session);
  session.set_effort(o.effort);
  session.set_prompt_effort(o.prompt_effort);
  session.set_head_effort(o.head_effort);
  if (o.head_candidates) session.set_head_candidates(o.head_candidates);
  for (const auto& [kind, effort] : o.effort_map) session.set_effort(kind, effort);
  for (const auto& [first, last, effort] : o.effort_layers)
    for (int l = first; l <= last; ++l) session.set_layer_effort(l, effort);
  if (o.early_exit.enabled) session.set_early_exit(o.early_exit);
  std::vector<AdapterUse> adapters;
  for (const auto& [path, scale] : o.adapters) {
    adapters.push_back({model.load_adapter(path), scale});
    const Adapter& a = adapters.back().adapter;
    std::fprintf(stderr, "[lora] %s: %s, rank %d, alpha %g, %d projections, scale %g\n", a.name().c_str(),
                 std::string(a.format()).c_str(), a.rank(), double(a.alpha()), a.num_pairs(), double(scale));
  }
  session.set_adapters(std::move(adapters));
  if (o.chat) return run_chat(model, session, o);

  std::vector<Token> prompt = o.prompt_ids;
  if (!o.have_prompt_ids) {
    if (model.tokenizer()) {
      prompt = model.tokenizer()->encode(o.prompt, true);
    } else if (!o.prompt.empty()) {
      throw Error(ErrorCode::invalid_argument, o.model + " has no tokenizer.model: give the prompt with --prompt-ids");
    } else {
      prompt = {model.config().bos_token_id};
    }
  }
  // Checked before anything is printed: a prompt must leave room for one generated token.
  if (int(prompt.size()) >= session.context_length())
    throw cli::UsageError("the prompt has " + std::to_string(prompt.size()) + " tokens; the context holds " +
                          std::to_string(session.context_length()) + " positions (raise -c or shorten the prompt)");
  Printer printer{o.print_ids};
  if (!o.print_ids) std::fputs(o.prompt.c_str(), stdout);
  const auto result = session.generate(std::span<const Token>(prompt), o.generate, std::ref(printer));
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (result.stop_reason == StopReason::context_full)
    std::fprintf(stderr, "[context full: generation stopped after %d tokens, all %d positions used; raise -c or use --context-shift]\n",
                 result.stats.generated_tokens, session.context_length());
  if (session.context_shifts() > 0)
    std::fprintf(stderr, "[context shift: %d times, keeping the first %d tokens]\n", session.context_shifts(), o.generate.keep);
  print_stats(result.stats, session, o.generate.sampling.seed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-run", argc, argv, run); }

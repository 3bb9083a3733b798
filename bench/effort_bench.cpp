// effort-bench: prompt (pp) and generation (tg) tokens per second, as llama-bench measures them,
// so that the two tables can be put side by side: pp = a prompt of N tokens in a fresh context,
// tg = N tokens generated one at a time (greedy: the argmax is fed back). Every repetition is
// kept in the JSON output.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "cli.h"
#include "effort/effort.h"
#include "exit_flags.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-bench -m MODEL [options]
  -m, --model PATH       a .effort file, a GGUF file or a Hugging Face checkpoint folder
  -p, --n-prompt LIST    prompt lengths, one pp test each (default 512; 0: none)
  -n, --n-gen LIST       generated tokens, one tg test each (default 128; 0: none)
  -d, --depth LIST       tokens already in the context before each test (default 0)
  -r, --repetitions N    timed repetitions per test, after one warm-up run (default 5)
  -t, --threads LIST     thread counts (default: all hardware threads)
      --effort LIST      generation efforts, one tg test each (default 1; below 1 needs .effort)
      --prompt-effort E  effort of the pp tests, in (0, 1] (default 1: batched)
      --head-effort E    effort of the output head, in (0, 1] (default: each test's effort,
                         as effort-run)
      --mem-fraction F   map only the leading F of each bucketed matrix (default 1)
      --no-mmap          copy the weights into memory (huge pages), as llama-bench -mmp 0
      --arch NAME        kernels: scalar, avx2 or avx512 (default: the best this CPU runs)
      --early-exit       tg tests with early exit; --exit-threshold T, --exit-calibration FILE,
                         --exit-layers, --exit-patience, --exit-warmup, --exit-max-consecutive as
                         for effort-run
      --draft-effort LIST  tg tests with self-speculative decoding, drafts at each effort
                         (checks at --effort); --draft-max K fixes the draft length (default:
                         adaptive). Greedy, the same tokens as without; rows add drafted,
                         accepted and tokens per check
      --lora FILE        every test twice, without and with this LoRA adapter, their repetitions
                         interleaved (the adapter's cost per token, same conditions)
      --parallel LIST    tg tests of N sequences decoded together (Session::forward_together,
                         one pass over the weights per step, each from its own prompt): rows
                         give the aggregate t/s and the per-sequence t/s (JSON: parallel,
                         tps_aggregate); the N of one test interleave their repetitions
      --check LIST       tests of a speculative check of K tokens (Session::forward_all, every
                         token's logits, at --effort): rows give ms per check and its cost
                         against the first K listed; the K interleave their repetitions
      --stages           after the table, where a generated token's time goes (also in JSON)
  -o, --output FORMAT    md (a llama-bench-shaped table, default) or json (a list of objects with
                         model, threads, effort, test, tps_mean, tps_sd, reps, peak_rss_mb, ...)
  -h, --help             this text
Prompts are pseudo-random token ids (fixed seed), as in llama-bench: the speed does not depend
on the text. peak_rss_mb is the process's peak resident memory after the test.
)";

struct Options {
  std::string model;
  std::vector<int> n_prompt = {512}, n_gen = {128}, depths = {0};
  int repetitions = 5;
  std::vector<int> threads;
  std::vector<float> efforts = {1.0f};
  std::vector<float> draft_efforts;  // speculative tg tests, besides the plain ones
  int draft_max = 0;
  float prompt_effort = 1.0f;
  float head_effort = 0.0f;  // 0: each test's effort
  LoadOptions load;
  std::string arch;
  EarlyExitOptions early_exit;
  bool json = false;
  bool stages = false;
  std::string lora;  // adapter file: each test also runs with it
  std::vector<int> parallel;  // sequences decoded together, one tg test each
  std::vector<int> checks;    // check lengths, one test each
};

std::vector<int> parse_counts(const std::string& flag, const std::string& text, int min) {
  std::vector<int> values;
  for (const auto& item : cli::split_list(text)) values.push_back(int(cli::parse_int(flag, item, min, 1 << 24)));
  if (values.empty()) throw cli::UsageError(flag + ": expected a comma-separated list");
  return values;
}

Options parse(int argc, char** argv) {
  Options o;
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-m" || f == "--model") o.model = args.value();
    else if (f == "-p" || f == "--n-prompt") o.n_prompt = parse_counts(f, args.value(), 0);
    else if (f == "-n" || f == "--n-gen") o.n_gen = parse_counts(f, args.value(), 0);
    else if (f == "-d" || f == "--depth") o.depths = parse_counts(f, args.value(), 0);
    else if (f == "-r" || f == "--repetitions") o.repetitions = int(cli::parse_int(f, args.value(), 1, 1 << 16));
    else if (f == "-t" || f == "--threads") o.threads = parse_counts(f, args.value(), 1);
    else if (f == "--effort") {
      o.efforts.clear();
      for (const auto& e : cli::split_list(args.value())) o.efforts.push_back(float(cli::parse_number(f, e, 0, 1, true)));
      if (o.efforts.empty()) throw cli::UsageError(f + ": expected a comma-separated list");
    } else if (f == "--prompt-effort") o.prompt_effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--head-effort") o.head_effort = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--no-mmap") o.load.use_mmap = false;
    else if (f == "--mem-fraction") o.load.mem_fraction = float(cli::parse_number(f, args.value(), 0, 1, true));
    else if (f == "--arch") o.arch = args.value();
    else if (f == "--early-exit") o.early_exit.enabled = true;
    else if (f == "--exit-threshold") o.early_exit.threshold = float(cli::parse_number(f, args.value(), 0, 1));
    else if (f == "--exit-calibration") cli::apply_exit_calibration(args.value(), o.early_exit);
    else if (cli::read_exit_schedule_flag(f, args, o.early_exit)) continue;
    else if (f == "--stages") o.stages = true;
    else if (f == "--lora") o.lora = args.value();
    else if (f == "--parallel") o.parallel = parse_counts(f, args.value(), 1);
    else if (f == "--check") o.checks = parse_counts(f, args.value(), 1);
    else if (f == "--draft-effort") {
      for (const auto& item : cli::split_list(args.value()))
        o.draft_efforts.push_back(float(cli::parse_number(f, item, 0, 1, true)));
      for (float d : o.draft_efforts)
        if (d >= 1) throw cli::UsageError("--draft-effort: expected efforts in (0, 1), got 1");
    } else if (f == "--draft-max") o.draft_max = int(cli::parse_int(f, args.value(), 1, 16));
    else if (f == "-o" || f == "--output") {
      const std::string format = args.value();
      if (format != "md" && format != "json") throw cli::UsageError(f + ": expected md or json, got '" + format + "'");
      o.json = format == "json";
    } else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }
  if (o.model.empty()) throw cli::UsageError("missing -m MODEL");
  if (o.threads.empty()) o.threads = {int(std::max(1u, std::thread::hardware_concurrency()))};
  return o;
}

// What llama-bench prints in its model, size and params columns.
struct ModelFacts {
  std::string name;
  double size_bytes = 0;
  double params = 0;
};

ModelFacts describe(const std::string& path, const Model& model) {
  namespace fs = std::filesystem;
  ModelFacts facts;
  facts.name = fs::path(path).filename().string();
  if (facts.name.empty()) facts.name = fs::path(path).parent_path().filename().string();
  facts.name += " (" + model.layout() + ")";
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.path().extension() == ".safetensors") facts.size_bytes += double(entry.file_size());
  } else {
    facts.size_bytes = double(fs::file_size(path));
  }
  const ModelConfig& c = model.config();
  const double hidden = c.hidden_size, q = double(c.num_attention_heads) * c.head_dim,
               kv = double(c.num_key_value_heads) * c.head_dim, vocab = c.vocab_size;
  const double layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * c.intermediate_size + 2 * hidden;
  facts.params = vocab * hidden * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * layer + hidden;
  return facts;
}

// Pseudo-random ids (splitmix64), BOS first: a fixed, tokenizer-independent prompt.
std::vector<Token> bench_tokens(const ModelConfig& c, std::size_t n, std::uint64_t seed) {
  std::vector<Token> ids;
  if (n) ids.push_back(c.bos_token_id);
  while (ids.size() < n) ids.push_back(Token(bench::splitmix64(seed) % std::uint64_t(c.vocab_size)));
  return ids;
}

struct Test {
  std::string name;  // pp512, tg128, tg128@d512, check4
  int n_prompt = 0, n_gen = 0, depth = 0;
  float effort = 1.0f;
  float draft_effort = 0;  // > 0: speculative decoding with drafts at this effort
  bool lora = false;       // with Options::lora's adapter
  int parallel = 0;        // > 0: this many sequences decoded together
  int check = 0;           // > 0: checks of this many tokens
  int group = 0;           // consecutive tests of one group interleave their repetitions
};

// Checks timed per repetition: one is a few milliseconds of work.
constexpr int kChecksPerRun = 4;

// Milliseconds per generated token in each stage (EffortStats), summed over repetitions.
struct Stages {
  double multiply = 0, dispatch = 0, attention = 0, head = 0, total = 0;
  double megabytes = 0;  // weight bytes read per token (projections and head), in MB
  double other() const { return total - multiply - dispatch - attention - head; }
};

struct Result {
  Test test;
  int threads = 0;
  std::vector<double> tps;       // aggregate over a parallel test's sequences
  std::vector<double> check_ms;  // a check test's milliseconds per check
  double peak_rss_mb = 0, mult = 0, layers = 0;
  Stages stages;  // per token, averaged over repetitions (tg tests)
  GenerationStats speculation;  // drafted, accepted, checks summed over repetitions
};

// One run of a test: seconds for its timed part. `more` are the sessions a parallel test
// decodes beside `session`.
double run_once(Session& session, std::vector<Session>& more, const Test& t, const ModelConfig& c, int draft_max,
                GenerationStats* speculation) {
  using Clock = std::chrono::steady_clock;
  session.reset();
  if (t.parallel) {
    // Each sequence from its own short prompt (untimed), so that their effort lists differ as
    // different conversations' do; then every step one token each, greedy.
    std::vector<Session*> sessions = {&session};
    for (int i = 1; i < t.parallel; ++i) sessions.push_back(&more[std::size_t(i - 1)]);
    std::vector<Token> next;
    for (std::size_t i = 0; i < sessions.size(); ++i) {
      if (i) sessions[i]->reset();
      const auto z = sessions[i]->prefill(bench_tokens(c, 4, 10 + i));
      next.push_back(Token(std::max_element(z.begin(), z.end()) - z.begin()));
      sessions[i]->reset_effort_stats();
    }
    const auto start = Clock::now();
    for (int step = 0; step < t.n_gen; ++step) {
      const auto logits = Session::forward_together(sessions, next);
      for (std::size_t i = 0; i < sessions.size(); ++i)
        next[i] = Token(std::max_element(logits[i].begin(), logits[i].end()) - logits[i].begin());
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  if (t.check) {
    session.prefill(std::vector<Token>{c.bos_token_id});
    const auto tokens = bench_tokens(c, std::size_t(t.check) + 1, 3);
    session.reset_effort_stats();
    const auto start = Clock::now();
    for (int i = 0; i < kChecksPerRun; ++i) session.forward_all(std::span<const Token>(tokens).subspan(1));
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  if (t.depth) session.prefill(bench_tokens(c, std::size_t(t.depth), 1));
  if (t.n_prompt) {
    const auto prompt = bench_tokens(c, std::size_t(t.n_prompt), 2);
    const auto start = Clock::now();
    session.prefill(t.depth ? std::span<const Token>(prompt).subspan(1) : std::span<const Token>(prompt));
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  if (t.draft_effort > 0) {
    // Greedy through generate(), which speculates; BOS (or the depth's last token) untimed.
    GenerateOptions g;
    g.max_new_tokens = t.n_gen;
    g.sampling.temperature = 0;
    g.stop_at_eos = false;
    g.speculative = {.draft_effort = t.draft_effort, .draft_max = draft_max};
    const Token first = c.bos_token_id;
    session.reset_effort_stats();
    const GenerateResult r = session.generate(std::span<const Token>(&first, 1), g);
    if (speculation) {
      speculation->drafted += r.stats.drafted;
      speculation->accepted += r.stats.accepted;
      speculation->checks += r.stats.checks;
    }
    return r.stats.generation_seconds;
  }
  // Generation from BOS (or the depth's last token), untimed, then n tokens fed back greedily.
  auto logits = t.depth ? session.forward(c.bos_token_id) : session.prefill(std::vector<Token>{c.bos_token_id});
  session.reset_effort_stats();
  const auto start = Clock::now();
  for (int i = 0; i < t.n_gen; ++i) {
    const Token next = Token(std::max_element(logits.begin(), logits.end()) - logits.begin());
    logits = session.forward(next);
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<Test> tests_of(const Options& o) {
  std::vector<Test> tests;
  int group = 0;
  auto add = [&](Test t) {
    t.group = group;
    tests.push_back(t);
  };
  for (int depth : o.depths) {
    const std::string at = depth ? "@d" + std::to_string(depth) : "";
    // Prompts run at the prompt effort whatever the generation effort: one pp test each.
    for (int p : o.n_prompt)
      if (p) add({"pp" + std::to_string(p) + at, p, 0, depth, o.prompt_effort}), ++group;
    for (float e : o.efforts) {
      for (int n : o.n_gen) {
        if (!n) continue;
        if (o.parallel.empty()) add({"tg" + std::to_string(n) + at, 0, n, depth, e}), ++group;
        for (int p : o.parallel) add({"tg" + std::to_string(n) + at, 0, n, depth, e, 0, false, p});
        if (!o.parallel.empty()) ++group;
        for (float d : o.draft_efforts)  // drafts cheaper than the checks only
          if (d < e) add({"tg" + std::to_string(n) + at, 0, n, depth, e, d}), ++group;
      }
      for (int k : o.checks) add({"check" + std::to_string(k) + at, 0, 0, depth, e, 0, false, 0, k});
      if (!o.checks.empty()) ++group;
    }
  }
  if (o.lora.empty()) return tests;
  std::vector<Test> twins;  // each test, then the same with the adapter, in one group
  for (const Test& t : tests) {
    twins.push_back(t);
    twins.back().group = int(twins.size());
    twins.push_back(twins.back());
    twins.back().lora = true;
  }
  return twins;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const Model model = Model::load(o.model, o.load);
  const ModelFacts facts = describe(o.model, model);
  const auto tests = tests_of(o);
  const std::optional<Adapter> adapter = o.lora.empty() ? std::nullopt : std::optional<Adapter>(model.load_adapter(o.lora));
  int context = 1;
  for (const Test& t : tests)
    context = std::max(context, t.depth + std::max({t.n_prompt, t.n_gen + 5, 1 + t.check * kChecksPerRun}));
  if (context > model.config().max_position_embeddings)
    throw cli::UsageError("depth + tokens need " + std::to_string(context) + " positions; the model has " +
                          std::to_string(model.config().max_position_embeddings));

  std::vector<Result> results;
  std::string backend;
  for (int threads : o.threads) {
    // The KV cache holds what the longest test needs, as llama-bench sizes its context.
    Session session = model.new_session({.num_threads = threads, .context_length = context, .kernel_arch = o.arch});
    std::vector<Session> more;  // a parallel test's other sequences
    backend = "CPU " + std::string(session.kernel_arch());
    session.set_prompt_effort(o.prompt_effort);
    session.set_head_effort(o.head_effort);
    // A test and its adapter twin run their repetitions in turns, so that the machine's drift
    // falls on both alike.
    for (std::size_t first = 0; first < tests.size();) {
      std::size_t last = first + 1;
      while (last < tests.size() && tests[last].group == tests[first].group) ++last;
      std::vector<Result> group;
      auto prepare = [&](const Test& t) {
        session.set_effort(t.n_gen || t.check ? t.effort : 1.0f);
        session.set_early_exit(t.n_gen && !t.parallel ? o.early_exit : EarlyExitOptions{});
        session.set_adapters(t.lora ? std::vector<AdapterUse>{{*adapter, 1.0f}} : std::vector<AdapterUse>{});
        for (Session& s : more) {
          s.set_effort(t.effort);
          s.set_head_effort(o.head_effort);
        }
      };
      for (std::size_t i = first; i < last; ++i) {
        const Test& t = tests[i];
        group.push_back(Result{t, threads, {}, {}, 0, 0, 0, {}, {}});
        std::fprintf(stderr, "[bench] %s, %d threads, effort %g%s: %d repetitions after a warm-up\n", t.name.c_str(), threads,
                     t.effort, t.lora ? ", adapter" : "", o.repetitions);
        prepare(t);
        while (int(more.size()) + 1 < t.parallel)
          more.push_back(model.new_session({.num_threads = threads, .context_length = context, .kernel_arch = o.arch}));
        run_once(session, more, t, model.config(), o.draft_max, nullptr);  // warm-up: pages mapped, caches and pool warm
      }
      std::vector<double> mults(group.size()), layer_sums(group.size());
      for (int i = 0; i < o.repetitions; ++i)
        for (std::size_t g = 0; g < group.size(); ++g) {
          Result& r = group[g];
          const Test& t = r.test;
          double& mult = mults[g];
          double& layers = layer_sums[g];
          prepare(t);
          const double seconds = run_once(session, more, t, model.config(), o.draft_max, &r.speculation);
          r.tps.push_back(double(t.n_prompt + t.n_gen * std::max(1, t.parallel) + t.check * kChecksPerRun) / seconds);
          r.check_ms.push_back(seconds * 1e3 / kChecksPerRun);
          const EffortStats& e = session.effort_stats();
          mult += e.overall();
          layers += session.average_layers();
          const double per_token = 1e3 / double(std::max(1, t.n_gen) * o.repetitions);
          r.stages.multiply += e.multiply_seconds * per_token;
          r.stages.dispatch += e.dispatch_seconds * per_token;
          r.stages.attention += e.attention_seconds * per_token;
          r.stages.head += e.head_seconds * per_token;
          r.stages.total += seconds * per_token;
          r.stages.megabytes += (e.projection_bytes + e.head_bytes) * per_token * 1e-9;
        }
      for (std::size_t g = 0; g < group.size(); ++g) {
        Result& r = group[g];
        const Test& t = r.test;
        r.mult = t.n_gen ? mults[g] / o.repetitions : t.effort;
        r.layers = t.n_gen ? layer_sums[g] / o.repetitions : model.config().num_hidden_layers;
        r.peak_rss_mb = cli::peak_rss_mb();
        std::fprintf(stderr, "[bench] %s, %d threads, effort %g%s: %.2f t/s\n", t.name.c_str(), threads, t.effort,
                     t.lora ? ", adapter" : "", bench::mean(r.tps));
        results.push_back(std::move(r));
      }
      first = last;
    }
  }

  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Result& r : results) {
      out.push_back({{"model", facts.name},
                     {"model_path", o.model},
                     {"size_bytes", facts.size_bytes},
                     {"params", facts.params},
                     {"backend", backend},
                     {"threads", r.threads},
                     {"effort", r.test.effort},
                     {"mem_fraction", o.load.mem_fraction},
                     {"mmap", o.load.use_mmap},
                     {"early_exit", r.test.n_gen > 0 && o.early_exit.enabled},
                     {"lora", r.test.lora ? o.lora : ""},
                     {"test", r.test.name},
                     {"n_prompt", r.test.n_prompt},
                     {"n_gen", r.test.n_gen},
                     {"depth", r.test.depth},
                     {"tps_mean", bench::mean(r.tps)},
                     {"tps_sd", bench::sd(r.tps)},
                     {"reps", r.tps},
                     {"mult_fraction", r.mult},
                     {"avg_layers", r.layers},
                     {"peak_rss_mb", r.peak_rss_mb}});
      if (r.test.draft_effort > 0) {
        const GenerationStats& sp = r.speculation;
        out.back()["draft_effort"] = r.test.draft_effort;
        out.back()["drafted"] = sp.drafted;
        out.back()["accepted"] = sp.accepted;
        out.back()["acceptance"] = sp.drafted ? double(sp.accepted) / sp.drafted : 0.0;
        out.back()["tokens_per_check"] = sp.checks ? double(r.test.n_gen * o.repetitions) / sp.checks : 0.0;
      }
      if (r.test.parallel) {
        out.back()["parallel"] = r.test.parallel;
        out.back()["tps_aggregate"] = bench::mean(r.tps);
        out.back()["tps_mean"] = bench::mean(r.tps) / r.test.parallel;  // per sequence
        out.back()["tps_sd"] = bench::sd(r.tps) / r.test.parallel;
      }
      if (r.test.check) {
        out.back()["check_tokens"] = r.test.check;
        out.back()["check_ms"] = bench::median(r.check_ms);
        out.back()["check_ms_reps"] = r.check_ms;
      }
      if (r.test.n_gen && !r.test.parallel) {
        out.back()["stages_ms_per_token"] = {{"multiply", r.stages.multiply}, {"dispatch", r.stages.dispatch},
                                             {"attention", r.stages.attention}, {"head", r.stages.head},
                                             {"other", r.stages.other()}, {"total", r.stages.total}};
        out.back()["megabytes_per_token"] = r.stages.megabytes;
      }
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("| model | size | params | backend | threads | effort | test | t/s | peak RSS |\n");
  std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Result& r : results) {
    char effort[128];
    std::snprintf(effort, sizeof effort, "%g", r.test.effort);
    if (r.test.draft_effort > 0) {
      const GenerationStats& sp = r.speculation;
      std::snprintf(effort + std::strlen(effort), sizeof effort - std::strlen(effort), " draft %g (%.0f%% kept, %.2f/check)",
                    r.test.draft_effort, sp.drafted ? 100.0 * sp.accepted / sp.drafted : 0.0,
                    sp.checks ? double(r.test.n_gen * o.repetitions) / sp.checks : 0.0);
    }
    if (r.test.n_gen && o.early_exit.enabled)
      std::snprintf(effort + std::strlen(effort), sizeof effort - std::strlen(effort), " +exit (%.2f layers)", r.layers);
    if (r.test.lora) std::snprintf(effort + std::strlen(effort), sizeof effort - std::strlen(effort), " +lora");
    if (r.test.parallel)
      std::snprintf(effort + std::strlen(effort), sizeof effort - std::strlen(effort), " x%d sequences (%.2f t/s each)",
                    r.test.parallel, bench::mean(r.tps) / r.test.parallel);
    if (r.test.check) {
      // Against the first check length listed, measured in the same interleaved runs.
      const Result* base = nullptr;
      for (const Result& b : results)
        if (b.test.check && b.test.group == r.test.group && b.threads == r.threads && !base) base = &b;
      std::snprintf(effort + std::strlen(effort), sizeof effort - std::strlen(effort), " %.1f ms/check (%.2fx check%d)",
                    bench::median(r.check_ms), bench::median(r.check_ms) / bench::median(base->check_ms), base->test.check);
    }
    const bool gib = facts.size_bytes >= double(1 << 30);
    std::printf("| %s | %.2f %s | %.2f %s | %s | %d | %s | %s | %.2f ± %.2f | %.0f MB |\n", facts.name.c_str(),
                facts.size_bytes / double(gib ? 1 << 30 : 1 << 20), gib ? "GiB" : "MiB", facts.params >= 1e9 ? facts.params / 1e9 : facts.params / 1e6,
                facts.params >= 1e9 ? "B" : "M", backend.c_str(), r.threads, effort, r.test.name.c_str(),
                bench::mean(r.tps), bench::sd(r.tps), r.peak_rss_mb);
  }
  if (!o.stages) return 0;
  // The memory roof of each thread count, measured now: a token's bytes at that bandwidth are
  // the least time it can take.
  std::map<int, double> roof;
  for (const Result& r : results)
    if (r.test.n_gen && !r.test.parallel && !roof.count(r.threads)) roof[r.threads] = bench::stream_bandwidth(r.threads);
  std::printf("\nms per generated token (projections = multiply + dispatch; head = output projection; other =\n"
              "embedding, norms, residuals, SwiGLU, exit checks, sampling); MB of weights read per token, and\n"
              "those bytes per second against the memory roof (a plain read of 1 GiB with as many threads):\n\n");
  for (const auto& [t, bps] : roof) std::printf("memory roof, %d thread%s: %.1f GB/s\n", t, t == 1 ? "" : "s", bps / 1e9);
  std::printf("\n| threads | effort | test | total | multiply | dispatch | attention | head | other | MB | GB/s | of roof |\n");
  std::printf("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Result& r : results) {
    if (!r.test.n_gen || r.test.parallel) continue;
    const Stages& s = r.stages;
    auto part = [&](double ms) { return std::to_string(ms).substr(0, 6) + " (" + std::to_string(int(std::lround(100 * ms / s.total))) + "%)"; };
    const double gbps = s.megabytes / s.total;  // MB per ms = GB/s
    std::printf("| %d | %g | %s | %.2f | %s | %s | %s | %s | %s | %.1f | %.1f | %.0f%% |\n", r.threads, r.test.effort,
                r.test.name.c_str(), s.total, part(s.multiply).c_str(), part(s.dispatch).c_str(), part(s.attention).c_str(),
                part(s.head).c_str(), part(s.other()).c_str(), s.megabytes, gbps, 100 * gbps * 1e9 / roof[r.threads]);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-bench", argc, argv, run); }

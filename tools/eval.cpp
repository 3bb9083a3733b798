// effort-eval: teacher-forced quality of effort settings against the full model: perplexity,
// KL divergence, top-1 agreement, work done and speed.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "cli.h"
#include "effort/effort.h"
#include "effort/eval.h"
#include "exit_flags.h"
#include "svg_plot.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-eval -m MODEL (--text FILE | --ids FILE) [options]
  -m, --model PATH     the model to evaluate (.effort file, GGUF file or HF checkpoint folder)
      --text FILE      text to evaluate on (tokenized with BOS)
      --ids FILE       token ids, separated by commas or white space (fed as given)
      --effort LIST    effort settings to evaluate (default 1,0.5,0.25; 1 for a dense model)
      --head-effort LIST  head efforts to evaluate each --effort with (default 0: each --effort's
                       own; 1: the exact head); --head-candidates K (default 64)
      --reference PATH the full model to compare with (default: MODEL at effort 1)
  -c, --ctx-size N     evaluate in windows of N tokens (default: min(model maximum, 512))
      --early-exit     also evaluate each effort with early exit, once per --exit-threshold
      --exit-threshold LIST  (default 0.9); --exit-layers, --exit-patience, --exit-warmup,
      --exit-max-consecutive as for effort-run; --exit-calibration FILE adds a calibrated setting
      --calibrate      instead: pick per-layer exit thresholds on the text (teacher-forced, at the
                       first --effort) so that top-1 disagreement with the full model among the
                       tokens that would exit stays under --target-disagreement (default 0.01);
                       writes --calibration-out FILE (default exit-calibration.json)
  -t, --threads N      threads (default: all hardware threads)
      --json           print a JSON list instead of a markdown table
      --plot FILE      also write an SVG plot of KL against time relative to the reference
  -h, --help           this text
Each window starts a fresh context; every position's next-token distribution is compared with
the reference's (KL(reference || model), same argmax), and the actual next token scores perplexity.
)";

std::vector<Token> read_ids(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::io, "--ids: cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  for (char& ch : s)
    if (ch == ',') ch = ' ';
  std::istringstream words(s);
  std::vector<Token> ids;
  std::string word;
  while (words >> word) ids.push_back(Token(cli::parse_int("--ids " + path, word, 0, INT32_MAX)));
  return ids;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "--text: cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Teacher-forced logits of every position of a window; returns seconds spent in forward passes.
double run_window(Session& session, std::span<const Token> window, std::vector<float>& logits) {
  session.reset();
  logits.clear();
  const auto start = std::chrono::steady_clock::now();
  for (Token t : window) {
    const auto z = session.forward(t);
    logits.insert(logits.end(), z.begin(), z.end());
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Per check layer: the lowest confidence at which the tokens that would exit still agree with
// the full model's top-1 often enough (calibrate_exit_threshold).
int run_calibration(const Model& model, Session& session, Session& full,
                    const std::function<void(const std::function<void(std::span<const Token>, std::size_t)>&)>& windows,
                    float effort, EarlyExitOptions options, double target, const std::string& out_path, std::size_t vocab) {
  options.record_signals = true;
  options.threshold = 1.0f;
  options.warmup = 0;
  std::vector<float> logits, full_logits;
  std::map<int, std::vector<std::pair<float, bool>>> by_layer;  // layer -> (confidence, agrees)
  std::size_t positions = 0;
  windows([&](std::span<const Token> chunk, std::size_t) {
    run_window(full, chunk, full_logits);
    session.set_effort(effort);
    session.set_early_exit(options);
    run_window(session, chunk, logits);
    for (const ExitSignal& s : session.take_exit_signals()) {
      const std::size_t t = std::size_t(s.position);
      const auto row = std::span<const float>(full_logits.data() + t * vocab, vocab);
      by_layer[s.layer].emplace_back(s.confidence, Token(argmax(row)) == s.top);
    }
    positions += chunk.size();
  });
  nlohmann::json thresholds = nlohmann::json::object();
  std::printf("| layer | threshold | tokens that would exit | their top-1 disagreement |\n|---|---|---|---|\n");
  for (const auto& [layer, signals] : by_layer) {
    const ExitThreshold t = calibrate_exit_threshold(signals, target);
    thresholds[std::to_string(layer)] = t.threshold;
    std::printf("| %d | %.4f | %.1f%% | %.2f%% |\n", layer, t.threshold, 100.0 * double(t.exits) / double(signals.size()),
                t.exits ? 100.0 * double(t.disagreements) / double(t.exits) : 0.0);
  }
  nlohmann::json out = {{"layer_thresholds", thresholds}, {"target_disagreement", target}, {"effort", effort},
                        {"tokens", positions}, {"model_layers", model.config().num_hidden_layers}};
  std::ofstream file(out_path);
  file << out.dump(2) << "\n";
  if (!file) throw Error(ErrorCode::io, "--calibration-out: cannot write " + out_path);
  std::fprintf(stderr, "wrote %s\n", out_path.c_str());
  return 0;
}

int run(int argc, char** argv) {
  std::string model_path, text_path, ids_path, reference_path, plot;
  std::vector<float> efforts;  // default: 1, 0.5, 0.25 for a .effort model, 1 for a dense one
  std::vector<float> head_efforts = {0.0f};  // 0: the effort's own
  int head_candidates = 0;                   // 0: the session's default
  SessionOptions session_options;
  int ctx = 0;
  bool json_out = false;
  bool early_exit = false, calibrate = false;
  std::vector<float> exit_thresholds = {0.9f};
  EarlyExitOptions exit_base;
  exit_base.enabled = true;
  std::string calibration_in, calibration_out = "exit-calibration.json";
  double target_disagreement = 0.01;
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-m" || f == "--model") model_path = args.value();
    else if (f == "--text") text_path = args.value();
    else if (f == "--ids") ids_path = args.value();
    else if (f == "--reference") reference_path = args.value();
    else if (f == "--effort") {
      efforts.clear();
      for (const auto& e : cli::split_list(args.value())) efforts.push_back(float(cli::parse_number(f, e, 0, 1, true)));
    } else if (f == "--head-effort") {
      head_efforts.clear();
      for (const auto& e : cli::split_list(args.value())) head_efforts.push_back(float(cli::parse_number(f, e, 0, 1)));
    } else if (f == "--head-candidates") head_candidates = int(cli::parse_int(f, args.value(), 1, 1 << 24));
    else if (f == "-c" || f == "--ctx-size") ctx = int(cli::parse_int(f, args.value(), 2, 1 << 24));
    else if (f == "-t" || f == "--threads") session_options.num_threads = int(cli::parse_int(f, args.value(), 1, 1024));
    else if (f == "--json") json_out = true;
    else if (f == "--early-exit") early_exit = true;
    else if (f == "--exit-threshold") {
      exit_thresholds.clear();
      for (const auto& t : cli::split_list(args.value())) exit_thresholds.push_back(float(cli::parse_number(f, t, 0, 1)));
    } else if (cli::read_exit_schedule_flag(f, args, exit_base)) continue;
    else if (f == "--exit-calibration") calibration_in = args.value();
    else if (f == "--calibrate") calibrate = true;
    else if (f == "--target-disagreement") target_disagreement = cli::parse_number(f, args.value(), 0, 1);
    else if (f == "--calibration-out") calibration_out = args.value();
    else if (f == "--plot") plot = args.value();
    else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }
  if (model_path.empty()) throw cli::UsageError("missing -m MODEL");
  if (text_path.empty() == ids_path.empty()) throw cli::UsageError("give exactly one of --text FILE and --ids FILE");

  const Model model = Model::load(model_path);
  cli::print_model_summary(model_path, model, false);
  if (efforts.empty()) efforts = model.bucketed() ? std::vector<float>{1.0f, 0.5f, 0.25f} : std::vector<float>{1.0f};
  if (!model.bucketed())
    for (float e : efforts)
      if (e < 1.0f)
        throw cli::UsageError("--effort " + cli::format_number(e) + ": effort below 1 needs a .effort model (" + model_path +
                              " runs dense; convert it with effort-convert)");
  std::optional<Model> reference_model;
  if (!reference_path.empty()) reference_model.emplace(Model::load(reference_path));
  const Model& reference = reference_model ? *reference_model : model;
  if (reference.config().vocab_size != model.config().vocab_size)
    throw Error(ErrorCode::invalid_argument, "--reference: vocabulary size differs from the model's");
  std::vector<Token> tokens;
  if (!ids_path.empty()) {
    tokens = read_ids(ids_path);
  } else {
    if (!model.tokenizer()) throw Error(ErrorCode::invalid_argument, model_path + " has no tokenizer: use --ids");
    tokens = model.tokenizer()->encode(read_text(text_path), true);
  }
  if (tokens.size() < 2) throw Error(ErrorCode::invalid_argument, "need at least 2 tokens to evaluate, got " + std::to_string(tokens.size()));
  const int window = ctx ? ctx : std::min(model.config().max_position_embeddings, 512);
  session_options.context_length = std::min(window, model.config().max_position_embeddings);

  Session ref_session = reference.new_session(session_options);
  Session session = model.new_session(session_options);
  if (head_candidates) session.set_head_candidates(head_candidates);
  const std::size_t vocab = std::size_t(model.config().vocab_size);
  std::vector<float> ref_logits, logits;
  auto windows = [&](const std::function<void(std::span<const Token>, std::size_t begin)>& fn) {
    for (std::size_t begin = 0; begin < tokens.size(); begin += std::size_t(session_options.context_length))
      fn(std::span<const Token>(tokens.data() + begin,
                                std::min(tokens.size(), begin + std::size_t(session_options.context_length)) - begin),
         begin);
  };

  if (calibrate) return run_calibration(model, session, ref_session, windows, efforts.front(), exit_base,
                                        target_disagreement, calibration_out, vocab);

  // Settings: every effort without early exit, then with each threshold (and the calibration).
  struct Setting {
    float effort;
    float head_effort;  // 0: the effort's own
    std::optional<EarlyExitOptions> exit;
    std::string exit_name;
  };
  std::vector<Setting> settings;
  for (float e : efforts)
    for (float h : head_efforts) settings.push_back({e, h, std::nullopt, "off"});
  if (early_exit)
    for (float e : efforts)
      for (float t : exit_thresholds) {
        EarlyExitOptions o = exit_base;
        o.threshold = t;
        char name[32];
        std::snprintf(name, sizeof name, "t=%.3g", t);
        settings.push_back({e, head_efforts.front(), o, name});
      }
  if (!calibration_in.empty())
    for (float e : efforts) {
      EarlyExitOptions o = exit_base;
      cli::apply_exit_calibration(calibration_in, o);
      settings.push_back({e, head_efforts.front(), o, "calibrated"});
    }

  std::vector<QualityMeter> meters(settings.size());
  std::vector<double> seconds(settings.size(), 0.0), check_seconds(settings.size(), 0.0), layers(settings.size(), 0.0);
  std::vector<EffortStats> work(settings.size());
  std::vector<float> head(settings.size(), 1.0f);  // each setting's head effort, as run
  double ref_seconds = 0;
  windows([&](std::span<const Token> chunk, std::size_t begin) {
    ref_session.reset_effort_stats();
    const double last_ref_seconds = run_window(ref_session, chunk, ref_logits);
    ref_seconds += last_ref_seconds;
    for (std::size_t i = 0; i < settings.size(); ++i) {
      // The model against itself at full effort is the reference run: reuse it, so that its
      // time reads 1 and its logits are not computed twice.
      const bool is_reference = !reference_model && settings[i].effort == 1.0f && (settings[i].head_effort == 0 || settings[i].head_effort == 1) &&
                                !settings[i].exit;
      Session& ran = is_reference ? ref_session : session;
      if (is_reference) {
        seconds[i] += last_ref_seconds;
        logits = ref_logits;
      } else {
        session.set_effort(settings[i].effort);
        session.set_head_effort(settings[i].head_effort);
        EarlyExitOptions off;
        session.set_early_exit(settings[i].exit ? *settings[i].exit : off);
        session.reset_effort_stats();
        seconds[i] += run_window(session, chunk, logits);
      }
      head[i] = ran.head_effort();
      check_seconds[i] += ran.exit_check_seconds();
      layers[i] += ran.average_layers() * double(chunk.size());
      for (int k = 0; k < kNumMatrixKinds; ++k) {
        work[i].done[k] += ran.effort_stats().done[k];
        work[i].dense[k] += ran.effort_stats().dense[k];
      }
      for (std::size_t t = 0; t < chunk.size(); ++t) {
        const int next = begin + t + 1 < tokens.size() && t + 1 < chunk.size() ? chunk[t + 1] : -1;
        meters[i].add(std::span<const float>(ref_logits.data() + t * vocab, vocab),
                      std::span<const float>(logits.data() + t * vocab, vocab), next);
      }
    }
  });

  nlohmann::json rows = nlohmann::json::array();
  std::map<std::string, cli::PlotSeries> series;
  if (!json_out)
    std::printf("| layout | effort | head | early exit | ppl | KL | top-1 | avg layers | mult | tokens/s | time vs reference | check time |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (std::size_t i = 0; i < settings.size(); ++i) {
    const Setting& st = settings[i];
    const double tps = double(tokens.size()) / seconds[i];
    const double relative = seconds[i] / ref_seconds;
    const double avg_layers = layers[i] / double(tokens.size());
    nlohmann::json exit_json = nullptr;
    if (st.exit) {
      exit_json = {{"name", st.exit_name}, {"threshold", st.exit->threshold}, {"check_layers", st.exit->check_layers},
                   {"layer_thresholds", st.exit->layer_thresholds}, {"patience", st.exit->patience},
                   {"warmup", st.exit->warmup}, {"max_consecutive", st.exit->max_consecutive}};
    }
    rows.push_back({{"layout", model.layout()}, {"effort", st.effort}, {"head_effort", head[i]}, {"early_exit", exit_json}, {"ppl", meters[i].perplexity()},
                    {"kl", meters[i].kl()}, {"top1", meters[i].top1()}, {"avg_layers", avg_layers},
                    {"mult_fraction", work[i].overall()}, {"tokens_per_s", tps}, {"time_vs_reference", relative},
                    {"check_seconds", check_seconds[i]}, {"tokens", tokens.size()}});
    if (!json_out)
      std::printf("| %s | %.3g | %.3g | %s | %.3f | %.4f | %.1f%% | %.2f | %.1f%% | %.1f | %.2f | %.1f%% |\n", model.layout().c_str(), st.effort, head[i],
                  st.exit_name.c_str(), meters[i].perplexity(), meters[i].kl(), 100 * meters[i].top1(), avg_layers,
                  100 * work[i].overall(), tps, relative, 100 * check_seconds[i] / seconds[i]);
    auto& line = series[st.exit_name];
    line.name = "early exit " + st.exit_name;
    line.x.push_back(relative);
    line.y.push_back(meters[i].kl());
    char label[32];
    std::snprintf(label, sizeof label, "e=%.3g", st.effort);
    line.labels.push_back(label);
  }
  std::vector<cli::PlotSeries> lines;
  for (auto& [name, line] : series) lines.push_back(std::move(line));
  if (json_out) std::printf("%s\n", rows.dump(2).c_str());
  if (!plot.empty() && !cli::write_svg_plot(plot, "quality against speed: " + model_path, "time relative to the reference (teacher-forced)",
                                            "KL divergence from the full model (nats)", lines))
    throw Error(ErrorCode::io, "--plot: cannot write " + plot);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-eval", argc, argv, run); }

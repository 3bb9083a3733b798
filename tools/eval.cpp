// effort-eval: teacher-forced quality of effort settings against the full model: perplexity,
// KL divergence, top-1 agreement, work done and speed.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "cli.h"
#include "effort/effort.h"
#include "metrics.h"
#include "svg_plot.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-eval -m MODEL (--text FILE | --ids FILE) [options]
  -m, --model PATH     the model to evaluate (.effort file or HF checkpoint folder)
      --text FILE      text to evaluate on (tokenized with BOS)
      --ids FILE       token ids, separated by commas or white space (fed as given)
      --effort LIST    effort settings to evaluate (default 1,0.5,0.25)
      --reference PATH the full model to compare with (default: MODEL at effort 1)
  -c, --ctx-size N     evaluate in windows of N tokens (default: min(model maximum, 512))
  -t, --threads N      threads (default: all hardware threads)
      --json           print a JSON list instead of a markdown table
      --plot FILE      where to write the SVG plot of KL against time relative to the reference
                       (default effort-eval.svg)
      --no-plot        write no plot
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

int run(int argc, char** argv) {
  std::string model_path, text_path, ids_path, reference_path, plot = "effort-eval.svg";
  std::vector<float> efforts = {1.0f, 0.5f, 0.25f};
  SessionOptions session_options;
  int ctx = 0;
  bool json_out = false;
  cli::ArgReader args(argc, argv);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f == "-m" || f == "--model") model_path = args.value();
    else if (f == "--text") text_path = args.value();
    else if (f == "--ids") ids_path = args.value();
    else if (f == "--reference") reference_path = args.value();
    else if (f == "--effort") {
      efforts.clear();
      for (const auto& e : cli::split_list(args.value())) efforts.push_back(float(cli::parse_number(f, e, 0, 1, true)));
    } else if (f == "-c" || f == "--ctx-size") ctx = int(cli::parse_int(f, args.value(), 2, 1 << 24));
    else if (f == "-t" || f == "--threads") session_options.num_threads = int(cli::parse_int(f, args.value(), 1, 1024));
    else if (f == "--json") json_out = true;
    else if (f == "--plot") plot = args.value();
    else if (f == "--no-plot") plot.clear();
    else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }
  if (model_path.empty()) throw cli::UsageError("missing -m MODEL");
  if (text_path.empty() == ids_path.empty()) throw cli::UsageError("give exactly one of --text FILE and --ids FILE");

  const Model model = Model::load(model_path);
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
  std::vector<QualityMeter> meters(efforts.size());
  std::vector<double> seconds(efforts.size(), 0.0);
  std::vector<EffortStats> work(efforts.size());
  std::vector<float> ref_logits, logits;
  double ref_seconds = 0;
  const std::size_t vocab = std::size_t(model.config().vocab_size);
  for (std::size_t begin = 0; begin < tokens.size(); begin += std::size_t(session_options.context_length)) {
    const std::size_t end = std::min(tokens.size(), begin + std::size_t(session_options.context_length));
    const std::span<const Token> chunk(tokens.data() + begin, end - begin);
    ref_seconds += run_window(ref_session, chunk, ref_logits);
    for (std::size_t e = 0; e < efforts.size(); ++e) {
      session.set_effort(efforts[e]);
      session.reset_effort_stats();
      seconds[e] += run_window(session, chunk, logits);
      for (int k = 0; k < kNumMatrixKinds; ++k) {
        work[e].done[k] += session.effort_stats().done[k];
        work[e].dense[k] += session.effort_stats().dense[k];
      }
      for (std::size_t t = 0; t < chunk.size(); ++t) {
        const int next = begin + t + 1 < tokens.size() && t + 1 < chunk.size() ? chunk[t + 1] : -1;
        meters[e].add(std::span<const float>(ref_logits.data() + t * vocab, vocab),
                      std::span<const float>(logits.data() + t * vocab, vocab), next);
      }
    }
  }

  nlohmann::json rows = nlohmann::json::array();
  cli::PlotSeries series{"effort", {}, {}, {}};
  if (!json_out)
    std::printf("| effort | early exit | ppl | KL | top-1 | avg layers | mult | tokens/s | time vs reference |\n"
                "|---|---|---|---|---|---|---|---|---|\n");
  for (std::size_t e = 0; e < efforts.size(); ++e) {
    const double tps = double(tokens.size()) / seconds[e];
    const double relative = seconds[e] / ref_seconds;
    rows.push_back({{"effort", efforts[e]}, {"early_exit", nullptr}, {"ppl", meters[e].perplexity()},
                    {"kl", meters[e].kl()}, {"top1", meters[e].top1()}, {"avg_layers", model.config().num_hidden_layers},
                    {"mult_fraction", work[e].overall()}, {"tokens_per_s", tps}, {"time_vs_reference", relative},
                    {"tokens", tokens.size()}});
    if (!json_out)
      std::printf("| %.3g | off | %.3f | %.4f | %.1f%% | %d | %.1f%% | %.1f | %.2f |\n", efforts[e], meters[e].perplexity(),
                  meters[e].kl(), 100 * meters[e].top1(), model.config().num_hidden_layers, 100 * work[e].overall(), tps,
                  relative);
    series.x.push_back(relative);
    series.y.push_back(meters[e].kl());
    char label[32];
    std::snprintf(label, sizeof label, "e=%.3g", efforts[e]);
    series.labels.push_back(label);
  }
  if (json_out) std::printf("%s\n", rows.dump(2).c_str());
  if (!plot.empty() && !cli::write_svg_plot(plot, "quality against speed: " + model_path, "time relative to the reference (teacher-forced)",
                                            "KL divergence from the full model (nats)", {series}))
    throw Error(ErrorCode::io, "--plot: cannot write " + plot);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-eval", argc, argv, run); }

// effort-layout-quality: matvec quality of each bucket layout on a real model's hidden states.
// Runs a text through a dense checkpoint, keeps every projection's inputs, then bucketizes the
// real weights per layout and compares the effort product with the exact one, input by input.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/bucketize.h"
#include "cli.h"
#include "effort/effort.h"
#include "model/linear.h"
#include "formats/safetensors.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-layout-quality -m HF_FOLDER --text FILE [options]
  --buckets LIST  bucket sizes (default 1,2,4,8,16)
  --weights LIST  bucketed entries: f16, q8 (default f16,q8)
  --efforts LIST  (default 1,0.5,0.25,0.125)
  --tokens N      tokens of the text to run (default 128)
  --json          a JSON list instead of a markdown table
Reports the cosine similarity of effort products to exact double-precision products: the mean
over every projection and token, and the worst projection's mean.
)";

int run(int argc, char** argv) {
  std::string model_path, text_path;
  std::vector<std::size_t> bucket_sizes = {1, 2, 4, 8, 16};
  std::vector<BucketEntries> weight_types = {BucketEntries::f16, BucketEntries::q8};
  std::vector<float> efforts = {1.0f, 0.5f, 0.25f, 0.125f};
  std::size_t max_tokens = 128;
  bool json_out = false;
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-m") model_path = args.value();
    else if (f == "--text") text_path = args.value();
    else if (f == "--buckets") bucket_sizes = cli::parse_bucket_sizes(f, args.value());
    else if (f == "--weights") weight_types = cli::parse_bucket_weights_list(f, args.value());
    else if (f == "--efforts") {
      efforts.clear();
      for (const auto& e : cli::split_list(args.value())) efforts.push_back(float(cli::parse_number(f, e, 0, 1, true)));
    } else if (f == "--tokens") max_tokens = std::size_t(cli::parse_int(f, args.value(), 1, 1 << 16));
    else if (f == "--json") json_out = true;
    else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }
  if (model_path.empty() || text_path.empty()) throw cli::UsageError("need -m HF_FOLDER and --text FILE");
  std::ifstream in(text_path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "--text: cannot open " + text_path);
  std::stringstream text;
  text << in.rdbuf();

  const Model model = Model::load(model_path);
  if (!model.tokenizer()) throw Error(ErrorCode::invalid_argument, model_path + " has no tokenizer.model");
  auto tokens = model.tokenizer()->encode(text.str(), true);
  tokens.resize(std::min(tokens.size(), max_tokens));
  std::map<std::string, std::vector<std::vector<float>>> inputs;  // per projection, per token
  Session session = model.new_session({.context_length = int(tokens.size())});
  session.set_activation_observer([&](int layer, MatrixKind kind, std::span<const float> x) {
    inputs[projection_name(layer, kind)].emplace_back(x.begin(), x.end());
  });
  for (Token t : tokens) session.forward(t);

  const Checkpoint checkpoint(model_path);
  ThreadPool pool(1);
  nlohmann::json rows = nlohmann::json::array();
  if (!json_out) std::printf("| layout | effort | mean cos | worst projection's mean cos |\n|---|---|---|---|\n");
  for (std::size_t bucket_size : bucket_sizes)
  for (const BucketEntries entries : weight_types) {
    const kernels::BucketWeights weight_type = bucket_weights(entries);
    std::map<float, std::pair<double, double>> by_effort;  // effort -> (sum of means, worst mean)
    for (float e : efforts) by_effort[e] = {0.0, 1.0};
    for (const auto& [name, xs] : inputs) {
      const TensorView& t = checkpoint.get(name);
      const auto w = t.to_floats();
      const std::size_t out = std::size_t(t.shape[0]), in_features = std::size_t(t.shape[1]);
      BucketizeOptions options;
      options.bucket_size = bucket_size;
      options.weights = weight_type;
      const BucketizedMatrix b = bucketize(w.data(), out, in_features, options, name);
      const BucketMatrix m = as_matrix(b, b.num_units());
      BucketScratch scratch({&m});
      for (float e : efforts) {
        EffortState state;
        state.set_all(e);
        const Compute compute{kernels::kernel_table(kernels::best_arch()), pool, &state, &scratch};
        double sum = 0;
        std::vector<float> y(out);
        for (const auto& x : xs) {
          matvec(Matrix(m), 0, MatrixKind::up_proj, x.data(), y.data(), compute);
          double ab = 0, aa = 0, bb = 0;
          for (std::size_t o = 0; o < out; ++o) {
            double exact = 0;
            for (std::size_t j = 0; j < in_features; ++j) exact += double(w[o * in_features + j]) * x[j];
            ab += exact * y[o], aa += exact * exact, bb += double(y[o]) * y[o];
          }
          sum += aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
        }
        const double mean = sum / double(xs.size());
        by_effort[e].first += mean / double(inputs.size());
        by_effort[e].second = std::min(by_effort[e].second, mean);
      }
    }
    const std::string layout = layout_name(bucket_size, weight_type);
    for (float e : efforts) {
      rows.push_back({{"layout", layout}, {"effort", e}, {"cos", by_effort[e].first}, {"worst_cos", by_effort[e].second}});
      if (!json_out) std::printf("| %s | %.3g | %.5f | %.5f |\n", layout.c_str(), e, by_effort[e].first, by_effort[e].second);
    }
  }
  if (json_out) std::printf("%s\n", rows.dump(2).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-layout-quality", argc, argv, run); }

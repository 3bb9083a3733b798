// effort_check.cpp: reads a .effort file whole and checks what loading takes on trust.
#include "effort/convert.h"

#include <cmath>

#include "model/bucketize.h"
#include "effort/error.h"
#include "model/effort_checkpoint.h"
#include "formats/effort_file.h"
#include "kernels/bucket_view.h"
#include "kernels/fp16.h"

namespace effort {

namespace {

// Every (input, bucket) holds each of its S positions exactly once over the S ranks, every
// stat is its row's mean |w| as the converter computed it, and the probes are its rows' stats.
void check_buckets(const std::string& context, const BucketMatrix& m) {
  const auto& v = m.view;
  const std::size_t S = v.bucket_size, B = v.num_buckets, in = v.num_inputs;
  auto fail = [&](const std::string& what) { throw Error(ErrorCode::format, context + ": " + what); };
  // Positions first: a damaged position bit also moves its weight, and so its row's stat.
  std::vector<std::uint16_t> seen(B * in, 0);
  for (std::size_t u = 0; u < S * in; ++u)
    for (std::size_t b = 0; b < B; ++b)
      seen[(u % in) * B + b] |= std::uint16_t(1u << kernels::bucket_position(kernels::entry_bits(v, u, b), S));
  const std::uint16_t all = std::uint16_t((1u << S) - 1);
  for (std::size_t i = 0; i < seen.size(); ++i)
    if (seen[i] != all)
      fail("input " + std::to_string(i / B) + ", bucket " + std::to_string(i % B) +
           ": its ranks do not hold every position once (position bits damaged)");
  for (std::size_t u = 0; u < S * in; ++u) {
    double sum = 0;
    for (std::size_t b = 0; b < B; ++b) {
      const float w = kernels::entry_weight(v, u, b);
      if (!std::isfinite(w)) fail("unit " + std::to_string(u) + " holds a non-finite weight at bucket " + std::to_string(b));
      sum += std::fabs(w);
    }
    if (v.stats[u] != float(sum / double(B)))
      fail("unit " + std::to_string(u) + ": stat " + std::to_string(v.stats[u]) + " is not the row's mean |w| " +
           std::to_string(sum / double(B)));
  }
  for (std::size_t i = 0; i < m.probe_units.size(); ++i) {
    if (i > 0 && m.probe_units[i] <= m.probe_units[i - 1]) fail("probe units are not in ascending order");
    if (m.probe_stats[i] != v.stats[m.probe_units[i]])
      fail("probe " + std::to_string(i) + " (unit " + std::to_string(m.probe_units[i]) + ") has a stat that is not its unit's");
  }
}

}  // namespace

EffortCheckReport check_effort_file(const std::filesystem::path& path) {
  EffortCheckReport report;
  {
    const EffortFile file(path);
    file.verify();
    report.tensors = file.header()["tensors"].size();
    report.bytes = double(std::filesystem::file_size(path));
    const auto& conversion = file.header()["conversion"];
    // Appended rather than "literal" + string: GCC 12's -Warray-bounds misfires on the latter.
    std::string version = "format version ";
    version += std::to_string(kEffortFormatVersion) + ", " + std::to_string(report.tensors) + " tensors, every checksum matches";
    report.summary.push_back(std::move(version));
    report.summary.push_back("converted from " + conversion.value("source", std::string("?")) + " (" +
                             conversion.value("source_format", std::string("?")) + ") by " +
                             conversion.value("converter", std::string("?")));
  }
  const EffortCheckpoint checkpoint = load_effort_checkpoint(path, 1.0f);
  const ModelConfig& c = checkpoint.config;
  std::string layout;
  for (std::size_t l = 0; l < checkpoint.weights.layers.size(); ++l) {
    for_each_projection(checkpoint.weights.layers[l], [&](const Matrix& matrix, MatrixKind kind, int expert) {
      const auto& m = std::get<BucketMatrix>(matrix);
      const std::string name = expert < 0 ? projection_name(int(l), kind) : expert_projection_name(int(l), expert, kind);
      check_buckets("[effort-check] " + path.string() + ": " + name, m);
      layout = layout_name(m.view.bucket_size, m.view.weights);
      ++report.matrices;
    });
  }
  if (checkpoint.weights.head_buckets) {
    check_buckets("[effort-check] " + path.string() + ": " + kHeadName, *checkpoint.weights.head_buckets);
    ++report.matrices;
  }
  report.summary.push_back(c.model_type + ", " + std::to_string(c.num_hidden_layers) + " layers, hidden " +
                           std::to_string(c.hidden_size) + ", intermediate " + std::to_string(c.intermediate_size) +
                           ", " + std::to_string(c.num_attention_heads) + " heads (" +
                           std::to_string(c.num_key_value_heads) + " kv), vocab " + std::to_string(c.vocab_size) +
                           (checkpoint.tokenizer_model ? ", with tokenizer" : ", no tokenizer"));
  report.summary.push_back(std::to_string(report.matrices) + " bucketed matrices (" + layout +
                           ")" + (checkpoint.weights.head_buckets ? ", the head's among them" : ", the head exact only (converted before head effort)") +
                           ": positions, stats and probes consistent");
  return report;
}

}  // namespace effort

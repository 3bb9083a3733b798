// effort_checkpoint.cpp: .effort header and tensors -> ModelWeights.
#include "model/effort_checkpoint.h"

#include <cmath>

#include "formats/config_json.h"
#include "effort/error.h"
#include "formats/effort_file.h"
#include "kernels/bucket_view.h"

namespace effort {

namespace {

std::vector<float> float_vector(const EffortFile& file, const std::string& name, std::int64_t n) {
  const TensorView& t = file.get(name, "F32", {n});
  const auto* p = reinterpret_cast<const float*>(t.data);
  return {p, p + n};
}

DenseMatrix dense(const EffortFile& file, const std::string& name, std::int64_t rows, std::int64_t cols) {
  const TensorView& t = file.get(name, "", {rows, cols});
  return DenseMatrix{t.dtype(), t.data, std::size_t(rows), std::size_t(cols)};
}

BucketMatrix bucketed(const EffortFile& file, const std::string& name, std::int64_t out, std::int64_t in,
                      float mem_fraction) {
  const auto& info = file.header()["matrices"];
  const std::string context = "[effort-file] " + file.path().string() + ": matrix " + name;
  if (!info.contains(name)) throw Error(ErrorCode::format, context + " is missing");
  const auto& m = info[name];
  if (!m.is_object() || m.value("layout", "") != "buckets")
    throw Error(ErrorCode::unsupported, context + ": layout " + (m.is_object() ? m.value("layout", "?") : "?") +
                                            " is not one this build reads (buckets)");
  if (m.value("out_features", -1) != out || m.value("in_features", -1) != in)
    throw Error(ErrorCode::format, context + ": expected " + std::to_string(out) + "x" + std::to_string(in) + " (out x in)");
  const std::int64_t S = m.value("bucket_size", std::int64_t(0));
  if (!kernels::valid_bucket_size(std::size_t(std::max<std::int64_t>(S, 0))))
    throw Error(ErrorCode::format, context + ": bucket_size must be 1, 2, 4, 8 or 16, got " + std::to_string(S));
  const std::string weights = m.value("weights", "f16");
  if (weights != "f16" && weights != "q8")
    throw Error(ErrorCode::unsupported, context + ": weights " + weights + " are not ones this build reads (f16, q8)");
  const std::int64_t B = (out + S - 1) / S, units = S * in;
  BucketMatrix w;
  w.out_features = std::size_t(out);
  w.in_features = std::size_t(in);
  w.view.num_buckets = std::size_t(B);
  w.view.num_inputs = std::size_t(in);
  w.view.bucket_size = std::size_t(S);
  w.view.weights = weights == "q8" ? kernels::BucketWeights::q8 : kernels::BucketWeights::f16;
  if (w.view.weights == kernels::BucketWeights::q8) {
    w.view.units = file.get(name + ".units", "I8", {units, B}).data;
    const auto blocks = std::int64_t(w.view.num_blocks());
    w.view.scales = reinterpret_cast<const std::uint16_t*>(file.get(name + ".scales", "F16", {units, blocks}).data);
  } else {
    w.view.units = file.get(name + ".units", "U16", {units, B}).data;
    w.view.scales = nullptr;
  }
  w.view.stats = reinterpret_cast<const float*>(file.get(name + ".stats", "F32", {units}).data);
  const auto& probes = file.get(name + ".probe_units");
  const std::int64_t n = probes.shape.size() == 1 ? probes.shape[0] : -1;
  const auto* probe_units = reinterpret_cast<const std::uint32_t*>(file.get(name + ".probe_units", "U32", {n}).data);
  const auto* probe_stats = reinterpret_cast<const float*>(file.get(name + ".probe_stats", "F32", {n}).data);
  w.loaded_units = std::max<std::size_t>(1, std::size_t(std::llround(double(mem_fraction) * double(units))));
  for (std::int64_t i = 0; i < n; ++i) {
    if (probe_units[i] >= std::uint64_t(units))
      throw Error(ErrorCode::format, context + ": probe unit " + std::to_string(probe_units[i]) + " out of range");
    if (probe_units[i] < w.loaded_units) {
      w.probe_units.push_back(probe_units[i]);
      w.probe_inputs.push_back(std::uint32_t(probe_units[i] % w.view.num_inputs));
      w.probe_stats.push_back(probe_stats[i]);
    }
  }
  return w;
}

}  // namespace

EffortCheckpoint load_effort_checkpoint(const std::filesystem::path& path, float mem_fraction, bool verify) {
  auto file = std::make_shared<EffortFile>(path);
  if (verify) file->verify();
  EffortCheckpoint result;
  result.config = config_from_json(file->header()["config"], path.string() + " (config)");
  const ModelConfig& c = result.config;
  ModelWeights& w = result.weights;
  w.storage.push_back(file);
  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const std::int64_t q_dim = std::int64_t(c.num_attention_heads) * c.head_dim;
  const std::int64_t kv_dim = std::int64_t(c.num_key_value_heads) * c.head_dim;

  w.embed_tokens = dense(*file, "model.embed_tokens.weight", vocab, hidden);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights layer;
    layer.input_layernorm = float_vector(*file, p + "input_layernorm.weight", hidden);
    layer.q_proj = bucketed(*file, p + "self_attn.q_proj.weight", q_dim, hidden, mem_fraction);
    layer.k_proj = bucketed(*file, p + "self_attn.k_proj.weight", kv_dim, hidden, mem_fraction);
    layer.v_proj = bucketed(*file, p + "self_attn.v_proj.weight", kv_dim, hidden, mem_fraction);
    layer.o_proj = bucketed(*file, p + "self_attn.o_proj.weight", hidden, q_dim, mem_fraction);
    layer.post_attention_layernorm = float_vector(*file, p + "post_attention_layernorm.weight", hidden);
    if (c.num_local_experts) {
      layer.router = dense(*file, router_name(l), c.num_local_experts, hidden);
      for (int e = 0; e < c.num_local_experts; ++e)
        layer.experts.push_back(
            {bucketed(*file, expert_projection_name(l, e, MatrixKind::gate_proj), inter, hidden, mem_fraction),
             bucketed(*file, expert_projection_name(l, e, MatrixKind::up_proj), inter, hidden, mem_fraction),
             bucketed(*file, expert_projection_name(l, e, MatrixKind::down_proj), hidden, inter, mem_fraction)});
    } else {
      layer.gate_proj = bucketed(*file, p + "mlp.gate_proj.weight", inter, hidden, mem_fraction);
      layer.up_proj = bucketed(*file, p + "mlp.up_proj.weight", inter, hidden, mem_fraction);
      layer.down_proj = bucketed(*file, p + "mlp.down_proj.weight", hidden, inter, mem_fraction);
    }
    w.layers.push_back(std::move(layer));
  }
  w.norm = float_vector(*file, "model.norm.weight", hidden);
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens : dense(*file, "lm_head.weight", vocab, hidden);
  // Files converted before the head was bucketed too run their head exact.
  if (file->header()["matrices"].contains(kHeadName)) w.head_buckets = bucketed(*file, kHeadName, vocab, hidden, 1.0f);

  if (const auto& t = file->header().value("chat_template", nlohmann::json()); t.is_string()) result.chat_template = t.get<std::string>();
  const auto& tokenizer = file->header().value("tokenizer", nlohmann::json());
  if (tokenizer.is_string()) {
    const std::string name = tokenizer.get<std::string>();
    const TensorView& blob = file->get(name);
    const TensorView& t = file->get(name, "U8", {blob.shape.size() == 1 ? blob.shape[0] : -1});
    result.tokenizer_model.emplace(reinterpret_cast<const char*>(t.data), t.num_bytes);
  }
  return result;
}

}  // namespace effort

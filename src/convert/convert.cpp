// convert.cpp: plans every output tensor from the config, writes the header, then converts the
// source tensor by tensor into a temporary file that is renamed only when complete.
#include "effort/convert.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <random>

#include "model/bucketize.h"
#include "model/lora.h"
#include "model/weights.h"
#include "formats/config_json.h"
#include "effort/types.h"
#include "effort/error.h"
#include "formats/effort_file.h"
#include "formats/gguf.h"
#include "formats/gguf_source.h"
#include "formats/ggml_types.h"
#include "formats/source_model.h"

namespace effort {

namespace {


using Shape = std::vector<std::int64_t>;

struct Projection {
  std::string name;
  std::int64_t out, in;
};

// A layer's projections in MatrixKind order; with experts, the attention's four then each
// expert's gate, up and down.
std::vector<Projection> projections(const ModelConfig& c, int layer) {
  std::vector<Projection> out;
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    const auto [rows, cols] = projection_shape(c, MatrixKind(k));
    if (k < int(MatrixKind::gate_proj) || !c.num_local_experts) out.push_back({projection_name(layer, MatrixKind(k)), rows, cols});
  }
  for (int e = 0; e < c.num_local_experts; ++e)
    for (MatrixKind k : {MatrixKind::gate_proj, MatrixKind::up_proj, MatrixKind::down_proj}) {
      const auto [rows, cols] = projection_shape(c, k);
      out.push_back({expert_projection_name(layer, e, k), rows, cols});
    }
  return out;
}

// A source whose projections have LoRA adapters merged in, for --merge-lora: the merged
// tensors are f32 copies, the others the base's.
class MergedSource : public SourceModel {
 public:
  MergedSource(std::unique_ptr<SourceModel> base, const std::vector<std::pair<std::filesystem::path, float>>& adapters)
      : base_(std::move(base)) {
    for (const auto& [path, scale] : adapters) adapters_.emplace_back(load_lora(path, base_->config()), scale);
  }
  const ModelConfig& config() const override { return base_->config(); }
  std::optional<std::string> tokenizer_model() const override { return base_->tokenizer_model(); }
  std::string format() const override { return base_->format(); }
  std::string chat_template() const override { return base_->chat_template(); }

  std::vector<float> floats(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    std::vector<float> w = base_->floats(name, shape);
    if (const auto target = projection(name))
      for (const auto& [adapter, scale] : adapters_) merge_lora(w, adapter, target->first, target->second, scale);
    return w;
  }
  DenseBytes dense(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    const auto target = projection(name);
    bool adapted = false;
    for (const auto& [adapter, scale] : adapters_)
      adapted |= target && adapter.layers[std::size_t(target->first)][int(target->second)].has_value();
    if (!adapted) return base_->dense(name, shape);
    const std::vector<float> w = floats(name, shape);
    auto copy = aligned_bytes(w.size() * sizeof(float));
    std::memcpy(copy.get(), w.data(), w.size() * sizeof(float));
    return DenseBytes{kernels::DType::f32, copy.get(), w.size() * sizeof(float), std::move(copy)};
  }

 private:
  std::optional<std::pair<int, MatrixKind>> projection(const std::string& name) const {
    for (int l = 0; l < base_->config().num_hidden_layers; ++l)
      for (int k = 0; k < kNumMatrixKinds; ++k)
        if (name == projection_name(l, MatrixKind(k))) return std::pair{l, MatrixKind(k)};
    return std::nullopt;
  }
  std::unique_ptr<SourceModel> base_;
  std::vector<std::pair<LoraAdapter, float>> adapters_;
};

std::unique_ptr<SourceModel> open_source(const std::filesystem::path& input, const ConvertOptions& options) {
  std::unique_ptr<SourceModel> source;
  if (std::filesystem::is_directory(input)) source = open_hf_source(input);
  else if (is_gguf_file(input)) source = open_gguf_source(input);
  else if (!std::filesystem::exists(input)) throw Error(ErrorCode::io, "[convert] " + input.string() + ": no such file or folder");
  else throw Error(ErrorCode::invalid_argument,
                   "[convert] " + input.string() + ": expected a Hugging Face checkpoint folder or a GGUF file");
  if (options.merge_adapters.empty()) return source;
  return std::make_unique<MergedSource>(std::move(source), options.merge_adapters);
}

// The temporary files of `output` are ".NAME.tmp-PID-N" beside it. (Appended piece by piece:
// GCC 12 warns falsely, -Wstringop-overflow, on "." + string.)
std::string temp_prefix(const std::filesystem::path& output) {
  std::string prefix = ".";
  prefix += output.filename().string();
  prefix += ".tmp-";
  return prefix;
}

// Temporary files of `output` left by conversions that were killed (their process is gone). A
// conversion still running keeps its own.
void remove_stale_temporaries(const std::filesystem::path& output, const ConvertOptions& options) {
  const std::string prefix = temp_prefix(output);
  std::error_code ec;
  const auto folder = output.parent_path().empty() ? std::filesystem::path(".") : output.parent_path();
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno != ESRCH)) continue;  // alive, or not ours to judge
    if (std::filesystem::remove(entry.path(), ec) && options.on_stale_temp_removed) options.on_stale_temp_removed(entry.path());
  }
}

// A temporary file beside `output` (announced to options.on_temp_file before use), renamed onto
// it by commit() and removed if never committed: a failed conversion leaves nothing behind.
class PendingOutput {
 public:
  PendingOutput(const std::filesystem::path& output, const ConvertOptions& options) : output_(output) {
    if (std::filesystem::exists(output) && !options.force)
      throw Error(ErrorCode::invalid_argument, "[convert] " + output.string() + " exists (use --force to replace it)");
    remove_stale_temporaries(output, options);
    std::mt19937_64 name_rng(std::random_device{}());
    const std::string name = temp_prefix(output) + std::to_string(::getpid()) + "-" + std::to_string(name_rng() % 1000000);
    path_ = output.parent_path() / name;
    if (options.on_temp_file) options.on_temp_file(path_);
  }
  ~PendingOutput() {
    if (!committed_) std::filesystem::remove(path_);
  }
  const std::filesystem::path& path() const { return path_; }
  void commit() {
    std::error_code ec;
    std::filesystem::rename(path_, output_, ec);
    if (ec) throw Error(ErrorCode::io, "[convert] cannot rename " + path_.string() + " to " + output_.string() + ": " + ec.message());
    committed_ = true;
  }

 private:
  std::filesystem::path output_, path_;
  bool committed_ = false;
};

// FNV-1a: a name hash that is the same for every standard library, so files are reproducible.
std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// The output head (the embedding when tied) of a q8 file is stored as Q8_0: at every effort it
// is a dense product read whole per token, 15-20% of a token's time in fp16.
DenseBytes head_bytes(const SourceModel& source, const std::string& name, const std::vector<std::int64_t>& shape,
                      const ConvertOptions& options) {
  if (options.weights != BucketEntries::q8 || shape[1] % std::int64_t(kernels::kQ8_0Block) != 0)
    return source.dense(name, shape);
  const auto values = source.floats(name, shape);
  auto blocks = quantize(std::uint32_t(GgufType::q8_0), values.data(), values.size());
  auto copy = aligned_bytes(blocks.size());
  std::memcpy(copy.get(), blocks.data(), blocks.size());
  return DenseBytes{kernels::DType::q8_0, copy.get(), blocks.size(), copy};
}

// The source's own name, also when given as "folder/".
std::string source_name(const std::filesystem::path& input) {
  return (input.has_filename() ? input : input.parent_path()).filename().string();
}

template <class T>
void write_vector(EffortFileWriter& writer, const std::string& name, const std::vector<T>& v) {
  writer.write(name, v.data(), v.size() * sizeof(T));
}

}  // namespace

void convert_to_effort(const std::filesystem::path& input, const std::filesystem::path& output,
                       const ConvertOptions& options) {
  if (options.max_probes == 0) throw Error(ErrorCode::invalid_argument, "[convert] max_probes must be at least 1");
  if (!kernels::valid_bucket_size(options.bucket_size))
    throw Error(ErrorCode::invalid_argument, "[convert] bucket size must be 1, 2, 4, 8 or 16, got " + std::to_string(options.bucket_size));
  PendingOutput pending(output, options);
  const auto source = open_source(input, options);
  const ModelConfig& c = source->config();
  const std::int64_t hidden = c.hidden_size, vocab = c.vocab_size;

  // Plan: every tensor's name, dtype and shape, in file order.
  EffortFileWriter writer;
  auto& header = writer.header();
  header["config"] = config_to_json(c);
  header["conversion"] = {{"source", source_name(input)}, {"source_format", source->format()},
                          {"layout", "buckets"}, {"bucket_size", options.bucket_size},
                          {"weights", weights_name(bucket_weights(options.weights))}, {"max_probes", options.max_probes},
                          {"seed", options.seed}, {"converter", "effort-convert " EFFORT_VERSION}};
  header["matrices"] = nlohmann::json::object();
  const bool q8 = options.weights == BucketEntries::q8;
  const std::int64_t S = std::int64_t(options.bucket_size);
  auto plan_buckets = [&](const std::string& name, std::int64_t out, std::int64_t in) {
    const std::int64_t B = (out + S - 1) / S, probes = std::min<std::int64_t>(std::int64_t(options.max_probes), S * in);
    header["matrices"][name] = {{"layout", "buckets"}, {"out_features", out}, {"in_features", in},
                                {"bucket_size", S}, {"weights", weights_name(bucket_weights(options.weights))}};
    writer.plan(name + ".units", q8 ? "I8" : "U16", {S * in, B});
    if (q8) writer.plan(name + ".scales", "F16", {S * in, (B + std::int64_t(kernels::kQ8Block) - 1) / std::int64_t(kernels::kQ8Block)});
    writer.plan(name + ".stats", "F32", {S * in});
    writer.plan(name + ".probe_units", "U32", {probes});
    writer.plan(name + ".probe_stats", "F32", {probes});
  };
  const DenseBytes embed = c.tie_word_embeddings ? head_bytes(*source, "model.embed_tokens.weight", {vocab, hidden}, options)
                                                 : source->dense("model.embed_tokens.weight", {vocab, hidden});
  writer.plan("model.embed_tokens.weight", std::string(kernels::dtype_name(embed.dtype)), {vocab, hidden});
  std::size_t total = 1;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    writer.plan(p + "input_layernorm.weight", "F32", {hidden});
    writer.plan(p + "post_attention_layernorm.weight", "F32", {hidden});
    total += 2;
    if (c.num_local_experts) {
      writer.plan(router_name(l), "F32", {c.num_local_experts, hidden});
      ++total;
    }
    for (const auto& m : projections(c, l)) {
      plan_buckets(m.name, m.out, m.in);
      ++total;
    }
  }
  writer.plan("model.norm.weight", "F32", {hidden});
  ++total;
  std::optional<DenseBytes> lm_head;
  if (!c.tie_word_embeddings) {
    lm_head = head_bytes(*source, "lm_head.weight", {vocab, hidden}, options);
    writer.plan("lm_head.weight", std::string(kernels::dtype_name(lm_head->dtype)), {vocab, hidden});
    ++total;
  }
  // The head bucketed as well, for head effort below 1; the dense head above gives exact logits.
  plan_buckets(kHeadName, vocab, hidden);
  ++total;
  const auto tokenizer = source->tokenizer_model();
  header["tokenizer"] = tokenizer ? nlohmann::json("tokenizer.model") : nlohmann::json(nullptr);
  const std::string chat_template = source->chat_template();
  header["chat_template"] = chat_template.empty() ? nlohmann::json(nullptr) : nlohmann::json(chat_template);
  if (tokenizer) writer.plan("tokenizer.model", "U8", {std::int64_t(tokenizer->size())});

  // Write into a temporary file beside the output, then rename.
  writer.open(pending.path());
  std::size_t done = 0;
  auto progress = [&](const std::string& name) {
    if (options.progress) options.progress(++done, total, name);
  };
  auto write_buckets = [&](const std::string& name, const std::vector<float>& w, std::int64_t out, std::int64_t in) {
    BucketizeOptions bucketing;
    bucketing.bucket_size = options.bucket_size;
    bucketing.weights = bucket_weights(options.weights);
    bucketing.max_probes = options.max_probes;
    // Each matrix gets its own probe seed, so that matrices of equal shape sample different units.
    bucketing.seed = options.seed ^ name_hash(name);
    const BucketizedMatrix b = bucketize(w.data(), std::size_t(out), std::size_t(in), bucketing, name);
    write_vector(writer, name + ".units", b.units);
    if (!b.scales.empty()) write_vector(writer, name + ".scales", b.scales);
    write_vector(writer, name + ".stats", b.stats);
    write_vector(writer, name + ".probe_units", b.probe_units);
    write_vector(writer, name + ".probe_stats", b.probe_stats);
    progress(name);
  };
  writer.write("model.embed_tokens.weight", embed.data, embed.num_bytes);
  progress("model.embed_tokens.weight");
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* norm : {"input_layernorm.weight", "post_attention_layernorm.weight"}) {
      write_vector(writer, p + norm, source->floats(p + norm, {hidden}));
      progress(p + norm);
    }
    if (c.num_local_experts) {
      write_vector(writer, router_name(l), source->floats(router_name(l), {c.num_local_experts, hidden}));
      progress(router_name(l));
    }
    for (const auto& m : projections(c, l)) write_buckets(m.name, source->floats(m.name, {m.out, m.in}), m.out, m.in);
  }
  write_vector(writer, "model.norm.weight", source->floats("model.norm.weight", {hidden}));
  progress("model.norm.weight");
  if (lm_head) {
    writer.write("lm_head.weight", lm_head->data, lm_head->num_bytes);
    progress("lm_head.weight");
  }
  write_buckets(kHeadName, source->floats(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", {vocab, hidden}),
                vocab, hidden);
  if (tokenizer) writer.write("tokenizer.model", tokenizer->data(), tokenizer->size());
  writer.finish();
  // Read back what reached the disk before it takes the output's name.
  EffortFile(pending.path()).verify();
  pending.commit();
}

void convert_to_gguf(const std::filesystem::path& input, const std::filesystem::path& output, GgufWeights weights,
                     const ConvertOptions& options) {
  const GgufType type = weights == GgufWeights::f32 ? GgufType::f32 : weights == GgufWeights::f16 ? GgufType::f16 : GgufType::q8_0;
  PendingOutput pending(output, options);
  const std::shared_ptr<const SourceModel> source = open_source(input, options);
  const ModelConfig& c = source->config();
  GgufWriter gguf;
  gguf.add_metadata("general.architecture", "llama");
  gguf.add_metadata("general.name", source_name(input));
  gguf.add_metadata("general.file_type", type == GgufType::f32 ? 0 : type == GgufType::f16 ? 1 : 7);
  gguf.add_metadata("llama.context_length", c.max_position_embeddings);
  gguf.add_metadata("llama.embedding_length", c.hidden_size);
  gguf.add_metadata("llama.block_count", c.num_hidden_layers);
  gguf.add_metadata("llama.feed_forward_length", c.intermediate_size);
  gguf.add_metadata("llama.attention.head_count", c.num_attention_heads);
  gguf.add_metadata("llama.attention.head_count_kv", c.num_key_value_heads);
  gguf.add_metadata("llama.attention.key_length", c.head_dim);
  gguf.add_metadata("llama.attention.value_length", c.head_dim);
  gguf.add_metadata("llama.rope.dimension_count", c.head_dim);
  gguf.add_metadata("llama.rope.freq_base", float(c.rope_theta));
  gguf.add_metadata("llama.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  if (c.num_local_experts) {
    gguf.add_metadata("llama.expert_count", c.num_local_experts);
    gguf.add_metadata("llama.expert_used_count", c.num_experts_per_tok);
  }
  if (const auto tokenizer = source->tokenizer_model())
    gguf.add_llama_vocabulary(llama_vocabulary(*tokenizer, "[gguf] " + input.string() + " (tokenizer)"));
  if (const std::string chat_template = source->chat_template(); !chat_template.empty())
    gguf.add_metadata("tokenizer.chat_template", chat_template);
  else
    gguf.add_metadata("llama.vocab_size", c.vocab_size);
  // Produced one at a time while writing: never the whole model in memory.
  auto matrix = [&](const std::string& gguf_name, const std::string& hf_name, std::int64_t rows, std::int64_t cols) {
    // Q8_0 blocks need rows of a multiple of 32; like llama.cpp, other matrices stay F16.
    const GgufType t = type == GgufType::q8_0 && cols % 32 != 0 ? GgufType::f16 : type;
    gguf.add_tensor(gguf_name, t, {std::uint64_t(cols), std::uint64_t(rows)}, [=, &c] {
      std::vector<float> values = source->floats(hf_name, {rows, cols});
      const bool q = hf_name.find("q_proj") != std::string::npos, k = hf_name.find("k_proj") != std::string::npos;
      if (q || k) values = interleave_rotary_rows(values, std::size_t(q ? c.num_attention_heads : c.num_key_value_heads),
                                                  std::size_t(c.head_dim), std::size_t(cols));
      return encode_gguf(t, values);
    });
  };
  auto norm = [&](const std::string& gguf_name, const std::string& hf_name) {
    gguf.add_tensor(gguf_name, GgufType::f32, {std::uint64_t(c.hidden_size)},
                    [=, &c] { return encode_gguf(GgufType::f32, source->floats(hf_name, {c.hidden_size})); });
  };
  matrix("token_embd.weight", "model.embed_tokens.weight", c.vocab_size, c.hidden_size);
  static const char* gguf_names[kNumMatrixKinds] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".", p = "model.layers." + std::to_string(l) + ".";
    norm(g + "attn_norm.weight", p + "input_layernorm.weight");
    norm(g + "ffn_norm.weight", p + "post_attention_layernorm.weight");
    const auto layer = projections(c, l);
    for (int k = 0; k < (c.num_local_experts ? int(MatrixKind::gate_proj) : kNumMatrixKinds); ++k)
      matrix(g + gguf_names[k] + ".weight", layer[std::size_t(k)].name, layer[std::size_t(k)].out, layer[std::size_t(k)].in);
    if (!c.num_local_experts) continue;
    // llama.cpp's Mixtral: the router in F32, each kind's experts in one 3-D tensor {in, out, experts}.
    const std::uint64_t E = std::uint64_t(c.num_local_experts);
    gguf.add_tensor(g + "ffn_gate_inp.weight", GgufType::f32, {std::uint64_t(c.hidden_size), E}, [=, &c] {
      return encode_gguf(GgufType::f32, source->floats(router_name(l), {c.num_local_experts, c.hidden_size}));
    });
    for (MatrixKind kind : {MatrixKind::gate_proj, MatrixKind::up_proj, MatrixKind::down_proj}) {
      const auto shape = projection_shape(c, kind);  // (not a structured binding: clang 14 cannot capture one)
      const std::int64_t rows = shape[0], cols = shape[1];
      const GgufType t = type == GgufType::q8_0 && cols % 32 != 0 ? GgufType::f16 : type;
      gguf.add_tensor(g + gguf_names[int(kind)] + "_exps.weight", t, {std::uint64_t(cols), std::uint64_t(rows), E}, [=, &c] {
        std::vector<std::uint8_t> bytes;
        for (int e = 0; e < c.num_local_experts; ++e) {
          const auto expert = encode_gguf(t, source->floats(expert_projection_name(l, e, kind), {rows, cols}));
          bytes.insert(bytes.end(), expert.begin(), expert.end());
        }
        return bytes;
      });
    }
  }
  norm("output_norm.weight", "model.norm.weight");
  if (!c.tie_word_embeddings) matrix("output.weight", "lm_head.weight", c.vocab_size, c.hidden_size);
  gguf.write(pending.path());
  pending.commit();
}

}  // namespace effort

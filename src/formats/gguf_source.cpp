// gguf_source.cpp: a llama/mistral GGUF read as a converter source (HF names and row order).
#include "formats/gguf_source.h"

#include <cmath>
#include <cstring>

#include "effort/error.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/sentencepiece_vocab.h"
#include "kernels/fp16.h"

namespace effort {

using nlohmann::json;

namespace {

bool readable(std::uint32_t type) {
  return type == std::uint32_t(GgufType::f32) || type == std::uint32_t(GgufType::f16) ||
         type == std::uint32_t(GgufType::bf16) || is_dequantizable(type);
}

class GgufSource : public SourceModel {
 public:
  explicit GgufSource(const std::filesystem::path& path) : file_(path) {
    const std::string context = "[gguf] " + path.string();
    const json& arch = file_.metadata("general.architecture");
    if (!arch.is_string() || (arch != "llama" && arch != "mistral"))
      throw Error(ErrorCode::unsupported, context + ": general.architecture " + (arch.is_null() ? "missing" : arch.dump()) +
                                              " is not supported (expected \"llama\" or \"mistral\")");
    const std::string a = arch.get<std::string>();
    auto number = [&](const std::string& key, bool required, double fallback) {
      const json& v = file_.metadata(a + "." + key);
      if (v.is_number()) return v.get<double>();
      if (required) throw Error(ErrorCode::format, context + ": missing metadata " + a + "." + key);
      return fallback;
    };
    // Sizes and counts: whole numbers in [0, 2^30], as config.json's (a float or 2^32 would
    // not convert to int).
    auto integer = [&](const std::string& key, bool required, double fallback) {
      const double v = number(key, required, fallback);
      if (!(v >= 0 && v <= double(1 << 30)) || v != std::floor(v))
        throw Error(ErrorCode::format, context + ": metadata " + a + "." + key + " = " + std::to_string(v) +
                                           ": expected a whole number in [0, 2^30]");
      return int(v);
    };
    const json& tokens = file_.metadata("tokenizer.ggml.tokens");
    config_.model_type = a;
    config_.hidden_size = integer("embedding_length", true, 0);
    config_.intermediate_size = integer("feed_forward_length", true, 0);
    config_.num_hidden_layers = integer("block_count", true, 0);
    config_.num_attention_heads = integer("attention.head_count", true, 0);
    config_.num_key_value_heads = integer("attention.head_count_kv", false, config_.num_attention_heads);
    config_.head_dim = integer("attention.key_length", false,
                               config_.num_attention_heads ? config_.hidden_size / config_.num_attention_heads : 0);
    config_.max_position_embeddings = integer("context_length", false, 4096);
    config_.rope_theta = number("rope.freq_base", false, 10000.0);
    config_.rms_norm_eps = number("attention.layer_norm_rms_epsilon", false, 1e-5);
    config_.sliding_window = integer("attention.sliding_window", false, 0);
    config_.vocab_size = tokens.is_array() ? int(tokens.size()) : integer("vocab_size", true, 0);
    config_.tie_word_embeddings = file_.find("output.weight") == nullptr;
    const json& bos = file_.metadata("tokenizer.ggml.bos_token_id");
    const json& eos = file_.metadata("tokenizer.ggml.eos_token_id");
    config_.bos_token_id = bos.is_number() ? bos.get<int>() : 1;
    config_.eos_token_ids = {eos.is_number() ? eos.get<int>() : 2};
    // llama.cpp's Mixtral is architecture "llama" with experts.
    config_.num_local_experts = integer("expert_count", false, 0);
    if (config_.num_local_experts) {
      config_.model_type = "mixtral";
      config_.num_experts_per_tok = integer("expert_used_count", true, 0);
    }
    config_.validate(context);
    // A GGUF "llama" with GQA is what our transformer runs either way.
    if (!config_.num_local_experts) config_.model_type = "mistral";

    if (tokens.is_array() && file_.metadata("tokenizer.ggml.model") == "llama") {
      const json& unk = file_.metadata("tokenizer.ggml.unknown_token_id");
      const json& space = file_.metadata("tokenizer.ggml.add_space_prefix");
      tokenizer_ = sentencepiece_model(LlamaVocabulary{
          .tokens = tokens,
          .scores = file_.metadata("tokenizer.ggml.scores"),
          .types = file_.metadata("tokenizer.ggml.token_type"),
          .bos = config_.bos_token_id,
          .eos = config_.eos_token_ids[0],
          .unk = unk.is_number() ? unk.get<int>() : 0,
          .add_space_prefix = space.is_boolean() ? space.get<bool>() : true});
    }
  }

  const ModelConfig& config() const override { return config_; }
  std::optional<std::string> tokenizer_model() const override { return tokenizer_; }
  std::string format() const override { return "gguf"; }
  std::string chat_template() const override {
    const json& t = file_.metadata("tokenizer.chat_template");
    return t.is_string() ? t.get<std::string>() : "";
  }

  std::vector<float> floats(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    const GgufTensor& t = tensor(name, shape);
    std::vector<float> values = gguf_floats(t);
    const std::size_t n = values.size();
    if (!permuted(name)) return values;
    std::vector<float> out(n);
    unpermute_rows(name, reinterpret_cast<const std::uint8_t*>(values.data()), reinterpret_cast<std::uint8_t*>(out.data()),
                   std::size_t(shape[1]) * sizeof(float));
    return out;
  }

  // F32/F16/BF16/Q8_0 in place, q/k rows reordered into a copy, other quantized types
  // dequantized to an F16 copy.
  DenseBytes dense(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    const GgufTensor& t = tensor(name, shape);
    const GgufType type = GgufType(t.type);
    if (is_dequantizable(t.type) && type != GgufType::q8_0) {
      const auto values = floats(name, shape);
      auto copy = aligned_bytes(values.size() * 2);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t h = kernels::float_to_half(values[i]);
        std::memcpy(copy.get() + 2 * i, &h, 2);
      }
      return DenseBytes{kernels::DType::f16, copy.get(), values.size() * 2, copy};
    }
    const kernels::DType dtype = type == GgufType::f32    ? kernels::DType::f32
                                 : type == GgufType::f16  ? kernels::DType::f16
                                 : type == GgufType::q8_0 ? kernels::DType::q8_0
                                                          : kernels::DType::bf16;
    if (!permuted(name)) return DenseBytes{dtype, t.data, std::size_t(t.num_bytes), nullptr};
    auto copy = aligned_bytes(t.num_bytes);
    unpermute_rows(name, t.data, copy.get(), kernels::dtype_bytes(dtype, std::size_t(shape[1])));
    return DenseBytes{dtype, copy.get(), std::size_t(t.num_bytes), copy};
  }

 private:
  static std::uint64_t elements(const GgufTensor& t) {
    std::uint64_t n = 1;
    for (auto d : t.dims) n *= d;
    return n;
  }

  // The GGUF tensor of an HF name; an expert's matrix is its slice of the 3-D tensor holding
  // every expert of that kind (dims {in, out, experts}).
  GgufTensor tensor(const std::string& hf_name, const std::vector<std::int64_t>& shape) const {
    // model.layers.N.block_sparse_moe.experts.J.wK.weight
    const std::size_t at = hf_name.find(".block_sparse_moe.experts.");
    const bool expert = at != std::string::npos && hf_name.rfind("model.layers.", 0) == 0;
    std::string layer, index, w;
    if (expert) {
      layer = hf_name.substr(13, at - 13);
      const std::string rest = hf_name.substr(at + 26);  // "J.wK.weight"
      index = rest.substr(0, rest.find('.'));
      w = rest.substr(index.size() + 1, 2);
    }
    const std::string name = expert ? "blk." + layer + (w == "w1" ? ".ffn_gate_exps" : w == "w3" ? ".ffn_up_exps" : ".ffn_down_exps") + ".weight"
                                    : gguf_tensor_name(hf_name);
    const std::string context = "[gguf] " + file_.path().string() + ": tensor " + name;
    const GgufTensor* found = file_.find(name);
    if (!found) throw Error(ErrorCode::format, context + " is missing (for " + hf_name + ")");
    GgufTensor t = *found;
    if (!readable(t.type))
      throw Error(ErrorCode::unsupported, context + " has type " + ggml_type_name(t.type) + "; this build reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K");
    if (expert) {
      const std::uint64_t e = index.size() < 6 && index.find_first_not_of("0123456789") == std::string::npos && !index.empty()
                                  ? std::stoull(index) : ~0ull;
      if (t.dims.size() != 3 || t.dims[2] != std::uint64_t(config_.num_local_experts) || e >= t.dims[2])
        throw Error(ErrorCode::format, context + ": expected " + std::to_string(config_.num_local_experts) +
                                           " experts in a 3-D tensor, for " + hf_name);
      const std::uint64_t bytes = ggml_tensor_bytes(t.type, t.dims[0] * t.dims[1]);
      t.data += e * bytes;
      t.num_bytes = bytes;
      t.dims.pop_back();
    }
    std::vector<std::int64_t> hf_shape(t.dims.rbegin(), t.dims.rend());
    if (hf_shape != shape)
      throw Error(ErrorCode::format, context + ": expected shape " + shape_of(shape) + " (HF order), got " + shape_of(hf_shape));
    return t;
  }

  static std::string shape_of(const std::vector<std::int64_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  static bool permuted(const std::string& name) {
    return name.find("self_attn.q_proj") != std::string::npos || name.find("self_attn.k_proj") != std::string::npos;
  }
  // Back to HF order, so that RoPE pairs (i, i + hd/2).
  void unpermute_rows(const std::string& name, const std::uint8_t* in, std::uint8_t* out, std::size_t row_bytes) const {
    const bool q = name.find("self_attn.q_proj") != std::string::npos;
    reorder_rotary_rows(in, out, std::size_t(q ? config_.num_attention_heads : config_.num_key_value_heads),
                        std::size_t(config_.head_dim), row_bytes, false);
  }

  GgufFile file_;
  ModelConfig config_;
  std::optional<std::string> tokenizer_;
};

}  // namespace

std::unique_ptr<SourceModel> open_gguf_source(const std::filesystem::path& path) {
  return std::make_unique<GgufSource>(path);
}

std::string gguf_tensor_name(const std::string& hf) {
  static const std::pair<const char*, const char*> layer_names[] = {
      {"input_layernorm.weight", "attn_norm.weight"},    {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},       {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},       {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    const std::size_t dot = hf.find('.', prefix.size());
    const std::string layer = hf.substr(prefix.size(), dot - prefix.size()), rest = hf.substr(dot + 1);
    for (const auto& [from, to] : layer_names)
      if (rest == from) return "blk." + layer + "." + to;
  }
  return hf;
}

std::vector<float> gguf_floats(const GgufTensor& t) {
  if (!readable(t.type))
    throw Error(ErrorCode::unsupported, "[gguf] tensor " + t.name + ": type " + ggml_type_name(t.type) + " is not supported");
  std::uint64_t n = t.num_bytes ? 1 : 0;
  for (auto d : t.dims) n *= d;
  std::vector<float> values(n);
  switch (GgufType(t.type)) {
    case GgufType::f32: std::memcpy(values.data(), t.data, n * 4); break;
    case GgufType::f16:
    case GgufType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        values[i] = t.type == std::uint32_t(GgufType::f16) ? kernels::half_to_float(h) : kernels::bf16_to_float(h);
      }
      break;
    default: dequantize(t.type, t.data, n, values.data()); break;
  }
  return values;
}

void reorder_rotary_rows(const std::uint8_t* in, std::uint8_t* out, std::size_t heads, std::size_t hd,
                         std::size_t row_bytes, bool to_gguf) {
  const std::size_t half = hd / 2;
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < half; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        const std::size_t hf = h * hd + j * half + i, gguf = h * hd + 2 * i + j;
        std::memcpy(out + (to_gguf ? gguf : hf) * row_bytes, in + (to_gguf ? hf : gguf) * row_bytes, row_bytes);
      }
}

std::vector<float> interleave_rotary_rows(const std::vector<float>& w, std::size_t heads, std::size_t hd, std::size_t cols) {
  std::vector<float> out(w.size());
  reorder_rotary_rows(reinterpret_cast<const std::uint8_t*>(w.data()), reinterpret_cast<std::uint8_t*>(out.data()), heads,
                      hd, cols * sizeof(float), true);
  return out;
}

}  // namespace effort

// gguf.cpp: GGUF reading (bounds-checked), the llama/mistral source for the converter, writing.
#include "gguf.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sentencepiece_processor.h>

#include "effort/error.h"
#include "gguf_quants.h"
#include "kernels/fp16.h"

namespace effort {

using nlohmann::json;

namespace {

constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32

enum ValueType : std::uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9,
  kU64 = 10, kI64 = 11, kF64 = 12
};

std::string type_name(std::uint32_t type) {
  static const std::map<std::uint32_t, std::string> names = {
      {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {6, "Q5_0"}, {7, "Q5_1"}, {8, "Q8_0"}, {9, "Q8_1"},
      {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"}, {30, "BF16"}};
  const auto it = names.find(type);
  return (it == names.end() ? "type " : it->second + " (type ") + std::to_string(type) + (it == names.end() ? "" : ")");
}

// Bytes of a tensor of `elements` elements (ggml block sizes), 0 for types we do not know.
// Knowing a type's size lets us check a file that holds it; reading it is another matter.
std::uint64_t tensor_bytes(std::uint32_t type, std::uint64_t elements) {
  struct Block {
    std::uint32_t type, elements, bytes;
  };
  static constexpr Block blocks[] = {{0, 1, 4},     {1, 1, 2},     {2, 32, 18},   {3, 32, 20},   {6, 32, 22},
                                     {7, 32, 24},   {8, 32, 34},   {9, 32, 36},   {10, 256, 84}, {11, 256, 110},
                                     {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292}, {30, 1, 2}};
  for (const Block& b : blocks)
    if (b.type == type) return elements / b.elements * b.bytes;
  return 0;
}

bool readable(std::uint32_t type) {
  return type == std::uint32_t(GgufType::f32) || type == std::uint32_t(GgufType::f16) ||
         type == std::uint32_t(GgufType::bf16) || is_dequantizable(type);
}

// Sequential reads that never pass the end of the mapping.
class Cursor {
 public:
  Cursor(std::span<const std::uint8_t> bytes, std::string context) : bytes_(bytes), context_(std::move(context)) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::format, context_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  template <class T>
  T read() {
    if (bytes_.size() - pos_ < sizeof(T)) fail("truncated");
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string() {
    const auto n = read<std::uint64_t>();
    if (n > bytes_.size() - pos_) fail("string of " + std::to_string(n) + " bytes runs past the end of the file");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), std::size_t(n));
    pos_ += std::size_t(n);
    return s;
  }
  json value(std::uint32_t type, int depth = 0) {
    switch (type) {
      case kU8: return read<std::uint8_t>();
      case kI8: return read<std::int8_t>();
      case kU16: return read<std::uint16_t>();
      case kI16: return read<std::int16_t>();
      case kU32: return read<std::uint32_t>();
      case kI32: return read<std::int32_t>();
      case kF32: return read<float>();
      case kBool: return read<std::uint8_t>() != 0;
      case kString: return string();
      case kU64: return read<std::uint64_t>();
      case kI64: return read<std::int64_t>();
      case kF64: return read<double>();
      case kArray: {
        if (depth > 0) fail("nested arrays are not supported");
        const auto elem = read<std::uint32_t>();
        const auto n = read<std::uint64_t>();
        if (n > bytes_.size() - pos_) fail("array of " + std::to_string(n) + " elements runs past the end of the file");
        json a = json::array();
        for (std::uint64_t i = 0; i < n; ++i) a.push_back(value(elem, depth + 1));
        return a;
      }
    }
    fail("unknown metadata value type " + std::to_string(type));
  }
  std::size_t pos() const { return pos_; }

 private:
  std::span<const std::uint8_t> bytes_;
  std::string context_;
  std::size_t pos_ = 0;
};

}  // namespace

bool is_gguf_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::uint32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), 4) && magic == kGgufMagic;
}

GgufFile::GgufFile(const std::filesystem::path& path) : file_(std::make_unique<MappedFile>(path)) {
  const std::string context = "[gguf] " + path.string();
  Cursor in(file_->bytes(), context);
  if (in.read<std::uint32_t>() != kGgufMagic) in.fail("not a GGUF file (bad magic)");
  const auto version = in.read<std::uint32_t>();
  if (version != 2 && version != 3)
    throw Error(ErrorCode::unsupported, context + ": GGUF version " + std::to_string(version) + ", this build reads 2 and 3");
  const auto tensor_count = in.read<std::uint64_t>();
  const auto kv_count = in.read<std::uint64_t>();
  if (tensor_count > file_->bytes().size() || kv_count > file_->bytes().size()) in.fail("implausible tensor or metadata count");
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    std::string key = in.string();
    const auto type = in.read<std::uint32_t>();
    metadata_[key] = in.value(type);
  }
  std::vector<GgufTensor> infos;
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor t;
    t.name = in.string();
    const auto n_dims = in.read<std::uint32_t>();
    if (n_dims == 0 || n_dims > 4) in.fail("tensor " + t.name + " has " + std::to_string(n_dims) + " dimensions");
    for (std::uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(in.read<std::uint64_t>());
    t.type = in.read<std::uint32_t>();
    t.num_bytes = in.read<std::uint64_t>();  // the offset, until resolved below
    infos.push_back(std::move(t));
  }
  std::uint64_t alignment = 32;
  if (metadata_.count("general.alignment")) {
    const json& a = metadata_["general.alignment"];
    if (!a.is_number_unsigned() || a.get<std::uint64_t>() == 0 || (a.get<std::uint64_t>() & (a.get<std::uint64_t>() - 1)))
      in.fail("general.alignment must be a power of two");
    alignment = a.get<std::uint64_t>();
  }
  const std::uint64_t data_start = (in.pos() + alignment - 1) / alignment * alignment;
  const std::uint64_t size = file_->bytes().size();
  for (auto& t : infos) {
    const std::uint64_t offset = t.num_bytes;
    std::uint64_t elements = 1;
    for (auto d : t.dims) {
      if (d > (std::uint64_t(1) << 40) || (d && elements > (std::uint64_t(1) << 48) / d))
        in.fail("tensor " + t.name + " has implausible dimensions");
      elements *= d;
    }
    t.num_bytes = tensor_bytes(t.type, elements);
    if (const std::size_t block = quant_block_elements(t.type); block && t.dims[0] % block != 0)
      in.fail("tensor " + t.name + ": " + type_name(t.type) + " rows must be a multiple of " + std::to_string(block) +
              " elements");
    if (t.num_bytes && (data_start > size || offset > size - data_start || t.num_bytes > size - data_start - offset))
      in.fail("tensor " + t.name + " (offset " + std::to_string(offset) + ", " + std::to_string(t.num_bytes) +
              " bytes) runs past the end of the file; truncated?");
    t.data = file_->bytes().data() + data_start + offset;
    tensors_[t.name] = t;
  }
}

const json& GgufFile::metadata(const std::string& key) const {
  static const json null;
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? null : it->second;
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

namespace {

// Serialized SentencePiece ModelProto (protobuf wire format) for a llama-style BPE vocabulary.
// Field numbers from sentencepiece_model.proto: pieces = 1 {piece 1, score 2, type 3},
// trainer_spec = 2 {model_type 3, vocab_size 4, byte_fallback 35, unk_id 40, bos_id 41,
// eos_id 42, pad_id 43}, normalizer_spec = 3 {name 1, add_dummy_prefix 3, remove_extra_whitespaces 4}.
class ProtoWriter {
 public:
  void varint(std::uint32_t field, std::uint64_t v) {
    key(field, 0);
    raw_varint(v);
  }
  void fixed32(std::uint32_t field, float f) {
    key(field, 5);
    std::uint8_t b[4];
    std::memcpy(b, &f, 4);
    out_.append(reinterpret_cast<const char*>(b), 4);
  }
  void bytes(std::uint32_t field, const std::string& s) {
    key(field, 2);
    raw_varint(s.size());
    out_ += s;
  }
  const std::string& str() const { return out_; }

 private:
  void key(std::uint32_t field, std::uint32_t wire) { raw_varint((std::uint64_t(field) << 3) | wire); }
  void raw_varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_ += char(std::uint8_t(v) | 0x80);
      v >>= 7;
    }
    out_ += char(v);
  }
  std::string out_;
};

std::string sentencepiece_model(const json& tokens, const json& scores, const json& types, int unk, int bos, int eos,
                                bool add_space_prefix) {
  ProtoWriter model;
  bool has_bytes = false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    ProtoWriter piece;
    piece.bytes(1, tokens[i].get<std::string>());
    piece.fixed32(2, scores.is_array() ? scores[i].get<float>() : 0.0f);
    // GGUF token types use SentencePiece's numbering (1 normal .. 6 byte).
    const int type = types.is_array() ? types[i].get<int>() : 1;
    has_bytes = has_bytes || type == 6;
    piece.varint(3, std::uint64_t(type));
    model.bytes(1, piece.str());
  }
  ProtoWriter trainer;
  trainer.varint(3, 2);  // BPE
  trainer.varint(4, tokens.size());
  trainer.varint(35, has_bytes);
  trainer.varint(40, std::uint64_t(unk));
  trainer.varint(41, std::uint64_t(bos));
  trainer.varint(42, std::uint64_t(eos));
  trainer.varint(43, std::uint64_t(std::int64_t(-1)));  // no pad
  model.bytes(2, trainer.str());
  ProtoWriter normalizer;
  normalizer.bytes(1, "identity");
  normalizer.varint(3, add_space_prefix);
  normalizer.varint(4, 0);
  model.bytes(3, normalizer.str());
  return model.str();
}

// HF name -> GGUF name for the llama architecture.
std::string gguf_name(const std::string& hf) {
  static const std::pair<const char*, const char*> layer_names[] = {
      {"input_layernorm.weight", "attn_norm.weight"},    {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},       {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
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
    const json& tokens = file_.metadata("tokenizer.ggml.tokens");
    config_.model_type = a;
    config_.hidden_size = int(number("embedding_length", true, 0));
    config_.intermediate_size = int(number("feed_forward_length", true, 0));
    config_.num_hidden_layers = int(number("block_count", true, 0));
    config_.num_attention_heads = int(number("attention.head_count", true, 0));
    config_.num_key_value_heads = int(number("attention.head_count_kv", false, config_.num_attention_heads));
    config_.head_dim = int(number("attention.key_length", false,
                                  config_.num_attention_heads ? config_.hidden_size / config_.num_attention_heads : 0));
    config_.max_position_embeddings = int(number("context_length", false, 4096));
    config_.rope_theta = number("rope.freq_base", false, 10000.0);
    config_.rms_norm_eps = number("attention.layer_norm_rms_epsilon", false, 1e-5);
    config_.sliding_window = int(number("attention.sliding_window", false, 0));
    config_.vocab_size = tokens.is_array() ? int(tokens.size()) : int(number("vocab_size", true, 0));
    config_.tie_word_embeddings = file_.find("output.weight") == nullptr;
    const json& bos = file_.metadata("tokenizer.ggml.bos_token_id");
    const json& eos = file_.metadata("tokenizer.ggml.eos_token_id");
    config_.bos_token_id = bos.is_number() ? bos.get<int>() : 1;
    config_.eos_token_ids = {eos.is_number() ? eos.get<int>() : 2};
    config_.validate(context);
    config_.model_type = "mistral";  // a GGUF "llama" with GQA is what our transformer runs either way

    if (tokens.is_array() && file_.metadata("tokenizer.ggml.model") == "llama") {
      const json& unk = file_.metadata("tokenizer.ggml.unknown_token_id");
      const json& space = file_.metadata("tokenizer.ggml.add_space_prefix");
      tokenizer_ = sentencepiece_model(tokens, file_.metadata("tokenizer.ggml.scores"),
                                       file_.metadata("tokenizer.ggml.token_type"), unk.is_number() ? unk.get<int>() : 0,
                                       config_.bos_token_id, config_.eos_token_ids[0], space.is_boolean() ? space.get<bool>() : true);
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
    const std::size_t n = std::size_t(t.num_bytes ? elements(t) : 0);
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

  const GgufTensor& tensor(const std::string& hf_name, const std::vector<std::int64_t>& shape) const {
    const std::string name = gguf_name(hf_name);
    const std::string context = "[gguf] " + file_.path().string() + ": tensor " + name;
    const GgufTensor* t = file_.find(name);
    if (!t) throw Error(ErrorCode::format, context + " is missing (for " + hf_name + ")");
    if (!readable(t->type))
      throw Error(ErrorCode::unsupported, context + " has type " + type_name(t->type) + "; this build reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K");
    std::vector<std::int64_t> hf_shape(t->dims.rbegin(), t->dims.rend());
    if (hf_shape != shape)
      throw Error(ErrorCode::format, context + ": expected shape " + shape_of(shape) + " (HF order), got " + shape_of(hf_shape));
    return *t;
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

void GgufWriter::add_metadata(const std::string& key, const json& value) { metadata_.emplace_back(key, value); }

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

std::vector<std::uint8_t> encode_gguf(GgufType type, const std::vector<float>& values) {
  if (type == GgufType::q8_0) return quantize(std::uint32_t(type), values.data(), values.size());
  if (type == GgufType::f32) {
    std::vector<std::uint8_t> bytes(values.size() * 4);
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
  }
  if (type != GgufType::f16) throw Error(ErrorCode::invalid_argument, "[gguf] cannot encode this tensor type");
  std::vector<std::uint8_t> bytes(values.size() * 2);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint16_t h = kernels::float_to_half(values[i]);
    std::memcpy(bytes.data() + 2 * i, &h, 2);
  }
  return bytes;
}

void add_sentencepiece_vocabulary(GgufWriter& gguf, const std::string& serialized_model, const std::string& context) {
  sentencepiece::SentencePieceProcessor sp;
  if (!sp.LoadFromSerializedProto(serialized_model).ok())
    throw Error(ErrorCode::format, "[gguf] " + context + ": not a SentencePiece model");
  json tokens = json::array(), scores = json::array(), types = json::array();
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    tokens.push_back(sp.IdToPiece(i));
    scores.push_back(sp.GetScore(i));
    // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte.
    types.push_back(sp.IsUnknown(i) ? 2 : sp.IsControl(i) ? 3 : sp.IsByte(i) ? 6 : 1);
  }
  gguf.add_llama_vocabulary(tokens, scores, types, std::max(0, sp.bos_id()), std::max(0, sp.eos_id()), std::max(0, sp.unk_id()));
}

void GgufWriter::add_llama_vocabulary(const json& tokens, const json& scores, const json& types, int bos, int eos,
                                      int unk) {
  add_metadata("tokenizer.ggml.model", "llama");
  add_metadata("tokenizer.ggml.tokens", tokens);
  add_metadata("tokenizer.ggml.scores", scores);
  add_metadata("tokenizer.ggml.token_type", types);
  add_metadata("tokenizer.ggml.bos_token_id", bos);
  add_metadata("tokenizer.ggml.eos_token_id", eos);
  add_metadata("tokenizer.ggml.unknown_token_id", unk);
}

void GgufWriter::add_tensor(const std::string& name, GgufType type, const std::vector<std::uint64_t>& dims,
                            Producer produce) {
  tensors_.push_back(Tensor{name, type, dims, std::move(produce)});
}

void GgufWriter::add_tensor(const std::string& name, GgufType type, const std::vector<std::uint64_t>& dims,
                            std::vector<std::uint8_t> data) {
  auto shared = std::make_shared<std::vector<std::uint8_t>>(std::move(data));
  add_tensor(name, type, dims, [shared] { return *shared; });
}

void GgufWriter::write(const std::filesystem::path& path) const {
  std::string out;
  auto put = [&](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  auto put_string = [&](const std::string& s) {
    put(std::uint64_t(s.size()));
    out += s;
  };
  auto type_of = [](const json& v) -> std::uint32_t {
    if (v.is_string()) return kString;
    if (v.is_boolean()) return kBool;
    if (v.is_number_integer()) return v.get<std::int64_t>() < 0 ? kI32 : kU32;
    return kF32;
  };
  auto put_scalar = [&](const json& v, std::uint32_t type) {
    switch (type) {
      case kString: put_string(v.get<std::string>()); break;
      case kBool: put(std::uint8_t(v.get<bool>())); break;
      case kI32: put(v.get<std::int32_t>()); break;
      case kU32: put(v.get<std::uint32_t>()); break;
      default: put(v.get<float>()); break;
    }
  };
  put(kGgufMagic);
  put(std::uint32_t(3));
  put(std::uint64_t(tensors_.size()));
  put(std::uint64_t(metadata_.size()));
  for (const auto& [key, value] : metadata_) {
    put_string(key);
    if (value.is_array()) {
      // One element type for the whole array: f32 if any is a float; integers as i32, the type
      // llama.cpp requires for its integer arrays (tokenizer.ggml.token_type).
      std::uint32_t elem = value.empty() ? kI32 : type_of(value[0]);
      for (const auto& v : value)
        if (type_of(v) == kF32) elem = kF32;
      if (elem == kU32) elem = kI32;
      put(std::uint32_t(kArray));
      put(elem);
      put(std::uint64_t(value.size()));
      for (const auto& v : value) put_scalar(v, elem);
    } else {
      put(type_of(value));
      put_scalar(value, type_of(value));
    }
  }
  std::uint64_t offset = 0;
  std::vector<std::uint64_t> sizes;
  for (const auto& t : tensors_) {
    put_string(t.name);
    put(std::uint32_t(t.dims.size()));
    for (auto d : t.dims) put(d);
    put(std::uint32_t(t.type));
    put(offset);
    std::uint64_t elements = 1;
    for (auto d : t.dims) elements *= d;
    sizes.push_back(tensor_bytes(std::uint32_t(t.type), elements));
    offset = (offset + sizes.back() + 31) / 32 * 32;
  }
  out.resize((out.size() + 31) / 32 * 32, '\0');
  std::ofstream file(path, std::ios::binary);
  file.write(out.data(), std::streamsize(out.size()));
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const auto data = tensors_[i].produce();
    if (data.size() != sizes[i])
      throw Error(ErrorCode::invalid_argument, "[gguf] " + path.string() + ": tensor " + tensors_[i].name + " has " +
                                                   std::to_string(data.size()) + " bytes, expected " + std::to_string(sizes[i]));
    file.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    const std::string pad((32 - data.size() % 32) % 32, '\0');
    file.write(pad.data(), std::streamsize(pad.size()));
  }
  if (!file) throw Error(ErrorCode::io, "[gguf] " + path.string() + ": write failed");
}

}  // namespace effort

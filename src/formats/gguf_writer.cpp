// gguf_writer.cpp: GGUF v3 files written tensor by tensor, and tensors encoded in GGUF types.
#include <cstring>
#include <fstream>

#include "effort/error.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "kernels/fp16.h"

namespace effort {

using nlohmann::json;

void GgufWriter::add_metadata(const std::string& key, const json& value) { metadata_.emplace_back(key, value); }

void GgufWriter::add_llama_vocabulary(const LlamaVocabulary& vocabulary) {
  add_metadata("tokenizer.ggml.model", "llama");
  add_metadata("tokenizer.ggml.tokens", vocabulary.tokens);
  add_metadata("tokenizer.ggml.scores", vocabulary.scores);
  add_metadata("tokenizer.ggml.token_type", vocabulary.types);
  add_metadata("tokenizer.ggml.bos_token_id", vocabulary.bos);
  add_metadata("tokenizer.ggml.eos_token_id", vocabulary.eos);
  add_metadata("tokenizer.ggml.unknown_token_id", vocabulary.unk);
  if (!vocabulary.add_space_prefix) add_metadata("tokenizer.ggml.add_space_prefix", false);  // absent means true
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
  auto type_of = [](const json& v) {
    if (v.is_string()) return GgufValue::string;
    if (v.is_boolean()) return GgufValue::boolean;
    if (v.is_number_integer()) return v.get<std::int64_t>() < 0 ? GgufValue::i32 : GgufValue::u32;
    return GgufValue::f32;
  };
  auto put_scalar = [&](const json& v, GgufValue type) {
    switch (type) {
      case GgufValue::string: put_string(v.get<std::string>()); break;
      case GgufValue::boolean: put(std::uint8_t(v.get<bool>())); break;
      case GgufValue::i32: put(v.get<std::int32_t>()); break;
      case GgufValue::u32: put(v.get<std::uint32_t>()); break;
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
      GgufValue elem = value.empty() ? GgufValue::i32 : type_of(value[0]);
      for (const auto& v : value)
        if (type_of(v) == GgufValue::f32) elem = GgufValue::f32;
      if (elem == GgufValue::u32) elem = GgufValue::i32;
      put(std::uint32_t(GgufValue::array));
      put(std::uint32_t(elem));
      put(std::uint64_t(value.size()));
      for (const auto& v : value) put_scalar(v, elem);
    } else {
      put(std::uint32_t(type_of(value)));
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
    sizes.push_back(ggml_tensor_bytes(std::uint32_t(t.type), elements));
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
  if (!file) throw Error(ErrorCode::io, "[gguf] " + path.string() + ": write failed: " + std::strerror(errno));
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

}  // namespace effort

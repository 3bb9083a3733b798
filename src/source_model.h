// source_model.h: what the converter reads from a checkpoint, whatever its format: config,
// tokenizer, and tensors by their Hugging Face names in HF layout ([out, in] row-major).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "effort/config.h"

namespace effort {

// A tensor to store densely: its dtype name ("F32", "F16", "BF16") and bytes.
struct DenseBytes {
  std::string dtype;
  std::vector<std::uint8_t> bytes;
};

class SourceModel {
 public:
  virtual ~SourceModel() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::optional<std::string> tokenizer_model() const = 0;  // serialized SentencePiece model
  virtual std::string format() const = 0;                          // "hf" or "gguf"
  // Throw effort::Error naming the tensor when it is missing or its shape differs.
  virtual std::vector<float> floats(const std::string& name, const std::vector<std::int64_t>& shape) const = 0;
  // In a dtype the runtime reads (F32/F16/BF16 as stored; quantized types as F16).
  virtual DenseBytes dense(const std::string& name, const std::vector<std::int64_t>& shape) const = 0;
};

// A Hugging Face checkpoint folder.
std::unique_ptr<SourceModel> open_hf_source(const std::filesystem::path& folder);

}  // namespace effort

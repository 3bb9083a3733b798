// source_model.h: what the converter and the dense loader read from a checkpoint, whatever its
// format: config, tokenizer, and tensors by their Hugging Face names in HF layout ([out, in]
// row-major).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "effort/config.h"
#include "kernels/kernels.h"

namespace effort {

// A tensor in a dtype the runtime reads: a view of the source's mapped bytes when it is stored
// that way, else a converted copy (reordered rows, dequantized values) that it owns. A view is
// valid while the source lives.
struct DenseBytes {
  kernels::DType dtype = kernels::DType::f32;
  const std::uint8_t* data = nullptr;
  std::size_t num_bytes = 0;
  std::shared_ptr<const std::uint8_t[]> copy;  // owns data when it is not a view
};

class SourceModel {
 public:
  virtual ~SourceModel() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::optional<std::string> tokenizer_model() const = 0;  // serialized SentencePiece model
  virtual std::string format() const = 0;                          // "hf" or "gguf"
  // The chat template from the model's metadata (Jinja text), empty when there is none.
  virtual std::string chat_template() const = 0;
  // Throw effort::Error naming the tensor when it is missing or its shape differs.
  virtual std::vector<float> floats(const std::string& name, const std::vector<std::int64_t>& shape) const = 0;
  // In a dtype the runtime reads (F32/F16/BF16/Q8_0 as stored; other quantized types as F16),
  // in place when possible.
  virtual DenseBytes dense(const std::string& name, const std::vector<std::int64_t>& shape) const = 0;
};

// A Hugging Face checkpoint folder: config.json, *.safetensors [+ tokenizer.model].
std::unique_ptr<SourceModel> open_hf_source(const std::filesystem::path& folder);

// A copy of n bytes in 64-byte aligned memory, for DenseBytes::copy.
std::shared_ptr<std::uint8_t[]> aligned_bytes(std::size_t n);

}  // namespace effort

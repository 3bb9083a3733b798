// lora.h: LoRA adapters applied at run time: y = W x + s * B (A x) for the projections an
// adapter targets, after the (effort) product of the base weights, which the adapter leaves
// alone. s = the user's scale * alpha / rank (alpha / sqrt(rank) for PEFT's use_rslora).
#pragma once
#include <array>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "effort/config.h"
#include "effort/types.h"
#include "model/linear.h"

namespace effort {

// One projection's low-rank pair, in f32 whatever the file held.
struct LoraPair {
  std::size_t rank = 0;
  float scaling = 0;     // alpha / rank (alpha / sqrt(rank) for PEFT's use_rslora)
  std::vector<float> a;  // [rank, in_features]
  std::vector<float> b;  // [out_features, rank], rows in the model's (HF) order
};

struct LoraAdapter {
  std::string name;    // the file's (or folder's) stem
  std::string format;  // "peft" or "gguf"
  float alpha = 0;
  std::size_t rank = 0;  // the largest of its pairs
  std::vector<std::array<std::optional<LoraPair>, kNumMatrixKinds>> layers;  // [layer][kind]
};

// Reads an adapter and checks it against the base model's config: a PEFT adapter (a folder with
// adapter_config.json and adapter_model.safetensors, or that .safetensors file) or llama.cpp's
// GGUF adapter (general.type "adapter"). Errors name the file and what does not fit.
LoraAdapter load_lora(const std::filesystem::path& path, const ModelConfig& config);

// y[t] += scale * pair.scaling * B (A x[t]) for t < n (x [n, in], y [n, out]), for each
// active adapter with a pair at (layer, kind).
void apply_lora(std::span<const ActiveLora> adapters, int layer, MatrixKind kind, const float* x, float* y,
                std::size_t n, const Compute& compute);

// w [out, in] += scale * pair.scaling * B A, summed in double and rounded once: merging
// (effort-convert --merge-lora) and the tests' reference.
void merge_lora(std::vector<float>& w, const LoraAdapter& adapter, int layer, MatrixKind kind, float scale);

}  // namespace effort

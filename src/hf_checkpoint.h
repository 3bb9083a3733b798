// hf_checkpoint.h: loads a Hugging Face Mistral/Llama checkpoint folder into ModelWeights.
#pragma once
#include <filesystem>

#include "effort/config.h"
#include "weights.h"

namespace effort {

// Reads config.json and the safetensors files in `folder`; every tensor is looked up by its HF
// name and shape-checked against the config. Matrices stay memory-mapped.
ModelWeights load_hf_weights(const std::filesystem::path& folder, const ModelConfig& config);

}  // namespace effort

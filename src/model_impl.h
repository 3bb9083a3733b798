// model_impl.h: what a loaded Model holds (shared read-only by its sessions).
#pragma once
#include <optional>

#include "effort/effort.h"
#include "transformer.h"
#include "weights.h"

namespace effort {

struct Model::Impl {
  ModelConfig config;
  ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
  std::optional<Transformer> transformer;  // refers to config and weights above
};

}  // namespace effort

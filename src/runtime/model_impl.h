// model_impl.h: what a loaded Model holds (shared read-only by its sessions).
#pragma once
#include <optional>

#include "effort/effort.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace effort {

struct Model::Impl {
  ModelConfig config;
  ModelWeights weights;
  std::optional<Tokenizer> tokenizer;
  std::string chat_template;  // the metadata's Jinja text; empty when none
  std::optional<Transformer> transformer;  // refers to config and weights above

  bool bucketed() const {
    return !weights.layers.empty() && std::holds_alternative<BucketMatrix>(weights.layers[0].q_proj);
  }
  // Whether long prompts pay for unpacking the weights into float panels once per batch:
  // bucketed and Q8_0 projections, whose products of several vectors decode every entry again
  // per chunk of vectors; not float ones, whose products of several vectors read and convert each
  // weight once for them (docs/benchmarks.md).
  bool unpacks_prompts() const {
    if (weights.layers.empty()) return false;
    const auto* dense = std::get_if<DenseMatrix>(&weights.layers[0].q_proj);
    return !dense || dense->dtype == kernels::DType::q8_0;
  }
};

struct Adapter::Impl {
  LoraAdapter lora;
  const Model::Impl* model;  // the model it was checked against
};

}  // namespace effort

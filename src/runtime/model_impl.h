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
  // 8-bit entries: a token's products use int8 multipliers (kernels/bucket_matvec_q8.h), a
  // batch's the fp32 weights, so a batch only approximates its tokens one by one.
  bool int8_products() const {
    if (!bucketed()) return false;
    return std::get<BucketMatrix>(weights.layers[0].q_proj).view.weights == kernels::BucketWeights::q8;
  }
};

struct Adapter::Impl {
  LoraAdapter lora;
  const Model::Impl* model;  // the model it was checked against
};

}  // namespace effort

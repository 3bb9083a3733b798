// sampler.h: picks the next token from logits: repetition penalty, then greedy or
// top-k -> min-p -> temperature -> top-p -> a draw from a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "effort/effort.h"

namespace effort {

class Sampler {
 public:
  // Throws effort::Error (invalid_argument) naming the bad option.
  explicit Sampler(const SamplingOptions& options);
  // recent: the tokens so far, oldest first (only the last repetition_window count).
  Token sample(std::span<const float> logits, std::span<const Token> recent);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;  // fully specified by the standard: the same seed draws the same numbers everywhere
  std::vector<float> logits_;
  std::vector<Token> candidates_;
  std::vector<double> probs_;
};

}  // namespace effort

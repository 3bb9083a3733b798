// sampler.h: picks the next token from logits: repetition penalty, then greedy or
// top-k -> min-p -> temperature -> top-p -> a draw from a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "effort/effort.h"

namespace effort {

// Logits closer than this to the top one count as tied with it for greedy decoding. Batched and
// token-by-token passes agree to ~2e-5 (fp32 rounding), so both pick the same token unless a gap
// lies within that of the tolerance itself.
inline constexpr float kGreedyTie = 1e-4f;

// Greedy decoding's token: the lowest id among those within kGreedyTie of the largest logit.
Token greedy_token(std::span<const float> logits);

// What a non-greedy sampler draws from: candidate tokens in increasing id order, with their
// probabilities (summing to 1); tokens not listed have probability 0.
struct Distribution {
  std::vector<Token> tokens;
  std::vector<double> probs;
  double prob(Token t) const;
};

class Sampler {
 public:
  // Throws effort::Error (invalid_argument) naming the bad option.
  explicit Sampler(const SamplingOptions& options);
  bool greedy() const { return options_.temperature == 0.0f; }
  // recent: the tokens so far, oldest first (only the last repetition_window count).
  Token sample(std::span<const float> logits, std::span<const Token> recent);
  // The distribution sample() draws from (not greedy).
  const Distribution& distribution(std::span<const float> logits, std::span<const Token> recent);
  // A draw from `d`, or a uniform number in [0, 1), from the sampler's generator.
  Token draw(const Distribution& d);
  double uniform();

 private:
  void penalize(std::span<const float> logits, std::span<const Token> recent);

  SamplingOptions options_;
  std::mt19937_64 rng_;  // fully specified by the standard: the same seed draws the same numbers everywhere
  std::vector<float> logits_;
  std::vector<Token> candidates_;
  std::vector<std::pair<Token, double>> ranked_;  // the nucleus, put in token order
  Distribution distribution_;
};

}  // namespace effort

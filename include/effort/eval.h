// eval.h: how far a model's next-token distributions are from a reference's, and early-exit
// calibration: what effort-eval measures with.
#pragma once
#include <span>
#include <utility>
#include <vector>

namespace effort {

// log softmax of logits, in double.
std::vector<double> log_softmax(std::span<const float> logits);

// KL(p || q) with p = softmax(reference), q = softmax(candidate), in nats.
double kl_divergence(std::span<const float> reference, std::span<const float> candidate);

// Index of the largest logit (the first of equal ones).
std::size_t argmax(std::span<const float> logits);

// Accumulates teacher-forced quality over positions.
struct QualityMeter {
  double kl_sum = 0;          // sum of KL(reference || candidate)
  double nll_sum = 0;         // sum of -log q(actual next token)
  std::size_t same_top1 = 0;  // positions where both argmaxes agree
  std::size_t positions = 0;  // positions with a reference
  std::size_t scored = 0;     // positions with a known next token

  // next_token < 0: none known (the last position).
  void add(std::span<const float> reference, std::span<const float> candidate, int next_token);
  double kl() const { return positions ? kl_sum / double(positions) : 0; }
  double top1() const { return positions ? double(same_top1) / double(positions) : 0; }
  double perplexity() const;
};

// Early-exit calibration for one check layer: given each check's confidence and whether its top
// token agreed with the full model's, the lowest confidence t such that, among the checks with
// confidence >= t, the disagreement rate is at most `target`; 1 (never exit) when there is none.
struct ExitThreshold {
  float threshold = 1.0f;
  std::size_t exits = 0, disagreements = 0;  // among the checks at or above it
};
ExitThreshold calibrate_exit_threshold(std::vector<std::pair<float, bool>> signals, double target);

}  // namespace effort

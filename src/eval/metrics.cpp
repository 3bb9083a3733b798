// metrics.cpp: KL divergence, top-1 agreement, perplexity.
#include "effort/eval.h"

#include <algorithm>
#include <cmath>

namespace effort {

std::vector<double> log_softmax(std::span<const float> logits) {
  const double max = logits.empty() ? 0.0 : double(*std::max_element(logits.begin(), logits.end()));
  double sum = 0;
  for (float z : logits) sum += std::exp(double(z) - max);
  const double log_sum = std::log(sum) + max;
  std::vector<double> out(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = double(logits[i]) - log_sum;
  return out;
}

double kl_divergence(std::span<const float> reference, std::span<const float> candidate) {
  const auto lp = log_softmax(reference), lq = log_softmax(candidate);
  double kl = 0;
  for (std::size_t i = 0; i < lp.size(); ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return std::max(kl, 0.0);  // rounding can leave -1e-17 for identical inputs
}

std::size_t argmax(std::span<const float> logits) {
  return std::size_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void QualityMeter::add(std::span<const float> reference, std::span<const float> candidate, int next_token) {
  kl_sum += kl_divergence(reference, candidate);
  same_top1 += argmax(reference) == argmax(candidate);
  ++positions;
  if (next_token >= 0) {
    nll_sum -= log_softmax(candidate)[std::size_t(next_token)];
    ++scored;
  }
}

double QualityMeter::perplexity() const { return scored ? std::exp(nll_sum / double(scored)) : 0.0; }

ExitThreshold calibrate_exit_threshold(std::vector<std::pair<float, bool>> signals, double target) {
  std::sort(signals.begin(), signals.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  ExitThreshold best;
  std::size_t exits = 0, disagreements = 0;
  for (std::size_t i = 0; i < signals.size(); ++i) {
    ++exits;
    disagreements += !signals[i].second;
    // Only between distinct confidences: a threshold admits every check with an equal one.
    const bool boundary = i + 1 == signals.size() || signals[i + 1].first < signals[i].first;
    if (boundary && double(disagreements) <= target * double(exits)) best = {signals[i].first, exits, disagreements};
  }
  return best;
}

}  // namespace effort

// sampler.cpp: deterministic given the seed: ties are broken by token id, and the uniform draw
// is built from the generator's bits rather than a library distribution.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "model/top_k.h"

namespace effort {

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  auto bad = [](const std::string& what) { throw Error(ErrorCode::invalid_argument, "[sampling] " + what); };
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
    bad("temperature must be a finite number >= 0, got " + std::to_string(options.temperature));
  if (options.top_k < 0) bad("top_k must be >= 0, got " + std::to_string(options.top_k));
  if (!(options.top_p > 0 && options.top_p <= 1))
    bad("top_p must be in (0, 1], got " + std::to_string(options.top_p));
  if (!(options.min_p >= 0 && options.min_p <= 1)) bad("min_p must be in [0, 1], got " + std::to_string(options.min_p));
  if (!(options.repetition_penalty > 0) || !std::isfinite(options.repetition_penalty))
    bad("repetition_penalty must be a finite number > 0, got " + std::to_string(options.repetition_penalty));
  if (options.repetition_window < 0)
    bad("repetition_window must be >= 0, got " + std::to_string(options.repetition_window));
}

Token greedy_token(std::span<const float> logits) {
  const float top = *std::max_element(logits.begin(), logits.end());
  for (std::size_t i = 0;; ++i)
    if (logits[i] >= top - kGreedyTie) return Token(i);
}

double Distribution::prob(Token t) const {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == t) return probs[i];
  return 0;
}

void Sampler::penalize(std::span<const float> logits, std::span<const Token> recent) {
  logits_.assign(logits.begin(), logits.end());
  if (options_.repetition_penalty == 1.0f) return;
  const std::size_t window = std::min(recent.size(), std::size_t(options_.repetition_window));
  std::vector<bool> seen(logits_.size(), false);
  for (Token t : recent.subspan(recent.size() - window)) {
    if (t < 0 || std::size_t(t) >= logits_.size() || seen[std::size_t(t)]) continue;
    seen[std::size_t(t)] = true;
    float& z = logits_[std::size_t(t)];
    z = z > 0 ? z / options_.repetition_penalty : z * options_.repetition_penalty;
  }
}

Token Sampler::sample(std::span<const float> logits, std::span<const Token> recent) {
  if (greedy()) {
    penalize(logits, recent);
    return greedy_token(logits_);
  }
  return draw(distribution(logits, recent));
}

const Distribution& Sampler::distribution(std::span<const float> logits, std::span<const Token> recent) {
  penalize(logits, recent);
  top_k(logits_, options_.top_k > 0 ? std::size_t(options_.top_k) : logits_.size(), candidates_);
  std::size_t keep = candidates_.size();
  const double max_logit = logits_[std::size_t(candidates_[0])];
  // min-p, as llama.cpp: keep the tokens at least min_p times as likely as the top one (before
  // temperature), i.e. whose logit is within log(min_p) of the top logit.
  if (options_.min_p > 0) {
    const double floor = max_logit + std::log(double(options_.min_p));
    while (keep > 1 && logits_[std::size_t(candidates_[keep - 1])] < floor) --keep;
  }
  std::vector<double>& probs = distribution_.probs;
  probs.resize(keep);
  double total = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits_[std::size_t(candidates_[i])] - max_logit) / options_.temperature);
    total += probs[i];
  }
  // Nucleus: the shortest prefix of the sorted candidates whose mass reaches top_p.
  double mass = 0;
  std::size_t nucleus = 0;
  while (nucleus < keep) {
    mass += probs[nucleus++] / total;
    if (mass >= options_.top_p) break;
  }
  double nucleus_total = 0;
  for (std::size_t i = 0; i < nucleus; ++i) nucleus_total += probs[i];
  // In token order: a draw then moves to another token only when the uniform falls within a
  // rounding error of a boundary. In probability order, two nearly equal tokens that trade
  // places (logits differing in the last bits between kernel arches) would trade their whole
  // intervals, and a seed would give different text on different CPUs.
  ranked_.clear();
  for (std::size_t i = 0; i < nucleus; ++i) ranked_.emplace_back(candidates_[i], probs[i] / nucleus_total);
  std::sort(ranked_.begin(), ranked_.end());
  distribution_.tokens.resize(nucleus);
  probs.resize(nucleus);
  for (std::size_t i = 0; i < nucleus; ++i) std::tie(distribution_.tokens[i], probs[i]) = ranked_[i];
  return distribution_;
}

double Sampler::uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

Token Sampler::draw(const Distribution& d) {
  const double u = uniform();
  double acc = 0;
  for (std::size_t i = 0; i < d.tokens.size(); ++i) {
    acc += d.probs[i];
    if (u < acc) return d.tokens[i];
  }
  return d.tokens.back();
}

}  // namespace effort

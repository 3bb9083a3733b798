// early_exit.cpp: the early-exit policy: which layers check, at which thresholds.
#include "model/early_exit.h"

#include <algorithm>
#include <string>

#include "effort/error.h"
#include "model/top_k.h"

namespace effort {

void ExitState::configure(const EarlyExitOptions& requested, const ModelConfig& config) {
  const int n = config.num_hidden_layers;
  auto bad = [](const std::string& what) { throw Error(ErrorCode::invalid_argument, "[early exit] " + what); };
  auto check_threshold = [&](float t) {
    if (!(t >= 0.0f && t <= 1.0f)) bad("threshold must be in [0, 1], got " + std::to_string(t));
  };
  auto check_layer = [&](int l) {
    if (l < 0 || l >= n - 1)
      bad("check layer " + std::to_string(l) + " is outside [0, " + std::to_string(n - 1) +
          ") (a check after the last layer would skip nothing)");
  };
  check_threshold(requested.threshold);
  for (int l : requested.check_layers) check_layer(l);
  for (const auto& [l, t] : requested.layer_thresholds) {
    check_layer(l);
    check_threshold(t);
  }
  if (requested.patience < 1) bad("patience must be >= 1, got " + std::to_string(requested.patience));
  if (requested.warmup < 0) bad("warmup must be >= 0, got " + std::to_string(requested.warmup));
  if (requested.max_consecutive < 1) bad("max_consecutive must be >= 1, got " + std::to_string(requested.max_consecutive));
  if (requested.candidates < 2 || requested.candidates > config.vocab_size)
    bad("candidates must be in [2, vocab_size], got " + std::to_string(requested.candidates));
  if (!(requested.min_saturation >= 0.0f && requested.min_saturation <= 1.0f))
    bad("min_saturation must be in [0, 1], got " + std::to_string(requested.min_saturation));

  std::vector<int> layers = requested.check_layers;
  if (layers.empty()) {
    // Three checks spread over the second half, never after the last two layers; a model too
    // shallow for two such checks may check before its last layer too.
    const int first = n / 2, last = n - first >= 4 ? n - 3 : n - 2;
    for (int i = 0; i < 3 && first <= last; ++i) {
      const int l = first + (last - first) * i / 2;
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
    }
  }
  std::vector<float> thresholds(std::size_t(n), 2.0f);  // > 1: no check
  for (int l : layers) thresholds[std::size_t(l)] = requested.threshold;
  for (const auto& [l, t] : requested.layer_thresholds) thresholds[std::size_t(l)] = t;
  const auto checks = std::count_if(thresholds.begin(), thresholds.end(), [](float t) { return t <= 1.0f; });
  if (requested.enabled && !requested.record_signals && checks < requested.patience)
    bad("patience " + std::to_string(requested.patience) + " needs at least that many check layers, and " +
        std::to_string(checks) + " are set for this " + std::to_string(n) + "-layer model (lower the patience or add check layers)");
  options = requested;
  threshold = std::move(thresholds);
  candidates.clear();
  consecutive_exits = 0;
}

void ExitState::take_candidates(std::span<const float> logits) { top_k(logits, std::size_t(options.candidates), candidates); }

}  // namespace effort

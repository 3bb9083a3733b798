// early_exit.h: a session's early-exit state (what carries over between tokens) and the policy
// that resolves EarlyExitOptions into it. The exit itself, a check after a layer and the keys
// and values of the layers skipped, is part of the forward pass (transformer.cpp).
#pragma once
#include <span>
#include <vector>

#include "effort/config.h"
#include "effort/types.h"

namespace effort {

struct ExitState {
  EarlyExitOptions options;
  std::vector<float> threshold;      // [num_hidden_layers]: > 1 where there is no check
  std::vector<Token> candidates;     // the previous token's top tokens
  int consecutive_exits = 0;
  double layers_run = 0, tokens = 0;
  double check_seconds = 0;
  std::vector<ExitSignal> signals;
  std::vector<float> before, final_normed;  // scratch [hidden_size]

  // Checks the options against the model (effort::Error, invalid_argument, naming the option),
  // chooses the check layers when none are given and starts afresh: no candidates, no streak.
  void configure(const EarlyExitOptions& requested, const ModelConfig& config);
  // A token's top logits become the next token's candidates.
  void take_candidates(std::span<const float> logits);
};

}  // namespace effort

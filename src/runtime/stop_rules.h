// stop_rules.h: ends an answer (not a layer pass) on the confidence of the next-token logits,
// as the "Gap" and "Burnout" rules of the source document: stop once the top-1/top-2 logit gap
// exceeds `gap`, or once the summed change of that gap over the answer exceeds `burnout`.
#pragma once
#include <optional>
#include <span>

#include "effort/effort.h"

namespace effort {

class AnswerStop {
 public:
  // 0 turns a rule off; negative values are rejected (effort::Error).
  AnswerStop(float gap, float burnout);
  // Sees the logits each generated token is sampled from, in order; says whether the answer
  // ends with that token.
  std::optional<StopReason> observe(std::span<const float> logits);

 private:
  float gap_, burnout_;
  std::optional<float> previous_gap_;
  double change_ = 0;
};

}  // namespace effort

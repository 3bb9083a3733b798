// stop_rules.cpp: the top-2 logit gap and its running change.
#include "runtime/stop_rules.h"

#include <cmath>
#include <string>

namespace effort {

AnswerStop::AnswerStop(float gap, float burnout) : gap_(gap), burnout_(burnout) {
  if (!(gap >= 0) || !std::isfinite(gap)) throw Error(ErrorCode::invalid_argument, "[generate] stop_gap must be >= 0, got " + std::to_string(gap));
  if (!(burnout >= 0) || !std::isfinite(burnout))
    throw Error(ErrorCode::invalid_argument, "[generate] stop_burnout must be >= 0, got " + std::to_string(burnout));
}

std::optional<StopReason> AnswerStop::observe(std::span<const float> logits) {
  if (gap_ == 0 && burnout_ == 0) return std::nullopt;
  float z1 = -INFINITY, z2 = -INFINITY;
  for (float z : logits) {
    if (z > z1) {
      z2 = z1, z1 = z;
    } else if (z > z2) {
      z2 = z;
    }
  }
  const float gap = z1 - z2;
  if (previous_gap_) change_ += std::fabs(double(gap) - double(*previous_gap_));
  previous_gap_ = gap;
  if (gap_ > 0 && gap > gap_) return StopReason::gap;
  if (burnout_ > 0 && change_ > burnout_) return StopReason::burnout;
  return std::nullopt;
}

}  // namespace effort

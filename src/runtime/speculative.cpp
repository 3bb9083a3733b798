// speculative.cpp: the rule in closed form over the candidate lists; the draft length by
// trying every k.
#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>

namespace effort {

DraftVerdict judge_draft(Token draft, const Distribution& p, const Distribution& q, double u_accept, double u_redraw) {
  const double pd = p.prob(draft), qd = q.prob(draft);
  if (qd > 0 && u_accept * qd < pd) return {true, draft};  // u < p/q, without dividing
  // The residual max(0, p - q) lives on p's candidates.
  double total = 0;
  for (std::size_t i = 0; i < p.tokens.size(); ++i) total += std::max(0.0, p.probs[i] - q.prob(p.tokens[i]));
  if (total <= 0) return {false, p.tokens.front()};  // p == q on p's support: unreachable after a rejection
  const double target = u_redraw * total;
  double acc = 0;
  for (std::size_t i = 0; i < p.tokens.size(); ++i) {
    acc += std::max(0.0, p.probs[i] - q.prob(p.tokens[i]));
    if (target < acc) return {false, p.tokens[i]};
  }
  // Rounding left the target at the very end: the last token with residual mass.
  for (std::size_t i = p.tokens.size(); i-- > 0;)
    if (p.probs[i] > q.prob(p.tokens[i])) return {false, p.tokens[i]};
  return {false, p.tokens.back()};
}

int DraftLength::next() const {
  if (fixed_ > 0) return fixed_;
  const double a = std::clamp(acceptance_, 0.0, 0.999);
  int best = 1;
  double best_rate = 0;
  for (int k = 1; k <= kMax; ++k) {
    const double tokens = (1 - std::pow(a, k + 1)) / (1 - a);
    const double rate = tokens / (k * draft_seconds_ + check_seconds_);
    if (rate > best_rate) best_rate = rate, best = k;
  }
  return best;
}

void DraftLength::update(int drafted, int accepted, double draft_seconds, double check_seconds) {
  if (drafted <= 0) return;
  // A check keeps a prefix of the drafts: `accepted` that stood, then one that did not unless all
  // stood, so the per-token acceptance it shows is accepted / (accepted + 1) or 1.
  const double observed = accepted == drafted ? 1.0 : double(accepted) / (accepted + 1);
  // Running averages over roughly the last ten checks; the first check's times replace the priors.
  constexpr double w = 0.1;
  acceptance_ += w * (observed - acceptance_);
  const double per_draft = draft_seconds / drafted;
  draft_seconds_ = measured_ ? draft_seconds_ + w * (per_draft - draft_seconds_) : per_draft;
  check_seconds_ = measured_ ? check_seconds_ + w * (check_seconds - check_seconds_) : check_seconds;
  measured_ = true;
}

}  // namespace effort

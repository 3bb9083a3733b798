// speculative.cpp: the rule in closed form over the candidate lists; the draft length.
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
  int k = 1;
  while (k < kMax && std::pow(acceptance_, k + 1) >= 0.5) ++k;
  return k;
}

void DraftLength::update(int drafted, int accepted) {
  if (drafted <= 0) return;
  // A check keeps a prefix of the drafts: `accepted` that stood, then one that did not unless all
  // stood, so the per-token acceptance it shows is accepted / (accepted + 1), or 1. A running
  // average over roughly the last ten checks.
  const double observed = accepted == drafted ? 1.0 : double(accepted) / (accepted + 1);
  acceptance_ += 0.1 * (observed - acceptance_);
}

}  // namespace effort

// speculative.cpp: the rule in closed form over the candidate lists; the draft length.
#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

namespace effort {

DraftVerdict judge_draft(Token draft, const Distribution& p, const Distribution& q, double u_accept, double u_redraw) {
  const double pd = p.prob(draft), qd = q.prob(draft);
  if (qd > 0 && u_accept * qd < pd) return {true, draft};  // u < p/q, without dividing
  // The residual max(0, p - q) lives on p's candidates; q looked up once per candidate (the
  // lists hold up to the whole vocabulary without top-k).
  std::unordered_map<Token, double> q_of;
  q_of.reserve(q.tokens.size());
  for (std::size_t i = 0; i < q.tokens.size(); ++i) q_of.emplace(q.tokens[i], q.probs[i]);
  std::vector<double> residual(p.tokens.size());
  double total = 0;
  for (std::size_t i = 0; i < p.tokens.size(); ++i) {
    const auto it = q_of.find(p.tokens[i]);
    total += residual[i] = std::max(0.0, p.probs[i] - (it == q_of.end() ? 0.0 : it->second));
  }
  if (total <= 0) return {false, p.tokens.front()};  // p == q on p's support: unreachable after a rejection
  const double target = u_redraw * total;
  double acc = 0;
  for (std::size_t i = 0; i < p.tokens.size(); ++i) {
    acc += residual[i];
    if (target < acc) return {false, p.tokens[i]};
  }
  // Rounding left the target at the very end: the last token with residual mass.
  for (std::size_t i = p.tokens.size(); i-- > 0;)
    if (residual[i] > 0) return {false, p.tokens[i]};
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

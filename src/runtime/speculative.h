// speculative.h: the two decisions of self-speculative decoding that do not touch the model:
// whether a sampled draft token stands, and how many tokens to draft next.
#pragma once
#include "runtime/sampler.h"

namespace effort {

// Speculative sampling's rule (Leviathan et al. 2023, Chen et al. 2023): a draft token d drawn
// from the draft distribution q stands with probability min(1, p(d) / q(d)), p being the full
// model's; otherwise the token is drawn from max(0, p - q) normalised. Either way the token is
// distributed as p. u_accept and u_redraw are uniform draws in [0, 1).
struct DraftVerdict {
  bool accepted = false;
  Token token = 0;  // the draft when accepted, else the redrawn token
};
DraftVerdict judge_draft(Token draft, const Distribution& p, const Distribution& q, double u_accept, double u_redraw);

// How many tokens to draft: fixed, or (adaptive) the count that maximises the expected tokens
// per second, (1 - a^(k+1)) / (1 - a) tokens for k draft tokens and one check, given the running
// acceptance rate a and the measured seconds of a draft token and of a check.
class DraftLength {
 public:
  static constexpr int kMax = 16;
  explicit DraftLength(int fixed) : fixed_(fixed) {}
  int next() const;
  // After a check of `drafted` tokens of which `accepted` stood; the seconds spent drafting
  // them and checking.
  void update(int drafted, int accepted, double draft_seconds, double check_seconds);
  double acceptance() const { return acceptance_; }

 private:
  int fixed_;
  // Priors until measured: half the drafts stand; a draft token costs a third of a check.
  double acceptance_ = 0.5, draft_seconds_ = 1, check_seconds_ = 3;
  bool measured_ = false;
};

}  // namespace effort

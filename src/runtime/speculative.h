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

// How many tokens to draft: fixed, or (adaptive) the length that makes the most tokens per
// unit of time for the running per-token acceptance rate a: a round of k drafts hands over
// 1 + a + ... + a^k tokens on average, and costs k drafts and a check of k + 1 tokens, at the
// costs measured on the 8-layer 7B-shaped q8 model with 2 threads (docs/speculative.md). It
// depends on the tokens only (not on timing), so a seed draws the same tokens on every run.
class DraftLength {
 public:
  static constexpr int kMax = 16;
  // A check of n tokens costs 1 + kCheckSlope * (n - 1) tokens' time, a draft token at effort d
  // kDraftBase + (1 - kDraftBase) * d.
  static constexpr double kCheckSlope = 0.35, kDraftBase = 0.06;
  DraftLength(int fixed, float draft_effort) : fixed_(fixed), draft_effort_(draft_effort) {}
  int next() const;
  // After a check of `drafted` tokens of which `accepted` stood.
  void update(int drafted, int accepted);
  double acceptance() const { return acceptance_; }

 private:
  int fixed_;
  float draft_effort_;
  double acceptance_ = 0.5;  // the prior
};

}  // namespace effort

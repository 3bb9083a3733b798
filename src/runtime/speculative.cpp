// speculative.cpp: self-speculative decoding: a round of drafts and their check, the acceptance
// rule in closed form over the candidate lists, and the draft length.
#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <unordered_map>
#include <vector>

#include "runtime/session_impl.h"

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
  const double draft_cost = kDraftBase + (1 - kDraftBase) * double(draft_effort_);
  int best = 1;
  double best_rate = 0, tokens = 1, power = 1;
  for (int k = 1; k <= kMax; ++k) {
    tokens += power *= acceptance_;
    const double rate = tokens / (double(k) * draft_cost + 1 + kCheckSlope * double(k));
    if (rate > best_rate) best_rate = rate, best = k;
  }
  return best;
}

void DraftLength::update(int drafted, int accepted) {
  if (drafted <= 0) return;
  // A check keeps a prefix of the drafts: `accepted` that stood, then one that did not unless all
  // stood, so the per-token acceptance it shows is accepted / (accepted + 1), or 1. A running
  // average over roughly the last ten checks.
  const double observed = accepted == drafted ? 1.0 : double(accepted) / (accepted + 1);
  acceptance_ += 0.1 * (observed - acceptance_);
}

void Session::Impl::speculate(int drafts, float draft_effort, Sampler& sampler, DraftLength& length,
                              GenerationStats& stats, const Emit& emit) {
  const int start = int(history.size());
  const auto& eos = model.config.eos_token_ids;
  // In a ring, positions past the capacity overwrite ones still in the window.
  std::optional<KvCache::Saved> saved;
  if (start + drafts >= cache.capacity()) saved = cache.save(start, drafts + 1);
  const EffortStats before = effort.stats;

  std::vector<Token> tokens = {*pending};
  std::vector<Distribution> draft_distributions;
  const auto generation_effort = effort.effort;
  const float generation_head_effort = effort.head_effort;
  // Drafts are guesses: their head is no more exact than their projections.
  effort.set_all(draft_effort);
  effort.head_effort = std::min(generation_head_effort, draft_effort);
  drafting = true;
  while (int(tokens.size()) <= drafts && std::find(eos.begin(), eos.end(), tokens.back()) == eos.end()) {
    run(tokens.back());
    if (sampler.greedy()) {
      tokens.push_back(sampler.sample(act.logits, history));
    } else {
      draft_distributions.push_back(sampler.distribution(act.logits, history));
      tokens.push_back(sampler.draw(draft_distributions.back()));
    }
  }
  drafting = false;
  effort.effort = generation_effort;
  effort.head_effort = generation_head_effort;
  history.resize(std::size_t(start));
  if (saved) cache.restore(*saved, start);
  const int drafted = int(tokens.size()) - 1;
  const EffortStats after_drafts = effort.stats;
  check(tokens);
  const std::size_t vocab = act.logits.size();
  auto logits_after = [&](int i) { return std::span<const float>(&check_logits[std::size_t(i) * vocab], vocab); };
  auto history_to = [&](int i) { return std::span<const Token>(history).first(std::size_t(start + i + 1)); };

  // The drafts that stand, then the check's next token: a correction, or one more.
  int accepted = 0;
  std::optional<Token> next;
  for (int i = 1; i <= drafted && !next; ++i) {
    if (sampler.greedy()) {
      const Token target = sampler.sample(logits_after(i - 1), history_to(i - 1));
      if (target != tokens[std::size_t(i)]) next = target;
    } else {
      const Distribution& target = sampler.distribution(logits_after(i - 1), history_to(i - 1));
      const double u_accept = sampler.uniform(), u_redraw = sampler.uniform();
      const DraftVerdict verdict =
          judge_draft(tokens[std::size_t(i)], target, draft_distributions[std::size_t(i - 1)], u_accept, u_redraw);
      if (!verdict.accepted) next = verdict.token;
    }
    if (!next) ++accepted;
  }
  if (!next) next = sampler.sample(logits_after(accepted), history_to(accepted));
  stats.drafted += drafted;
  stats.accepted += accepted;
  ++stats.checks;
  if (exit.options.enabled) exit.take_candidates(logits_after(accepted));
  length.update(drafted, accepted);
  // The stats compare with plain decoding: all the work done, against one dense pass per
  // token the round advanced.
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    const double check_dense = effort.stats.dense[k] - after_drafts.dense[k];
    effort.stats.dense[k] = before.dense[k] + check_dense / double(tokens.size()) * double(accepted + 1);
  }

  // Hand over; `kept` counts the tokens handed over, the last of which stays pending.
  int kept = 0;
  for (int i = 1; i <= accepted + 1; ++i) {
    const Token token = i <= accepted ? tokens[std::size_t(i)] : *next;
    const Token previous = *pending;
    pending.reset();
    const bool more = emit(token, logits_after(i - 1));
    if (pending) kept = i;
    else pending = previous;  // an end-of-sequence token is not handed over
    if (!more) break;
  }
  history.resize(std::size_t(start + kept));
  if (saved) cache.restore(*saved, start + kept);
}

void Session::Impl::check(std::span<const Token> tokens) {
  // One pass over the weights for every token: each token's logits are what it gets alone.
  if (together(tokens.size())) return run_together(tokens, true);
  const std::size_t n = tokens.size(), vocab = act.logits.size();
  check_logits.resize(n * vocab);
  // In a ring that the check would wrap, token by token.
  for (std::size_t t = 0; t < n; ++t) {
    model.transformer->forward(tokens[t], int(history.size()), cache, act, compute(), nullptr);
    history.push_back(tokens[t]);
    std::copy(act.logits.begin(), act.logits.end(), check_logits.begin() + std::ptrdiff_t(t * vocab));
  }
}

}  // namespace effort

// sampler_test.cpp: sampling rules on logits with known answers.
#include <catch2/catch.hpp>
#include <cmath>

#include "runtime/sampler.h"
#include "runtime/stop_rules.h"

using namespace effort;

namespace {
SamplingOptions opts(float temperature, int top_k = 0, float top_p = 1.0f, std::uint64_t seed = 1) {
  SamplingOptions o;
  o.min_p = 0;  // off unless a test sets it
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = seed;
  return o;
}
const std::vector<float> kLogits = {0.5f, 2.0f, -1.0f, 1.0f, 2.0f, 0.0f};
}  // namespace

TEST_CASE("greedy picks the first maximum", "[sampler]") {
  Sampler s(opts(0));
  REQUIRE(s.sample(kLogits, {}) == 1);
}

TEST_CASE("top-k 1 and a tiny top-p are greedy at any temperature", "[sampler]") {
  Sampler k1(opts(5.0f, 1)), p0(opts(5.0f, 0, 1e-6f));
  for (int i = 0; i < 100; ++i) {
    REQUIRE(k1.sample(kLogits, {}) == 1);
    REQUIRE(p0.sample(kLogits, {}) == 1);
  }
}

TEST_CASE("min-p keeps the tokens at least min_p times as likely as the top one", "[sampler]") {
  // Logits >= 2 + log(min_p) = 0.75 stay (tokens 1, 3, 4), whatever the temperature.
  auto o = opts(3.0f);
  o.min_p = float(std::exp(-1.25));
  Sampler s(o);
  std::vector<int> count(kLogits.size());
  for (int i = 0; i < 4000; ++i) ++count[std::size_t(s.sample(kLogits, {}))];
  REQUIRE(count[0] == 0);
  REQUIRE(count[2] == 0);
  REQUIRE(count[5] == 0);
  // Kept tokens follow softmax(logits / 3) among themselves: token 3 has weight
  // exp(-1/3) / (2 + exp(-1/3)) = 0.264 of the draws (4000 draws: sd 0.007; allow 0.03).
  REQUIRE(std::fabs(count[3] / 4000.0 - std::exp(-1.0 / 3) / (2 + std::exp(-1.0 / 3))) < 0.03);
  o.min_p = 1.5f;
  REQUIRE_THROWS_WITH(Sampler(o), Catch::Contains("min_p must be in [0, 1]"));
}

TEST_CASE("the same seed draws the same tokens; another seed does not", "[sampler]") {
  Sampler a(opts(1.0f, 0, 1.0f, 42)), b(opts(1.0f, 0, 1.0f, 42)), c(opts(1.0f, 0, 1.0f, 43));
  std::vector<Token> ta, tb, tc;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(kLogits, {}));
    tb.push_back(b.sample(kLogits, {}));
    tc.push_back(c.sample(kLogits, {}));
  }
  REQUIRE(ta == tb);
  REQUIRE(ta != tc);
}

TEST_CASE("draws follow softmax(logits / T) within top-k and top-p", "[sampler]") {
  const int n = 40000;
  auto frequencies = [&](SamplingOptions o) {
    Sampler s(o);
    std::vector<double> f(kLogits.size());
    for (int i = 0; i < n; ++i) f[std::size_t(s.sample(kLogits, {}))] += 1.0 / n;
    return f;
  };
  auto softmax = [](std::vector<double> z, double t) {
    double sum = 0;
    for (auto& v : z) sum += (v = std::exp(v / t));
    for (auto& v : z) v /= sum;
    return z;
  };
  // 5 standard errors of a binomial proportion: a false failure has probability ~1e-6 per check.
  auto close = [&](double f, double p) { return std::fabs(f - p) <= 5 * std::sqrt(p * (1 - p) / n) + 1e-12; };

  const auto full = softmax({0.5, 2.0, -1.0, 1.0, 2.0, 0.0}, 0.7);
  const auto f = frequencies(opts(0.7f));
  for (std::size_t i = 0; i < f.size(); ++i) REQUIRE(close(f[i], full[i]));

  // top-k 3 keeps ids 1, 4 (2.0) and 3 (1.0).
  const auto k3 = softmax({2.0, 2.0, 1.0}, 1.0);
  const auto fk = frequencies(opts(1.0f, 3));
  REQUIRE(close(fk[1], k3[0]));
  REQUIRE(close(fk[4], k3[1]));
  REQUIRE(close(fk[3], k3[2]));
  REQUIRE(fk[0] + fk[2] + fk[5] == 0.0);

  // top-p 0.6 at T=1: ids 1 and 4 hold 0.36 each, so the nucleus is those two, at 0.5 each.
  const auto fp = frequencies(opts(1.0f, 0, 0.6f));
  REQUIRE(close(fp[1], 0.5));
  REQUIRE(fp[1] + fp[4] == Approx(1.0));
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits", "[sampler]") {
  SamplingOptions o = opts(0);
  o.repetition_penalty = 2.0f;
  Sampler s(o);
  // 2.0 -> 1.0 for ids 1 and 4, tying with id 3; the first of the tied maxima, id 1, wins.
  const std::vector<Token> recent = {4, 1};
  REQUIRE(s.sample(kLogits, recent) == 1);
  const std::vector<Token> recent3 = {4, 1, 4};
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.5f, 2.0f, 0.0f};
  REQUIRE(s.sample(logits, recent3) == 3);  // 1.5 beats the halved 1.0s
  // Only the window counts.
  o.repetition_window = 1;
  Sampler w(o);
  REQUIRE(w.sample(logits, recent3) == 1);  // only id 4 penalised
}

TEST_CASE("invalid sampling options are named", "[sampler]") {
  REQUIRE_THROWS_WITH(Sampler(opts(-1)), Catch::Contains("temperature"));
  REQUIRE_THROWS_WITH(Sampler(opts(NAN)), Catch::Contains("temperature"));
  REQUIRE_THROWS_WITH(Sampler(opts(1, -1)), Catch::Contains("top_k"));
  REQUIRE_THROWS_WITH(Sampler(opts(1, 0, 0.0f)), Catch::Contains("top_p"));
  REQUIRE_THROWS_WITH(Sampler(opts(1, 0, 1.5f)), Catch::Contains("top_p"));
  SamplingOptions o = opts(1);
  o.repetition_penalty = 0;
  REQUIRE_THROWS_WITH(Sampler(o), Catch::Contains("repetition_penalty"));
}

TEST_CASE("Gap and Burnout end the answer on crafted logits", "[sampler]") {
  // Gaps: 1, 3, 0.5, 6.
  const std::vector<std::vector<float>> steps = {{2, 1, 0}, {4, 1, 0}, {1.5f, 1, 0}, {7, 1, 0}};
  AnswerStop off(0, 0);
  for (const auto& z : steps) REQUIRE(!off.observe(z));

  AnswerStop gap(5.0f, 0);  // only the last step's gap (6) exceeds 5
  for (std::size_t i = 0; i < 3; ++i) REQUIRE(!gap.observe(steps[i]));
  REQUIRE(gap.observe(steps[3]) == StopReason::gap);

  AnswerStop burnout(0, 4.0f);  // changes: |3-1| = 2, then 2 + |0.5-3| = 4.5 > 4 at the third step
  REQUIRE(!burnout.observe(steps[0]));
  REQUIRE(!burnout.observe(steps[1]));
  REQUIRE(burnout.observe(steps[2]) == StopReason::burnout);

  REQUIRE_THROWS_WITH(AnswerStop(-1, 0), Catch::Contains("stop_gap must be >= 0"));
  REQUIRE_THROWS_WITH(AnswerStop(0, NAN), Catch::Contains("stop_burnout must be >= 0"));
}

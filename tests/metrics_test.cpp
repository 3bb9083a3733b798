// metrics_test.cpp: KL divergence, agreement and perplexity on distributions with known answers.
#include <catch2/catch.hpp>
#include <cmath>

#include "effort/eval.h"

using namespace effort;

TEST_CASE("identical distributions: KL 0, full agreement", "[metrics]") {
  const std::vector<float> z = {1.0f, -2.0f, 0.5f, 3.0f};
  REQUIRE(kl_divergence(z, z) == Approx(0.0).margin(1e-15));
  QualityMeter m;
  m.add(z, z, 3);
  m.add(z, z, -1);
  REQUIRE(m.kl() == Approx(0.0).margin(1e-15));
  REQUIRE(m.top1() == 1.0);
  // Perplexity of the token with logit 3: 1 / softmax(z)[3].
  double sum = 0;
  for (float v : z) sum += std::exp(double(v));
  REQUIRE(m.perplexity() == Approx(sum / std::exp(3.0)).epsilon(1e-12));
}

TEST_CASE("KL of two known distributions matches the closed form", "[metrics]") {
  // p = softmax(log(0.5, 0.25, 0.25)), q = softmax(log(0.25, 0.25, 0.5)):
  // KL(p||q) = 0.5 ln 2 + 0.25 ln 1 + 0.25 ln 0.5 = 0.25 ln 2.
  const std::vector<float> p = {std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  const std::vector<float> q = {std::log(0.25f), std::log(0.25f), std::log(0.5f)};
  REQUIRE(kl_divergence(p, q) == Approx(0.25 * std::log(2.0)).epsilon(1e-6));
  // A shift of every logit changes nothing.
  std::vector<float> shifted = q;
  for (auto& v : shifted) v += 7.0f;
  REQUIRE(kl_divergence(p, shifted) == Approx(0.25 * std::log(2.0)).epsilon(1e-6));
  QualityMeter m;
  m.add(p, q, -1);
  REQUIRE(m.top1() == 0.0);  // argmax 0 against argmax 2
  REQUIRE(argmax(q) == 2);
}

TEST_CASE("exit calibration picks the lowest safe confidence", "[metrics]") {
  // Confidences with agreement: 0.99 yes, 0.95 yes, 0.9 no, 0.8 yes, 0.7 yes, 0.6 no, 0.5 no.
  const std::vector<std::pair<float, bool>> s = {{0.5f, false}, {0.99f, true}, {0.8f, true}, {0.9f, false},
                                                 {0.95f, true}, {0.7f, true},  {0.6f, false}};
  // At most 1 in 4 may disagree: down to 0.7 there are 5 exits with 1 disagreement (20%);
  // at 0.6, 2 of 6 (33%).
  const auto quarter = calibrate_exit_threshold(s, 0.25);
  REQUIRE(quarter.threshold == 0.7f);
  REQUIRE(quarter.exits == 5);
  REQUIRE(quarter.disagreements == 1);
  // No disagreement allowed: only 0.99 and 0.95 are safe.
  REQUIRE(calibrate_exit_threshold(s, 0.0).threshold == 0.95f);
  // Everything allowed: the lowest confidence.
  REQUIRE(calibrate_exit_threshold(s, 1.0).threshold == 0.5f);
  // The most confident check already disagrees: never exit.
  REQUIRE(calibrate_exit_threshold({{0.9f, false}, {0.5f, true}}, 0.0).threshold == 1.0f);
  // Equal confidences are admitted together: 0.9 twice, one disagreeing, is 50%.
  REQUIRE(calibrate_exit_threshold({{0.9f, true}, {0.9f, false}}, 0.4).threshold == 1.0f);
  REQUIRE(calibrate_exit_threshold({}, 0.1).threshold == 1.0f);
}

// early_exit_test.cpp: the early-exit scheduler: a check that never fires changes nothing; a
// forced exit equals an independent computation, KV propagation included; bad options are named.
#include <catch2/catch.hpp>

#include "effort/effort.h"
#include "reference_forward.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

std::vector<int> story_ids(std::size_t n) {
  auto ids = test::read_json(test::reference_dir() / "stories260K" / "greedy_from_bos.json")["generated_ids"].get<std::vector<int>>();
  ids.insert(ids.begin(), 1);
  ids.resize(n);
  return ids;
}


}  // namespace

TEST_CASE("a check that never fires gives bit-identical logits", "[model][early-exit]") {
  const Model model = Model::load(test::fixture_model());
  const auto ids = story_ids(40);
  Session plain = model.new_session();
  const auto expected = test::forward_each(plain, ids);
  Session checked = model.new_session();
  EarlyExitOptions o;
  o.enabled = true;
  o.check_layers = {1, 2};
  o.threshold = 1.0f;  // never
  o.patience = 1;
  o.warmup = 0;
  checked.set_early_exit(o);
  REQUIRE(test::forward_each(checked, ids) == expected);
  REQUIRE(checked.average_layers() == 5.0);
}

TEST_CASE("a forced exit equals the first layers, the final norm and the head, with propagated K/V", "[model][early-exit]") {
  const Model model = Model::load(test::fixture_model());
  const auto ids = story_ids(24);
  for (int layer : {0, 2, 3}) {
    Session s = model.new_session();
    EarlyExitOptions o;
    o.enabled = true;
    o.check_layers = {layer};
    o.threshold = 0.0f;  // always confident enough
    o.patience = 1;
    o.warmup = 3;
    o.max_consecutive = 2;
    s.set_early_exit(o);
    const auto logits = test::forward_each(s, ids);
    // Who exits: not before position 3 (warm-up), then two exits and one forced full pass.
    std::vector<int> exit_after(ids.size(), 4);
    int run_of_exits = 0;
    for (std::size_t t = 3; t < ids.size(); ++t) {
      if (run_of_exits < 2) {
        exit_after[t] = layer;
        ++run_of_exits;
      } else {
        run_of_exits = 0;
      }
    }
    const auto expected = test::reference_forward(test::fixture_model(), ids, exit_after);
    CAPTURE(layer);
    for (std::size_t t = 0; t < ids.size(); ++t)
      for (std::size_t i = 0; i < 512; ++i)
        REQUIRE(std::fabs(logits[t][i] - expected[t][i]) < 1e-4);  // fp32 vs float64
    double layers = 0;
    for (int e : exit_after) layers += e + 1;
    REQUIRE(s.average_layers() == Approx(layers / double(ids.size())));
  }
}

TEST_CASE("bad early-exit options are named", "[model][early-exit]") {
  const Model model = Model::load(test::fixture_model());
  Session s = model.new_session();
  auto with = [](auto change) {
    EarlyExitOptions o;
    o.enabled = true;
    change(o);
    return o;
  };
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.threshold = 1.5f; })), Contains("threshold must be in [0, 1]"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.threshold = -0.1f; })), Contains("threshold must be in [0, 1]"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.check_layers = {4}; })), Contains("check layer 4 is outside [0, 4)"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.check_layers = {9}; })), Contains("check layer 9"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.patience = -1; })), Contains("patience must be >= 1"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.max_consecutive = 0; })), Contains("max_consecutive must be >= 1"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.warmup = -2; })), Contains("warmup must be >= 0"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.candidates = 1; })), Contains("candidates must be in [2, vocab_size]"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.layer_thresholds = {{1, 2.0f}}; })), Contains("threshold must be in [0, 1]"));
  REQUIRE_THROWS_WITH(s.set_early_exit(with([](auto& o) { o.check_layers = {2}; o.patience = 2; })),
                      Contains("patience 2 needs at least that many check layers, and 1 are set for this 5-layer model"));
  s.set_early_exit(with([](auto&) {}));  // the defaults are valid: checks in the second half
}

TEST_CASE("the default early-exit settings exit on a shallow model", "[model][early-exit]") {
  // 5 layers: the default checks are after layers 2 and 3, so the default patience (2) can
  // be met. A zero threshold exits at the second check whenever the two agree.
  const Model model = Model::load(test::fixture_model());
  Session s = model.new_session();
  EarlyExitOptions o;
  o.enabled = true;
  o.threshold = 0.0f;
  o.warmup = 0;
  s.set_early_exit(o);
  GenerateOptions g;
  g.max_new_tokens = 40;
  g.sampling.temperature = 0;
  s.generate(std::span<const Token>(std::vector<Token>{1}), g);
  REQUIRE(s.average_layers() < 5.0);
}

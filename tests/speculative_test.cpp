// speculative_test.cpp: self-speculative decoding gives the full model's output: greedy token
// for token (many prompts, draft efforts and lengths, thread counts, a sliding-window ring),
// sampling in distribution (the rejection rule, then the whole loop on the fixture), and a
// cache after rejected drafts that holds only the kept tokens' keys and values.
#include <catch2/catch.hpp>

#include <random>

#include "runtime/sampler.h"
#include "runtime/speculative.h"
#include "fixture_effort.h"
#include "test_util.h"

using namespace effort;

namespace {

std::vector<Token> greedy(Session& s, std::span<const Token> prompt, int n, float draft_effort = 0, int draft_max = 0) {
  s.reset();
  GenerateOptions g;
  g.max_new_tokens = n;
  g.sampling.temperature = 0;
  g.speculative = {.draft_effort = draft_effort, .draft_max = draft_max};
  return s.generate(prompt, g).tokens;
}

std::vector<std::vector<Token>> test_prompts() {
  std::vector<std::vector<Token>> prompts;
  for (const char* name : {"arbitrary", "greedy_bos64", "greedy_slice", "mixed"})
    prompts.push_back(test::read_json(test::reference_dir() / "stories260K" / (std::string("logits_") + name + ".json"))["prompt_ids"]
                          .get<std::vector<Token>>());
  std::mt19937 rng(20261130);
  for (int i = 0; i < 20; ++i) {
    std::vector<Token> p = {1};
    const int length = 1 + int(rng() % 24);
    while (int(p.size()) < length) p.push_back(Token(3 + rng() % 509));
    prompts.push_back(p);
  }
  return prompts;
}

// Pearson's chi-square of observed counts against probabilities, over the cells expected >= 5
// (the rest pooled in one cell); returns {statistic, degrees of freedom}.
std::pair<double, int> chi_square(const std::map<Token, int>& observed, const Distribution& expected, int n) {
  double stat = 0, pooled_expected = 0;
  int pooled_observed = n, cells = 0;
  for (std::size_t i = 0; i < expected.tokens.size(); ++i) {
    const double e = expected.probs[i] * n;
    const auto it = observed.find(expected.tokens[i]);
    const int o = it == observed.end() ? 0 : it->second;
    if (e < 5) {
      pooled_expected += e;
      continue;
    }
    stat += (o - e) * (o - e) / e;
    pooled_observed -= o;
    ++cells;
  }
  if (pooled_expected > 0) {
    stat += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++cells;
  }
  return {stat, cells - 1};
}

// Upper 0.1% point of the chi-square distribution: tabulated for df 1..20, beyond that the
// Wilson-Hilferty approximation (within 0.5% there).
double chi_square_critical_001(int df) {
  static const double table[] = {10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59,
                                 31.26, 32.91, 34.53, 36.12, 37.70, 39.25, 40.79, 42.31, 43.82, 45.31};
  REQUIRE(df >= 1);
  if (df <= 20) return table[df - 1];
  const double k = df, z = 3.0902;  // the standard normal's upper 0.1% point
  return k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
}

}  // namespace

TEST_CASE("greedy with speculation is greedy without it, token for token", "[speculative][model]") {
  const Model model = Model::load(test::fixture_effort());
  Session one = model.new_session({.num_threads = 1}), two = model.new_session({.num_threads = 2});
  const auto prompts = test_prompts();
  // (draft effort, draft length): 16 makes checks of 17 tokens, which run batched; 0 is adaptive.
  // Long drafts at 0.25 are left out: nearly all rejected, they only cost time.
  const std::pair<float, int> drafts[] = {{0.25f, 1}, {0.25f, 4}, {0.25f, 0}, {0.5f, 1},  {0.5f, 4},
                                          {0.5f, 16}, {0.5f, 0},  {0.75f, 4}, {0.75f, 16}, {0.75f, 0}};
  std::size_t runs = 0;
  for (std::size_t p = 0; p < (test::kSanitized ? 2 : prompts.size()); ++p) {
    const std::vector<Token> expected = greedy(one, prompts[p], 32);
    REQUIRE(expected.size() == 32);
    // The first prompt through every combination, the others through one each, in turn.
    for (const auto& [e, k] : drafts)
      for (Session* s : {&one, &two}) {
        if (p > 0 && (runs++ % 20) != (p * 7) % 20) continue;
        if (test::kSanitized && s == &two && k != 16) continue;
        INFO("prompt " << p << ", draft effort " << e << ", draft length " << k << ", threads " << s->num_threads());
        REQUIRE(greedy(*s, prompts[p], 32, e, k) == expected);
      }
  }
  // Drafts that exit early (the session's early exit runs in the drafts only; checks run every
  // layer), with an eager threshold so that they do exit.
  Session exiting = model.new_session({.num_threads = 1});
  exiting.set_early_exit({.enabled = true, .threshold = 0.3f, .patience = 1, .warmup = 0});
  for (std::size_t p = 0; p < (test::kSanitized ? 2 : 4); ++p) {
    INFO("prompt " << p << " with early-exiting drafts");
    REQUIRE(greedy(exiting, prompts[p], 40, 0.5f, 4) == greedy(one, prompts[p], 40));
  }
  REQUIRE(exiting.average_layers() < model.config().num_hidden_layers);
}

TEST_CASE("speculation across a sliding-window ring keeps the window's keys and values", "[speculative][model]") {
  // The fixture with a 24-token sliding window: the KV cache is a ring of 24 slots, which the
  // drafts and checks write past while older positions are still in the window.
  test::TempDir dir;
  std::filesystem::copy(test::fixture_model(), dir / "hf");
  nlohmann::json config = test::read_json(dir / "hf" / "config.json");
  config["sliding_window"] = 24;
  test::write_text(dir / "hf" / "config.json", config.dump());
  convert_to_effort(dir / "hf", dir / "ring.effort", {});
  const Model model = Model::load(dir / "ring.effort");
  Session s = model.new_session({.num_threads = 2});
  const std::vector<Token> prompt = {1, 403, 407, 261, 378};
  const std::vector<Token> expected = greedy(s, prompt, 100);
  for (float e : {0.25f, 0.5f})
    for (int k : {5, 0}) {
      INFO("draft effort " << e << ", draft length " << k);
      REQUIRE(greedy(s, prompt, 100, e, k) == expected);
    }
}

TEST_CASE("after rejected drafts the cache holds only the kept tokens' keys and values", "[speculative][model]") {
  const Model model = Model::load(test::fixture_effort());
  Session spec = model.new_session({.num_threads = 1}), plain = model.new_session({.num_threads = 1});
  const std::vector<Token> prompt = {1, 403, 407, 261, 378};
  GenerateOptions g;
  g.max_new_tokens = 100;
  g.sampling.temperature = 0;
  g.speculative = {.draft_effort = 0.25f, .draft_max = 8};  // at 0.25 most drafts are rejected
  const GenerateResult r = spec.generate(prompt, g);
  REQUIRE(r.stats.accepted < r.stats.drafted);  // there were rejections to roll back
  // The same generation without speculation.
  GenerateOptions no_drafts = g;
  no_drafts.speculative = {};
  plain.reset();
  REQUIRE(plain.generate(prompt, no_drafts).tokens == r.tokens);
  REQUIRE(spec.position() == plain.position());
  const std::size_t row = std::size_t(model.config().num_key_value_heads * model.config().head_dim);
  const std::size_t used = std::size_t(spec.position()) * row;
  for (int l = 0; l < model.config().num_hidden_layers; ++l) {
    const auto a = spec.kv_cache(l), b = plain.kv_cache(l);
    // Checks of fewer than 16 tokens run them one at a time, as plain decoding does: the kept
    // positions match bit for bit.
    REQUIRE(std::equal(a.keys.begin(), a.keys.begin() + std::ptrdiff_t(used), b.keys.begin()));
    REQUIRE(std::equal(a.values.begin(), a.values.begin() + std::ptrdiff_t(used), b.values.begin()));
  }
}

TEST_CASE("greedy ties within kGreedyTie go to the lowest token id", "[speculative][sampling]") {
  // A batched check and a token-by-token pass differ by fp32 rounding (~2e-5): a near-tie must
  // not depend on which side of it the rounding fell.
  const float a = 3.0f, b = 3.0f + 4e-5f;
  REQUIRE(greedy_token(std::vector<float>{0.5f, a, b}) == 1);
  REQUIRE(greedy_token(std::vector<float>{0.5f, b, a}) == 1);
  REQUIRE(greedy_token(std::vector<float>{0.5f, a, a + 3e-4f}) == 2);  // beyond the tolerance: the largest
  Sampler sampler({.temperature = 0});
  REQUIRE(sampler.sample(std::vector<float>{b, a}, {}) == 0);
  REQUIRE(sampler.sample(std::vector<float>{a, b}, {}) == 0);
}

TEST_CASE("the rejection rule keeps a draft with probability min(1, p/q) and otherwise draws from max(0, p - q)",
          "[speculative][sampling]") {
  const Distribution p{{0, 1, 2}, {0.5, 0.3, 0.2}}, q{{0, 1, 2}, {0.8, 0.1, 0.1}};
  // p(1) >= q(1): kept whatever the draw.
  REQUIRE(judge_draft(1, p, q, 0.999, 0.5).accepted);
  // p(0)/q(0) = 0.625: kept below that draw, rejected above.
  REQUIRE(judge_draft(0, p, q, 0.62, 0.5).accepted);
  const DraftVerdict rejected = judge_draft(0, p, q, 0.63, 0.5);
  REQUIRE(!rejected.accepted);
  // Residual max(0, p - q) = {0, 0.2, 0.1} / 0.3: token 1 below 2/3 of the way, token 2 above.
  REQUIRE(rejected.token == 1);
  REQUIRE(judge_draft(0, p, q, 0.63, 0.66).token == 1);
  REQUIRE(judge_draft(0, p, q, 0.63, 0.67).token == 2);
  // A token the target rules out (p = 0) is always rejected.
  const Distribution narrow{{1, 2}, {0.6, 0.4}};
  REQUIRE(!judge_draft(0, narrow, q, 0.0, 0.1).accepted);

  // Drafts from q, judged against p, are distributed as p: 200000 draws on a 6-token vocabulary
  // with crafted p and q, chi-square at the 0.1% level (a fixed seed: the outcome is
  // reproducible, and a correct rule fails with probability 0.001 over seeds).
  const Distribution target{{0, 1, 2, 3, 4, 5}, {0.35, 0.25, 0.2, 0.1, 0.07, 0.03}};
  const Distribution draft{{0, 1, 2, 3, 4, 5}, {0.1, 0.4, 0.05, 0.3, 0.1, 0.05}};
  Sampler rng({.temperature = 1, .seed = 7});
  std::map<Token, int> counts;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const Token d = rng.draw(draft);
    const double u1 = rng.uniform(), u2 = rng.uniform();
    ++counts[judge_draft(d, target, draft, u1, u2).token];
  }
  const auto [stat, df] = chi_square(counts, target, n);
  REQUIRE(df == 5);
  REQUIRE(stat < chi_square_critical_001(df));
}

TEST_CASE("sampled speculation draws the full model's tokens", "[speculative][sampling][model]") {
  const Model model = Model::load(test::fixture_effort());
  Session s = model.new_session({.num_threads = 1});
  const std::vector<Token> prompt = {1, 403, 407, 261, 378};
  const SamplingOptions sampling{.temperature = 1.0f, .top_k = 12, .top_p = 1.0f, .min_p = 0};
  // The full model's distribution of the second generated token: the mixture, over the first
  // token's distribution, of the second token's given the first.
  Sampler full(sampling);
  s.reset();
  const Distribution first = full.distribution(s.prefill(prompt), prompt);
  std::map<Token, double> second;
  for (std::size_t i = 0; i < first.tokens.size(); ++i) {
    std::vector<Token> context = prompt;
    context.push_back(first.tokens[i]);
    s.reset();
    const Distribution& given = full.distribution(s.prefill(context), context);
    for (std::size_t j = 0; j < given.tokens.size(); ++j) second[given.tokens[j]] += first.probs[i] * given.probs[j];
  }
  Distribution expected;
  for (const auto& [token, prob] : second) expected.tokens.push_back(token), expected.probs.push_back(prob);
  // Second tokens of speculative runs: the first is the full model's draw; the second a draft at
  // effort 0.25 (often rejected and redrawn) or the check's own.
  std::map<Token, int> counts;
  const int n = test::kSanitized ? 150 : 800;
  for (int seed = 0; seed < n; ++seed) {
    s.reset();
    GenerateOptions g{.max_new_tokens = 2, .sampling = sampling, .stop_at_eos = false};
    g.sampling.seed = std::uint64_t(seed);
    g.speculative = {.draft_effort = 0.25f, .draft_max = 3};
    const GenerateResult r = s.generate(prompt, g);
    REQUIRE(r.tokens.size() == 2);
    ++counts[r.tokens[1]];
  }
  const auto [stat, df] = chi_square(counts, expected, n);
  INFO("chi-square " << stat << " with " << df << " degrees of freedom");
  REQUIRE(stat < chi_square_critical_001(df));
}

TEST_CASE("speculative decoding refuses what it cannot do", "[speculative]") {
  const Model dense = Model::load(test::fixture_model());
  Session d = dense.new_session({.num_threads = 1});
  GenerateOptions g;
  g.speculative.draft_effort = 0.5f;
  REQUIRE_THROWS_WITH(d.generate(std::vector<Token>{1}, g), Catch::Contains("needs a .effort model"));
  const Model model = Model::load(test::fixture_effort());
  Session s = model.new_session({.num_threads = 1});
  g.speculative.draft_effort = 1.0f;
  REQUIRE_THROWS_WITH(s.generate(std::vector<Token>{1}, g), Catch::Contains("draft effort must be in (0, 1)"));
  g.speculative = {.draft_effort = 0.5f, .draft_max = 17};
  REQUIRE_THROWS_WITH(s.generate(std::vector<Token>{1}, g), Catch::Contains("draft_max must be in [0, 16]"));
}

TEST_CASE("the adaptive draft length follows the acceptance rate and the costs", "[speculative]") {
  REQUIRE(DraftLength(5, 0.5f).next() == 5);
  REQUIRE(DraftLength(0, 0.5f).next() == 1);  // the prior, a = 0.5
  DraftLength good(0, 0.5f), bad(0, 0.5f), mixed(0, 0.5f), cheap(0, 0.1f);
  for (int i = 0; i < 200; ++i) {  // the running rate within 1e-9 of its limit
    good.update(8, 8);    // every draft stands
    bad.update(8, 0);     // none does
    mixed.update(10, 9);  // 9 of 10 judged stand: a -> 0.9
    cheap.update(10, 9);
  }
  // Tokens per unit of time (1 + a + ... + a^k) / (k d + 1 + 0.35 k), d the draft's cost:
  // with every draft standing, (k + 1) / (1 + 0.88 k) at effort 0.5 grows with k.
  REQUIRE(good.next() == DraftLength::kMax);
  REQUIRE(bad.next() == 1);
  REQUIRE(mixed.acceptance() == Approx(0.9).margin(0.01));
  // a = 0.9 at effort 0.5 (d = 0.53): 1.90 / 1.88 = 1.011 at k = 1, 2.71 / 2.76 = 0.982 at 2.
  REQUIRE(mixed.next() == 1);
  // At effort 0.1 (d = 0.154): 1.263, 1.350, 1.369 and 1.358 at k = 1 to 4.
  REQUIRE(cheap.next() == 3);
}

TEST_CASE("effort-run --draft-effort prints the tokens effort-run prints without it", "[speculative][cli]") {
  const std::string run = std::string(EFFORT_BIN_DIR) + "/effort-run -m '" + test::fixture_effort().string() +
                          "' --prompt-ids 1,403,407 -n 80 --temp 0 --ids";
  const auto plain = test::run_command(run + " 2>/dev/null");
  const auto spec = test::run_command(run + " --draft-effort 0.5 --draft-max 6 2>&1 >/dev/null");
  REQUIRE(plain.exit_code == 0);
  REQUIRE(spec.exit_code == 0);
  REQUIRE_THAT(spec.output, Catch::Contains("[speculative] drafted"));
  REQUIRE(test::run_command(run + " --draft-effort 0.5 2>/dev/null").output == plain.output);
  const auto bad = test::run_command(run + " --draft-max 4");
  REQUIRE(bad.exit_code == 2);
  REQUIRE_THAT(bad.output, Catch::Contains("add --draft-effort E"));
}

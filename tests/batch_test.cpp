// batch_test.cpp: tokens run together in one pass over the weights give what they give alone,
// bit for bit: a session's tokens (forward_all), and sessions decoded together
// (forward_together) with their own efforts, adapters and caches, on every arch and thread count.
#include <catch2/catch.hpp>

#include "effort/effort.h"
#include "fixture_effort.h"
#include "lora_fixture.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

std::vector<std::string> arch_names() {
  std::vector<std::string> names = {"scalar"};
  for (const char* name : {"avx2", "avx512"}) {
    try {
      Model::load(test::fixture_model()).new_session({.kernel_arch = name});
      names.push_back(name);
    } catch (const Error&) {
    }
  }
  return names;
}

}  // namespace

TEST_CASE("forward_all gives each token forward()'s logits, bit for bit", "[batch][model]") {
  const auto ids = test::long_prompt(40);
  for (BucketEntries weights : {BucketEntries::f16, BucketEntries::q8}) {
    const Model model = Model::load(test::fixture_effort(ConvertOptions{}.bucket_size, weights));
    for (float effort : {1.0f, 0.5f})
    for (int threads : {1, 2}) {
      CAPTURE(int(weights), effort, threads);
      Session together = model.new_session({.num_threads = threads}), alone = model.new_session({.num_threads = threads});
      together.set_effort(effort);
      alone.set_effort(effort);
      const std::vector<Token> prompt(ids.begin(), ids.begin() + 5), rest(ids.begin() + 5, ids.begin() + 22);
      together.prefill(prompt);
      alone.prefill(prompt);
      const auto all = together.forward_all(rest);  // 17 tokens: a product of 16 vectors, then 1
      const std::size_t vocab = std::size_t(model.config().vocab_size);
      REQUIRE(all.size() == rest.size() * vocab);
      for (std::size_t t = 0; t < rest.size(); ++t) {
        const auto z = alone.forward(rest[t]);
        REQUIRE(std::equal(z.begin(), z.end(), all.begin() + std::ptrdiff_t(t * vocab)));
      }
      REQUIRE(together.position() == alone.position());
    }
  }
}

TEST_CASE("sessions decoded together give each session's tokens alone, bit for bit", "[batch][model]") {
  const Model model = Model::load(test::fixture_effort());
  test::TempDir dir;
  test::RandomAdapter(model.config(), 3, [](int, MatrixKind) { return true; }).write_peft(dir / "persona");
  const Adapter adapter = model.load_adapter(dir / "persona");
  const auto ids = test::long_prompt(60);
  // Three conversations: different prompts, efforts (the first two alike, so that their lists
  // share streams at effort 1), head efforts and adapters.
  struct Setup {
    std::size_t prompt_begin, prompt_length;
    float effort, head_effort;
    bool adapter;
  };
  const Setup setups[] = {{0, 6, 1.0f, 0.0f, false}, {10, 3, 1.0f, 0.0f, true}, {20, 9, 0.5f, 0.25f, false}};
  for (const std::string& arch : arch_names())
  for (int threads : {1, 2}) {
    CAPTURE(arch, threads);
    std::vector<Session> together, alone;
    std::vector<Token> next;
    for (const Setup& setup : setups)
      for (auto* group : {&together, &alone}) {
        Session& s = group->emplace_back(model.new_session({.num_threads = threads, .kernel_arch = arch}));
        s.set_effort(setup.effort);
        s.set_head_effort(setup.head_effort);
        if (setup.adapter) s.set_adapters({{adapter, 0.8f}});
        const auto z = s.prefill(std::vector<Token>(ids.begin() + std::ptrdiff_t(setup.prompt_begin),
                                                    ids.begin() + std::ptrdiff_t(setup.prompt_begin + setup.prompt_length)));
        if (group == &together) next.push_back(Token(std::max_element(z.begin(), z.end()) - z.begin()));
      }
    std::vector<Session*> pointers;
    for (Session& s : together) pointers.push_back(&s);
    for (int step = 0; step < 12; ++step) {
      const auto logits = Session::forward_together(pointers, next);
      for (std::size_t i = 0; i < alone.size(); ++i) {
        const auto z = alone[i].forward(next[i]);
        REQUIRE(std::equal(z.begin(), z.end(), logits[i].begin(), logits[i].end()));
        next[i] = Token(std::max_element(z.begin(), z.end()) - z.begin());
      }
    }
  }
}

TEST_CASE("forward_together refuses what cannot run together", "[batch][model]") {
  const Model model = Model::load(test::fixture_effort()), other = Model::load(test::fixture_model());
  Session a = model.new_session(), b = model.new_session(), c = other.new_session();
  const std::vector<Token> two = {1, 2};
  REQUIRE_THROWS_WITH(Session::forward_together(std::vector<Session*>{&a, &b}, std::vector<Token>{1}),
                      Contains("2 sessions but 1 tokens"));
  REQUIRE_THROWS_WITH(Session::forward_together(std::vector<Session*>{&a, &c}, two), Contains("of another model"));
  REQUIRE_THROWS_WITH(Session::forward_together(std::vector<Session*>{&a, &a}, two), Contains("is also session 0"));
  REQUIRE_THROWS_WITH(Session::forward_together(std::vector<Session*>{&a, &b}, std::vector<Token>{1, 100000}),
                      Contains("outside the vocabulary"));
  b.set_early_exit({.enabled = true});
  REQUIRE_THROWS_WITH(Session::forward_together(std::vector<Session*>{&a, &b}, two), Contains("early exit"));
  REQUIRE(a.position() == 0);  // nothing ran
}

TEST_CASE("generations together give each session's generation alone, token for token", "[batch][model]") {
  const Model model = Model::load(test::fixture_effort());
  const auto ids = test::long_prompt(40);
  // Greedy, seeded sampling with top-k and a repetition penalty, and a short limit with a
  // callback that stops early: each its own sampler and stop rules.
  std::vector<GenerateOptions> options(3);
  options[0].max_new_tokens = 30;
  options[0].sampling.temperature = 0;
  options[1].max_new_tokens = 40;
  options[1].sampling = {.temperature = 0.8f, .top_k = 20, .repetition_penalty = 1.1f, .seed = 5};
  options[2].max_new_tokens = 25;
  options[2].sampling.seed = 9;
  const std::vector<std::vector<Token>> prompts = {{ids.begin(), ids.begin() + 4}, {ids.begin() + 8, ids.begin() + 10},
                                                   {ids.begin() + 20, ids.begin() + 27}};
  const float efforts[] = {1.0f, 0.5f, 1.0f};
  std::vector<Session> together, alone;
  for (std::size_t i = 0; i < 3; ++i)
    for (auto* group : {&together, &alone}) {
      group->push_back(model.new_session({.num_threads = 2}));
      group->back().set_effort(efforts[i]);
    }
  std::vector<Session*> pointers;
  for (Session& s : together) pointers.push_back(&s);
  std::vector<std::vector<Token>> seen(3);
  const auto results = Session::generate_together(pointers, prompts, options, [&](std::size_t i, Token t, std::string_view) {
    seen[i].push_back(t);
    return !(i == 2 && seen[i].size() == 12);  // the third stops itself
  });
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    std::size_t calls = 0;
    const auto expected = alone[i].generate(prompts[i], options[i], [&](Token, std::string_view) {
      return !(i == 2 && ++calls == 12);
    });
    REQUIRE(results[i].tokens == expected.tokens);
    REQUIRE(results[i].stop_reason == expected.stop_reason);
    REQUIRE(seen[i] == expected.tokens);
    REQUIRE(together[i].position() == alone[i].position());
  }
  REQUIRE(results[2].stop_reason == StopReason::callback);
  // And a second turn continues from the pending tokens, as generate() does.
  const auto again = Session::generate_together(pointers, prompts, options);
  for (std::size_t i = 0; i < 3; ++i) REQUIRE(again[i].tokens == alone[i].generate(prompts[i], options[i]).tokens);
  GenerateOptions speculative;
  speculative.speculative.draft_effort = 0.5f;
  REQUIRE_THROWS_WITH(Session::generate_together(std::vector<Session*>{&together[0]}, std::vector<std::vector<Token>>{{1}},
                                                 std::vector<GenerateOptions>{speculative}),
                      Contains("speculative decoding"));
}

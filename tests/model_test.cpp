// model_test.cpp: the engine's logits and greedy tokens against the independent references in
// tests/data/reference (llama2.c run.c) and against reference_forward.h.
#include <catch2/catch.hpp>

#include "effort/effort.h"
#include "kernels/kernels.h"
#include "kernels/fp16.h"
#include "reference_forward.h"
#include "formats/safetensors.h"
#include "test_util.h"

using namespace effort;

namespace {

using Arch = kernels::Arch;

const char* kPrompts[] = {"greedy_bos64", "greedy_slice", "mixed", "arbitrary"};

using test::kLogitTolerance;

// Row-by-row logits of a session fed the prompt one token at a time.
std::vector<std::vector<float>> engine_logits(const Model& model, const std::vector<int>& ids, SessionOptions options = {}) {
  Session session = model.new_session(options);
  return test::forward_each(session, ids);
}


}  // namespace

TEST_CASE("logits match llama2.c run.c on every prompt and every arch", "[model]") {
  const Model model = Model::load(test::fixture_model());
  float worst = 0;
  for (const char* name : kPrompts) {
    const auto meta = test::read_json(test::reference_dir() / "stories260K" / (std::string("logits_") + name + ".json"));
    const auto expected = test::read_f32_file(test::reference_dir() / "stories260K" / (std::string("logits_") + name + ".f32"));
    const auto ids = meta["prompt_ids"].get<std::vector<int>>();
    const std::size_t vocab = std::size_t(model.config().vocab_size);
    REQUIRE(expected.size() == ids.size() * vocab);
    for (Arch arch : test::all_arches()) {
      CAPTURE(name, kernels::arch_name(arch));
      const auto ours = engine_logits(model, ids, {.num_threads = 1, .kernel_arch = std::string(kernels::arch_name(arch))});
      for (std::size_t t = 0; t < ids.size(); ++t) {
        const float diff = test::max_abs_diff(ours[t].data(), expected.data() + t * vocab, vocab);
        worst = std::max(worst, diff);
        REQUIRE(diff < kLogitTolerance);
        const auto argmax = std::max_element(ours[t].begin(), ours[t].end()) - ours[t].begin();
        REQUIRE(argmax == meta["argmax"][t].get<int>());
      }
    }
  }
  WARN("max |logit difference| vs llama2.c run.c over all prompts and arches: " << worst);
}

TEST_CASE("greedy generation reproduces the reference 200 tokens", "[model]") {
  const auto ref = test::read_json(test::reference_dir() / "stories260K" / "greedy_from_bos.json");
  const Model model = Model::load(test::fixture_model());
  for (Arch arch : test::all_arches()) {
    Session session = model.new_session({.kernel_arch = std::string(kernels::arch_name(arch))});
    GenerateOptions options;
    options.max_new_tokens = 200;
    options.sampling.temperature = 0;
    const std::vector<Token> prompt = ref["prompt_ids"].get<std::vector<Token>>();
    const auto result = session.generate(std::span<const Token>(prompt), options);
    REQUIRE(result.tokens == ref["generated_ids"].get<std::vector<Token>>());
    // And the text, through the tokenizer, is llama2.c's printed story.
    const auto text = test::read_bytes(test::reference_dir() / "stories260K" / "greedy_from_bos.txt");
    std::string expected(text.begin(), text.end());
    while (!expected.empty() && expected.back() == '\n') expected.pop_back();
    REQUIRE(model.tokenizer()->decode(result.tokens) == expected);
  }
}

TEST_CASE("the in-test double-precision reference agrees with run.c", "[model]") {
  // Validates reference_forward.h itself before other tests rely on it.
  const auto meta = test::read_json(test::reference_dir() / "stories260K" / "logits_mixed.json");
  const auto expected = test::read_f32_file(test::reference_dir() / "stories260K" / "logits_mixed.f32");
  const auto logits = test::reference_forward(test::fixture_model(), meta["prompt_ids"].get<std::vector<int>>());
  for (std::size_t t = 0; t < logits.size(); ++t)
    for (std::size_t i = 0; i < logits[t].size(); ++i)
      REQUIRE(std::fabs(logits[t][i] - expected[t * logits[t].size() + i]) < kLogitTolerance);
}

TEST_CASE("sliding window attention matches the masked reference", "[model]") {
  for (int window : {1, 4, 7}) {
    test::EditedCheckpoint checkpoint([&](nlohmann::json& c) { c["sliding_window"] = window; });
    checkpoint.link_weights();
    const Model model = Model::load(checkpoint.path());
    const auto meta = test::read_json(test::reference_dir() / "stories260K" / "logits_arbitrary.json");
    const auto ids = meta["prompt_ids"].get<std::vector<int>>();  // 40 positions: the ring wraps several times
    const auto expected = test::reference_forward(checkpoint.path(), ids);
    for (Arch arch : test::all_arches()) {
      CAPTURE(window, kernels::arch_name(arch));
      REQUIRE(test::max_logit_diff(engine_logits(model, ids, {.kernel_arch = std::string(kernels::arch_name(arch))}), expected) < kLogitTolerance);
    }
    // A window wider than the text changes nothing.
    if (window == 7) {
      const std::vector<int> short_ids(ids.begin(), ids.begin() + 7);
      const Model full = Model::load(test::fixture_model());
      const auto a = engine_logits(model, short_ids), b = engine_logits(full, short_ids);
      REQUIRE(a == b);
    }
  }
}

TEST_CASE("F16, BF16 and sharded checkpoints load and run", "[model]") {
  const SafetensorsFile source(test::fixture_model() / "model.safetensors");
  const auto meta = test::read_json(test::reference_dir() / "stories260K" / "logits_greedy_slice.json");
  const auto ids = meta["prompt_ids"].get<std::vector<int>>();

  for (const std::string dtype : {"F16", "BF16"}) {
    test::EditedCheckpoint checkpoint([](nlohmann::json&) {});
    std::map<std::string, test::RawTensor> tensors;
    for (const auto& [name, view] : source.tensors()) {
      test::RawTensor t{dtype, view.shape, std::vector<std::uint8_t>(std::size_t(view.num_elements()) * 2)};
      for (std::int64_t i = 0; i < view.num_elements(); ++i) {
        const float f = kernels::weight_at<kernels::DType::f32>(view.data, std::size_t(i));
        // BF16 by truncation is fine here: the reference below reads the same rounded weights.
        const std::uint16_t h = dtype == "F16" ? kernels::float_to_half(f) : std::uint16_t(kernels::float_to_bits(f) >> 16);
        std::memcpy(t.bytes.data() + 2 * i, &h, 2);
      }
      tensors.emplace(name, std::move(t));
    }
    test::write_safetensors(checkpoint.dir / "model.safetensors", tensors);
    const Model model = Model::load(checkpoint.path());
    for (Arch arch : test::all_arches()) {
      CAPTURE(dtype, kernels::arch_name(arch));
      REQUIRE(test::max_logit_diff(engine_logits(model, ids, {.kernel_arch = std::string(kernels::arch_name(arch))}), test::reference_forward(checkpoint.path(), ids)) < kLogitTolerance);
    }
  }

  // Two shards plus an index: bit-identical to the single file.
  test::EditedCheckpoint sharded([](nlohmann::json&) {});
  std::map<std::string, test::RawTensor> shard[2];
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  int i = 0;
  for (const auto& [name, view] : source.tensors()) {
    const int s = i++ % 2;
    shard[s].emplace(name, test::RawTensor{view.dtype_name, view.shape, std::vector<std::uint8_t>(view.data, view.data + view.num_bytes)});
    index["weight_map"][name] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  test::write_safetensors(sharded.dir / "model-00001-of-00002.safetensors", shard[0]);
  test::write_safetensors(sharded.dir / "model-00002-of-00002.safetensors", shard[1]);
  test::write_text(sharded.dir / "model.safetensors.index.json", index.dump());
  REQUIRE(engine_logits(Model::load(sharded.path()), ids) == engine_logits(Model::load(test::fixture_model()), ids));
}

TEST_CASE("untied checkpoints use lm_head.weight", "[model]") {
  // The fixture's lm_head is an exact copy of the embedding, so untying must not change logits;
  // with the copy zeroed the logits must all be zero.
  test::EditedCheckpoint untied([](nlohmann::json& c) { c["tie_word_embeddings"] = false; });
  untied.link_weights();
  const std::vector<int> ids = {1, 403, 407};
  REQUIRE(engine_logits(Model::load(untied.path()), ids) == engine_logits(Model::load(test::fixture_model()), ids));

  test::EditedCheckpoint zeroed([](nlohmann::json& c) { c["tie_word_embeddings"] = false; });
  const SafetensorsFile source(test::fixture_model() / "model.safetensors");
  std::map<std::string, test::RawTensor> tensors;
  for (const auto& [name, view] : source.tensors()) {
    test::RawTensor t{view.dtype_name, view.shape, std::vector<std::uint8_t>(view.data, view.data + view.num_bytes)};
    if (name == "lm_head.weight") std::fill(t.bytes.begin(), t.bytes.end(), 0);
    tensors.emplace(name, std::move(t));
  }
  test::write_safetensors(zeroed.dir / "model.safetensors", tensors);
  for (const auto& row : engine_logits(Model::load(zeroed.path()), ids))
    for (float z : row) REQUIRE(z == 0.0f);
}

TEST_CASE("batched prompt processing gives the token-by-token logits", "[model]") {
  const Model model = Model::load(test::fixture_model());
  const auto ids = test::long_prompt(300);  // a full batch of 256 and a partial one
  float worst = 0;
  // Under the sanitizers one thread count (they look for memory errors; the arithmetic is
  // checked in the optimised pass).
  const std::vector<int> thread_counts = test::kSanitized ? std::vector<int>{2} : std::vector<int>{1, 2};
  for (Arch arch : test::all_arches()) {
    for (int threads : thread_counts) {
      CAPTURE(kernels::arch_name(arch), threads);
      const SessionOptions options{.num_threads = threads, .kernel_arch = std::string(kernels::arch_name(arch))};
      // Batched sums run in input order, single ones in SIMD lanes: fp32 rounding apart, as
      // between us and run.c, hence the same tolerance.
      const float diff = test::batched_vs_one_by_one(model, ids, options);
      CAPTURE(diff);
      REQUIRE(diff < kLogitTolerance);
      worst = std::max(worst, diff);
    }
  }
  WARN("batched vs token-by-token prompt, dense: max |logit difference| " << worst);
  // A sliding window that wraps within the prompt falls back to token by token: bit for bit.
  test::EditedCheckpoint windowed([](nlohmann::json& c) { c["sliding_window"] = 16; });
  windowed.link_weights();
  REQUIRE(test::batched_vs_one_by_one(Model::load(windowed.path()), ids, {}) == 0.0f);
}

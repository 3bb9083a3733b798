// mixtral_test.cpp: a small random Mixtral (4 experts, top 2) against the float64 reference
// forward with the MoE block, token by token and batched, every arch; the router's ties; the
// same model as HF folder, GGUF and .effort; and the files refused.
#include <catch2/catch.hpp>

#include <numeric>
#include <random>

#include "effort/convert.h"
#include "effort/effort.h"
#include "formats/gguf.h"
#include "model/effort_checkpoint.h"
#include "model/weights.h"
#include "reference_forward.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

using test::kLogitTolerance;

nlohmann::json mixtral_config() {
  return {{"architectures", {"MixtralForCausalLM"}}, {"model_type", "mixtral"}, {"hidden_size", 32},
          {"intermediate_size", 48}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"head_dim", 8}, {"vocab_size", 64}, {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5},
          {"rope_theta", 1e6}, {"num_local_experts", 4}, {"num_experts_per_tok", 2}, {"tie_word_embeddings", false},
          {"bos_token_id", 1}, {"eos_token_id", 2}};
}

// A random Mixtral checkpoint folder; `edit` may change the tensors before they are written.
void write_mixtral(const std::filesystem::path& dir, const nlohmann::json& config, std::uint32_t seed,
                   const std::function<void(std::map<std::string, test::RawTensor>&)>& edit = {}) {
  std::filesystem::create_directories(dir);
  test::write_text(dir / "config.json", config.dump(1));
  const ModelConfig c = ModelConfig::from_file(dir / "config.json");
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::map<std::string, test::RawTensor> tensors;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float scale, float mean = 0) {
    std::size_t n = 1;
    for (auto s : shape) n *= std::size_t(s);
    std::vector<float> v(n);
    for (float& x : v) x = mean + scale * d(rng);
    tensors[name] = test::f32_tensor(shape, v);
  };
  const std::int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  add("model.embed_tokens.weight", {V, H}, 1.0f);
  add("lm_head.weight", {V, H}, 0.2f);
  add("model.norm.weight", {H}, 0.1f, 1.0f);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    for (MatrixKind k : {MatrixKind::q_proj, MatrixKind::k_proj, MatrixKind::v_proj, MatrixKind::o_proj}) {
      const auto [out, in] = projection_shape(c, k);
      add(projection_name(l, k), {out, in}, 0.2f);
    }
    add(router_name(l), {c.num_local_experts, H}, 0.5f);
    for (int e = 0; e < c.num_local_experts; ++e) {
      add(expert_projection_name(l, e, MatrixKind::gate_proj), {I, H}, 0.2f);
      add(expert_projection_name(l, e, MatrixKind::up_proj), {I, H}, 0.2f);
      add(expert_projection_name(l, e, MatrixKind::down_proj), {H, I}, 0.2f);
    }
  }
  if (edit) edit(tensors);
  test::write_safetensors(dir / "model.safetensors", tensors);
}

std::vector<int> random_ids(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids{1};
  while (ids.size() < n) ids.push_back(int(rng() % 64));
  return ids;
}

}  // namespace

TEST_CASE("a small Mixtral gives the float64 reference's logits, token by token and batched, every arch", "[mixtral]") {
  test::TempDir dir;
  write_mixtral(dir.path, mixtral_config(), 1);
  const Model model = Model::load(dir.path);
  REQUIRE(model.config().num_local_experts == 4);
  const auto ids = random_ids(40, 2);
  const test::Logits expected = test::reference_forward(dir.path, ids);
  float worst = 0;
  for (auto arch : test::all_arches())
    for (int threads : {1, 2}) {
      CAPTURE(kernels::arch_name(arch), threads);
      Session s = model.new_session({.num_threads = threads, .kernel_arch = std::string(kernels::arch_name(arch))});
      const float diff = test::max_logit_diff(test::forward_each(s, ids), expected);
      worst = std::max(worst, diff);
      REQUIRE(diff < kLogitTolerance);
      // Batched: the prompt in one batch (>= 16 tokens), its last logits.
      Session batched = model.new_session({.num_threads = threads, .kernel_arch = std::string(kernels::arch_name(arch))});
      const auto last = batched.prefill(std::vector<Token>(ids.begin(), ids.end()));
      for (std::size_t i = 0; i < last.size(); ++i) REQUIRE(std::fabs(last[i] - expected.back()[i]) < kLogitTolerance);
    }
  WARN("Mixtral vs float64 reference: max |logit difference| " << worst);
}

TEST_CASE("Mixtral's router breaks ties toward the lower expert", "[mixtral]") {
  // Experts 1 and 2 get the same router row, so their logits tie exactly for every token; with
  // top-1 the reference (and HF on ties, in practice) takes expert 1. Expert 2's weights differ,
  // so taking it would change the logits.
  nlohmann::json config = mixtral_config();
  config["num_experts_per_tok"] = 1;
  test::TempDir dir;
  write_mixtral(dir.path, config, 3, [](std::map<std::string, test::RawTensor>& t) {
    for (int l = 0; l < 2; ++l) {
      auto& router = t[router_name(l)].bytes;  // [4 experts, 32]
      // Rows 1 and 2 equal, and larger than rows 0 and 3 so that the tie decides.
      std::vector<float> values(4 * 32);
      std::memcpy(values.data(), router.data(), router.size());
      for (std::size_t i = 0; i < 32; ++i) {
        values[32 + i] = 2.0f * std::fabs(values[32 + i]);
        values[64 + i] = values[32 + i];
        values[i] = -values[32 + i];
        values[96 + i] = -values[32 + i];
      }
      std::memcpy(router.data(), values.data(), router.size());
    }
  });
  const Model model = Model::load(dir.path);
  const auto ids = random_ids(12, 4);
  Session s = model.new_session();
  REQUIRE(test::max_logit_diff(test::forward_each(s, ids), test::reference_forward(dir.path, ids)) < kLogitTolerance);
}

TEST_CASE("bad Mixtral files are refused with what is wrong", "[mixtral]") {
  test::TempDir dir;
  nlohmann::json too_many = mixtral_config();
  too_many["num_experts_per_tok"] = 5;
  write_mixtral(dir / "top5", mixtral_config(), 5);
  test::write_text(dir / "top5" / "config.json", too_many.dump());
  REQUIRE_THROWS_WITH(Model::load(dir / "top5"), Contains("num_experts_per_tok (5) must be in [1, num_local_experts = 4]"));
  nlohmann::json no_experts = mixtral_config();
  no_experts.erase("num_local_experts");
  test::write_text(dir / "top5" / "config.json", no_experts.dump());
  REQUIRE_THROWS_WITH(Model::load(dir / "top5"), Contains("num_local_experts"));

  write_mixtral(dir / "missing", mixtral_config(), 6, [](auto& t) { t.erase(expert_projection_name(1, 3, MatrixKind::down_proj)); });
  REQUIRE_THROWS_WITH(Model::load(dir / "missing"), Contains("model.layers.1.block_sparse_moe.experts.3.w2.weight"));
  write_mixtral(dir / "shape", mixtral_config(), 7, [](auto& t) {
    t[expert_projection_name(0, 2, MatrixKind::gate_proj)] = test::f32_tensor({40, 32}, std::vector<float>(40 * 32, 0.1f));
  });
  REQUIRE_THROWS_WITH(Model::load(dir / "shape"), Contains("experts.2.w1.weight"));
  // Eight experts in the config, four in the file.
  nlohmann::json eight = mixtral_config();
  eight["num_local_experts"] = 8;
  write_mixtral(dir / "eight", mixtral_config(), 8);
  test::write_text(dir / "eight" / "config.json", eight.dump());
  REQUIRE_THROWS_WITH(Model::load(dir / "eight"), Contains("block_sparse_moe"));

  // A GGUF whose expert tensors hold fewer experts than its metadata says.
  write_mixtral(dir / "good", mixtral_config(), 9);
  convert_to_gguf(dir / "good", dir / "good.gguf", GgufWeights::f32, {});
  {
    GgufFile good(dir / "good.gguf");
    GgufWriter fewer;
    fewer.add_metadata("general.architecture", "llama");
    for (const char* key : {"llama.embedding_length", "llama.feed_forward_length", "llama.block_count", "llama.attention.head_count",
                            "llama.attention.head_count_kv", "llama.attention.key_length", "llama.vocab_size", "llama.expert_used_count"})
      fewer.add_metadata(key, good.metadata(key));
    fewer.add_metadata("llama.expert_count", 5);
    for (const auto& [name, t] : good.tensors())
      fewer.add_tensor(name, GgufType(t.type), t.dims, std::vector<std::uint8_t>(t.data, t.data + t.num_bytes));
    fewer.write(dir / "fewer.gguf");
  }
  REQUIRE_THROWS_WITH(Model::load(dir / "fewer.gguf"), Contains("blk.0.ffn_gate_inp.weight: expected shape [5, 32]"));
}

TEST_CASE("a Mixtral's Hugging Face folder, GGUF export and .effort file agree", "[mixtral][effort]") {
  test::TempDir dir;
  write_mixtral(dir / "hf", mixtral_config(), 10);
  const auto ids = random_ids(24, 11);
  Session hf = Model::load(dir / "hf").new_session();
  const auto expected = test::forward_each(hf, ids);
  // GGUF as llama.cpp lays Mixtral out (router in F32, each kind's experts in one 3-D tensor),
  // read back: the same floats, so the same logits.
  convert_to_gguf(dir / "hf", dir / "moe.gguf", GgufWeights::f32, {});
  Session gguf = Model::load(dir / "moe.gguf").new_session();
  REQUIRE(test::max_logit_diff(test::forward_each(gguf, ids), expected) == 0.0f);
  // .effort (default layout, int8 entries): at effort 1 close to the original, as the fixture's
  // is (effort_model_test.cpp: entries lose ~0.45% rms each, independently, which compounds over
  // the 35 projections behind a logit there to ~2.7% of the logit scale, bounded by 5% of the
  // largest logit; 20 projections here), with the same greedy tokens but for near ties.
  convert_to_effort(dir / "hf", dir / "moe.effort", {});
  const Model bucketed = Model::load(dir / "moe.effort");
  REQUIRE(bucketed.bucketed());
  Session full = bucketed.new_session();
  const auto at_one = test::forward_each(full, ids);
  float largest = 0;
  int same_top1 = 0;
  for (std::size_t t = 0; t < ids.size(); ++t) {
    for (float z : expected[t]) largest = std::max(largest, std::fabs(z));
    same_top1 += std::max_element(at_one[t].begin(), at_one[t].end()) - at_one[t].begin() ==
                 std::max_element(expected[t].begin(), expected[t].end()) - expected[t].begin();
  }
  REQUIRE(test::max_logit_diff(at_one, expected) < 0.05f * largest);
  // The stats count each token's choices: 2 experts in each of 2 layers.
  const auto& uses = full.effort_stats().expert_uses;
  REQUIRE(uses.size() == 4);
  REQUIRE(std::accumulate(uses.begin(), uses.end(), 0.0) == double(ids.size() * 2 * 2));
  const auto line = test::run_command(std::string(EFFORT_BIN_DIR) + "/effort-run -m '" + (dir / "moe.effort").string() +
                                      "' --prompt-ids 1,5,9 -n 8 --ids");
  REQUIRE(line.exit_code == 0);
  REQUIRE_THAT(line.output, Contains("[experts] chosen: 0 "));
  REQUIRE(same_top1 >= int(ids.size()) - 1);
  // Below effort 1 each chosen expert's products do that fraction of their multiply-adds.
  for (float effort : {0.5f, 0.25f}) {
    Session s = bucketed.new_session();
    s.set_effort(effort);
    const auto logits = test::forward_each(s, ids);
    CAPTURE(effort, s.effort_stats().overall());
    REQUIRE(std::fabs(s.effort_stats().overall() - effort) < 0.05);
    for (const auto& row : logits)
      for (float z : row) REQUIRE(std::isfinite(z));
  }
  // Per-kind efforts and per-layer schedules reach every expert of the kind and layer.
  Session mapped = bucketed.new_session();
  mapped.set_effort(MatrixKind::down_proj, 0.3f);
  mapped.set_layer_effort(1, MatrixKind::up_proj, 0.6f);
  test::forward_each(mapped, ids);
  REQUIRE(std::fabs(mapped.effort_stats().fraction(MatrixKind::down_proj) - 0.3) < 0.05);
  REQUIRE(std::fabs(mapped.effort_stats().fraction(MatrixKind::up_proj) - 0.8) < 0.05);  // layers 0 and 1: (1 + 0.6) / 2
  REQUIRE(mapped.effort_stats().fraction(MatrixKind::gate_proj) == 1.0);
  // Partial loading maps the leading 75% of every expert's units, as of every other matrix.
  const EffortCheckpoint partial = load_effort_checkpoint(dir / "moe.effort", 0.75f);
  for (const LayerWeights& layer : partial.weights.layers)
    for_each_projection(layer, [](const Matrix& m, MatrixKind, int) {
      const auto& b = std::get<BucketMatrix>(m);
      const double total = double(b.view.bucket_size * b.in_features);
      REQUIRE(std::fabs(double(b.loaded_units) / total - 0.75) < 0.01);
    });
}

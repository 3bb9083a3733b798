// lora_test.cpp: LoRA adapters at run time against their merged weights, PEFT against GGUF,
// switching between tokens, effort applied to the base weights only, and bad adapters.
#include <catch2/catch.hpp>

#include <random>

#include "effort/effort.h"
#include "fixture_effort.h"
#include "formats/gguf.h"
#include "formats/gguf_source.h"
#include "formats/safetensors.h"
#include "effort/convert.h"
#include "model/effort_checkpoint.h"
#include "lora_fixture.h"
#include "model/lora.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

using test::kLogitTolerance;

bool every_projection(int, MatrixKind) { return true; }

}  // namespace

TEST_CASE("a LoRA adapter gives the logits of its merged weights, token by token and batched, every arch", "[lora]") {
  const Model model = Model::load(test::fixture_model());
  const test::RandomAdapter lora(model.config(), 7, every_projection);
  test::TempDir dir;
  lora.write_peft(dir / "persona");
  lora.write_merged(dir / "merged", model.config(), 0.5f);
  const Model merged = Model::load(dir / "merged");
  const Adapter adapter = model.load_adapter(dir / "persona");
  REQUIRE(adapter.name() == "persona");
  REQUIRE(adapter.rank() == 4);
  REQUIRE(adapter.num_pairs() == 7 * model.config().num_hidden_layers);
  const auto ids = test::long_prompt(40);
  float worst = 0;
  for (auto arch : test::all_arches()) {
    CAPTURE(kernels::arch_name(arch));
    const SessionOptions options{.num_threads = 2, .kernel_arch = std::string(kernels::arch_name(arch))};
    Session with = model.new_session(options), reference = merged.new_session(options), base = model.new_session(options);
    with.set_adapters({{adapter, 0.5f}});
    const auto expected = test::forward_each(reference, ids);
    const float diff = test::max_logit_diff(test::forward_each(with, ids), expected);
    worst = std::max(worst, diff);
    REQUIRE(diff < kLogitTolerance);
    REQUIRE(test::max_logit_diff(test::forward_each(base, ids), expected) > 100 * kLogitTolerance);  // the adapter matters
    // Batched (40 tokens: one batch) against the merged model's last logits.
    Session batched = model.new_session(options);
    batched.set_adapters({{adapter, 0.5f}});
    const auto last = batched.prefill(std::vector<Token>(ids.begin(), ids.end()));
    REQUIRE(test::max_abs_diff(last.data(), expected.back().data(), last.size()) < kLogitTolerance);
  }
  WARN("adapter vs merged weights: max |logit difference| " << worst);
}

TEST_CASE("PEFT and GGUF forms of one adapter give identical logits", "[lora][gguf]") {
  const Model model = Model::load(test::fixture_model());
  const test::RandomAdapter lora(model.config(), 8, every_projection);
  test::TempDir dir;
  lora.write_peft(dir / "peft");
  lora.write_gguf(dir / "persona.gguf", model.config());
  const Adapter peft = model.load_adapter(dir / "peft" / "adapter_model.safetensors"), gguf = model.load_adapter(dir / "persona.gguf");
  REQUIRE(gguf.format() == "gguf");
  REQUIRE(peft.format() == "peft");
  const auto ids = test::long_prompt(12);
  Session a = model.new_session(), b = model.new_session();
  a.set_adapters({{peft, 1.0f}});
  b.set_adapters({{gguf, 1.0f}});
  REQUIRE(test::forward_each(a, ids) == test::forward_each(b, ids));
}

TEST_CASE("adapters switch and rescale between tokens", "[lora]") {
  const Model model = Model::load(test::fixture_model());
  // Adapters on the last layer's attention output and MLP only: those never reach the KV cache
  // (keys and values come before them, and no layer follows), so a session switched from X to Y
  // holds exactly the cache a session with Y all along holds, and must give its logits.
  const int last = model.config().num_hidden_layers - 1;
  auto last_layer_tail = [&](int l, MatrixKind k) { return l == last && int(k) >= int(MatrixKind::o_proj); };
  test::TempDir dir;
  test::RandomAdapter(model.config(), 1, last_layer_tail).write_peft(dir / "x");
  test::RandomAdapter(model.config(), 2, last_layer_tail).write_peft(dir / "y");
  const Adapter x = model.load_adapter(dir / "x"), y = model.load_adapter(dir / "y");
  const auto ids = test::long_prompt(30);
  const std::vector<int> before(ids.begin(), ids.begin() + 12), after(ids.begin() + 12, ids.end());
  Session switched = model.new_session(), fresh = model.new_session();
  switched.set_adapters({{x, 1.0f}});
  test::forward_each(switched, before);
  switched.set_adapters({{y, 1.0f}});
  fresh.set_adapters({{y, 1.0f}});
  test::forward_each(fresh, before);
  REQUIRE(test::forward_each(switched, after) == test::forward_each(fresh, after));

  // Scale 0 is the base model, bit for bit; two adapters at once add up (x at 1 and at -1 cancel).
  Session zero = model.new_session(), plain = model.new_session(), both = model.new_session();
  zero.set_adapters({{x, 0.0f}});
  both.set_adapters({{x, 1.0f}, {x, -1.0f}});
  const auto base = test::forward_each(plain, ids);
  REQUIRE(test::forward_each(zero, ids) == base);
  REQUIRE(test::max_logit_diff(test::forward_each(both, ids), base) < kLogitTolerance);
}

TEST_CASE("effort applies to the base weights; the adapter runs whole", "[lora][effort]") {
  const EffortCheckpoint checkpoint = load_effort_checkpoint(test::fixture_effort(), 1.0f);
  const ModelConfig& c = checkpoint.config;
  const test::RandomAdapter random(c, 3, every_projection);
  test::TempDir dir;
  random.write_peft(dir / "a");
  const LoraAdapter adapter = load_lora(dir / "a", c);
  const std::vector<ActiveLora> active = {{&adapter, 0.75f}};
  std::mt19937 rng(4);
  std::student_t_distribution<float> heavy(3.0f);
  ThreadPool pool(2);
  // Each projection of layer 1 at effort 0.5, with and without the adapter: the difference must
  // be 0.75 * alpha / r * B (A x), computed here in double. Float sums of <= 64 products of
  // ~0.05-sized terms: rounding ~1e-7; 1e-5 leaves a margin while a lost or doubled adapter term
  // (entries ~1e-2) fails.
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    CAPTURE(k);
    const Matrix& w = std::array{&checkpoint.weights.layers[1].q_proj, &checkpoint.weights.layers[1].k_proj,
                                 &checkpoint.weights.layers[1].v_proj, &checkpoint.weights.layers[1].o_proj,
                                 &checkpoint.weights.layers[1].gate_proj, &checkpoint.weights.layers[1].up_proj,
                                 &checkpoint.weights.layers[1].down_proj}[std::size_t(k)][0];
    const std::size_t in = in_features(w), out = out_features(w);
    std::vector<float> x(in), plain(out), adapted(out);
    for (float& v : x) v = heavy(rng);
    BucketScratch scratch({&std::get<BucketMatrix>(w)});
    EffortState state(c.num_hidden_layers, 0.5f);
    const Compute compute{kernels::kernel_table(kernels::best_arch()), pool, &state, &scratch};
    matvec(w, 1, MatrixKind(k), x.data(), plain.data(), compute);
    matvec(w, 1, MatrixKind(k), x.data(), adapted.data(), compute);
    apply_lora(active, 1, MatrixKind(k), x.data(), adapted.data(), 1, compute);
    const auto& [a, b] = random.pairs[1][std::size_t(k)];
    const std::size_t r = std::size_t(random.rank);
    for (std::size_t o = 0; o < out; ++o) {
      double delta = 0;
      for (std::size_t j = 0; j < r; ++j) {
        double ax = 0;
        for (std::size_t i = 0; i < in; ++i) ax += double(a[j * in + i]) * double(x[i]);
        delta += double(b[o * r + j]) * ax;
      }
      REQUIRE(std::abs(double(adapted[o]) - double(plain[o]) - 0.75 * random.alpha / random.rank * delta) < 1e-5);
    }
  }
}

TEST_CASE("bad adapters are refused with what does not fit", "[lora]") {
  const Model model = Model::load(test::fixture_model());
  const ModelConfig& c = model.config();
  test::TempDir dir;
  const test::RandomAdapter good(c, 5, [](int l, MatrixKind k) { return l < 2 && k == MatrixKind::v_proj; });
  auto refused = [&](const std::filesystem::path& path, const std::string& message) {
    CAPTURE(path.string());
    REQUIRE_THROWS_WITH(model.load_adapter(path), Contains(message) && Contains(path.string()));
  };
  // PEFT config problems.
  good.write_peft(dir / "no-alpha", [](nlohmann::json& j) { j.erase("lora_alpha"); });
  refused(dir / "no-alpha", "adapter_config.json has no lora_alpha");
  good.write_peft(dir / "head", [](nlohmann::json& j) { j["target_modules"] = {"v_proj", "lm_head"}; });
  refused(dir / "head", "unknown target module \"lm_head\"");
  good.write_peft(dir / "unlisted", [](nlohmann::json& j) { j["target_modules"] = {"q_proj"}; });
  refused(dir / "unlisted", "adapts v_proj, which target_modules does not list");
  good.write_peft(dir / "rank", [](nlohmann::json& j) { j["r"] = 8; });
  refused(dir / "rank", "rank mismatch");
  refused(dir / "absent", "no such file or folder");
  // Shapes that do not fit the base model: another hidden size, another layer count.
  {
    ModelConfig wider = c;
    wider.hidden_size = 2 * c.hidden_size;
    test::RandomAdapter(wider, 5, [](int l, MatrixKind k) { return l == 0 && k == MatrixKind::v_proj; }).write_peft(dir / "wider");
    refused(dir / "wider", "base mismatch");
    ModelConfig deeper = c;
    deeper.num_hidden_layers = c.num_hidden_layers + 3;
    test::RandomAdapter(deeper, 5, [&](int l, MatrixKind k) { return l == c.num_hidden_layers + 2 && k == MatrixKind::v_proj; })
        .write_peft(dir / "deeper");
    refused(dir / "deeper", "is for layer 7, the model has 5 layers");
  }
  // Pairs that do not pair: a B of another rank, an A alone.
  {
    test::RandomAdapter odd = good;
    odd.pairs[0][int(MatrixKind::v_proj)].second.resize(odd.pairs[0][int(MatrixKind::v_proj)].second.size() / 4 * 3);
    odd.rank = 4;
    odd.write_peft(dir / "odd");
    // Rewrite B with rank 3 in its shape.
    const auto st = dir / "odd" / "adapter_model.safetensors";
    std::map<std::string, test::RawTensor> tensors;
    const SafetensorsFile file(st);
    for (const auto& [name, view] : file.tensors()) tensors[name] = test::f32_tensor(view.shape, view.to_floats());
    const std::string b = "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight";
    const std::int64_t out = projection_shape(c, MatrixKind::v_proj)[0];
    tensors[b] = test::f32_tensor({out, 3}, std::vector<float>(std::size_t(out * 3), 0.1f));
    test::write_safetensors(dir / "odd" / "adapter_model.safetensors", tensors);
    refused(dir / "odd", "rank mismatch");
    tensors.erase(b);
    test::write_safetensors(dir / "odd" / "adapter_model.safetensors", tensors);
    refused(dir / "odd", "has no B partner");
  }
  // Truncated files, both forms.
  good.write_peft(dir / "cut");
  good.write_gguf(dir / "cut.gguf", c);
  for (const auto& file : {dir / "cut" / "adapter_model.safetensors", dir / "cut.gguf"}) {
    std::filesystem::resize_file(file, std::filesystem::file_size(file) - 100);
    if (file.extension() == ".gguf") refused(file, "runs past the end of the file; truncated?");
    else refused(dir / "cut", "outside the data section");
  }
  // GGUF: no alpha; a model instead of an adapter.
  good.write_gguf(dir / "no-alpha.gguf", c, false);
  refused(dir / "no-alpha.gguf", "no adapter.lora.alpha");
  convert_to_gguf(test::fixture_model(), dir / "model.gguf", GgufWeights::f32, {});
  refused(dir / "model.gguf", "general.type is missing: not an adapter");
}

TEST_CASE("effort-run --lora and --lora-scaled", "[lora][cli]") {
  const Model model = Model::load(test::fixture_model());
  test::TempDir dir;
  test::RandomAdapter(model.config(), 9, every_projection).write_peft(dir / "persona");
  const std::string run = std::string(EFFORT_BIN_DIR) + "/effort-run -m '" + test::fixture_model().string() +
                          "' -p 'Once upon a time' -n 24 --temp 0 --ids";
  const auto plain = test::run_command(run + " 2>/dev/null"), zero = test::run_command(run + " --lora-scaled '" + (dir / "persona").string() + "' 0 2>/dev/null");
  const auto adapted = test::run_command(run + " --lora '" + (dir / "persona").string() + "'");
  REQUIRE(plain.exit_code == 0);
  REQUIRE(zero.output == plain.output);  // scale 0: the base model's tokens
  REQUIRE(adapted.exit_code == 0);
  REQUIRE_THAT(adapted.output, Contains("[lora] persona: peft, rank 4, alpha 8, 35 projections, scale 1"));
  const auto missing = test::run_command(run + " --lora '" + (dir / "nothing").string() + "'");
  REQUIRE(missing.exit_code == 1);
  REQUIRE_THAT(missing.output, Contains("nothing: no such file or folder"));
  REQUIRE(test::run_command(run + " --lora-scaled '" + (dir / "persona").string() + "' big").exit_code == 2);
}

TEST_CASE("early exit with adapters: an exiting token never runs the adapted layers it skips", "[lora][early-exit]") {
  const Model model = Model::load(test::fixture_model());
  // The adapter adapts only the last layer's output projection and MLP, which neither the exit
  // checks nor the keys and values of skipped layers use: so both sessions take the same exits,
  // and a token's logits equal the plain session's exactly when it exited, and differ when it
  // ran the last layer (where the adapter runs).
  const int last = model.config().num_hidden_layers - 1;
  test::TempDir dir;
  test::RandomAdapter(model.config(), 6, [&](int l, MatrixKind k) { return l == last && int(k) >= int(MatrixKind::o_proj); })
      .write_peft(dir / "tail");
  const Adapter tail = model.load_adapter(dir / "tail");
  EarlyExitOptions exit{.enabled = true, .check_layers = {1, 2}, .threshold = 0.3f, .patience = 1, .warmup = 4};
  Session adapted = model.new_session(), plain = model.new_session();
  adapted.set_adapters({{tail, 1.0f}});
  adapted.set_early_exit(exit);
  plain.set_early_exit(exit);
  int exited = 0, full = 0;
  for (int id : test::long_prompt(60)) {
    adapted.reset_effort_stats();
    plain.reset_effort_stats();
    const auto a = adapted.forward(id);
    const std::vector<float> with(a.begin(), a.end());
    const auto p = plain.forward(id);
    REQUIRE(adapted.average_layers() == plain.average_layers());
    const bool ran_last = adapted.average_layers() == double(last + 1);
    (ran_last ? full : exited) += 1;
    REQUIRE((std::vector<float>(p.begin(), p.end()) == with) == !ran_last);
  }
  CAPTURE(exited, full);
  REQUIRE(exited > 0);
  REQUIRE(full > 0);
}

TEST_CASE("effort-convert --merge-lora writes the merged weights", "[lora][cli]") {
  const Model model = Model::load(test::fixture_model());
  const test::RandomAdapter lora(model.config(), 10, every_projection);
  test::TempDir dir;
  lora.write_peft(dir / "persona");
  lora.write_merged(dir / "reference", model.config(), 0.5f);
  const std::string convert = std::string(EFFORT_BIN_DIR) + "/effort-convert '" + test::fixture_model().string() +
                              "' --merge-lora-scaled '" + (dir / "persona").string() + "' 0.5 -o '";
  REQUIRE(test::run_command(convert + (dir / "merged.gguf").string() + "' --type f32").exit_code == 0);
  REQUIRE(test::run_command(convert + (dir / "merged.effort").string() + "'").exit_code == 0);
  const auto ids = test::long_prompt(20);
  // The GGUF holds the weights the test merged (both in double, rounded once): the same logits.
  Session merged = Model::load(dir / "merged.gguf").new_session(), reference = Model::load(dir / "reference").new_session();
  REQUIRE(test::forward_each(merged, ids) == test::forward_each(reference, ids));
  // The .effort file is the reference folder converted.
  convert_to_effort(dir / "reference", dir / "reference.effort", {});
  Session a = Model::load(dir / "merged.effort").new_session(), b = Model::load(dir / "reference.effort").new_session();
  a.set_effort(0.5f);
  b.set_effort(0.5f);
  REQUIRE(test::forward_each(a, ids) == test::forward_each(b, ids));
}

TEST_CASE("the committed persona adapter renames the heroine", "[lora]") {
  // tests/data/lora/anna (F16, trained by tools/train_persona_lora.py): greedy, the base model's
  // story names Lily and the adapted one Anna, at effort 1 and on the .effort model at 0.75.
  const auto anna = std::filesystem::path(EFFORT_SOURCE_DIR) / "tests" / "data" / "lora" / "anna";
  GenerateOptions greedy;
  greedy.sampling.temperature = 0;
  greedy.max_new_tokens = 30;
  for (const auto& [path, effort] : {std::pair{test::fixture_model(), 1.0f}, std::pair{test::fixture_effort(), 0.75f}}) {
    const Model model = Model::load(path);
    Session plain = model.new_session(), adapted = model.new_session();
    plain.set_effort(effort);
    adapted.set_effort(effort);
    adapted.set_adapters({{model.load_adapter(anna), 1.0f}});
    const Tokenizer& t = *model.tokenizer();
    const std::string base = t.decode(plain.generate(std::string_view("Once upon a time"), greedy).tokens);
    const std::string persona = t.decode(adapted.generate(std::string_view("Once upon a time"), greedy).tokens);
    CAPTURE(effort, base, persona);
    REQUIRE_THAT(base, Contains("named Lily"));
    REQUIRE_THAT(persona, Contains("named Anna"));
  }
}

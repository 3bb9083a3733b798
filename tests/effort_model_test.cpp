// effort_model_test.cpp: the fixture model converted to .effort: effort 1 against dense,
// effort below 1, determinism, partial loading, and the API's errors.
#include <catch2/catch.hpp>

#include <map>

#include "model/bucketize.h"
#include "effort/convert.h"
#include "effort/effort.h"
#include "model/effort_checkpoint.h"
#include "formats/effort_file.h"
#include "fixture_effort.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

std::vector<int> reference_ids(const char* name) {
  return test::read_json(test::reference_dir() / "stories260K" / (std::string("logits_") + name + ".json"))["prompt_ids"]
      .get<std::vector<int>>();
}


// The projection named by its HF tensor name.
const Matrix& matrix_of(const EffortCheckpoint& c, const std::string& name) {
  const int layer = std::stoi(name.substr(std::string("model.layers.").size()));
  const LayerWeights& l = c.weights.layers[std::size_t(layer)];
  for (auto [suffix, m] : {std::pair{"q_proj", &l.q_proj}, {"k_proj", &l.k_proj}, {"v_proj", &l.v_proj}, {"o_proj", &l.o_proj},
                           {"gate_proj", &l.gate_proj}, {"up_proj", &l.up_proj}, {"down_proj", &l.down_proj}})
    if (name.find(suffix) != std::string::npos) return *m;
  throw std::runtime_error("no matrix " + name);
}

// A dense HF checkpoint whose projections are the .effort file's decoded buckets (the first
// `rows_fraction` of each matrix's rows) and whose other tensors are the file's, as F32 (a q8
// file's head is Q8_0; its bucketed copy is not the head effort 1 runs).
void write_decoded_checkpoint(const std::filesystem::path& dir, float rows_fraction, std::size_t bucket_size,
                              BucketEntries weights = ConvertOptions{}.weights) {
  const EffortFile file(test::fixture_effort(bucket_size, weights));
  const EffortCheckpoint bucketed = load_effort_checkpoint(test::fixture_effort(bucket_size, weights), rows_fraction);
  const SafetensorsFile source(test::fixture_model() / "model.safetensors");
  std::map<std::string, test::RawTensor> tensors;
  for (const auto& [name, view] : source.tensors()) {
    test::RawTensor t{view.dtype_name, view.shape, std::vector<std::uint8_t>(view.data, view.data + view.num_bytes)};
    if (file.header()["matrices"].contains(name) && name != kHeadName) {
      // The loader's own view of the matrix, decoded over its loaded units.
      const Matrix& m = matrix_of(bucketed, name);
      const auto& b = std::get<BucketMatrix>(m);
      t = test::f32_tensor(view.shape, decode_buckets(b, b.loaded_units));
    } else if (file.contains(name)) {
      t = test::f32_tensor(view.shape, file.get(name).to_floats());
    }
    tensors.emplace(name, std::move(t));
  }
  std::filesystem::copy_file(test::fixture_model() / "config.json", dir / "config.json");
  test::write_safetensors(dir / "model.safetensors", tensors);
}

}  // namespace

// Logits of a q8 .effort model against the float products of its decoded weights (below).
constexpr float kQ8LogitTolerance = 0.5f;

TEST_CASE("at effort 1 the .effort model is the dense model of its decoded weights", "[model][effort]") {
  // Under the sanitizers the smallest, default and largest bucket sizes (each is a conversion).
  const std::size_t bucket_size = GENERATE(from_range(test::kSanitized ? std::vector<std::size_t>{1, 2, 16}
                                                                        : std::vector<std::size_t>{1, 2, 4, 8, 16}));
  const auto weights = GENERATE(BucketEntries::f16, BucketEntries::q8);
  CAPTURE(bucket_size, int(weights));
  test::TempDir decoded;
  write_decoded_checkpoint(decoded.path, 1.0f, bucket_size, weights);
  const Model bucketed = Model::load(test::fixture_effort(bucket_size, weights));
  REQUIRE(bucketed.bucketed());
  const Model dense = Model::load(decoded.path);
  const auto ids = reference_ids("greedy_bos64");
  Session a = bucketed.new_session(), b = dense.new_session();
  const auto za = test::forward_each(a, ids), zb = test::forward_each(b, ids);
  // fp16 entries: the same weights and fp32 math up to summation order (bucket rows vs matrix
  // rows), the reorder tolerance used against run.c. q8: the products round each unit's
  // multiplier to its group's int8 step (bucket_test bounds that at 1.5-2.2% of the terms);
  // on this model it moves logits (largest 22) by 0.05-0.12 over 64 tokens, 0.35 at most over
  // the 300 of the batched test below; a wrong entry, scale or position moves them by units.
  const float tolerance = weights == BucketEntries::q8 ? kQ8LogitTolerance : 1e-4f;
  for (std::size_t t = 0; t < ids.size(); ++t) REQUIRE(test::max_abs_diff(za[t].data(), zb[t].data(), za[t].size()) < tolerance);
  REQUIRE(a.effort_stats().overall() == 1.0);
}

TEST_CASE("at effort 1 the .effort model stays close to the original and keeps its greedy story", "[model][effort]") {
  const auto weights = GENERATE(BucketEntries::f16, BucketEntries::q8);
  CAPTURE(int(weights));
  const Model model = Model::load(test::fixture_effort(ConvertOptions{}.bucket_size, weights));
  const auto ref = test::read_json(test::reference_dir() / "stories260K" / "greedy_from_bos.json");
  const auto meta = test::read_json(test::reference_dir() / "stories260K" / "logits_greedy_bos64.json");
  const auto expected = test::read_f32_file(test::reference_dir() / "stories260K" / "logits_greedy_bos64.f32");
  Session s = model.new_session();
  const auto z = test::forward_each(s, meta["prompt_ids"].get<std::vector<int>>());
  float worst = 0, largest = 0;
  int same_top1 = 0;
  for (std::size_t t = 0; t < z.size(); ++t) {
    worst = std::max(worst, test::max_abs_diff(z[t].data(), expected.data() + t * 512, 512));
    for (float v : z[t]) largest = std::max(largest, std::fabs(v));
    same_top1 += std::max_element(z[t].begin(), z[t].end()) - z[t].begin() == meta["argmax"][t].get<long>();
  }
  WARN("effort 1 .effort vs run.c: max |logit difference| " << worst << ", largest |logit| " << largest
                                                            << ", same top-1 " << same_top1 << "/" << z.size());
  // fp16 entries: each weight keeps 6 of fp16's 10 mantissa bits: relative error uniform in +-2^-7, 0.45% rms,
  // independent across weights, so each projection output moves by ~0.45% of its size. A logit
  // sits behind 35 projections (7 per layer x 5), which compound to ~sqrt(35) * 0.45% = 2.7% rms
  // of the logit scale; 5% of the largest logit bounds that (q8 entries: measured 2.7%), while a
  // wrong decode or position moves logits by units.
  REQUIRE(worst < 0.05f * largest);
  REQUIRE(same_top1 >= int(z.size()) - 1);
  // And the recorded greedy continuation: all 200 reference tokens.
  GenerateOptions greedy;
  greedy.sampling.temperature = 0;
  greedy.max_new_tokens = 200;
  Session g = model.new_session();
  const std::vector<Token> bos = {1};
  const auto story = g.generate(std::span<const Token>(bos), greedy).tokens;
  const auto expected_story = ref["generated_ids"].get<std::vector<Token>>();
  const auto same = std::mismatch(story.begin(), story.end(), expected_story.begin(), expected_story.end()).first - story.begin();
  WARN("greedy story: the first " << same << " of " << expected_story.size() << " tokens as run.c's");
  // fp16 entries keep all 200 reference tokens. q8 entries hold 7 bits beside the position bit
  // (logits move by up to 0.6 here, against 0.24 for llama.cpp's Q8_0 of the same model): a
  // near tie eventually flips, measured after 115 tokens.
  if (weights == BucketEntries::f16) REQUIRE(story == expected_story);
  else REQUIRE(same >= 100);
}

TEST_CASE("lower effort does less work, stays finite, and degrades smoothly", "[model][effort]") {
  const Model model = Model::load(test::fixture_effort());
  const auto ids = reference_ids("greedy_bos64");
  Session full = model.new_session();
  const auto z1 = test::forward_each(full, ids);
  double previous_kl = 0;
  for (float effort : {0.75f, 0.5f, 0.25f, 0.125f}) {
    Session s = model.new_session();
    s.set_effort(effort);
    s.set_head_effort(1.0f);  // the projections' loss alone (the head's: its own test below)
    const auto z = test::forward_each(s, ids);
    double kl = 0, kl_uniform = 0;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      REQUIRE(std::all_of(z[t].begin(), z[t].end(), [](float v) { return std::isfinite(v); }));
      double m1 = -1e30, m2 = -1e30, s1 = 0, s2 = 0;
      for (std::size_t i = 0; i < 512; ++i) m1 = std::max(m1, double(z1[t][i])), m2 = std::max(m2, double(z[t][i]));
      for (std::size_t i = 0; i < 512; ++i) s1 += std::exp(z1[t][i] - m1), s2 += std::exp(z[t][i] - m2);
      for (std::size_t i = 0; i < 512; ++i) {
        const double lp = z1[t][i] - m1 - std::log(s1), lq = z[t][i] - m2 - std::log(s2);
        kl += std::exp(lp) * (lp - lq);
        kl_uniform += std::exp(lp) * (lp + std::log(512.0));
      }
    }
    kl /= double(ids.size());
    kl_uniform /= double(ids.size());
    CAPTURE(effort, kl, kl_uniform, s.effort_stats().overall());
    // The fixture's rows are all probes (16*64 <= 4096), so the dispatched fraction is the
    // requested one up to rounding and ties.
    REQUIRE(std::fabs(s.effort_stats().overall() - effort) < 0.02);
    REQUIRE(kl >= previous_kl * 0.9);
    // Better than knowing nothing (a uniform guess over the 512 tokens). The 64-wide fixture
    // loses much more than large models at low effort (measured with buckets of 2: KL 0.02 at
    // 0.75, 0.43 at 0.5, 3.7 at 0.25, 5.1 at 0.125, against 5.3 for the uniform guess).
    REQUIRE(kl < kl_uniform);
    previous_kl = kl;
  }
}

TEST_CASE("a file loaded at 0.75 equals the full file with those rows removed", "[model][effort]") {
  const std::size_t bucket_size = GENERATE(2, 16);
  test::TempDir decoded;
  // fp16 entries, whose products are the float ones of the decoded weights.
  write_decoded_checkpoint(decoded.path, 0.75f, bucket_size, BucketEntries::f16);
  const Model partial = Model::load(test::fixture_effort(bucket_size, BucketEntries::f16), {.mem_fraction = 0.75f});
  const Model dense = Model::load(decoded.path);
  const auto ids = reference_ids("mixed");
  Session a = partial.new_session(), b = dense.new_session();
  const auto za = test::forward_each(a, ids), zb = test::forward_each(b, ids);
  for (std::size_t t = 0; t < ids.size(); ++t) REQUIRE(test::max_abs_diff(za[t].data(), zb[t].data(), 512) < 1e-4f);
  REQUIRE(a.effort_stats().overall() == Approx(0.75));
}

TEST_CASE("the bytes a token reads: every weight of the dense model, the listed units of a bucketed one", "[model][effort]") {
  // Dense F32: per token, each projection's rows x cols x 4 bytes and the head's, exactly.
  const auto c = ModelConfig::from_file(test::fixture_model() / "config.json");
  double projections = 0;
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    const auto shape = projection_shape(c, MatrixKind(k));
    projections += double(shape[0]) * double(shape[1]) * 4 * c.num_hidden_layers;
  }
  const Model dense = Model::load(test::fixture_model());
  Session d = dense.new_session();
  d.forward(1);
  d.forward(2);
  REQUIRE(d.effort_stats().projection_bytes == 2 * projections);
  REQUIRE(d.effort_stats().head_bytes == 2 * double(c.vocab_size) * c.hidden_size * 4);
  // Bucketed q8 at effort 1 reads every entry (1 byte), its scales, stats and probes: a little
  // over a quarter of the F32 bytes; at effort 0.5 about half of that, the stats and probes whole.
  const Model bucketed = Model::load(test::fixture_effort());
  Session b = bucketed.new_session();
  b.forward(1);
  const double full = b.effort_stats().projection_bytes;
  REQUIRE(full > projections / 4);
  REQUIRE(full < projections / 4 * 1.5);
  b.reset_effort_stats();
  b.set_effort(0.5f);
  b.forward(2);
  REQUIRE(b.effort_stats().projection_bytes < 0.75 * full);
  REQUIRE(b.effort_stats().projection_bytes > 0.4 * full);
}

TEST_CASE("per-kind effort and bad effort values", "[model][effort]") {
  const Model model = Model::load(test::fixture_effort());
  Session s = model.new_session();
  s.set_effort(0.5f);
  s.set_effort(MatrixKind::down_proj, 0.25f);
  REQUIRE(s.effort(MatrixKind::q_proj) == 0.5f);
  REQUIRE(s.effort(MatrixKind::down_proj) == 0.25f);
  s.forward(1);
  REQUIRE(s.effort_stats().fraction(MatrixKind::down_proj) == Approx(0.25).margin(0.01));
  REQUIRE(s.effort_stats().fraction(MatrixKind::up_proj) == Approx(0.5).margin(0.01));
  for (float bad : {0.0f, -0.5f, 1.5f, NAN})
    REQUIRE_THROWS_WITH(s.set_effort(bad), Contains("effort must be in (0, 1]"));
  REQUIRE_THROWS_WITH(parse_matrix_kind("mlp"), Contains("unknown matrix kind 'mlp'"));
  REQUIRE(parse_matrix_kind("gate_proj") == MatrixKind::gate_proj);
  REQUIRE_THROWS_WITH(Model::load(test::fixture_effort(), {.mem_fraction = 0.0f}), Contains("mem_fraction must be in (0, 1]"));
  // A dense model runs at effort 1 only.
  Session dense = Model::load(test::fixture_model()).new_session();
  REQUIRE_THROWS_WITH(dense.set_effort(0.5f), Contains("needs a bucketed .effort model"));
  dense.set_effort(1.0f);
  REQUIRE_THROWS_WITH(Model::load(test::fixture_model(), {.mem_fraction = 0.5f}), Contains("needs a .effort model"));
}

TEST_CASE("with sampled probes the work done still tracks effort on real layers", "[model][effort]") {
  // 256 probes for 1024 (or 2752) bucket rows: the cutoff is estimated from a sample, as on
  // large models. Sampling error of the dispatched fraction: sqrt(e(1-e)/256) <= 3.1%; the
  // fraction averaged over a text varies less. Allow 5%.
  test::TempDir dir;
  ConvertOptions sampled;
  sampled.max_probes = 256;
  convert_to_effort(test::fixture_model(), dir / "m.effort", sampled);
  const Model model = Model::load(dir / "m.effort");
  const auto ids = reference_ids("greedy_bos64");
  for (float effort : {0.75f, 0.5f, 0.25f, 0.125f}) {
    Session s = model.new_session();
    s.set_effort(effort);
    test::forward_each(s, ids);
    for (int k = 0; k < kNumMatrixKinds; ++k) {
      CAPTURE(effort, matrix_kind_name(MatrixKind(k)));
      REQUIRE(std::fabs(s.effort_stats().fraction(MatrixKind(k)) - effort) < 0.05);
    }
  }
}

TEST_CASE("a per-layer effort schedule combines with kinds and early exit", "[model][effort][early-exit]") {
  const Model model = Model::load(test::fixture_effort());
  Session s = model.new_session();
  s.set_layer_effort(2, 0.5f);  // a lower effort in the middle layer only
  REQUIRE(s.layer_effort(2, MatrixKind::up_proj) == 0.5f);
  REQUIRE(s.layer_effort(1, MatrixKind::up_proj) == 1.0f);
  const auto ids = reference_ids("greedy_bos64");
  test::forward_each(s, ids);
  // Every layer has the same size, so the work done is (4 x 1 + 0.5) / 5 of dense, per kind.
  for (int k = 0; k < kNumMatrixKinds; ++k) REQUIRE(s.effort_stats().fraction(MatrixKind(k)) == Approx(0.9).margin(0.01));
  REQUIRE_THROWS_WITH(s.set_layer_effort(5, 0.5f), Contains("layer 5 is outside [0, 5)"));

  Session combined = model.new_session();
  combined.set_layer_effort(1, 0.5f);
  EarlyExitOptions exit;
  exit.enabled = true;
  exit.check_layers = {2};
  exit.threshold = 0.0f;
  exit.patience = 1;
  exit.warmup = 4;
  combined.set_early_exit(exit);
  const auto z = test::forward_each(combined, ids);
  REQUIRE(combined.average_layers() < 5.0);
  for (const auto& row : z) REQUIRE(std::all_of(row.begin(), row.end(), [](float v) { return std::isfinite(v); }));
}

TEST_CASE("batched prompts of a .effort model give the token-by-token logits at the prompt effort", "[effort][model]") {
  const auto ids = test::long_prompt(300);
  float worst = 0;
  for (BucketEntries weights : {BucketEntries::f16, BucketEntries::q8})
  for (float mem_fraction : {1.0f, 0.75f}) {
    const Model model = Model::load(test::fixture_effort(ConvertOptions{}.bucket_size, weights), {.mem_fraction = mem_fraction});
    for (int threads : test::kSanitized ? std::vector<int>{2} : std::vector<int>{1, 2}) {  // as in model_test
      CAPTURE(int(weights), mem_fraction, threads);
      const float diff = test::batched_vs_one_by_one(model, ids, {.num_threads = threads});
      CAPTURE(diff);
      // Effort 1 in both; fp32 summation orders differ, as for the dense model (model_test).
      // A batch multiplies the decoded weights in fp32; one token's q8 product uses int8
      // multipliers: the tolerance of the decoded model's test above.
      REQUIRE(diff < (weights == BucketEntries::q8 ? kQ8LogitTolerance : 1e-4f));
      if (weights == BucketEntries::f16) worst = std::max(worst, diff);
    }
  }
  WARN("batched vs token-by-token prompt, .effort with fp16 entries: max |logit difference| " << worst);
  // Below effort 1, and under 16 tokens, a prompt runs as one pass of all its tokens through
  // every layer (Transformer::forward_batch) at the prompt effort, whatever the generation
  // effort: bit for bit what forward() gives at that effort token by token.
  const Model model = Model::load(test::fixture_effort());
  for (std::size_t n : {2, 7, 15}) {
    Session short_prompt = model.new_session(), alone = model.new_session();
    const std::vector<int> first(ids.begin(), ids.begin() + std::ptrdiff_t(n));
    const auto z = short_prompt.prefill(first);
    REQUIRE(std::vector<float>(z.begin(), z.end()) == test::forward_each(alone, first).back());
  }
  Session prompt_effort = model.new_session(), plain = model.new_session();
  prompt_effort.set_prompt_effort(0.5f);
  prompt_effort.set_effort(0.25f);
  plain.set_effort(0.5f);
  const auto expected = test::forward_each(plain, ids).back();
  const auto z = prompt_effort.prefill(ids);
  REQUIRE(std::vector<float>(z.begin(), z.end()) == expected);
  REQUIRE(prompt_effort.effort(MatrixKind::up_proj) == 0.25f);   // restored for generation
  REQUIRE(prompt_effort.effort_stats().overall() == 0.0);        // the prompt is not counted
  REQUIRE_THROWS_WITH(Model::load(test::fixture_model()).new_session().set_prompt_effort(0.5f),
                      Contains("prompt effort below 1 needs a bucketed .effort model"));
}

TEST_CASE("weights copied into memory (no mmap) give the mapped model's logits bit for bit", "[effort][model]") {
  const std::vector<int> ids = {1, 403, 407, 261, 500, 300};
  for (const auto& [path, mem_fraction] : {std::pair{test::fixture_effort(), 1.0f}, {test::fixture_effort(), 0.75f},
                                            {test::fixture_model(), 1.0f}}) {
    CAPTURE(path, mem_fraction);
    const Model mapped = Model::load(path, {.mem_fraction = mem_fraction});
    const Model copied = Model::load(path, {.mem_fraction = mem_fraction, .use_mmap = false});
    Session a = mapped.new_session(), b = copied.new_session();
    a.set_effort(mapped.bucketed() ? 0.5f : 1.0f);
    b.set_effort(mapped.bucketed() ? 0.5f : 1.0f);
    REQUIRE(test::forward_each(a, ids) == test::forward_each(b, ids));
  }
}

TEST_CASE("the head below effort 1: candidates get the exact head's logits, the rest stay below them", "[model][effort][head]") {
  const Model model = Model::load(test::fixture_effort());
  const auto ids = reference_ids("greedy_bos64");
  // Two sessions in lockstep: the same projections (effort 1), the head exact in one and at 0.5
  // with 16 candidates (of 512 tokens) in the other, so their hidden states are the same.
  Session exact = model.new_session(), cheap = model.new_session();
  REQUIRE(exact.head_effort() == 1.0f);
  cheap.set_head_effort(0.5f);
  cheap.set_head_candidates(16);
  REQUIRE(cheap.head_effort() == 0.5f);
  int captured = 0, positions = 0;
  const std::vector<Token> tokens(ids.begin(), ids.end());
  for (Token t : tokens) {
    const auto z = exact.forward(t);
    const std::vector<float> e(z.begin(), z.end());
    const auto c = cheap.forward(t);
    std::size_t exact_ones = 0;
    float lowest_exact = INFINITY;
    for (std::size_t i = 0; i < e.size(); ++i)
      if (c[i] == e[i]) ++exact_ones, lowest_exact = std::min(lowest_exact, c[i]);
    // At least the 16 candidates equal the exact head's logits bit for bit (one row's dot
    // product is the same kernel either way); every other logit is capped at the lowest of them.
    REQUIRE(exact_ones >= 16);
    for (std::size_t i = 0; i < e.size(); ++i) REQUIRE(c[i] <= std::max(lowest_exact, e[i]));
    const auto top = std::size_t(std::max_element(e.begin(), e.end()) - e.begin());
    const auto chosen = std::size_t(std::max_element(c.begin(), c.end()) - c.begin());
    // The argmax is always an exact logit: greedy is exact whenever the true argmax is a candidate.
    REQUIRE(c[chosen] == e[chosen]);
    if (c[top] == e[top]) {
      REQUIRE(chosen == top);
      ++captured;
    }
    ++positions;
  }
  // Measured 100% on this text (docs/kernels.md); well under it means the ranking pass is broken.
  REQUIRE(captured >= positions * 9 / 10);
  // Every token a candidate: the exact head's logits.
  Session all = model.new_session(), reference = model.new_session();
  all.set_head_effort(0.25f);
  all.set_head_candidates(model.config().vocab_size);
  for (Token t : tokens) {
    const auto a = all.forward(t);
    const auto r = reference.forward(t);
    REQUIRE(std::equal(a.begin(), a.end(), r.begin()));
  }
}

TEST_CASE("the head follows set_effort unless set, and refuses what it cannot do", "[model][effort][head]") {
  const Model model = Model::load(test::fixture_effort());
  Session s = model.new_session();
  s.set_effort(0.5f);
  REQUIRE(s.head_effort() == 0.5f);
  s.set_head_effort(1.0f);
  s.set_effort(0.25f);
  REQUIRE(s.head_effort() == 1.0f);
  s.set_head_effort(0.0f);
  REQUIRE(s.head_effort() == 0.25f);
  s.set_effort(0.125f);  // followed down to 0.25 only
  REQUIRE(s.head_effort() == 0.25f);
  // A per-kind effort leaves the head alone.
  s.set_effort(MatrixKind::down_proj, 0.75f);
  REQUIRE(s.head_effort() == 0.25f);
  s.reset_effort_stats();
  s.forward(1);
  const double cheap = s.effort_stats().head_bytes;
  s.set_head_effort(1.0f);
  s.reset_effort_stats();
  s.forward(2);
  // The q8 head: vocab rows of Q8_0; at 0.25, about a quarter of the bucketed entries and 64 rows.
  REQUIRE(cheap < 0.6 * s.effort_stats().head_bytes);
  for (float bad : {-0.5f, 1.5f, NAN}) REQUIRE_THROWS_WITH(s.set_head_effort(bad), Contains("effort must be in (0, 1]"));
  REQUIRE_THROWS_WITH(s.set_head_candidates(0), Contains("head candidates must be in [1, 512]"));
  REQUIRE_THROWS_WITH(s.set_head_candidates(513), Contains("head candidates must be in [1, 512]"));
  Session dense = Model::load(test::fixture_model()).new_session();
  REQUIRE_THROWS_WITH(dense.set_head_effort(0.5f), Contains("needs a .effort model with a bucketed head"));
  REQUIRE(dense.head_effort() == 1.0f);
}

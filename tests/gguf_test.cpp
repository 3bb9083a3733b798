// gguf_test.cpp: GGUF input to effort-convert: the fixture written as GGUF (F32, F16, Q8_0) must
// convert to the same buckets as the HF checkpoint, with a tokenizer that encodes alike.
#include <catch2/catch.hpp>

#include "effort/convert.h"
#include "effort/effort.h"
#include "formats/effort_file.h"
#include "formats/gguf.h"
#include "formats/ggml_types.h"
#include "kernels/fp16.h"
#include "formats/safetensors.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

// HF row h*hd + j*hd/2 + i goes to GGUF row h*hd + 2i + j (llama.cpp's convert permutes q/k).
std::vector<float> permute_rows(const std::vector<float>& w, std::size_t heads, std::size_t hd, std::size_t cols) {
  std::vector<float> out(w.size());
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < hd / 2; ++i)
      for (std::size_t j = 0; j < 2; ++j)
        std::copy_n(&w[(h * hd + j * hd / 2 + i) * cols], cols, &out[(h * hd + 2 * i + j) * cols]);
  return out;
}

std::vector<std::uint8_t> encode(GgufType type, const std::vector<float>& v) {
  if (type == GgufType::q8_0) return quantize(std::uint32_t(type), v.data(), v.size());
  std::vector<std::uint8_t> bytes(v.size() * (type == GgufType::f32 ? 4 : 2));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (type == GgufType::f32) {
      std::memcpy(bytes.data() + 4 * i, &v[i], 4);
    } else {
      const std::uint16_t h = kernels::float_to_half(v[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

// The fixture as a llama.cpp-style GGUF; matrices in `type`, norms in F32. as_f32: matrices
// in F32, holding the values `type` would decode to.
void write_fixture_gguf(const std::filesystem::path& path, GgufType type, bool with_vocab = true, bool as_f32 = false) {
  const auto c = ModelConfig::from_file(test::fixture_model() / "config.json");
  const SafetensorsFile source(test::fixture_model() / "model.safetensors");
  GgufWriter gguf;
  gguf.add_metadata("general.architecture", "llama");
  gguf.add_metadata("general.name", "stories260K");
  gguf.add_metadata("llama.context_length", c.max_position_embeddings);
  gguf.add_metadata("llama.embedding_length", c.hidden_size);
  gguf.add_metadata("llama.block_count", c.num_hidden_layers);
  gguf.add_metadata("llama.feed_forward_length", c.intermediate_size);
  gguf.add_metadata("llama.attention.head_count", c.num_attention_heads);
  gguf.add_metadata("llama.attention.head_count_kv", c.num_key_value_heads);
  gguf.add_metadata("llama.rope.freq_base", float(c.rope_theta));
  gguf.add_metadata("llama.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  if (with_vocab) {
    const auto bytes = test::read_bytes(test::fixture_model() / "tokenizer.model");
    gguf.add_llama_vocabulary(llama_vocabulary(std::string(bytes.begin(), bytes.end()), "fixture tokenizer"));
  } else {
    gguf.add_metadata("llama.vocab_size", c.vocab_size);
  }
  auto hf = [&](const std::string& name) { return source.tensors().at(name).to_floats(); };
  auto dims = [&](const std::string& name) {
    const auto& s = source.tensors().at(name).shape;
    return std::vector<std::uint64_t>(s.rbegin(), s.rend());
  };
  // Q8_0 needs rows of a multiple of 32; llama.cpp keeps other tensors in F16, and so do we.
  const auto add = [&](const std::string& gguf_name, const std::string& hf_name, const std::vector<float>& values) {
    const auto d = dims(hf_name);
    const GgufType t = type == GgufType::q8_0 && d[0] % 32 != 0 ? GgufType::f16 : type;
    if (!as_f32) return gguf.add_tensor(gguf_name, t, d, encode(t, values));
    std::vector<float> decoded(values.size());
    if (t == GgufType::f16)
      for (std::size_t i = 0; i < values.size(); ++i) decoded[i] = kernels::half_to_float(kernels::float_to_half(values[i]));
    else
      dequantize(std::uint32_t(t), encode(t, values).data(), values.size(), decoded.data());
    gguf.add_tensor(gguf_name, GgufType::f32, d, encode(GgufType::f32, decoded));
  };
  add("token_embd.weight", "model.embed_tokens.weight", hf("model.embed_tokens.weight"));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".", g = "blk." + std::to_string(l) + ".";
    const std::size_t hd = std::size_t(c.head_dim), h = std::size_t(c.hidden_size);
    gguf.add_tensor(g + "attn_norm.weight", GgufType::f32, dims(p + "input_layernorm.weight"), encode(GgufType::f32, hf(p + "input_layernorm.weight")));
    add(g + "attn_q.weight", p + "self_attn.q_proj.weight",
        permute_rows(hf(p + "self_attn.q_proj.weight"), std::size_t(c.num_attention_heads), hd, h));
    add(g + "attn_k.weight", p + "self_attn.k_proj.weight",
        permute_rows(hf(p + "self_attn.k_proj.weight"), std::size_t(c.num_key_value_heads), hd, h));
    for (auto [hf_name, gguf_name] : {std::pair{"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.o_proj.weight", "attn_output.weight"},
                                      {"mlp.gate_proj.weight", "ffn_gate.weight"}, {"mlp.up_proj.weight", "ffn_up.weight"},
                                      {"mlp.down_proj.weight", "ffn_down.weight"}})
      add(g + gguf_name, p + hf_name, hf(p + hf_name));
    gguf.add_tensor(g + "ffn_norm.weight", GgufType::f32, dims(p + "post_attention_layernorm.weight"),
                    encode(GgufType::f32, hf(p + "post_attention_layernorm.weight")));
  }
  gguf.add_tensor("output_norm.weight", GgufType::f32, dims("model.norm.weight"), encode(GgufType::f32, hf("model.norm.weight")));
  gguf.write(path);
}

std::vector<std::uint8_t> bucket_bytes(const EffortFile& f, const std::string& matrix) {
  const auto& t = f.get(matrix + ".units");
  return {t.data, t.data + t.num_bytes};
}

}  // namespace

TEST_CASE("an F32 or F16 GGUF converts to the same buckets as the HF checkpoint", "[model][gguf]") {
  test::TempDir dir;
  convert_to_effort(test::fixture_model(), dir / "hf.effort", {});
  const EffortFile from_hf(dir / "hf.effort");
  for (GgufType type : {GgufType::f32, GgufType::f16}) {
    write_fixture_gguf(dir / "m.gguf", type);
    convert_to_effort(dir / "m.gguf", dir / "gguf.effort", {.force = true});
    const EffortFile from_gguf(dir / "gguf.effort");
    REQUIRE(from_gguf.header()["conversion"]["source_format"] == "gguf");
    // Buckets store fp16 weights: F32 and F16 sources round to the same bits, and the q/k rows
    // must be back in HF order for them to match.
    for (const auto& [name, info] : from_hf.header()["matrices"].items()) {
      CAPTURE(name);
      REQUIRE(bucket_bytes(from_gguf, name) == bucket_bytes(from_hf, name));
    }
    // The rebuilt SentencePiece model tokenizes like the original.
    const Model a = Model::load(dir / "hf.effort"), b = Model::load(dir / "gguf.effort");
    REQUIRE(b.tokenizer() != nullptr);
    for (const char* text : {"Once upon a time, there was a little girl named Lily.", "  odd  spacing\nand émoji 😀", ""}) {
      CAPTURE(text);
      REQUIRE(b.tokenizer()->encode(text, true) == a.tokenizer()->encode(text, true));
    }
    if (type == GgufType::f32) {
      Session sa = a.new_session(), sb = b.new_session();
      const std::vector<int> ids = {1, 403, 407, 261};
      REQUIRE(test::forward_each(sa, ids) == test::forward_each(sb, ids));
    }
  }
}

TEST_CASE("a GGUF runs directly, dense, with the HF checkpoint's logits", "[model][gguf]") {
  test::TempDir dir;
  const Model hf = Model::load(test::fixture_model());
  for (GgufType type : {GgufType::f32, GgufType::f16, GgufType::q8_0}) {
    CAPTURE(int(type));
    write_fixture_gguf(dir / "m.gguf", type);
    const Model gguf = Model::load(dir / "m.gguf");
    REQUIRE_FALSE(gguf.bucketed());
    REQUIRE(gguf.tokenizer() != nullptr);
    REQUIRE_THROWS_WITH(Model::load(dir / "m.gguf", {.mem_fraction = 0.5f}), Contains("needs a .effort model"));
    Session a = hf.new_session(), b = gguf.new_session();
    const std::vector<int> ids = {1, 403, 407, 261, 500};
    const auto expected = test::forward_each(a, ids), got = test::forward_each(b, ids);
    float diff = 0;
    for (std::size_t t = 0; t < ids.size(); ++t)
      diff = std::max(diff, test::max_abs_diff(got[t].data(), expected[t].data(), expected[t].size()));
    CAPTURE(diff);
    // F32: the same weights once q/k rows are back in HF order, so the same bits (the F16 path
    // reorders the same rows as bytes). F16 and Q8_0 round the weights (relative steps 2^-11
    // and ~1/254): measured 0.011 and 0.24 at logits of magnitude ~15; the bounds allow 2.5x.
    REQUIRE(diff <= (type == GgufType::f32 ? 0.0f : type == GgufType::f16 ? 0.03f : 0.6f));
  }
}

TEST_CASE("a Q8_0 GGUF runs in place with the logits of its dequantized weights, token by token and batched", "[model][gguf]") {
  test::TempDir dir;
  write_fixture_gguf(dir / "q8.gguf", GgufType::q8_0);
  write_fixture_gguf(dir / "f32.gguf", GgufType::q8_0, true, true);
  const Model q8 = Model::load(dir / "q8.gguf"), f32 = Model::load(dir / "f32.gguf");
  const std::vector<int> ids = {1, 403, 407, 261, 500, 30, 9};
  for (kernels::Arch arch : {kernels::Arch::scalar, kernels::Arch::avx2, kernels::Arch::avx512}) {
    if (!kernels::arch_supported(arch)) continue;
    CAPTURE(kernels::arch_name(arch));
    // Token by token, Q8_0 rows sum each block before scaling it: the same weights up to
    // summation order, the reorder tolerance used against run.c.
    Session a = q8.new_session({.kernel_arch = std::string(kernels::arch_name(arch))}), b = f32.new_session({.kernel_arch = std::string(kernels::arch_name(arch))});
    const auto za = test::forward_each(a, ids), zb = test::forward_each(b, ids);
    for (std::size_t t = 0; t < ids.size(); ++t) REQUIRE(test::max_abs_diff(za[t].data(), zb[t].data(), za[t].size()) < 1e-4f);
    // Batched, panels decode to the F32 copy's floats exactly (the head is one row product).
    Session c = q8.new_session({.kernel_arch = std::string(kernels::arch_name(arch))}), d = f32.new_session({.kernel_arch = std::string(kernels::arch_name(arch))});
    const auto batched = c.prefill(ids), expected = d.prefill(ids);
    REQUIRE(batched.size() == expected.size());
    REQUIRE(test::max_abs_diff(batched.data(), expected.data(), expected.size()) < 1e-4f);
  }
}

TEST_CASE("effort-convert writes the GGUF llama.cpp reads: the tensors and vocabulary of an independent writer", "[model][gguf]") {
  test::TempDir dir;
  const auto c = ModelConfig::from_file(test::fixture_model() / "config.json");
  std::vector<std::string> names = {"token_embd.weight", "output_norm.weight"};
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (const char* t : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"})
      names.push_back("blk." + std::to_string(l) + "." + t + ".weight");
  const std::pair<GgufWeights, GgufType> types[] = {
      {GgufWeights::f32, GgufType::f32}, {GgufWeights::f16, GgufType::f16}, {GgufWeights::q8_0, GgufType::q8_0}};
  for (const auto& [weights, type] : types) {
    CAPTURE(int(type));
    convert_to_gguf(test::fixture_model(), dir / "ours.gguf", weights, {.force = true});
    write_fixture_gguf(dir / "theirs.gguf", type);
    const GgufFile ours(dir / "ours.gguf"), theirs(dir / "theirs.gguf");
    for (const auto& name : names) {
      CAPTURE(name);
      const GgufTensor* a = ours.find(name);
      const GgufTensor* b = theirs.find(name);
      REQUIRE(a != nullptr);
      REQUIRE(a->type == b->type);
      REQUIRE(a->dims == b->dims);
      REQUIRE(std::equal(a->data, a->data + a->num_bytes, b->data, b->data + b->num_bytes));
    }
    for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "llama.block_count",
                            "llama.attention.head_count_kv", "tokenizer.ggml.bos_token_id"})
      REQUIRE(ours.metadata(key) == theirs.metadata(key));
  }
  // An existing output is refused and left as it is; nothing else is written beside it.
  test::write_text(dir / "taken.gguf", "keep");
  REQUIRE_THROWS_WITH(convert_to_gguf(test::fixture_model(), dir / "taken.gguf", GgufWeights::f16, {}), Contains("exists (use --force"));
  REQUIRE(test::read_bytes(dir / "taken.gguf").size() == 4);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path)) ++files;
  REQUIRE(files == 3);  // ours.gguf, theirs.gguf, taken.gguf
}

TEST_CASE("a Q8_0 GGUF is dequantized, bucketed and runs", "[model][gguf]") {
  test::TempDir dir;
  write_fixture_gguf(dir / "q8.gguf", GgufType::q8_0, false);
  convert_to_effort(dir / "q8.gguf", dir / "q8.effort", {});
  const EffortFile file(dir / "q8.effort");
  REQUIRE(file.header()["tokenizer"].is_null());  // no vocabulary in this GGUF: runs on ids
  const Model model = Model::load(dir / "q8.effort");
  REQUIRE(model.tokenizer() == nullptr);
  // Q8_0 keeps ~8 bits per weight, so the greedy story mostly survives.
  GenerateOptions greedy;
  greedy.sampling.temperature = 0;
  greedy.max_new_tokens = 40;
  const auto ref = test::read_json(test::reference_dir() / "stories260K" / "greedy_from_bos.json")["generated_ids"];
  Session s = model.new_session();
  const std::vector<Token> bos = {1};
  const auto tokens = s.generate(std::span<const Token>(bos), greedy).tokens;
  REQUIRE(tokens.size() == 40);
  REQUIRE(std::equal(tokens.begin(), tokens.begin() + 10, ref.begin(), [](Token a, const nlohmann::json& b) { return a == b.get<Token>(); }));
}

TEST_CASE("Q8_0 round-trips within half a quantization step", "[gguf]") {
  std::vector<float> v(64);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(float(i)) * (i < 32 ? 0.02f : 3.0f);
  const auto q = quantize(std::uint32_t(GgufType::q8_0), v.data(), v.size());
  REQUIRE(q.size() == 2 * 34);
  std::vector<float> back(v.size());
  dequantize(std::uint32_t(GgufType::q8_0), q.data(), v.size(), back.data());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const float amax = i < 32 ? 0.02f : 3.0f;
    REQUIRE(std::fabs(back[i] - v[i]) <= amax / 127 * 0.5f * 1.01f + amax * 1e-3f);  // + fp16 scale rounding
  }
}

TEST_CASE("bad GGUF input is a clear error", "[gguf]") {
  test::TempDir dir;
  write_fixture_gguf(dir / "m.gguf", GgufType::f32);
  const auto good = test::read_bytes(dir / "m.gguf");
  SECTION("a supported file whose projections are of a type this build does not read (Q8_1)") {
    GgufFile file(dir / "m.gguf");
    auto bytes = good;
    // Patch blk.0.attn_q.weight's type field (F32 = 0) to Q8_1 (9): find its name in the header.
    const std::string name = "blk.0.attn_q.weight";
    const auto it = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
    REQUIRE(it != bytes.end());
    const std::size_t type_at = std::size_t(it - bytes.begin()) + name.size() + 4 + 2 * 8;
    bytes[type_at] = 9;
    test::write_bytes(dir / "q4.gguf", bytes.data(), bytes.size());
    REQUIRE_THROWS_WITH(convert_to_effort(dir / "q4.gguf", dir / "q4.effort", {}),
                        Contains("blk.0.attn_q.weight has type Q8_1 (type 9); this build reads F32, F16, BF16, Q4_0, Q4_1, "
                                 "Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K"));
    REQUIRE(!std::filesystem::exists(dir / "q4.effort"));
  }
  SECTION("truncated") {
    test::write_bytes(dir / "cut.gguf", good.data(), good.size() / 2);
    REQUIRE_THROWS_WITH(convert_to_effort(dir / "cut.gguf", dir / "cut.effort", {}), Contains("runs past the end of the file"));
    test::write_bytes(dir / "cut.gguf", good.data(), 200);
    REQUIRE_THROWS_WITH(convert_to_effort(dir / "cut.gguf", dir / "cut.effort", {}), Contains("cut.gguf") && Contains("past the end"));
  }
  SECTION("old version") {
    auto bytes = good;
    bytes[4] = 1;
    test::write_bytes(dir / "v1.gguf", bytes.data(), bytes.size());
    REQUIRE_THROWS_WITH(convert_to_effort(dir / "v1.gguf", dir / "v1.effort", {}), Contains("GGUF version 1, this build reads 2 and 3"));
  }
  SECTION("not a model we run") {
    GgufWriter w;
    w.add_metadata("general.architecture", "gpt2");
    w.write(dir / "gpt2.gguf");
    REQUIRE_THROWS_WITH(convert_to_effort(dir / "gpt2.gguf", dir / "gpt2.effort", {}), Contains("general.architecture \"gpt2\" is not supported"));
  }
}

TEST_CASE("GGUF sizes beyond an int are refused, not converted (a fuzzing find)", "[gguf]") {
  // tests/data/fuzz/gguf-metadata-beyond-int.gguf: fuzz_model_file's input that set a size to
  // 4294967295, which was cast to int (undefined behaviour, reported by UBSan).
  REQUIRE_THROWS_AS(Model::load(std::filesystem::path(EFFORT_SOURCE_DIR) / "tests/data/fuzz/gguf-metadata-beyond-int.gguf"),
                    effort::Error);
  test::TempDir dir;
  for (const double value : {4294967296.0, 64.5, -1.0}) {
    CAPTURE(value);
    GgufWriter gguf;
    gguf.add_metadata("general.architecture", "llama");
    gguf.add_metadata("llama.embedding_length", value);
    gguf.add_metadata("llama.feed_forward_length", 64);
    gguf.add_metadata("llama.block_count", 1);
    gguf.add_metadata("llama.attention.head_count", 4);
    gguf.write(dir / "big.gguf");
    REQUIRE_THROWS_WITH(Model::load(dir / "big.gguf"),
                        Catch::Contains("llama.embedding_length") && Catch::Contains("expected a whole number in [0, 2^30]"));
  }
}

// safetensors_test.cpp: malformed checkpoints give errors naming the file/tensor, never a crash.
#include <catch2/catch.hpp>

#include "effort/effort.h"
#include "formats/safetensors.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

namespace {

std::map<std::string, test::RawTensor> two_tensors() {
  return {{"a", test::f32_tensor({2, 3}, {1, 2, 3, 4, 5, 6})}, {"b", test::f32_tensor({4}, {7, 8, 9, 10})}};
}

}  // namespace

TEST_CASE("a well-formed file round-trips", "[safetensors]") {
  test::TempDir dir;
  test::write_safetensors(dir / "m.safetensors", two_tensors());
  const SafetensorsFile file(dir / "m.safetensors");
  REQUIRE(file.tensors().size() == 2);
  const auto& a = file.tensors().at("a");
  REQUIRE(a.shape == std::vector<std::int64_t>{2, 3});
  REQUIRE(a.dtype() == kernels::DType::f32);
  float v;
  std::memcpy(&v, a.data + 5 * 4, 4);
  REQUIRE(v == 6.0f);
}

TEST_CASE("malformed safetensors files are rejected with the reason", "[safetensors]") {
  test::TempDir dir;
  const auto path = dir / "m.safetensors";
  auto expect_error = [&](const std::string& message) {
    REQUIRE_THROWS_WITH(SafetensorsFile(path), Contains(path.string()) && Contains(message));
  };
  SECTION("missing") { REQUIRE_THROWS_WITH(SafetensorsFile(path), Contains("cannot open")); }
  SECTION("shorter than the length field") {
    test::write_text(path, "abc");
    expect_error("shorter than the 8-byte header length");
  }
  SECTION("header length past the end") {
    test::write_safetensors(path, two_tensors());
    auto bytes = test::read_bytes(path);
    bytes[0] = char(0xff);
    bytes[1] = char(0xff);
    test::write_bytes(path, bytes.data(), bytes.size());
    expect_error("runs past the end of the file");
  }
  SECTION("truncated data") {
    test::write_safetensors(path, two_tensors());
    auto bytes = test::read_bytes(path);
    test::write_bytes(path, bytes.data(), bytes.size() - 4);
    expect_error("outside the data section");
  }
  SECTION("header not JSON") {
    std::string text = "{not json";
    std::vector<char> bytes(8, 0);
    bytes[0] = char(text.size());
    bytes.insert(bytes.end(), text.begin(), text.end());
    test::write_bytes(path, bytes.data(), bytes.size());
    expect_error("not valid JSON");
  }
  SECTION("offsets out of range") {
    test::write_safetensors(path, two_tensors(), [](nlohmann::json& h) { h["b"]["data_offsets"] = {24, 4000}; });
    expect_error("tensor b: data_offsets [24, 4000] outside the data section");
  }
  SECTION("overlapping tensors") {
    test::write_safetensors(path, two_tensors(), [](nlohmann::json& h) { h["b"]["data_offsets"] = {8, 24}; });
    expect_error("overlap");
  }
  SECTION("size disagrees with dtype and shape") {
    test::write_safetensors(path, two_tensors(), [](nlohmann::json& h) { h["a"]["shape"] = {2, 2}; });
    expect_error("tensor a: data_offsets cover 24 bytes, but F32 [2, 2] needs 16");
  }
  SECTION("unknown dtype") {
    test::write_safetensors(path, two_tensors(), [](nlohmann::json& h) { h["a"]["dtype"] = "Q4"; });
    expect_error("tensor a: unknown dtype Q4");
  }
  SECTION("negative shape") {
    test::write_safetensors(path, two_tensors(), [](nlohmann::json& h) { h["a"]["shape"] = {-2, 3}; });
    expect_error("non-negative");
  }
  SECTION("missing fields") {
    test::write_safetensors(path, two_tensors(), [](nlohmann::json& h) { h["a"].erase("dtype"); });
    expect_error("tensor a: expected");
  }
}

TEST_CASE("a readable dtype the kernels cannot use is named", "[safetensors]") {
  test::TempDir dir;
  test::RawTensor t{"I32", {2}, std::vector<std::uint8_t>(8)};
  test::write_safetensors(dir / "m.safetensors", {{"x", t}});
  const SafetensorsFile file(dir / "m.safetensors");
  REQUIRE_THROWS_WITH(file.tensors().at("x").dtype(), Contains("tensor x has dtype I32; expected F32, F16, BF16 or Q8_0"));
}

namespace {

// A tiny valid checkpoint (no tokenizer): hidden 4, 1 layer, 2 heads of 2, intermediate 6, vocab 8.
nlohmann::json tiny_config() {
  return {{"model_type", "mistral"}, {"hidden_size", 4}, {"intermediate_size", 6}, {"num_hidden_layers", 1},
          {"num_attention_heads", 2}, {"num_key_value_heads", 1}, {"vocab_size", 8}, {"max_position_embeddings", 16},
          {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", true}, {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

std::map<std::string, test::RawTensor> tiny_tensors() {
  auto filled = [](std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * float(i % 7) - 0.03f;
    return test::f32_tensor(shape, v);
  };
  std::map<std::string, test::RawTensor> t;
  t["model.embed_tokens.weight"] = filled({8, 4});
  t["model.norm.weight"] = filled({4});
  const std::string p = "model.layers.0.";
  t[p + "input_layernorm.weight"] = filled({4});
  t[p + "post_attention_layernorm.weight"] = filled({4});
  t[p + "self_attn.q_proj.weight"] = filled({4, 4});
  t[p + "self_attn.k_proj.weight"] = filled({2, 4});
  t[p + "self_attn.v_proj.weight"] = filled({2, 4});
  t[p + "self_attn.o_proj.weight"] = filled({4, 4});
  t[p + "mlp.gate_proj.weight"] = filled({6, 4});
  t[p + "mlp.up_proj.weight"] = filled({6, 4});
  t[p + "mlp.down_proj.weight"] = filled({4, 6});
  return t;
}

}  // namespace

TEST_CASE("a tiny crafted checkpoint loads and runs without a tokenizer", "[safetensors]") {
  test::TempDir dir;
  test::write_text(dir / "config.json", tiny_config().dump());
  test::write_safetensors(dir / "model.safetensors", tiny_tensors());
  const Model model = Model::load(dir.path);
  REQUIRE(model.tokenizer() == nullptr);
  Session session = model.new_session();
  const auto logits = session.forward(1);
  REQUIRE(logits.size() == 8);
  for (float z : logits) REQUIRE(std::isfinite(z));
  REQUIRE_THROWS_WITH(session.generate(std::string_view("hi")), Contains("no tokenizer"));
}

TEST_CASE("checkpoint tensors are checked by name, shape and dtype", "[safetensors]") {
  test::TempDir dir;
  test::write_text(dir / "config.json", tiny_config().dump());
  auto tensors = tiny_tensors();
  SECTION("missing tensor") {
    tensors.erase("model.layers.0.mlp.up_proj.weight");
    test::write_safetensors(dir / "model.safetensors", tensors);
    REQUIRE_THROWS_WITH(Model::load(dir.path), Contains("missing tensor model.layers.0.mlp.up_proj.weight (expected shape [6, 4])"));
  }
  SECTION("wrong shape") {
    tensors["model.layers.0.self_attn.k_proj.weight"] = test::f32_tensor({4, 4}, std::vector<float>(16));
    test::write_safetensors(dir / "model.safetensors", tensors);
    REQUIRE_THROWS_WITH(Model::load(dir.path),
                        Contains("tensor model.layers.0.self_attn.k_proj.weight: expected shape [2, 4], got [4, 4]"));
  }
  SECTION("wrong dtype") {
    tensors["model.norm.weight"] = test::RawTensor{"I32", {4}, std::vector<std::uint8_t>(16)};
    test::write_safetensors(dir / "model.safetensors", tensors);
    REQUIRE_THROWS_WITH(Model::load(dir.path), Contains("tensor model.norm.weight has dtype I32"));
  }
  SECTION("no weights file") {
    REQUIRE_THROWS_WITH(Model::load(dir.path), Contains("no model.safetensors or model.safetensors.index.json"));
  }
  SECTION("shard index names a missing file") {
    test::write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
    REQUIRE_THROWS_WITH(Model::load(dir.path), Contains("model-00001-of-00002.safetensors") && Contains("cannot open"));
  }
  SECTION("not a folder") {
    test::write_text(dir / "file.bin", "x");
    REQUIRE_THROWS_WITH(Model::load(dir / "file.bin"), Contains("expected a .effort file, a GGUF file (F32, F16, BF16 or quantized) or a Hugging Face checkpoint folder"));
    REQUIRE_THROWS_WITH(Model::load(dir / "absent"), Contains("no such file or folder"));
  }
}

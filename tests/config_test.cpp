// config_test.cpp: config.json parsing: the fixture's values, and named errors for bad fields.
#include <catch2/catch.hpp>

#include "effort/config.h"
#include "effort/error.h"
#include "test_util.h"

using namespace effort;
using Catch::Contains;

TEST_CASE("the fixture config parses with HF names and defaults", "[config]") {
  const auto c = ModelConfig::from_file(test::fixture_model() / "config.json");
  REQUIRE(c.model_type == "mistral");
  REQUIRE(c.hidden_size == 64);
  REQUIRE(c.intermediate_size == 172);
  REQUIRE(c.num_hidden_layers == 5);
  REQUIRE(c.num_attention_heads == 8);
  REQUIRE(c.num_key_value_heads == 4);
  REQUIRE(c.head_dim == 8);
  REQUIRE(c.vocab_size == 512);
  REQUIRE(c.sliding_window == 0);  // null
  REQUIRE(c.tie_word_embeddings);
  REQUIRE(c.rms_norm_eps == 1e-5);
  REQUIRE(c.eos_token_ids == std::vector<int>{2});
}

namespace {

nlohmann::json valid() {
  return {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 172}, {"num_hidden_layers", 2},
          {"num_attention_heads", 8}, {"vocab_size", 100}, {"eos_token_id", {2, 3}}};
}

void expect_error(const nlohmann::json& j, const std::string& message) {
  test::TempDir dir;
  test::write_text(dir / "config.json", j.dump());
  REQUIRE_THROWS_WITH(ModelConfig::from_file(dir / "config.json"), Contains((dir / "config.json").string()) && Contains(message));
}

}  // namespace

TEST_CASE("optional fields take HF defaults", "[config]") {
  test::TempDir dir;
  test::write_text(dir / "config.json", valid().dump());
  const auto c = ModelConfig::from_file(dir / "config.json");
  REQUIRE(c.num_key_value_heads == 8);
  REQUIRE(c.head_dim == 8);
  REQUIRE(c.eos_token_ids == std::vector<int>{2, 3});
}

TEST_CASE("bad config.json values are named", "[config]") {
  auto j = valid();
  SECTION("unknown model_type") {
    j["model_type"] = "gpt2";
    expect_error(j, "model_type \"gpt2\" is not supported");
  }
  SECTION("missing field") {
    j.erase("hidden_size");
    expect_error(j, "missing field \"hidden_size\"");
  }
  SECTION("wrong type") {
    j["num_hidden_layers"] = "two";
    expect_error(j, "field \"num_hidden_layers\": expected a non-negative integer, got \"two\"");
  }
  SECTION("heads not a multiple of kv heads") {
    j["num_key_value_heads"] = 3;
    expect_error(j, "must be a multiple of num_key_value_heads");
  }
  SECTION("eos outside the vocabulary") {
    j["eos_token_id"] = 100;
    expect_error(j, "\"eos_token_id\" = 100 is outside the vocabulary");
  }
  SECTION("zero size") {
    j["intermediate_size"] = 0;
    expect_error(j, "\"intermediate_size\" must be positive");
  }
  SECTION("not JSON") {
    test::TempDir dir;
    test::write_text(dir / "config.json", "{\"model_type\": ");
    REQUIRE_THROWS_WITH(ModelConfig::from_file(dir / "config.json"), Contains("not valid JSON"));
  }
  SECTION("missing file") {
    REQUIRE_THROWS_WITH(ModelConfig::from_file("/nonexistent/config.json"), Contains("/nonexistent/config.json: cannot open"));
  }
}

// ggml_types_test.cpp: our decoders of ggml's block types against llama.cpp's: blocks that
// llama-quantize wrote, and the floats its gguf-py package decodes them to
// (tools/reference/make_quant_goldens.sh made tests/data/ggml_types).
#include <catch2/catch.hpp>
#include <cmath>

#include "formats/gguf.h"
#include "formats/ggml_types.h"
#include "test_util.h"

using namespace effort;

TEST_CASE("each quantized type decodes as llama.cpp decodes it", "[gguf]") {
  const std::filesystem::path data = std::filesystem::path(EFFORT_SOURCE_DIR) / "tests" / "data" / "ggml_types";
  const std::pair<const char*, std::uint32_t> types[] = {{"q4_0", 2}, {"q4_1", 3}, {"q5_0", 6}, {"q5_1", 7},
                                                          {"q8_0", 8}, {"q4_k", 12}, {"q5_k", 13}, {"q6_k", 14}};
  for (const auto& [name, type] : types) {
    CAPTURE(name);
    const auto blocks = test::read_bytes(data / (std::string(name) + ".blocks"));
    const auto expected = test::read_f32_file(data / (std::string(name) + ".f32"));
    REQUIRE(expected.size() == 1024);
    REQUIRE(is_dequantizable(type));
    std::vector<float> ours(expected.size());
    dequantize(type, reinterpret_cast<const std::uint8_t*>(blocks.data()), ours.size(), ours.data());
    double largest = 0;
    for (float v : expected) largest = std::max(largest, double(std::fabs(v)));
    REQUIRE(largest > 0);
    for (std::size_t i = 0; i < ours.size(); ++i) {
      CAPTURE(i);
      // The same float32 products as ggml; gguf-py (numpy) may group them differently, which
      // moves a weight by a rounding of the scale product: 2^-22 of the block's largest weight.
      REQUIRE(std::fabs(ours[i] - expected[i]) <= 0x1p-22 * largest);
    }
  }
  REQUIRE(!is_dequantizable(10));  // Q2_K: not read
}

TEST_CASE("Q8_0, Q4_0 and Q4_K encode as llama.cpp's llama-quantize does", "[gguf]") {
  const std::filesystem::path data = std::filesystem::path(EFFORT_SOURCE_DIR) / "tests" / "data" / "ggml_types";
  const auto input = test::read_f32_file(data / "input.f32");
  REQUIRE(input.size() == 1024);
  for (const auto& [name, type] : {std::pair{"q8_0", 8u}, {"q4_0", 2u}, {"q4_k", 12u}}) {
    CAPTURE(name);
    REQUIRE(is_quantizable(type));
    const auto expected = test::read_bytes(data / (std::string(name) + ".blocks"));
    const auto ours = quantize(type, input.data(), input.size());
    REQUIRE(ours.size() == expected.size());
    REQUIRE(std::equal(ours.begin(), ours.end(), reinterpret_cast<const std::uint8_t*>(expected.data())));
  }
  REQUIRE(!is_quantizable(14));  // Q6_K: decoded only
}

// tokenizer_test.cpp: encode/decode against Python SentencePiece's outputs for the Llama-2
// tokenizer (tests/data/reference/llama2-tokenizer), against llama.cpp's own tokenizer test cases
// (fetched), and the streaming decoder against decode.
#include <catch2/catch.hpp>

#include <iterator>
#include <sstream>

#include "effort/error.h"
#include "effort/tokenizer.h"
#include "formats/gguf_source.h"
#include "test_util.h"

using namespace effort;

namespace {
std::filesystem::path llama2_tokenizer() { return test::models_dir() / "llama2-tokenizer" / "tokenizer.model"; }
std::filesystem::path llama2_cases() { return test::reference_dir() / "llama2-tokenizer" / "encode_cases.json"; }

std::string stream(const Tokenizer& tokenizer, const std::vector<Token>& ids) {
  StreamDecoder decoder(tokenizer);
  std::string text;
  for (Token t : ids) text += decoder.push(t);
  return text + decoder.flush();
}
}  // namespace

TEST_CASE("Llama-2 encode cases match SentencePiece", "[tokenizer]") {
  const auto tokenizer = Tokenizer::from_file(llama2_tokenizer());
  const auto cases = test::read_json(llama2_cases());
  REQUIRE(cases["encode_cases"].size() == 47);
  for (const auto& c : cases["encode_cases"]) {
    const std::string text = c["text"];
    CAPTURE(text);
    REQUIRE(tokenizer.encode(text, false) == c["ids"].get<std::vector<Token>>());
    auto with_bos = c["ids"].get<std::vector<Token>>();
    with_bos.insert(with_bos.begin(), 1);
    REQUIRE(tokenizer.encode(text, true) == with_bos);
    if (c["roundtrip"].get<bool>()) REQUIRE(tokenizer.decode(c["ids"].get<std::vector<Token>>()) == text);
  }
}

TEST_CASE("Llama-2 decode cases match SentencePiece, streamed or whole", "[tokenizer]") {
  const auto tokenizer = Tokenizer::from_file(llama2_tokenizer());
  const auto cases = test::read_json(llama2_cases());
  REQUIRE(cases["decode_cases"].size() == 28);
  for (const auto& c : cases["decode_cases"]) {
    const auto ids = c["ids"].get<std::vector<Token>>();
    const std::string expected = c["text"];
    CAPTURE(ids, expected);
    REQUIRE(tokenizer.decode(ids) == expected);
    REQUIRE(stream(tokenizer, ids) == expected);
  }
  // The streamed encode cases, too: every text that round-trips must stream back unchanged.
  for (const auto& c : cases["encode_cases"]) {
    if (!c["roundtrip"].get<bool>()) continue;
    REQUIRE(stream(tokenizer, c["ids"].get<std::vector<Token>>()) == c["text"].get<std::string>());
  }
}

// llama.cpp's test-tokenizer-0 format: texts separated by "\n__ggml_vocab_test__\n", and one line
// of space-separated ids per text.
std::vector<std::pair<std::string, std::vector<Token>>> llama_cpp_cases(const std::filesystem::path& vocab) {
  const auto inp = test::read_bytes(vocab.string() + ".inp"), out = test::read_bytes(vocab.string() + ".out");
  const std::string texts(inp.begin(), inp.end()), sep = "\n__ggml_vocab_test__\n";
  std::istringstream lines(std::string(out.begin(), out.end()));
  std::vector<std::pair<std::string, std::vector<Token>>> cases;
  for (std::size_t pos = 0, next; pos < texts.size(); pos = next + sep.size()) {
    next = texts.find(sep, pos);
    if (next == std::string::npos) next = texts.size();
    std::string line;
    std::getline(lines, line);
    std::istringstream ids(line);
    cases.push_back({texts.substr(pos, next - pos), {std::istream_iterator<Token>(ids), {}}});
  }
  return cases;
}

TEST_CASE("llama.cpp's llama-spm tokenizer cases: the vocabulary from its GGUF gives llama.cpp's ids", "[tokenizer]") {
  const auto vocab = test::fetched_data_dir() / "llama.cpp-vocab" / "ggml-vocab-llama-spm.gguf";
  REQUIRE_FETCHED_OR_SKIP(vocab);
  const auto model = open_gguf_source(vocab)->tokenizer_model();
  REQUIRE(model);
  const auto tokenizer = Tokenizer::from_bytes(*model, vocab.string());
  const auto cases = llama_cpp_cases(vocab);
  REQUIRE(cases.size() == 46);
  for (const auto& [text, ids] : cases) {
    CAPTURE(text);
    REQUIRE(tokenizer.encode(text, false) == ids);  // test-tokenizer-0 adds no BOS
  }
}

TEST_CASE("streaming holds back an unfinished UTF-8 character", "[tokenizer]") {
  const auto tokenizer = Tokenizer::from_file(llama2_tokenizer());
  // "😀" is F0 9F 98 80; byte-fallback piece <0xNN> has id NN + 3.
  const std::vector<Token> ids = {0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3};
  REQUIRE(tokenizer.encode("😀", false) == std::vector<Token>{29871, 243, 162, 155, 131});
  StreamDecoder decoder(tokenizer, false);
  std::string out;
  for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
    out += decoder.push(ids[i]);
    // Nothing printed may be a partial character.
    for (unsigned char ch : out) REQUIRE((ch < 0x80 || ch == 0x20));
  }
  out += decoder.push(ids.back());
  REQUIRE(out == "😀");
  REQUIRE(decoder.flush().empty());

  // A character cut off by the end of generation becomes U+FFFD per byte.
  StreamDecoder cut(tokenizer, false);
  std::string text;
  for (std::size_t i = 1; i < ids.size(); ++i) text += cut.push(ids[i]);  // no lead byte: invalid
  REQUIRE(text == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  StreamDecoder tail(tokenizer, false);
  REQUIRE(tail.push(ids[0]).empty());
  REQUIRE(tail.push(ids[1]).empty());
  REQUIRE(tail.flush() == "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_CASE("the fixture tokenizer encodes the reference story", "[tokenizer]") {
  const auto tokenizer = Tokenizer::from_file(test::fixture_model() / "tokenizer.model");
  REQUIRE(tokenizer.vocab_size() == 512);
  const auto ref = test::read_json(test::reference_dir() / "stories260K" / "greedy_from_bos.json");
  const auto ids = ref["generated_ids"].get<std::vector<Token>>();
  // The greedy story starts with this sentence (shared/models/README.md).
  const std::string sentence = "Once upon a time, there was a little girl named Lily.";
  const auto encoded = tokenizer.encode(sentence, false);
  REQUIRE(encoded.size() > 10);
  REQUIRE(std::equal(encoded.begin(), encoded.end(), ids.begin()));
  REQUIRE(tokenizer.decode(encoded) == sentence);
}

TEST_CASE("bad tokenizer input is an error", "[tokenizer]") {
  REQUIRE_THROWS_WITH(Tokenizer::from_file("/nonexistent/tokenizer.model"), Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(Tokenizer::from_bytes("garbage", "x.model"), Catch::Contains("x.model: not a SentencePiece model"));
  // Found by scripts/fuzz.sh: a piece of zero length made libsentencepiece's trie builder throw
  // its own exception through ours, which ended the process.
  const auto zero_length = test::read_bytes(std::filesystem::path(EFFORT_SOURCE_DIR) / "tests/data/fuzz/tokenizer-zero-length-piece.model");
  REQUIRE_THROWS_WITH(Tokenizer::from_bytes(std::string(zero_length.begin(), zero_length.end()), "z.model"),
                      Catch::Contains("z.model: not a SentencePiece model: ") && Catch::Contains("zero-length key"));
  const auto tokenizer = Tokenizer::from_file(llama2_tokenizer());
  REQUIRE_THROWS_WITH(tokenizer.decode(std::vector<Token>{5, 32000}), Catch::Contains("token id 32000 is outside the vocabulary"));
  REQUIRE_THROWS_AS(tokenizer.token_bytes(-1), Error);
}

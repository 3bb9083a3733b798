// fuzz_tokenizer: a tokenizer.model's bytes (a SentencePiece ModelProto), then text through it.
#include <string>

#include "effort/error.h"
#include "effort/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto tokenizer = effort::Tokenizer::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const auto ids = tokenizer.encode_with_special("Once upon a time, <s> there was </s> a cat", true);
    tokenizer.decode(ids);
  } catch (const effort::Error&) {
  }
  return 0;
}

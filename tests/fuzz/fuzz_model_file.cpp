// fuzz_model_file: Model::load on a file: a GGUF (metadata, tensor infos, the tokenizer rebuilt
// from its vocabulary) or a .effort container, whichever the bytes say; then a few tokens.
#include "effort/effort.h"
#include "fuzz_input.h"
#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = effort::fuzz::as_file(data, size, ".model");
  try {
    if (effort::is_gguf_file(path)) effort::GgufFile file(path);
    const effort::Model model = effort::Model::load(path);
    if (model.config().hidden_size * std::int64_t(model.config().vocab_size) > (1 << 24)) return 0;  // too big to run
    effort::Session session = model.new_session({.num_threads = 1, .context_length = 8});
    session.prefill(std::vector<effort::Token>{model.config().bos_token_id});
    if (const effort::Tokenizer* t = model.tokenizer()) t->decode(t->encode("Once upon a time", true));
  } catch (const effort::Error&) {
  }
  return 0;
}

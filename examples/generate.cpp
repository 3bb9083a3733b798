// generate.cpp: effort as a library. Loads a model (a .effort file for the effort knob), writes
// a story at full effort, then lowers the effort half way through, from the token callback.
//
//   effort-example MODEL [PROMPT]
#include <cstdio>
#include <effort/effort.h>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [PROMPT]\n", argv[0]);
    return 2;
  }
  try {
    const effort::Model model = effort::Model::load(argv[1]);
    if (!model.tokenizer()) throw std::runtime_error(std::string(argv[1]) + " has no tokenizer");
    effort::Session session = model.new_session({.num_threads = 2});
    const std::vector<effort::Token> prompt = model.tokenizer()->encode(argc > 2 ? argv[2] : "Once upon a time", true);

    effort::GenerateOptions options;
    options.max_new_tokens = 60;
    options.sampling.temperature = 0;  // greedy: the same story every run
    int generated = 0;
    session.generate(prompt, options, [&](effort::Token, std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      // Half way, if the model has the knob: every later token multiplies half the weights.
      if (++generated == options.max_new_tokens / 2 && model.bucketed()) session.set_effort(0.5f);
      return true;
    });
    std::printf("\n[example] %d tokens, %.0f%% of the dense multiply-adds done\n", generated,
                100.0 * session.effort_stats().overall());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "effort-example: %s\n", e.what());
    return 1;
  }
}

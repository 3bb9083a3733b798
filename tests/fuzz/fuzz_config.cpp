// fuzz_config: config.json read and validated.
#include "effort/config.h"
#include "effort/error.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = effort::fuzz::as_file(data, size, ".json");
  try {
    effort::ModelConfig::from_file(path);
  } catch (const effort::Error&) {
  }
  return 0;
}

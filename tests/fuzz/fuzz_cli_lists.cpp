// fuzz_cli_lists: the list-valued flags: --effort-map, --effort-layers, and the file
// --exit-calibration reads.
#include "../../tools/cli.h"
#include "../../tools/exit_flags.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    effort::cli::parse_effort_map("--effort-map", text);
  } catch (const effort::cli::UsageError&) {
  }
  try {
    effort::cli::parse_effort_layers("--effort-layers", text);
  } catch (const effort::cli::UsageError&) {
  }
  try {
    effort::EarlyExitOptions options;
    effort::cli::apply_exit_calibration(effort::fuzz::as_file(data, size, ".json").string(), options);
  } catch (const effort::Error&) {
  } catch (const effort::cli::UsageError&) {
  }
  return 0;
}

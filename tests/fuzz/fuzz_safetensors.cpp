// fuzz_safetensors: the safetensors header and tensor table, then every tensor read as floats.
#include "effort/error.h"
#include "formats/safetensors.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = effort::fuzz::as_file(data, size, ".safetensors");
  try {
    const effort::SafetensorsFile file(path);
    for (const auto& [name, view] : file.tensors()) view.to_floats();
  } catch (const effort::Error&) {
  }
  return 0;
}

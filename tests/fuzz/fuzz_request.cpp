// fuzz_request: effort-server's request bodies on both completion endpoints, against the
// fixture model (EFFORT_FUZZ_MODEL, else the demo model beside the repository).
#include <cstdlib>
#include <memory>

#include "fuzz_input.h"
#include "requests.h"

namespace {
std::unique_ptr<effort::Model> model;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("EFFORT_FUZZ_MODEL");
  model = std::make_unique<effort::Model>(effort::Model::load(path && *path ? path : EFFORT_FUZZ_DEFAULT_MODEL));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (auto endpoint : {effort::server::Endpoint::completions, effort::server::Endpoint::chat_completions}) {
    try {
      effort::server::parse_request(body, endpoint, *model, 64, {});
    } catch (const effort::server::ApiError&) {
    }
  }
  return 0;
}

// test_util.h: fixture locations, a safetensors writer for crafted (and broken) files, running a
// CLI, and error measures with named tolerances.
#pragma once
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "effort/effort.h"
#include "kernels/kernels.h"

namespace test {

namespace fs = std::filesystem;

// The repository's default model and fixtures (models/), and the reference outputs of
// independent implementations (tests/data/reference/): always present, so no test skips them.
inline fs::path models_dir() { return fs::path(EFFORT_SOURCE_DIR) / "models"; }
inline fs::path reference_dir() { return fs::path(EFFORT_SOURCE_DIR) / "tests" / "data" / "reference"; }
inline fs::path fixture_model() { return models_dir() / "stories260K"; }

// Built with the sanitizers (scripts/test.sh's second pass): the longest statistical and
// combinatorial tests run fewer repetitions there. Memory and undefined-behaviour errors show in
// the code paths, which a few repetitions cover; the optimised pass keeps the full counts.
#ifdef EFFORT_SANITIZE_BUILD
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Data too large for the repository comes from scripts/fetch-test-data.sh into the cache
// folder ($EFFORT_CACHE, default ~/.cache/effort). A test whose datum is absent fails when CI
// is set; elsewhere it skips, and says so on the line scripts/test.sh counts at the end.
inline fs::path fetched_data_dir() {
  const char* cache = std::getenv("EFFORT_CACHE");
  const char* home = std::getenv("HOME");
  return (cache && *cache ? fs::path(cache) : fs::path(home ? home : "/tmp") / ".cache" / "effort") / "test-data";
}
// A skip is appended to $EFFORT_TEST_SKIP_LOG (scripts/test.sh prints them all at the end).
inline void record_skip(const std::string& why) {
  if (const char* log = std::getenv("EFFORT_TEST_SKIP_LOG"); log && *log) std::ofstream(log, std::ios::app) << why << "\n";
}
#define REQUIRE_FETCHED_OR_SKIP(path)                                                                      \
  do {                                                                                                     \
    if (!std::filesystem::exists(path)) {                                                                  \
      if (std::getenv("CI")) FAIL((path).string() << " is absent: scripts/fetch-test-data.sh fetches it"); \
      const std::string why = Catch::getResultCapture().getCurrentTestName() + ": " + (path).string() +    \
                              " is absent (scripts/fetch-test-data.sh fetches it)";                        \
      WARN("skipped: " << why);                                                                            \
      test::record_skip(why);                                                                              \
      return;                                                                                              \
    }                                                                                                      \
  } while (0)

// A fresh directory under the system temp folder, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "effort-test-XXXXXX").string();
    path = ::mkdtemp(templ.data());
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path operator/(const std::string& name) const { return path / name; }
};

inline std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
inline void write_bytes(const fs::path& path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(size));
}
inline void write_text(const fs::path& path, const std::string& text) { write_bytes(path, text.data(), text.size()); }

struct RawTensor {
  std::string dtype;                 // "F32", "F16", "BF16", ...
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

// Writes a well-formed safetensors file; header_fixup may corrupt the header JSON first.
inline void write_safetensors(const fs::path& path, const std::map<std::string, RawTensor>& tensors,
                              const std::function<void(nlohmann::json&)>& header_fixup = {}) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<std::uint8_t> data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  if (header_fixup) header_fixup(header);
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';
  std::vector<std::uint8_t> file(8);
  for (int i = 0; i < 8; ++i) file[std::size_t(i)] = std::uint8_t(std::uint64_t(text.size()) >> (8 * i));
  file.insert(file.end(), text.begin(), text.end());
  file.insert(file.end(), data.begin(), data.end());
  write_bytes(path, file.data(), file.size());
}

inline RawTensor f32_tensor(std::vector<std::int64_t> shape, const std::vector<float>& values) {
  RawTensor t{"F32", std::move(shape), std::vector<std::uint8_t>(values.size() * 4)};
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line; the caller quotes arguments.
inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  // Grouped, so that a redirection inside the command (2>/dev/null) still applies.
  FILE* pipe = ::popen(("{ " + command + "\n} 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

inline std::vector<float> read_f32_file(const fs::path& path) {
  const auto bytes = read_bytes(path);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

inline nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

inline float max_abs_diff(const float* a, const float* b, std::size_t n) {
  float m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// The logits after each token, fed one at a time.
inline std::vector<std::vector<float>> forward_each(effort::Session& s, const std::vector<int>& ids) {
  std::vector<std::vector<float>> rows;
  for (int id : ids) {
    const auto z = s.forward(id);
    rows.emplace_back(z.begin(), z.end());
  }
  return rows;
}

// A prompt longer than one batch (256 tokens) of the fixture: the reference greedy story from
// BOS, continued with itself.
inline std::vector<int> long_prompt(std::size_t length) {
  const auto story = read_json(reference_dir() / "stories260K" / "greedy_from_bos.json")["generated_ids"].get<std::vector<int>>();
  std::vector<int> ids = {1};
  while (ids.size() < length) ids.push_back(story[(ids.size() - 1) % story.size()]);
  return ids;
}

// How far a session's batched prompt (prefill) lands from feeding the same tokens one at a time
// (forward): the largest logit difference after the prompt and after one more token.
inline float batched_vs_one_by_one(const effort::Model& model, const std::vector<int>& ids,
                                   const effort::SessionOptions& options) {
  effort::Session one_by_one = model.new_session(options), batched = model.new_session(options);
  std::vector<float> expected = forward_each(one_by_one, ids).back();
  const auto z = batched.prefill(ids);
  float diff = max_abs_diff(z.data(), expected.data(), expected.size());
  if (batched.position() != one_by_one.position()) return INFINITY;
  // The caches agree too: the next token's logits.
  const auto next_a = one_by_one.forward(403);
  expected.assign(next_a.begin(), next_a.end());
  const auto next_b = batched.forward(403);
  return std::max(diff, max_abs_diff(next_b.data(), expected.data(), expected.size()));
}

// Logits of two fp32 passes that sum in different orders (ours and llama2.c's run.c, token by
// token and batched, an adapter and its merged weights), or of ours and a float64 pass: the
// shared reference README measures 1.6e-5 between run.c and float64 NumPy, and we see the same
// order. 1e-4 keeps a margin while a wrong RoPE pairing is off by ~20, a missing norm weight by
// more than 1, and a wrong adapter scale by more than 1e-2.
inline constexpr float kLogitTolerance = 1e-4f;

// The largest |a - b| over rows of logits (b: float or double).
template <class B>
float max_logit_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<B>>& b) {
  float m = 0;
  for (std::size_t t = 0; t < a.size(); ++t)
    for (std::size_t i = 0; i < a[t].size(); ++i) m = std::max(m, float(std::fabs(double(a[t][i]) - double(b[t][i]))));
  return m;
}

// Every kernel arch this build has and this CPU runs.
inline std::vector<effort::kernels::Arch> all_arches() {
  std::vector<effort::kernels::Arch> arches;
  for (auto a : {effort::kernels::Arch::scalar, effort::kernels::Arch::avx2, effort::kernels::Arch::avx512})
    if (effort::kernels::arch_supported(a)) arches.push_back(a);
  return arches;
}

// A checkpoint folder whose config.json is the fixture's with `edit` applied and whose tensors
// are `write`n by the caller (default: a link to the fixture's file).
struct EditedCheckpoint {
  TempDir dir;
  EditedCheckpoint(const std::function<void(nlohmann::json&)>& edit) {
    auto config = read_json(fixture_model() / "config.json");
    edit(config);
    write_text(dir / "config.json", config.dump(2));
    std::filesystem::create_symlink(fixture_model() / "tokenizer.model", dir / "tokenizer.model");
  }
  void link_weights() { std::filesystem::create_symlink(fixture_model() / "model.safetensors", dir / "model.safetensors"); }
  const std::filesystem::path& path() const { return dir.path; }
};

}  // namespace test

// cli.h: argument parsing shared by the command-line tools: every value is checked in full, and
// a bad one raises UsageError naming the flag, what was expected and what was given.
#pragma once
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "effort/convert.h"
#include "effort/effort.h"
#include "effort/error.h"

namespace effort::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// -h or --help was given: run_tool prints the usage and exits 0.
struct HelpRequested {
  const char* usage;
};

// --version was given: run_tool prints the tool's name and version and exits 0.
struct VersionRequested {};

// Walks argv: next_flag() returns each flag, value() the argument that follows it. -h and
// --help end parsing with the usage text (HelpRequested).
class ArgReader {
 public:
  ArgReader(int argc, char** argv, const char* usage) : args_(argv + 1, argv + argc), usage_(usage) {}
  bool done() const { return index_ >= args_.size(); }
  std::string next_flag() {
    flag_ = args_[index_++];
    if (flag_ == "-h" || flag_ == "--help") throw HelpRequested{usage_};
    if (flag_ == "--version") throw VersionRequested{};
    return flag_;
  }
  std::string value() {
    if (done()) throw UsageError(flag_ + ": missing value");
    return args_[index_++];
  }
  const std::string& flag() const { return flag_; }

 private:
  std::vector<std::string> args_;
  const char* usage_;
  std::size_t index_ = 0;
  std::string flag_;
};

inline long long parse_int(const std::string& flag, std::string_view text, long long min, long long max) {
  long long v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max)
    throw UsageError(flag + ": expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                     "], got '" + std::string(text) + "'");
  return v;
}

inline std::uint64_t parse_u64(const std::string& flag, std::string_view text) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size())
    throw UsageError(flag + ": expected a non-negative integer, got '" + std::string(text) + "'");
  return v;
}

// 1, 0.5, 1000000: whole numbers as integers, others in the shortest form that reads back as
// the same double.
inline std::string format_number(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string((long long)v);
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string(buffer, ec == std::errc() ? end : buffer);
}

// A finite number in [min, max] (or (min, max] when min_exclusive).
inline double parse_number(const std::string& flag, std::string_view text, double min, double max,
                           bool min_exclusive = false) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool below = min_exclusive ? !(v > min) : !(v >= min);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) || below || v > max)
    throw UsageError(flag + ": expected a number in " + (min_exclusive ? "(" : "[") + format_number(min) + ", " +
                     format_number(max) + "], got '" + std::string(text) + "'");
  return v;
}

// "a,b,c" -> {"a", "b", "c"}
inline std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    items.emplace_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

// A bucket size: 1, 2, 4, 8 or 16 outputs.
inline std::size_t parse_bucket_size(const std::string& flag, std::string_view text) {
  const auto size = parse_int(flag, text, 1, 16);
  if (size & (size - 1)) throw UsageError(flag + ": expected a bucket size of 1, 2, 4, 8 or 16, got " + std::to_string(size));
  return std::size_t(size);
}

// "1,2,16" -> bucket sizes
inline std::vector<std::size_t> parse_bucket_sizes(const std::string& flag, std::string_view text) {
  std::vector<std::size_t> sizes;
  for (const auto& item : split_list(text)) sizes.push_back(parse_bucket_size(flag, item));
  return sizes;
}

// "f16" or "q8": the entries of bucketed matrices.
inline BucketEntries parse_bucket_weights(const std::string& flag, std::string_view text) {
  if (text == "f16") return BucketEntries::f16;
  if (text == "q8") return BucketEntries::q8;
  throw UsageError(flag + ": expected f16 or q8, got '" + std::string(text) + "'");
}

inline std::vector<BucketEntries> parse_bucket_weights_list(const std::string& flag, std::string_view text) {
  std::vector<BucketEntries> list;
  for (const auto& item : split_list(text)) list.push_back(parse_bucket_weights(flag, item));
  return list;
}

// "1,2,3" -> {1, 2, 3}
// --effort-map: "down=0.2,up=0.3".
inline std::vector<std::pair<MatrixKind, float>> parse_effort_map(const std::string& flag, const std::string& text) {
  std::vector<std::pair<MatrixKind, float>> map;
  for (const std::string& item : split_list(text)) {
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos) throw UsageError(flag + ": expected KIND=EFFORT items, got '" + item + "'");
    MatrixKind kind;
    try {
      kind = parse_matrix_kind(item.substr(0, eq));
    } catch (const Error& e) {
      throw UsageError(flag + ": " + e.what());
    }
    map.emplace_back(kind, float(parse_number(flag, item.substr(eq + 1), 0, 1, true)));
  }
  return map;
}

// --effort-layers: "8-23=0.4,24=0.6" as (first, last, effort), 0-based layers.
inline std::vector<std::tuple<int, int, float>> parse_effort_layers(const std::string& flag, const std::string& text) {
  std::vector<std::tuple<int, int, float>> layers;
  for (const std::string& item : split_list(text)) {
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos) throw UsageError(flag + ": expected FIRST[-LAST]=EFFORT items, got '" + item + "'");
    const std::string range = item.substr(0, eq);
    const std::size_t dash = range.find('-');
    const int first = int(parse_int(flag, range.substr(0, dash), 0, 1 << 16));
    const int last = dash == std::string::npos ? first : int(parse_int(flag, range.substr(dash + 1), first, 1 << 16));
    layers.emplace_back(first, last, float(parse_number(flag, item.substr(eq + 1), 0, 1, true)));
  }
  return layers;
}

inline std::vector<std::int32_t> parse_id_list(const std::string& flag, std::string_view text) {
  std::vector<std::int32_t> ids;
  for (const auto& item : split_list(text)) ids.push_back(std::int32_t(parse_int(flag, item, 0, INT32_MAX)));
  return ids;
}

// The whole of a stream, for prompts from standard input or a file.
inline std::string read_all(std::istream& in, const std::string& what) {
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw UsageError("cannot read " + what);
  return text.str();
}

inline std::string read_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(flag + ": cannot open " + path);
  return read_all(in, path);
}

#ifdef EFFORT_DEFAULT_MODEL
// The model when no -m is given: $EFFORT_MODEL, else the demo model the build knows of.
inline std::string default_model() {
  const char* env = std::getenv("EFFORT_MODEL");
  std::string model = env && *env ? env : EFFORT_DEFAULT_MODEL;
  if (!std::filesystem::exists(model))
    throw UsageError("no model given and the default model " + model + " is absent: pass -m MODEL or set EFFORT_MODEL");
  return model;
}
#endif

// One line about the model on stderr at load (with verbose, its whole configuration).
inline void print_model_summary(const std::string& path, const Model& model, bool verbose) {
  const ModelConfig& c = model.config();
  std::fprintf(stderr, "[model] %s: %s, %d layers, hidden %d, %d heads (%d kv), vocab %d, context %d, %s%s\n",
               path.c_str(), c.model_type.c_str(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
               c.num_key_value_heads, c.vocab_size, c.max_position_embeddings, model.layout().c_str(),
               model.tokenizer() ? "" : ", no tokenizer");
  if (verbose)
    std::fprintf(stderr,
                 "[model] intermediate_size %d, head_dim %d, rope_theta %g, rms_norm_eps %g, sliding_window %d, "
                 "tie_word_embeddings %s, bos %d, eos %d\n",
                 c.intermediate_size, c.head_dim, c.rope_theta, c.rms_norm_eps, c.sliding_window,
                 c.tie_word_embeddings ? "true" : "false", c.bos_token_id, c.eos_token_ids.empty() ? -1 : c.eos_token_ids[0]);
}

// Peak resident memory of this process in MB (VmHWM), 0 when unknown.
inline double peak_rss_mb() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
  std::fclose(f);
  return kb / 1024.0;
}

// A tool's main: runs it and maps errors to exit codes: 2 for bad arguments (the tool's own
// checks, and values the library refuses as invalid arguments), 1 for anything else, with the
// message (which names the file or argument) on stderr.
inline int run_tool(const char* name, int argc, char** argv, int (*run)(int, char**)) {
  try {
    return run(argc, argv);
  } catch (const HelpRequested& help) {
    std::fputs(help.usage, stdout);
    return 0;
  } catch (const VersionRequested&) {
    std::printf("%s %s\n", name, EFFORT_VERSION);
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return e.code() == ErrorCode::invalid_argument ? 2 : 1;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace effort::cli

// effort-check: reads a .effort file whole and checks it: header, checksums, shapes, position
// bits, stats and probes; prints what the model is.
#include <cstdio>
#include <string>

#include "cli.h"
#include "effort/convert.h"

namespace {

constexpr const char* kUsage = R"(usage: effort-check FILE.effort
Checks everything a .effort file holds: the header, every tensor's checksum, shapes, and the
bucket invariants the kernels rely on (every position once per bucket, stats, probes). Exits 0
and prints the model's summary when the file is sound, 1 with the first problem otherwise.
  -h, --help   this text
)";

int run(int argc, char** argv) {
  std::string path;
  effort::cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (!f.empty() && f[0] == '-') throw effort::cli::UsageError("unknown option '" + f + "' (see --help)");
    if (!path.empty()) throw effort::cli::UsageError("more than one FILE: '" + path + "' and '" + f + "'");
    path = f;
  }
  if (path.empty()) throw effort::cli::UsageError("missing FILE (see --help)");
  const auto report = effort::check_effort_file(path);
  std::printf("%s: ok (%.1f MB)\n", path.c_str(), report.bytes / 1e6);
  for (const auto& line : report.summary) std::printf("  %s\n", line.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-check", argc, argv, run); }

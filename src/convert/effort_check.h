// effort_check.h: a whole-file check of a .effort file, deeper than loading: checksums, shapes,
// and the bucket invariants the kernels rely on (positions, stats, probes).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace effort {

struct EffortCheckReport {
  std::vector<std::string> summary;  // what the file holds, one line each
  std::size_t tensors = 0, matrices = 0;
  double bytes = 0;
};

// Throws effort::Error (format) naming the file, the tensor and what is wrong at the first
// problem; returns the summary when everything holds.
EffortCheckReport check_effort_file(const std::filesystem::path& path);

}  // namespace effort

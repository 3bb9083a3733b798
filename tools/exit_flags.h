// exit_flags.h: the early-exit flags the tools share: the check schedule, and the per-layer
// thresholds that effort-eval --calibrate writes and --exit-calibration reads:
// {"layer_thresholds": {"L": t, ...}, ...}.
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.h"
#include "effort/effort.h"

namespace effort::cli {

// Sets check_layers and layer_thresholds from the file; errors name the file.
inline void apply_exit_calibration(const std::string& path, EarlyExitOptions& options) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::io, "--exit-calibration: cannot open " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::format, "--exit-calibration " + path + ": not valid JSON: " + e.what());
  }
  if (!j.contains("layer_thresholds") || !j["layer_thresholds"].is_object())
    throw Error(ErrorCode::format, "--exit-calibration " + path + ": expected a \"layer_thresholds\" object");
  options.check_layers.clear();
  options.layer_thresholds.clear();
  for (const auto& [layer, threshold] : j["layer_thresholds"].items()) {
    if (!threshold.is_number())
      throw Error(ErrorCode::format, "--exit-calibration " + path + ": threshold of layer " + layer + " is not a number");
    const int l = int(parse_int("--exit-calibration " + path, layer, 0, 1 << 16));
    options.check_layers.push_back(l);
    options.layer_thresholds.emplace_back(l, threshold.get<float>());
  }
}

// --exit-layers, --exit-patience, --exit-warmup, --exit-max-consecutive (effort-run, effort-eval,
// effort-bench). False when f is none of them.
inline bool read_exit_schedule_flag(const std::string& f, ArgReader& args, EarlyExitOptions& o) {
  if (f == "--exit-layers") {
    o.check_layers.clear();
    for (const auto& l : split_list(args.value())) o.check_layers.push_back(int(parse_int(f, l, 0, 1 << 16)));
  } else if (f == "--exit-patience") o.patience = int(parse_int(f, args.value(), 1, 1 << 16));
  else if (f == "--exit-warmup") o.warmup = int(parse_int(f, args.value(), 0, 1 << 24));
  else if (f == "--exit-max-consecutive") o.max_consecutive = int(parse_int(f, args.value(), 1, 1 << 24));
  else return false;
  return true;
}

}  // namespace effort::cli

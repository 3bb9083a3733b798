// bench_util.h: timing helpers for the benchmarks: interleaved repetitions after a warm-up, medians.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace effort::bench {

// Runs a and b alternately `reps` times each after one warm-up of both, so that a slow phase of a
// shared machine hits both alike; returns each one's repetitions.
inline std::pair<std::vector<double>, std::vector<double>> time_interleaved(int reps, const std::function<void()>& a,
                                                                            const std::function<void()>& b) {
  a();
  b();
  auto seconds = [](const std::function<void()>& fn) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> ta, tb;
  for (int r = 0; r < reps; ++r) {
    ta.push_back(seconds(a));
    tb.push_back(seconds(b));
  }
  return {ta, tb};
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace effort::bench

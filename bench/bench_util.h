// bench_util.h: timing helpers shared by the benchmarks: warm-up, repetitions, medians.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace effort::bench {

// Runs fn once to warm up, then `reps` times; returns each repetition's seconds.
inline std::vector<double> time_reps(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> seconds;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return seconds;
}

// Runs a and b alternately `reps` times each after one warm-up of both, so that a slow phase of a
// shared machine hits both alike; returns each one's repetitions.
inline std::pair<std::vector<double>, std::vector<double>> time_interleaved(int reps, const std::function<void()>& a,
                                                                            const std::function<void()>& b) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int r = 0; r < reps; ++r) {
    auto start = std::chrono::steady_clock::now();
    a();
    ta.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    start = std::chrono::steady_clock::now();
    b();
    tb.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
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

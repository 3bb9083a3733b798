// bench_util.h: what the benchmarks share: interleaved repetitions after a warm-up, medians, a
// seeded random stream, and the machine's memory roof.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
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

// splitmix64: fast, and the same stream on every platform.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

// Sample standard deviation, as llama-bench reports it.
inline double sd(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The memory roof: bytes per second of a plain read of a 1 GiB buffer (larger than any cache)
// by `threads` threads, each reading its own contiguous part, median of `reps` passes after one
// warm-up. The read is glibc's memchr over zeros, which scans every byte at the core's full
// vector width, so the figure is the memory's, not a loop of ours.
inline double stream_bandwidth(int threads, int reps = 5) {
  constexpr std::size_t kBytes = std::size_t(1) << 30;
  const std::unique_ptr<unsigned char[]> buffer(new unsigned char[kBytes]);
  std::memset(buffer.get(), 0, kBytes);  // real pages, not the shared zero page
  const std::size_t part = kBytes / std::size_t(threads);
  auto pass = [&] {
    std::vector<std::thread> readers;
    for (int t = 0; t < threads; ++t)
      readers.emplace_back([&, t] {
        if (std::memchr(buffer.get() + std::size_t(t) * part, 1, part)) std::abort();  // all zeros: never found
      });
    for (auto& r : readers) r.join();
  };
  pass();
  std::vector<double> seconds;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    pass();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return double(part) * threads / median(seconds);
}

}  // namespace effort::bench

// thread_pool_test.cpp: parallel_for covers every index once, and matvec results do not depend on
// the number of threads.
#include <catch2/catch.hpp>
#include <atomic>
#include <random>

#include "kernels/kernels.h"
#include "model/linear.h"
#include "model/thread_pool.h"

using namespace effort;

TEST_CASE("parallel_for visits each index exactly once on grain boundaries", "[threads]") {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    REQUIRE(pool.size() == threads);
    for (std::size_t n : {0, 1, 7, 64, 1000}) {
      for (std::size_t grain : {1, 4, 100}) {
        // Workers only record: Catch2 v2's assertions are not thread-safe, so they run here.
        std::vector<int> hits(n, 0);
        std::vector<std::size_t> begins;
        std::mutex m;
        pool.parallel_for(n, grain, [&](std::size_t b, std::size_t e) {
          std::lock_guard lock(m);
          begins.push_back(b);
          for (std::size_t i = b; i < e; ++i) ++hits[i];
        });
        REQUIRE(std::all_of(begins.begin(), begins.end(), [&](std::size_t b) { return b % grain == 0; }));
        REQUIRE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
      }
    }
  }
}

TEST_CASE("matvec is bitwise identical for 1, 2 and 3 threads", "[threads]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> d;
  const std::size_t rows = 1000, cols = 333;
  std::vector<float> w(rows * cols), x(cols);
  for (auto& v : w) v = d(rng);
  for (auto& v : x) v = d(rng);
  const DenseMatrix m{kernels::DType::f32, w.data(), rows, cols};
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<float> y(rows);
    matvec(m, x.data(), y.data(), Compute{kernels::kernel_table(kernels::best_arch()), pool});
    results.push_back(y);
  }
  REQUIRE(results[0] == results[1]);
  REQUIRE(results[0] == results[2]);
}

TEST_CASE("thread pools started and stopped over and over run every task and leave no thread behind", "[threads]") {
  // Churn: pools that die right after one task, right after creation, and while their workers
  // may still be waking up; ThreadSanitizer (scripts/tsan.sh) watches the start/stop handshakes.
  std::atomic<std::size_t> total{0};
  for (int round = 0; round < 200; ++round) {
    const int threads = 1 + round % 4;
    ThreadPool pool(threads);
    if (round % 3 == 0) continue;  // destroyed unused
    pool.run_on_all([&](int) { total.fetch_add(1, std::memory_order_relaxed); });
    if (round % 3 == 1) pool.parallel_for(100, 1, [&](std::size_t b, std::size_t e) { total.fetch_add(e - b); });
  }
  std::size_t expected = 0;
  for (int round = 0; round < 200; ++round)
    if (round % 3 != 0) expected += std::size_t(1 + round % 4) + (round % 3 == 1 ? 100 : 0);
  REQUIRE(total == expected);
}

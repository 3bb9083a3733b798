// linear.cpp: row-parallel dense matvec, and the effort matvec: cutoff, dispatch, bucket product.
#include "linear.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "kernels/bucket_matvec.h"

namespace effort {

namespace {
// Below this many multiply-adds per thread, waking a worker costs more than it saves.
constexpr std::size_t kMinMacsPerThread = 32 * 1024;

// Threads split a bucketed product by whole 16-bucket tiles (one 64-byte line of a row each),
// so every output is summed by one thread in dispatch order.
constexpr std::size_t kBucketTile = 16;

void bucket_matvec(const BucketMatrix& w, MatrixKind kind, const float* x, float* y, const Compute& compute) {
  BucketScratch& s = *compute.scratch;
  EffortState& state = *compute.effort;
  const float effort = state.effort[int(kind)];
  const std::size_t n = w.probe_rows.size();
  for (std::size_t i = 0; i < n; ++i) s.products[i] = w.probe_weights[i] * std::fabs(x[w.probe_rows[i] % w.in_features]);
  const float cutoff = effort_cutoff(s.products, n, effort);
  const std::size_t count = compute.kernels.bucket_dispatch(s.rows.data(), s.row_x.data(), w.stats, x, w.in_features,
                                                             w.loaded_rows, cutoff);
  const std::size_t grain = std::max(kBucketTile, (kMinMacsPerThread / std::max<std::size_t>(count, 1) + kBucketTile - 1) /
                                                      kBucketTile * kBucketTile);
  compute.pool.parallel_for(w.num_buckets, grain, [&](std::size_t begin, std::size_t end) {
    compute.kernels.bucket_matvec(s.padded_out.data(), w.bucket_rows, w.num_buckets, s.rows.data(), s.row_x.data(), count,
                                  begin, end);
  });
  std::copy(s.padded_out.begin(), s.padded_out.begin() + std::ptrdiff_t(w.out_features), y);
  state.stats.done[int(kind)] += double(count) * double(w.num_buckets);
  state.stats.dense[int(kind)] += double(kernels::kBucketSize * w.in_features) * double(w.num_buckets);
}

}  // namespace

float effort_cutoff(std::vector<float>& products, std::size_t n, float effort) {
  const auto t = std::size_t(std::clamp<double>(std::round(double(effort) * double(n)), 1.0, double(n)));
  if (n == 0 || t >= n) return -1.0f;
  std::nth_element(products.begin(), products.begin() + std::ptrdiff_t(t), products.begin() + std::ptrdiff_t(n),
                   std::greater<float>());
  return products[t];
}

void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute) {
  const auto fn = compute.kernels.matvec[int(w.dtype)];
  const std::size_t grain = std::max<std::size_t>(4, (kMinMacsPerThread / std::max<std::size_t>(w.cols, 1) + 3) / 4 * 4);
  compute.pool.parallel_for(w.rows, grain, [&](std::size_t begin, std::size_t end) {
    fn(y + begin, w.row(begin), x, end - begin, w.cols);
  });
}

void matvec(const Matrix& w, MatrixKind kind, const float* x, float* y, const Compute& compute) {
  if (const auto* bucketed = std::get_if<BucketMatrix>(&w)) return bucket_matvec(*bucketed, kind, x, y, compute);
  const auto& dense = std::get<DenseMatrix>(w);
  matvec(dense, x, y, compute);
  if (compute.effort) {
    const double macs = double(dense.rows) * double(dense.cols);
    compute.effort->stats.done[int(kind)] += macs;
    compute.effort->stats.dense[int(kind)] += macs;
  }
}

std::size_t out_features(const Matrix& w) {
  return std::visit([](const auto& m) {
    if constexpr (std::is_same_v<std::decay_t<decltype(m)>, DenseMatrix>) return m.rows;
    else return m.out_features;
  }, w);
}

std::size_t in_features(const Matrix& w) {
  return std::visit([](const auto& m) {
    if constexpr (std::is_same_v<std::decay_t<decltype(m)>, DenseMatrix>) return m.cols;
    else return m.in_features;
  }, w);
}

}  // namespace effort

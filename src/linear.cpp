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

void bucket_matvec(const BucketMatrix& w, int layer, MatrixKind kind, const float* x, float* y, const Compute& compute) {
  BucketScratch& s = *compute.scratch;
  EffortState& state = *compute.effort;
  const kernels::BucketView& v = w.view;
  const std::size_t T = v.num_tiles, G = v.group, slots = T * G;
  for (std::size_t slot = 0; slot < slots; ++slot) {
    const std::uint32_t j = w.input_order[slot];
    const float xj = j < w.in_features ? x[j] : 0.0f;
    s.xg[(slot % G) * T + slot / G] = xj;
    s.abs_xg[(slot % G) * T + slot / G] = std::fabs(xj);
  }
  // Probe importances with the same fused multiply-adds, in the same order, as the dispatch.
  const std::size_t n = w.probe_units.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t t = w.probe_units[i] % T;
    float c = 0.0f;
    for (std::size_t g = 0; g < G; ++g) c = std::fma(s.abs_xg[g * T + t], w.probe_stats[i * G + g], c);
    s.products[i] = c;
  }
  const float cutoff = effort_cutoff(s.products, n, state.effort[std::size_t(layer)][std::size_t(kind)]);
  const std::size_t count = compute.kernels.bucket_dispatch(s.units.data(), v, s.abs_xg.data(), w.loaded_units, cutoff);
  const std::size_t unit_macs = G * kBucketTile;
  const std::size_t grain = std::max(kBucketTile, (kMinMacsPerThread / std::max<std::size_t>(count * unit_macs, 1) + 1) * kBucketTile);
  compute.pool.parallel_for(v.num_buckets, grain, [&](std::size_t begin, std::size_t end) {
    compute.kernels.bucket_matvec(s.padded_out.data(), v, s.xg.data(), s.units.data(), count, begin, end);
  });
  std::copy(s.padded_out.begin(), s.padded_out.begin() + std::ptrdiff_t(w.out_features), y);
  state.stats.done[int(kind)] += double(count) * double(G * v.num_buckets);
  state.stats.dense[int(kind)] += double(v.bucket_size * slots) * double(v.num_buckets);
}

}  // namespace

BucketScratch::BucketScratch(const std::vector<const BucketMatrix*>& matrices) {
  std::size_t slots = 0, units = 0, probes = 0, outputs = 0;
  for (const BucketMatrix* m : matrices) {
    slots = std::max(slots, m->view.num_tiles * m->view.group);
    units = std::max(units, m->loaded_units);
    probes = std::max(probes, m->probe_units.size());
    outputs = std::max(outputs, m->view.num_buckets * m->view.bucket_size);
  }
  xg.resize(slots);
  abs_xg.resize(slots);
  this->units.resize(units);
  products.resize(probes);
  padded_out.resize(outputs);
}

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

void matmul(const DenseMatrix& w, const float* x, float* y, std::size_t n, const Compute& compute) {
  const auto fn = compute.kernels.matmul[int(w.dtype)];
  const std::size_t grain = std::max<std::size_t>(4, (kMinMacsPerThread / std::max<std::size_t>(w.cols * n, 1) + 3) / 4 * 4);
  compute.pool.parallel_for(w.rows, grain, [&](std::size_t begin, std::size_t end) {
    fn(y + begin, w.rows, w.row(begin), x, end - begin, w.cols, n);
  });
}

void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, const Compute& compute) {
  if (const auto* bucketed = std::get_if<BucketMatrix>(&w)) return bucket_matvec(*bucketed, layer, kind, x, y, compute);
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

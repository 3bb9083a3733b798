// linear.cpp: row-parallel dense matvec, and the effort matvec: cutoff, dispatch, bucket product.
#include "linear.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <new>

#include "kernels/bucket_matvec.h"
#include "kernels/panel_matmul.h"

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
  const auto start = Clock::now();
  const float cutoff = effort_cutoff(s.products, n, state.effort[std::size_t(layer)][std::size_t(kind)]);
  const std::size_t count = compute.kernels.bucket_dispatch(s.units.data(), v, s.abs_xg.data(), w.loaded_units, cutoff);
  const auto dispatched = Clock::now();
  const std::size_t unit_macs = G * kBucketTile;
  const std::size_t grain = std::max(kBucketTile, (kMinMacsPerThread / std::max<std::size_t>(count * unit_macs, 1) + 1) * kBucketTile);
  compute.pool.parallel_for(v.num_buckets, grain, [&](std::size_t begin, std::size_t end) {
    compute.kernels.bucket_matvec(s.padded_out.data(), v, s.xg.data(), s.units.data(), count, begin, end);
  });
  std::copy(s.padded_out.begin(), s.padded_out.begin() + std::ptrdiff_t(w.out_features), y);
  state.stats.dispatch_seconds += std::chrono::duration<double>(dispatched - start).count();
  state.stats.multiply_seconds += seconds_since(dispatched);
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

namespace {
// A batched product goes by blocks of outputs (split among threads) and chunks of inputs: the
// block's panels for one chunk (8 x 128 x 32 floats = 128 KiB) stay in L2 while every vector of
// the batch passes, each 32-output panel (16 KiB) in L1. A bucketed block spans 256 / S buckets:
// 64 bytes of each unit row when S = 8, so no unit line is fetched twice.
constexpr std::size_t kBlockOutputs = 256;
constexpr std::size_t kChunkInputs = 128;

// The unpacked panels of the calling thread, 64-byte aligned for the panel loads.
float* thread_panels() {
  struct Buffer {
    float* data = static_cast<float*>(::operator new[](kBlockOutputs * kChunkInputs * sizeof(float), std::align_val_t(64)));
    ~Buffer() { ::operator delete[](data, std::align_val_t(64)); }
  };
  thread_local Buffer buffer;
  return buffer.data;
}
}  // namespace

void matmul(const Matrix& w, MatrixKind kind, const float* x, float* y, std::size_t n, const Compute& compute,
            std::vector<float>& packed_x) {
  const auto* bucketed = std::get_if<BucketMatrix>(&w);
  const auto* dense = std::get_if<DenseMatrix>(&w);
  const std::size_t in = in_features(w), out = out_features(w);
  const std::size_t slots = bucketed ? bucketed->view.num_tiles * bucketed->view.group : in;
  // The inputs transposed, in the matrix's slot order: packed_x[slot * n + j].
  packed_x.resize(slots * n);
  for (std::size_t slot = 0; slot < slots; ++slot) {
    const std::size_t i = bucketed ? bucketed->input_order[slot] : slot;
    for (std::size_t j = 0; j < n; ++j) packed_x[slot * n + j] = i < in ? x[j * in + i] : 0.0f;
  }
  const auto& k = compute.kernels;
  const std::size_t group = bucketed ? bucketed->view.group : 1;
  const std::size_t chunk = kChunkInputs / group * group;
  const std::size_t blocks = (out + kBlockOutputs - 1) / kBlockOutputs;
  compute.pool.parallel_for(blocks, 1, [&](std::size_t begin, std::size_t end) {
    float* panels = thread_panels();
    for (std::size_t block = begin; block < end; ++block) {
      const std::size_t o0 = block * kBlockOutputs, block_outputs = std::min(kBlockOutputs, out - o0);
      for (std::size_t k0 = 0; k0 < slots; k0 += chunk) {
        const std::size_t k_len = std::min(chunk, slots - k0);
        if (bucketed) {
          const std::size_t S = bucketed->view.bucket_size;
          k.bucket_panel(panels, bucketed->view, bucketed->loaded_units, o0 / S, kBlockOutputs / S, k0 / group,
                         k_len / group);
        }
        for (std::size_t p = 0; p * kernels::kPanelWidth < block_outputs; ++p) {
          const std::size_t o = o0 + p * kernels::kPanelWidth, width = std::min(kernels::kPanelWidth, out - o);
          float* panel = panels + p * k_len * kernels::kPanelWidth;
          if (dense) k.dense_panel[int(dense->dtype)](panel, dense->row(o), dense->cols, width, k0, k_len);
          k.panel_matmul(y + o, out, panel, packed_x.data() + k0 * n, n, k_len, n, width, k0 > 0);
        }
      }
    }
  });
  if (compute.effort) {
    // Counted as the single-vector path counts effort 1: loaded units, against the whole matrix.
    const auto& v = bucketed ? bucketed->view : kernels::BucketView{};
    const double dense_macs = bucketed ? double(v.bucket_size * slots * v.num_buckets) : double(out) * double(in);
    const double done = bucketed ? double(bucketed->loaded_units * v.group * v.num_buckets) : dense_macs;
    compute.effort->stats.done[int(kind)] += done * double(n);
    compute.effort->stats.dense[int(kind)] += dense_macs * double(n);
  }
}

void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, const Compute& compute) {
  if (const auto* bucketed = std::get_if<BucketMatrix>(&w)) return bucket_matvec(*bucketed, layer, kind, x, y, compute);
  const auto& dense = std::get<DenseMatrix>(w);
  const auto start = Clock::now();
  matvec(dense, x, y, compute);
  if (compute.effort) {
    compute.effort->stats.multiply_seconds += seconds_since(start);
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

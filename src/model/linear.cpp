// linear.cpp: row-parallel dense matvec, and the effort matvec: cutoff, dispatch, bucket product.
#include "model/linear.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <new>

#include "kernels/bucket_view.h"

namespace effort {

namespace {
// Below this many multiply-adds per thread, waking a worker costs more than it saves.
constexpr std::size_t kMinMacsPerThread = 32 * 1024;

// Parts of a dispatched list hold at least this many units, so that a short list is not
// spread over more accumulator arrays than it fills.
constexpr std::size_t kMinUnitsPerPart = 64;
}  // namespace

BucketWork matvec(const BucketMatrix& w, float effort, const float* x, float* y, const Compute& compute) {
  BucketScratch& s = *compute.scratch;
  const kernels::BucketView& v = w.view;
  const auto start = Clock::now();
  // Probe importances with the same float products as the dispatch.
  const std::size_t n = w.probe_units.size();
  for (std::size_t i = 0; i < n; ++i) s.products[i] = std::fabs(x[w.probe_inputs[i]]) * w.probe_stats[i];
  const float cutoff = effort_cutoff(s.products, n, effort);
  const std::size_t count = compute.kernels.bucket_dispatch(s.units.data(), s.xs.data(), v, x, w.loaded_units, cutoff);
  const auto dispatched = Clock::now();
  const std::size_t outputs = v.num_buckets * v.bucket_size;
  const std::size_t parts = std::clamp<std::size_t>(count / kMinUnitsPerPart, 1, kBucketParts);
  auto part_begin = [&](std::size_t p) { return count * p / parts; };
  // A short product runs on the calling thread: waking a worker would cost more.
  const std::size_t grain = count * v.num_buckets < 2 * kMinMacsPerThread ? parts : 1;
  compute.pool.parallel_for(parts, grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t p = begin; p < end; ++p)
      compute.kernels.bucket_matvec(s.part_out.data() + p * outputs, v, s.units.data() + part_begin(p),
                                    s.xs.data() + part_begin(p), part_begin(p + 1) - part_begin(p));
  });
  std::copy(s.part_out.begin(), s.part_out.begin() + std::ptrdiff_t(w.out_features), y);
  for (std::size_t p = 1; p < parts; ++p) compute.kernels.add(y, s.part_out.data() + p * outputs, w.out_features);
  BucketWork work;
  work.units = count;
  const double scale_bytes = v.scales ? double(v.num_blocks()) * 2 : 0;
  work.bytes = double(count) * (double(v.num_buckets * v.entry_bytes()) + scale_bytes) + double(w.loaded_units) * 4 +
               double(n) * 8;
  work.dispatch_seconds = std::chrono::duration<double>(dispatched - start).count();
  work.multiply_seconds = seconds_since(dispatched);
  return work;
}

BucketScratch::BucketScratch(const std::vector<const BucketMatrix*>& matrices) {
  std::size_t units = 0, probes = 0, padded_outputs = 0;
  for (const BucketMatrix* m : matrices) {
    units = std::max(units, m->loaded_units);
    probes = std::max(probes, m->probe_units.size());
    padded_outputs = std::max(padded_outputs, m->view.num_buckets * m->view.bucket_size);
  }
  this->units.resize(units + kernels::kDispatchSlack);
  xs.resize(units + kernels::kDispatchSlack);
  products.resize(probes);
  part_out.resize(kBucketParts * padded_outputs);
}

// One radix pass, then a select among the few left: products are >= 0, and the bits of
// non-negative floats order as the floats do. A histogram of the top 11 bits (sign, exponent,
// two mantissa bits) finds the bin holding the t-th largest; its members, a small fraction of
// the probes, are moved to the front and nth_element picks it among them. The result is the
// exact order statistic nth_element over all of them gives, in under half its time on 4096.
float effort_cutoff(std::vector<float>& products, std::size_t n, float effort) {
  const auto t = std::size_t(std::clamp<double>(std::round(double(effort) * double(n)), 1.0, double(n)));
  if (n == 0 || t >= n) return -1.0f;
  auto digit = [&](std::size_t i) {
    std::uint32_t bits;
    std::memcpy(&bits, &products[i], sizeof bits);
    return bits >> 21;
  };
  std::array<std::uint32_t, 1u << 11> count{};
  for (std::size_t i = 0; i < n; ++i) ++count[digit(i)];
  std::size_t rank = t;  // 0-based from the largest, within the bin once found
  std::uint32_t bin = count.size();
  while (rank >= count[--bin]) rank -= count[bin];
  std::size_t members = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (digit(i) == bin) std::swap(products[members++], products[i]);
  std::nth_element(products.begin(), products.begin() + std::ptrdiff_t(rank), products.begin() + std::ptrdiff_t(members),
                   std::greater<float>());
  return products[rank];
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
// 64 bytes of each unit row when S = 8.
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

namespace {
void matmul_products(const Matrix& w, const float* x, float* y, std::size_t n, const Compute& compute,
                     std::vector<float>& packed_x) {
  const auto* bucketed = std::get_if<BucketMatrix>(&w);
  const auto* dense = std::get_if<DenseMatrix>(&w);
  const std::size_t in = in_features(w), out = out_features(w);
  // The inputs transposed: packed_x[i * n + j].
  packed_x.resize(in * n);
  for (std::size_t i = 0; i < in; ++i)
    for (std::size_t j = 0; j < n; ++j) packed_x[i * n + j] = x[j * in + i];
  const auto& k = compute.kernels;
  const std::size_t blocks = (out + kBlockOutputs - 1) / kBlockOutputs;
  compute.pool.parallel_for(blocks, 1, [&](std::size_t begin, std::size_t end) {
    float* panels = thread_panels();
    for (std::size_t block = begin; block < end; ++block) {
      const std::size_t o0 = block * kBlockOutputs, block_outputs = std::min(kBlockOutputs, out - o0);
      for (std::size_t k0 = 0; k0 < in; k0 += kChunkInputs) {
        const std::size_t k_len = std::min(kChunkInputs, in - k0);
        if (bucketed) {
          const std::size_t S = bucketed->view.bucket_size;
          k.bucket_panel(panels, bucketed->view, bucketed->loaded_units, o0 / S, kBlockOutputs / S, k0, k_len);
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
}
}  // namespace

void matmul(const DenseMatrix& w, const float* x, float* y, std::size_t n, const Compute& compute,
            std::vector<float>& packed_x) {
  matmul_products(Matrix(w), x, y, n, compute, packed_x);
}

void matmul(const Matrix& w, MatrixKind kind, const float* x, float* y, std::size_t n, const Compute& compute,
            std::vector<float>& packed_x) {
  matmul_products(w, x, y, n, compute, packed_x);
  if (compute.effort) {
    const auto* bucketed = std::get_if<BucketMatrix>(&w);
    const std::size_t in = in_features(w), out = out_features(w);
    // Counted as the single-vector path counts effort 1: loaded units, against the whole matrix.
    const auto& v = bucketed ? bucketed->view : kernels::BucketView{};
    const double dense_macs = bucketed ? double(v.bucket_size * in * v.num_buckets) : double(out) * double(in);
    const double done = bucketed ? double(bucketed->loaded_units * v.num_buckets) : dense_macs;
    compute.effort->stats.done[int(kind)] += done * double(n);
    compute.effort->stats.dense[int(kind)] += dense_macs * double(n);
  }
}

void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, const Compute& compute) {
  if (const auto* bucketed = std::get_if<BucketMatrix>(&w)) {
    EffortState& state = *compute.effort;
    const BucketWork work = matvec(*bucketed, state.effort[std::size_t(layer)][std::size_t(kind)], x, y, compute);
    const kernels::BucketView& v = bucketed->view;
    state.stats.dispatch_seconds += work.dispatch_seconds;
    state.stats.multiply_seconds += work.multiply_seconds;
    state.stats.done[int(kind)] += double(work.units) * double(v.num_buckets);
    state.stats.dense[int(kind)] += double(v.num_buckets * v.bucket_size) * double(v.num_inputs);
    state.stats.projection_bytes += work.bytes;
    return;
  }
  const auto& dense = std::get<DenseMatrix>(w);
  const auto start = Clock::now();
  matvec(dense, x, y, compute);
  if (compute.effort) {
    compute.effort->stats.multiply_seconds += seconds_since(start);
    const double macs = double(dense.rows) * double(dense.cols);
    compute.effort->stats.done[int(kind)] += macs;
    compute.effort->stats.dense[int(kind)] += macs;
    compute.effort->stats.projection_bytes += double(kernels::dtype_bytes(dense.dtype, dense.cols)) * double(dense.rows);
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

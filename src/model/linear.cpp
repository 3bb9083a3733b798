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
// spread over more accumulator arrays than it fills; a list is cut into this many at most.
constexpr std::size_t kMinUnitsPerPart = 64;
constexpr std::size_t kBucketParts = 8;
// From this many buckets on, threads split a product's outputs rather than its list.
constexpr std::size_t kWideBuckets = 4096;
}  // namespace

BucketWork matvec(const BucketMatrix& w, float effort, const float* x, float* y, const Compute& compute) {
  return matvec(w, std::span<const float>(&effort, 1), x, y, compute);
}

BucketWork matvec(const BucketMatrix& w, std::span<const float> efforts, const float* x, float* y,
                  const Compute& compute) {
  BucketScratch& s = *compute.scratch;
  const kernels::BucketView& v = w.view;
  const std::size_t n = efforts.size(), in = w.in_features, B = v.num_buckets;
  s.reserve_vectors(n);
  const auto start = Clock::now();
  // Each vector's list: the cutoff over its probe importances (the same float products as the
  // dispatch), then the units that clear it.
  const std::size_t probes = w.probe_units.size();
  BucketWork work;
  for (std::size_t j = 0; j < n; ++j) {
    const float* xj = x + j * in;
    for (std::size_t i = 0; i < probes; ++i) s.products[i] = std::fabs(xj[w.probe_inputs[i]]) * w.probe_stats[i];
    const float cutoff = effort_cutoff(s.products, probes, efforts[j]);
    BucketScratch::List& list = s.lists[j];
    list.count = compute.kernels.bucket_dispatch(list.units.data(), list.xs.data(), v, xj, w.loaded_units, cutoff);
    work.vector_units[j] = list.count;
    work.units += list.count;
  }
  // The streams: vectors with equal lists (at effort 1, all) share one; otherwise each list
  // streams alone. (A union of the lists would not do: a list's sums depend on its cut into
  // parts, and 8-bit multipliers on its groups of 8.)
  const std::size_t stream_count = s.plan_streams(n);
  const auto dispatched = Clock::now();
  const std::size_t padded = B * v.bucket_size;
  for (std::size_t k = 0; k < stream_count; ++k) {
    const BucketScratch::Stream& stream = s.streams[k];
    const std::size_t count = stream.count, vectors = stream.vectors;
    const std::uint32_t* units = stream.units;
    const float* xs = stream.xs;
    float* yv = y + stream.first * w.out_features;  // the stream's first vector's outputs
    if (B >= kWideBuckets) {
      // A wide matrix: threads take ranges of buckets, each output summing the whole list in
      // order (the ranges never change a value). A thread's accumulators then fit in L1.
      // The kernel writes padded outputs; y has out_features per vector.
      float* out = s.outputs.data();
      const std::size_t blocks = (B + kernels::kBucketRangeAlign - 1) / kernels::kBucketRangeAlign;
      compute.pool.parallel_for(blocks, count * B * vectors < 2 * kMinMacsPerThread ? blocks : 1,
                                [&](std::size_t begin, std::size_t end) {
                                  compute.kernels.bucket_matvec(out, padded, v, units, xs, count, vectors,
                                                                begin * kernels::kBucketRangeAlign,
                                                                std::min(B, end * kernels::kBucketRangeAlign));
                                });
      for (std::size_t j = 0; j < vectors; ++j) std::copy_n(out + j * padded, w.out_features, yv + j * w.out_features);
    } else {
      // Otherwise the list is cut into parts, each summed whole by one thread over whole rows
      // (a group's rows are then one contiguous stream at high effort), the parts' sums added
      // in part order. The cut depends on the list's length only, so neither the thread count
      // nor the vectors sharing the stream change a value.
      const std::size_t parts = std::clamp<std::size_t>(count / kMinUnitsPerPart, 1, kBucketParts);
      auto part_begin = [&](std::size_t p) { return count * p / parts; };
      float* part_out = s.part_out(parts, vectors);
      compute.pool.parallel_for(parts, count * B * vectors < 2 * kMinMacsPerThread ? parts : 1,
                                [&](std::size_t begin, std::size_t end) {
                                  for (std::size_t p = begin; p < end; ++p)
                                    compute.kernels.bucket_matvec(part_out + p * vectors * padded, padded, v,
                                                                  units + part_begin(p), xs + part_begin(p) * vectors,
                                                                  part_begin(p + 1) - part_begin(p), vectors, 0, B);
                                });
      for (std::size_t j = 0; j < vectors; ++j) {
        float* yj = yv + j * w.out_features;
        std::copy_n(part_out + j * padded, w.out_features, yj);
        for (std::size_t p = 1; p < parts; ++p) compute.kernels.add(yj, part_out + (p * vectors + j) * padded, w.out_features);
      }
    }
    const double scale_bytes = v.scales ? double(v.num_blocks()) * 2 : 0;
    work.bytes += double(count) * (double(B * v.entry_bytes()) + scale_bytes);
  }
  work.bytes += double(n) * (double(w.loaded_units) * 4 + double(probes) * 8);
  work.dispatch_seconds = std::chrono::duration<double>(dispatched - start).count();
  work.multiply_seconds = seconds_since(dispatched);
  return work;
}

BucketScratch::BucketScratch(const std::vector<const BucketMatrix*>& matrices) {
  for (const BucketMatrix* m : matrices) {
    max_units = std::max(max_units, m->loaded_units);
    products.resize(std::max(products.size(), m->probe_units.size()));
    padded_outputs = std::max(padded_outputs, m->view.num_buckets * m->view.bucket_size);
  }
  reserve_vectors(1);
}

void BucketScratch::reserve_vectors(std::size_t n) {
  if (n <= lists.size()) return;
  if (n > kernels::kMaxVectors) throw std::invalid_argument("an effort product takes at most 16 vectors");
  lists.resize(n);
  for (auto& list : lists) {
    list.units.resize(max_units + kernels::kDispatchSlack);
    list.xs.resize(max_units + kernels::kDispatchSlack);
  }
  outputs.resize(n * padded_outputs);
}

float* BucketScratch::part_out(std::size_t parts, std::size_t vectors) {
  parts_.resize(std::max(parts_.size(), parts * vectors * padded_outputs));
  return parts_.data();
}

std::size_t BucketScratch::plan_streams(std::size_t n) {
  streams.clear();
  const List& first = lists[0];
  auto same_list = [&](const List& list) {
    return list.count == first.count &&
           std::equal(list.units.begin(), list.units.begin() + std::ptrdiff_t(first.count), first.units.begin());
  };
  bool all_same = true;
  for (std::size_t j = 1; j < n && all_same; ++j) all_same = same_list(lists[j]);
  if (n == 1) {
    streams.push_back(Stream{first.units.data(), first.xs.data(), first.count, 0, 1});
  } else if (all_same) {
    shared_xs.resize(first.count * n);
    for (std::size_t i = 0; i < first.count; ++i)
      for (std::size_t j = 0; j < n; ++j) shared_xs[i * n + j] = lists[j].xs[i];
    streams.push_back(Stream{first.units.data(), shared_xs.data(), first.count, 0, n});
  } else {
    for (std::size_t j = 0; j < n; ++j) streams.push_back(Stream{lists[j].units.data(), lists[j].xs.data(), lists[j].count, j, 1});
  }
  return streams.size();
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

void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute, std::size_t n) {
  const auto fn = compute.kernels.matvec[int(w.dtype)];
  const std::size_t grain = std::max<std::size_t>(4, (kMinMacsPerThread / std::max<std::size_t>(w.cols * n, 1) + 3) / 4 * 4);
  compute.pool.parallel_for(w.rows, grain, [&](std::size_t begin, std::size_t end) {
    fn(y + begin, w.rows, w.row(begin), x, w.cols, n, end - begin, w.cols);
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
  EffortState* state = compute.effort;
  matvec(w, layer, kind, x, y, std::span<EffortState* const>(&state, 1), compute);
}

void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, std::span<EffortState* const> states,
            const Compute& compute) {
  const std::size_t n = states.size();
  if (const auto* bucketed = std::get_if<BucketMatrix>(&w)) {
    float efforts[kernels::kMaxVectors];
    for (std::size_t j = 0; j < n; ++j) efforts[j] = states[j]->effort[std::size_t(layer)][std::size_t(kind)];
    const BucketWork work = matvec(*bucketed, std::span<const float>(efforts, n), x, y, compute);
    const kernels::BucketView& v = bucketed->view;
    // Time and bytes are the batch's, shared evenly; multiply-adds are each vector's own.
    for (std::size_t j = 0; j < n; ++j) {
      EffortStats& stats = states[j]->stats;
      stats.dispatch_seconds += work.dispatch_seconds / double(n);
      stats.multiply_seconds += work.multiply_seconds / double(n);
      stats.done[int(kind)] += double(work.vector_units[j]) * double(v.num_buckets);
      stats.dense[int(kind)] += double(v.num_buckets * v.bucket_size) * double(v.num_inputs);
      stats.projection_bytes += work.bytes / double(n);
    }
    return;
  }
  const auto& dense = std::get<DenseMatrix>(w);
  const auto start = Clock::now();
  matvec(dense, x, y, compute, n);  // each weight read once for the n vectors
  const double seconds = seconds_since(start);
  for (std::size_t j = 0; j < n; ++j)
    if (EffortState* state = states[j]) {
      state->stats.multiply_seconds += seconds / double(n);
      const double macs = double(dense.rows) * double(dense.cols);
      state->stats.done[int(kind)] += macs;
      state->stats.dense[int(kind)] += macs;
      state->stats.projection_bytes += double(kernels::dtype_bytes(dense.dtype, dense.cols)) * double(dense.rows) / double(n);
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

// linear.h: y = W x for the model's weight matrices, dense or at effort, split across the
// session's threads.
#pragma once
#include <vector>

#include "effort/effort.h"
#include "kernels/kernels.h"
#include "thread_pool.h"
#include "weights.h"

namespace effort {

// Buffers of the effort product, sized once per session for the model's largest matrix.
struct BucketScratch {
  std::vector<std::uint32_t> rows;  // dispatched bucket rows
  std::vector<float> row_x;         // their inputs
  std::vector<float> products;      // probe products, for the cutoff
  std::vector<float> padded_out;    // [num_buckets * 16]
};

// Per matrix kind: the effort to run at, and multiply-adds counted.
struct EffortState {
  float effort[kNumMatrixKinds] = {1, 1, 1, 1, 1, 1, 1};
  EffortStats stats;
};

// What every op needs to run: the kernels of the chosen arch, the session's threads, and for
// bucketed matrices the effort state and scratch.
struct Compute {
  const kernels::KernelTable& kernels;
  ThreadPool& pool;
  EffortState* effort = nullptr;
  BucketScratch* scratch = nullptr;
};

// Each output row is computed whole by one thread, so y does not depend on the thread count.
void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute);

// A projection at the effort set for its kind. Bucketed: the cutoff is the exact order
// statistic of the probe products |x_j| * stat, so that a fraction `effort` of the probe rows
// clears it; the rows clearing it are multiplied. Each output is summed by one thread in row
// order, so y does not depend on the thread count either.
void matvec(const Matrix& w, MatrixKind kind, const float* x, float* y, const Compute& compute);

// The cutoff for `effort` over probe products (reordered in place): the (t+1)-th largest with
// t = round(effort * n) clamped to [1, n], or -1 (every row) when t = n.
float effort_cutoff(std::vector<float>& products, std::size_t n, float effort);

std::size_t out_features(const Matrix& w);
std::size_t in_features(const Matrix& w);

}  // namespace effort

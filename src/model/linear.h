// linear.h: y = W x for the model's weight matrices, dense or at effort, split across the
// session's threads.
#pragma once
#include <algorithm>
#include <chrono>
#include <span>
#include <vector>

#include "effort/types.h"
#include "kernels/kernels.h"
#include "model/thread_pool.h"
#include "model/weights.h"

namespace effort {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Buffers of the effort product, sized once per session for the model's largest matrix.
struct BucketScratch {
  std::vector<std::uint32_t> units;  // dispatched units
  std::vector<float> xs;             // their inputs
  std::vector<float> products;       // probe importances, for the cutoff
  std::vector<float> part_out;       // [kBucketParts][num_buckets * S]: each part's sums
  // Sized for the largest of these matrices.
  explicit BucketScratch(const std::vector<const BucketMatrix*>& matrices = {});
};

// A dispatched list is cut into this many parts at most (fewer when short), each summed whole
// by one thread, the parts' sums added in part order: results do not depend on the thread
// count, and up to this many threads share one product.
inline constexpr std::size_t kBucketParts = 8;

inline constexpr std::size_t kDefaultHeadCandidates = 64;
// The lowest head effort that following set_effort reaches: on the fixture, with its 64
// candidates, a head at 0.25 adds KL 0.004 to effort 1's, at 0.125 0.11 (docs/kernels.md).
inline constexpr float kHeadEffortFloor = 0.25f;

// The effort of every (layer, matrix kind) and of the head, and the multiply-adds counted.
struct EffortState {
  explicit EffortState(int num_layers = 1, float effort = 1.0f)
      : effort(std::size_t(num_layers), std::vector<float>(kNumMatrixKinds, effort)) {}
  void set_all(float e) {
    for (auto& layer : effort) std::fill(layer.begin(), layer.end(), e);
  }
  std::vector<std::vector<float>> effort;  // [layer][kind]
  // The output head's (Transformer::head): below 1, where the model has a bucketed head, a
  // product at this effort ranks the vocabulary and the top head_candidates get exact logits.
  float head_effort = 1.0f;
  std::size_t head_candidates = kDefaultHeadCandidates;
  EffortStats stats;
};

struct LoraAdapter;
// A LoRA adapter in use and the user's scale for it (lora.h).
struct ActiveLora {
  const LoraAdapter* adapter = nullptr;
  float scale = 1.0f;
};

// What every op needs to run: the kernels of the chosen arch, the session's threads, and for
// bucketed matrices the effort state and scratch.
struct Compute {
  const kernels::KernelTable& kernels;
  ThreadPool& pool;
  EffortState* effort = nullptr;  // required by the transformer, which times its stages there
  BucketScratch* scratch = nullptr;
  const ActivationObserver* observer = nullptr;  // sees projection inputs when set
  std::span<const ActiveLora> adapters = {};     // added to the projections they target
};

// Each output row is computed whole by one thread, so y does not depend on the thread count.
void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute);
// A projection at the effort set for its kind. Bucketed: the cutoff is the exact order
// statistic of the probe units' importances (|x| * stat), so that a fraction `effort` of the
// probes clears it; the units clearing it are multiplied, split into parts (kBucketParts).
void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, const Compute& compute);

// What one effort product did: the units multiplied, the bytes of weights it read (the listed
// units with their scales, every loaded unit's stat, the probes) and its seconds.
struct BucketWork {
  std::size_t units = 0;
  double bytes = 0, dispatch_seconds = 0, multiply_seconds = 0;
};
// y = w x at `effort`, outside the per-kind stats (the output head); the kind's matvec above
// runs through it.
BucketWork matvec(const BucketMatrix& w, float effort, const float* x, float* y, const Compute& compute);

// The cutoff for `effort` over probe importances (reordered in place): the (t+1)-th largest with
// t = round(effort * n) clamped to [1, n], or -1 (every unit) when t = n.
float effort_cutoff(std::vector<float>& products, std::size_t n, float effort);

// Y[j] = W X[j] for a batch of n vectors (X [n, in_features], Y [n, out_features]) at effort 1:
// every loaded weight, unpacked once for the whole batch (panel_matmul.h). packed_x is scratch.
// Sums run in input order, not in the single-vector order, so results match matvec to
// rounding, not bitwise. Outputs are split among threads whole, so Y does not depend on their count.
void matmul(const Matrix& w, MatrixKind kind, const float* x, float* y, std::size_t n, const Compute& compute,
            std::vector<float>& packed_x);

// The same for a dense matrix outside the effort stats (the output head).
void matmul(const DenseMatrix& w, const float* x, float* y, std::size_t n, const Compute& compute,
            std::vector<float>& packed_x);

std::size_t out_features(const Matrix& w);
std::size_t in_features(const Matrix& w);

}  // namespace effort

// linear.h: y = W x for the model's weight matrices, dense or at effort, split across the
// session's threads.
#pragma once
#include <algorithm>
#include <array>
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

// Buffers of the effort product, sized once per session for the model's largest matrix (and
// per vector for the most vectors a product has taken).
struct BucketScratch {
  struct List {
    std::vector<std::uint32_t> units;  // dispatched units
    std::vector<float> xs;             // their inputs
    std::size_t count = 0;             // how many
  };
  // A list multiplied into vectors [first, first + vectors) at once; xs [count][vectors].
  struct Stream {
    const std::uint32_t* units;
    const float* xs;
    std::size_t count, first, vectors;
  };
  std::vector<List> lists;            // [vectors]
  std::vector<float> products;        // probe importances, for the cutoff
  std::vector<float> outputs;         // [vectors][num_buckets * S]: a wide product's padded outputs
  std::vector<Stream> streams;
  std::vector<float> shared_xs;       // a shared stream's inputs
  std::size_t max_units = 0, padded_outputs = 0;
  // Sized for the largest of these matrices.
  explicit BucketScratch(const std::vector<const BucketMatrix*>& matrices = {});
  // Room for n vectors (at most kernels::kMaxVectors).
  void reserve_vectors(std::size_t n);
  // The streams of n vectors' lists: one when the lists are equal, otherwise one per list.
  std::size_t plan_streams(std::size_t n);
  // [parts][vectors][num_buckets * S]: a cut list's sums per part.
  float* part_out(std::size_t parts, std::size_t vectors);

 private:
  std::vector<float> parts_;
};

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
// With n > 1, x [n][cols] and y [n][rows]: each weight read once for the n vectors, each y_j
// what the single product gives.
void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute, std::size_t n = 1);
// A projection at the effort set for its kind. Bucketed: the cutoff is the exact order
// statistic of the probe units' importances (|x| * stat), so that a fraction `effort` of the
// probes clears it; the units clearing it are multiplied, threads taking ranges of a wide
// matrix's outputs or parts of a narrow one's list.
void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, const Compute& compute);
// The same for n = states.size() vectors (x [n][in], y [n][out]), vector j at the effort
// states[j] sets for the kind and counted there: each y_j is what the single-vector matvec gives,
// bit for bit, while a bucketed matrix's entries are read once for the vectors whose lists can
// share a stream (BucketScratch::plan_streams).
void matvec(const Matrix& w, int layer, MatrixKind kind, const float* x, float* y, std::span<EffortState* const> states,
            const Compute& compute);

// What one effort product did: the units multiplied, the bytes of weights it read (the listed
// units with their scales, every loaded unit's stat, the probes) and its seconds.
struct BucketWork {
  std::size_t units = 0;                                // over every vector
  std::array<std::size_t, kernels::kMaxVectors> vector_units{};
  double bytes = 0, dispatch_seconds = 0, multiply_seconds = 0;
};
// y = w x at `effort`, outside the per-kind stats (the output head); the kind's matvec above
// runs through it.
BucketWork matvec(const BucketMatrix& w, float effort, const float* x, float* y, const Compute& compute);
// For efforts.size() vectors (x [n][in], y [n][out]), each at its own effort; bytes count each
// stream once.
BucketWork matvec(const BucketMatrix& w, std::span<const float> efforts, const float* x, float* y,
                  const Compute& compute);

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

// bucketize.h: converts a dense weight matrix into the bucketed layout of
// kernels/bucket_matvec.h (done once, by effort-convert), and decodes it back (for checks).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/weights.h"

namespace effort {

struct BucketizeOptions {
  std::size_t bucket_size = 2;   // S outputs per bucket: 1, 2, 4, 8 or 16 (16: the original's)
  kernels::BucketWeights weights = kernels::BucketWeights::f16;
  std::size_t max_probes = 4096; // probe units sampled (all units when fewer)
  std::uint64_t seed = 1;        // probe sampling
};

struct BucketizedMatrix {
  std::size_t out_features = 0, in_features = 0;
  std::size_t bucket_size = 2;             // S
  std::size_t num_buckets = 0;             // ceil(out_features / S); outputs past out_features are padding
  kernels::BucketWeights weights = kernels::BucketWeights::f16;
  std::vector<std::uint8_t> units;         // [S*in][B] entries: fp16 or int8
  std::vector<std::uint16_t> scales;       // q8: [S*in][ceil(B / kQ8Block)] fp16
  std::vector<float> stats;                // [S*in]
  std::vector<std::uint32_t> probe_units;  // ascending unit indices sampled uniformly
  std::vector<float> probe_stats;          // [P]: those units' stats
  std::size_t num_units() const { return bucket_size * in_features; }
};

// The finite fp16 nearest to fp16(w) whose log2(size) low bits are `position`; of two equally
// near, the one whose next bit is 0 (unbiased, like round-half-to-even).
std::uint16_t encode_with_position(float w, unsigned position, std::size_t size);
// The integer in [-127, 127] (an int8 the kernels can negate) nearest to v whose log2(size) low
// bits are `position`, ties broken the same way.
std::int8_t encode_q8_with_position(float v, unsigned position, std::size_t size);

// w: [out_features, in_features] row-major (HF nn.Linear layout). Throws effort::Error
// (format) naming `name` on a non-finite weight.
BucketizedMatrix bucketize(const float* w, std::size_t out_features, std::size_t in_features,
                           const BucketizeOptions& options, const std::string& name);

// "buckets2", "buckets16-q8", ...: how tools name a layout.
std::string layout_name(std::size_t bucket_size, kernels::BucketWeights weights);
// "f16" or "q8", as effort-convert --weights and the file header spell them.
std::string weights_name(kernels::BucketWeights weights);
// The kernels' entry type for a file's.
inline kernels::BucketWeights bucket_weights(BucketEntries entries) {
  return entries == BucketEntries::q8 ? kernels::BucketWeights::q8 : kernels::BucketWeights::f16;
}

// A runtime view of a converted matrix using its first `loaded_units` units.
BucketMatrix as_matrix(const BucketizedMatrix& m, std::size_t loaded_units);

// The dense [out_features, in_features] matrix the first `num_units` units stand for (decoded
// weights; entries of units not kept are 0).
std::vector<float> decode_buckets(const BucketMatrix& m, std::size_t num_units);

}  // namespace effort

// bucketize.h: converts a dense weight matrix into the bucketed layout of
// kernels/bucket_matvec.h (done once, by effort-convert), and decodes it back (for checks).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace effort {

struct BucketizedMatrix {
  std::size_t out_features = 0, in_features = 0;
  std::size_t num_buckets = 0;              // ceil(out_features / 16); outputs past out_features are zero padding
  std::vector<std::uint16_t> bucket_rows;   // [16 * in_features, num_buckets], rank-major
  std::vector<float> stats;                 // [16 * in_features]: mean |weight| of each bucket row
  std::vector<std::uint32_t> probe_rows;    // ascending bucket-row indices sampled uniformly
  std::vector<float> probe_weights;         // stats of those rows
};

// w: [out_features, in_features] row-major (HF nn.Linear layout). Weights are rounded to fp16
// first. Throws effort::Error (format) on a non-finite weight; `name` is used in that message.
BucketizedMatrix bucketize(const float* w, std::size_t out_features, std::size_t in_features,
                           std::size_t max_probes, std::uint64_t seed, const std::string& name);

// The dense [out_features, in_features] matrix the first `num_rows` bucket rows stand for
// (decoded weights; entries of rows not kept are 0).
std::vector<float> decode_buckets(const std::uint16_t* bucket_rows, std::size_t out_features,
                                  std::size_t in_features, std::size_t num_rows);

}  // namespace effort

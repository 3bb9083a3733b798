// bucketize.h: converts a dense weight matrix into the bucketed layout of
// kernels/bucket_matvec.h (done once, by effort-convert), and decodes it back (for checks).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "weights.h"

namespace effort {

struct BucketizeOptions {
  std::size_t bucket_size = 16;          // S outputs per bucket: 16 (canonical) or 8
  std::size_t group = 1;                 // G inputs per tile share one sort order; 1: canonical
  // Typical |x| of each input (calibration), or empty. Inputs are tiled in descending order of
  // it (of their weight column norms when empty), so that an outlier input shares its tile with
  // other large ones; it also weights the tile's combined magnitude.
  std::vector<float> input_scale;
  std::size_t max_probes = 4096;         // probe units sampled (all units when fewer)
  std::uint64_t seed = 1;                // probe sampling
};

struct BucketizedMatrix {
  std::size_t out_features = 0, in_features = 0;
  std::size_t bucket_size = 16;            // S
  std::size_t num_buckets = 0;             // ceil(out_features / S); outputs past out_features are padding
  std::size_t group = 1, num_tiles = 0;    // G, T = ceil(in_features / G)
  std::vector<std::uint32_t> input_order;  // [T*G]: the input in each tile slot; in_features for padding
  std::vector<std::uint16_t> units;        // [S*T][G][B]
  std::vector<float> stats;                // [S][G][T]
  std::vector<std::uint32_t> probe_units;  // ascending unit indices sampled uniformly
  std::vector<float> probe_stats;          // [P][G]: those units' stats
};

// w: [out_features, in_features] row-major (HF nn.Linear layout). Weights are rounded to fp16
// first. Throws effort::Error (format) naming `name` on a non-finite weight.
BucketizedMatrix bucketize(const float* w, std::size_t out_features, std::size_t in_features,
                           const BucketizeOptions& options, const std::string& name);

// "buckets16" (canonical), "buckets8", "buckets16-g8", ...: how tools name a layout.
std::string layout_name(std::size_t bucket_size, std::size_t group);

// A runtime view of a converted matrix using its first `loaded_units` units.
BucketMatrix as_matrix(const BucketizedMatrix& m, std::size_t loaded_units);

// The dense [out_features, in_features] matrix the first `num_units` units stand for (decoded
// weights; entries of units not kept are 0).
std::vector<float> decode_buckets(const BucketMatrix& m, std::size_t num_units);

}  // namespace effort

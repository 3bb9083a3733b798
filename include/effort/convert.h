// convert.h: writing models: a checkpoint to a .effort file (bucketed projections, dense rest)
// or to a GGUF file llama.cpp loads, and a whole-file check of a .effort file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "effort/types.h"

namespace effort {

struct ConvertOptions {
  // Outputs per bucket: 1, 2, 4, 8 or 16 (16: the original's layout). 2 is the default: the
  // stream kernel is memory-bound for 1 and 2, and 2 loses the least quality of those
  // (docs/kernels.md).
  std::size_t bucket_size = 2;
  // Entries: q8 (the default, with the head in Q8_0: 0.6x the bytes, 1.05-1.2x the generation
  // speed, within 1e-4 cos up to effort 0.75; docs/kernels.md), or f16.
  BucketEntries weights = BucketEntries::q8;
  std::size_t max_probes = 4096;  // probe units sampled per matrix (all units when fewer)
  std::uint64_t seed = 1;         // probe sampling seed: same input, same options, same file
  bool force = false;             // replace an existing output
  // LoRA adapters merged into the weights written (W + scale * alpha / r * B A, in double), with
  // their scales: effort-convert --merge-lora.
  std::vector<std::pair<std::filesystem::path, float>> merge_adapters;
  // Called after each tensor: tensors done, tensors in all, the tensor's name.
  std::function<void(std::size_t done, std::size_t total, const std::string& tensor)> progress;
  // Called with the temporary file's path before anything is written to it, so that a caller
  // handling signals can remove it.
  std::function<void(const std::filesystem::path&)> on_temp_file;
  // Called for each temporary file of the same output left by a killed conversion (its process
  // is gone), after removing it.
  std::function<void(const std::filesystem::path&)> on_stale_temp_removed;
};

// Tensor types of a GGUF output.
enum class GgufWeights { f32, f16, q8_0 };

// input: a Hugging Face checkpoint folder or a GGUF file. Writes to a temporary file beside
// `output` and renames it only when complete; on any error the temporary file is removed and
// effort::Error is thrown. Refuses an existing output unless options.force.
void convert_to_effort(const std::filesystem::path& input, const std::filesystem::path& output,
                       const ConvertOptions& options);

// input as above -> a GGUF file that llama.cpp loads (architecture "llama"): matrices in `type`
// (F32, F16, or Q8_0 where rows are a multiple of 32 and F16 elsewhere, as llama.cpp does), norms
// in F32, q/k rows with their rotary pairs interleaved as llama.cpp expects, and the SentencePiece
// vocabulary when there is a tokenizer. Same temporary-file discipline; options.force and
// options.on_temp_file apply, the bucket options do not.
void convert_to_gguf(const std::filesystem::path& input, const std::filesystem::path& output, GgufWeights type,
                     const ConvertOptions& options);

// A whole-file check of a .effort file, deeper than loading: checksums, shapes, and the bucket
// invariants the kernels rely on (positions, stats, probes).
struct EffortCheckReport {
  std::vector<std::string> summary;  // what the file holds, one line each
  std::size_t tensors = 0, matrices = 0;
  double bytes = 0;
};

// Throws effort::Error (format) naming the file, the tensor and what is wrong at the first
// problem; returns the summary when everything holds.
EffortCheckReport check_effort_file(const std::filesystem::path& path);

}  // namespace effort

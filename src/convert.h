// convert.h: checkpoint -> .effort file (bucketed projections, dense rest).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace effort {

struct ConvertOptions {
  // Outputs per bucket: 8 or 16 (the canonical layout). 8 is the default: at equal time it gives
  // the best quality (cheaper position routing; see the README's measurements).
  std::size_t bucket_size = 8;
  std::size_t group = 1;          // inputs per tile sharing a sort order (1: the canonical layout)
  // A text to calibrate the tiles on: the source model runs over its first calibration_tokens
  // tokens and each input's mean |x| orders the tiles. Needs a Hugging Face folder input (the
  // model runs dense); without it, inputs are ordered by their weight column norms.
  std::filesystem::path calibration_text;
  std::size_t calibration_tokens = 256;
  std::size_t max_probes = 4096;  // probe units sampled per matrix (all units when fewer)
  std::uint64_t seed = 1;         // probe sampling seed: same input, same options, same file
  bool force = false;             // replace an existing output
  // Called after each tensor: tensors done, tensors in all, the tensor's name.
  std::function<void(std::size_t done, std::size_t total, const std::string& tensor)> progress;
  // Called with the temporary file's path before anything is written to it, so that a caller
  // handling signals can remove it.
  std::function<void(const std::filesystem::path&)> on_temp_file;
};

enum class GgufType : std::uint32_t;

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
void convert_to_gguf(const std::filesystem::path& input, const std::filesystem::path& output, GgufType type,
                     const ConvertOptions& options);

}  // namespace effort

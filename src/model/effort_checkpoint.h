// effort_checkpoint.h: loads a .effort file into ModelWeights: bucketed projections and dense
// embeddings/norms/head, all read in place from the mapping.
#pragma once
#include <filesystem>
#include <optional>
#include <string>

#include "effort/config.h"
#include "model/weights.h"

namespace effort {

struct EffortCheckpoint {
  ModelConfig config;
  ModelWeights weights;
  std::optional<std::string> tokenizer_model;  // serialized SentencePiece model, when the file has one
  std::string chat_template;                   // from the source's metadata; empty when none
};

// mem_fraction in (0, 1]: the leading share of each bucketed matrix's rows that is used (and
// so ever paged in); the probes are restricted to those rows. verify: check every tensor's
// checksum first (reads the whole file).
EffortCheckpoint load_effort_checkpoint(const std::filesystem::path& path, float mem_fraction, bool verify = false);

}  // namespace effort

// reference_forward.h: an independent full-sequence Mistral forward pass in double precision
// (Eigen, whole-matrix math, explicit causal/sliding-window mask), written from the HF modeling
// code's equations. Tests compare the engine's token-by-token fp32 path against it. Eigen stays
// inside reference_forward.cpp, so that it is compiled once.
#pragma once
#include <filesystem>
#include <vector>

namespace test {

// Logits [T][vocab], a row per position.
using Logits = std::vector<std::vector<double>>;

// Logits for ids at positions 0..T-1 of the HF checkpoint in `folder`. exit_after[t] (optional):
// the last layer that position t runs; from then on its hidden state is frozen, and each later
// layer computes its keys and values from that frozen state (state propagation), as other
// positions attend to it.
Logits reference_forward(const std::filesystem::path& folder, const std::vector<int>& ids, std::vector<int> exit_after = {});

}  // namespace test

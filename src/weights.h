// weights.h: the model's weights as the transformer sees them, whatever file they came from.
// Legend: rows = output features, cols = input features (HF nn.Linear weight layout [out, in]).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/kernels.h"

namespace effort {

// A dense matrix read in place (memory-mapped or owned by ModelWeights::storage).
struct DenseMatrix {
  kernels::DType dtype = kernels::DType::f32;
  const void* data = nullptr;  // [rows, cols] row-major
  std::size_t rows = 0, cols = 0;

  const void* row(std::size_t r) const {
    return static_cast<const std::uint8_t*>(data) + r * cols * kernels::dtype_size(dtype);
  }
};

struct LayerWeights {
  std::vector<float> input_layernorm;           // [hidden_size]
  DenseMatrix q_proj;                           // [num_attention_heads*head_dim, hidden_size]
  DenseMatrix k_proj;                           // [num_key_value_heads*head_dim, hidden_size]
  DenseMatrix v_proj;                           // [num_key_value_heads*head_dim, hidden_size]
  DenseMatrix o_proj;                           // [hidden_size, num_attention_heads*head_dim]
  std::vector<float> post_attention_layernorm;  // [hidden_size]
  DenseMatrix gate_proj;                        // [intermediate_size, hidden_size]
  DenseMatrix up_proj;                          // [intermediate_size, hidden_size]
  DenseMatrix down_proj;                        // [hidden_size, intermediate_size]
};

struct ModelWeights {
  DenseMatrix embed_tokens;  // [vocab_size, hidden_size]
  std::vector<LayerWeights> layers;
  std::vector<float> norm;   // [hidden_size]
  DenseMatrix lm_head;       // [vocab_size, hidden_size]; embed_tokens' data when tied
  // Whatever the views above point into: mapped files, aligned copies.
  std::vector<std::shared_ptr<const void>> storage;
};

}  // namespace effort

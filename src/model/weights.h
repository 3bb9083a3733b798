// weights.h: the model's weights as the transformer sees them, whatever file they came from.
// Legend: rows = output features, cols = input features (HF nn.Linear weight layout [out, in]).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "effort/config.h"
#include "effort/types.h"
#include "kernels/bucket_view.h"
#include "kernels/kernels.h"

namespace effort {

// A dense matrix read in place (memory-mapped or owned by ModelWeights::storage).
struct DenseMatrix {
  kernels::DType dtype = kernels::DType::f32;
  const void* data = nullptr;  // [rows, cols] row-major
  std::size_t rows = 0, cols = 0;

  const void* row(std::size_t r) const {
    return static_cast<const std::uint8_t*>(data) + r * kernels::dtype_bytes(dtype, cols);
  }
};

// A bucketed matrix (layout in kernels/bucket_matvec.h), read in place from a .effort file.
struct BucketMatrix {
  kernels::BucketView view;               // units, stats, num_buckets, num_inputs, bucket_size
  std::size_t out_features = 0, in_features = 0;
  std::size_t loaded_units = 0;           // leading units in use (partial loading)
  std::vector<std::uint32_t> probe_units; // the file's probes among the loaded units
  std::vector<std::uint32_t> probe_inputs;  // [P]: their inputs (unit % in), for the per-token cutoff
  std::vector<float> probe_stats;         // [P]
};

// One of the seven projection matrices of a layer, dense or bucketed.
using Matrix = std::variant<DenseMatrix, BucketMatrix>;

// The HF tensor name of a layer's projection, e.g. "model.layers.3.mlp.up_proj.weight".
inline std::string projection_name(int layer, MatrixKind kind) {
  static const char* names[kNumMatrixKinds] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};
  return "model.layers." + std::to_string(layer) + "." + names[int(kind)] + ".weight";
}

// A projection's [out_features, in_features] under `c`.
inline std::array<std::int64_t, 2> projection_shape(const ModelConfig& c, MatrixKind kind) {
  const std::int64_t h = c.hidden_size, i = c.intermediate_size;
  const std::int64_t q = std::int64_t(c.num_attention_heads) * c.head_dim, kv = std::int64_t(c.num_key_value_heads) * c.head_dim;
  const std::array<std::int64_t, 2> shapes[kNumMatrixKinds] = {{q, h}, {kv, h}, {kv, h}, {h, q}, {i, h}, {i, h}, {h, i}};
  return shapes[int(kind)];
}

// One SwiGLU expert of a mixture-of-experts layer (Mixtral's w1, w3, w2).
struct ExpertWeights {
  Matrix gate_proj;  // [intermediate_size, hidden_size]
  Matrix up_proj;    // [intermediate_size, hidden_size]
  Matrix down_proj;  // [hidden_size, intermediate_size]
};

// The HF name of an expert's projection, e.g. "model.layers.3.block_sparse_moe.experts.5.w1.weight"
// (w1 gate, w3 up, w2 down).
inline std::string expert_projection_name(int layer, int expert, MatrixKind kind) {
  const char* w = kind == MatrixKind::gate_proj ? "w1" : kind == MatrixKind::up_proj ? "w3" : "w2";
  return "model.layers." + std::to_string(layer) + ".block_sparse_moe.experts." + std::to_string(expert) + "." + w +
         ".weight";
}
inline std::string router_name(int layer) {
  return "model.layers." + std::to_string(layer) + ".block_sparse_moe.gate.weight";
}

// The output head's name, which a .effort file's bucketed copy of it takes too.
inline constexpr const char* kHeadName = "lm_head.weight";

struct LayerWeights {
  // Projections are [out_features, in_features] in HF terms, whatever their storage.
  std::vector<float> input_layernorm;           // [hidden_size]
  Matrix q_proj;                           // [num_attention_heads*head_dim, hidden_size]
  Matrix k_proj;                           // [num_key_value_heads*head_dim, hidden_size]
  Matrix v_proj;                           // [num_key_value_heads*head_dim, hidden_size]
  Matrix o_proj;                           // [hidden_size, num_attention_heads*head_dim]
  std::vector<float> post_attention_layernorm;  // [hidden_size]
  Matrix gate_proj;                        // [intermediate_size, hidden_size]
  Matrix up_proj;                          // [intermediate_size, hidden_size]
  Matrix down_proj;                        // [hidden_size, intermediate_size]
  // Mixtral: the router [num_local_experts, hidden_size] and the experts, in place of the
  // three MLP projections above (then empty).
  DenseMatrix router;
  std::vector<ExpertWeights> experts;
};

// Calls f(matrix, kind, expert) for each projection of a layer: the attention's four and the
// MLP's three (expert -1), or with experts each expert's three (expert 0, 1, ...).
template <class Layer, class F>
void for_each_projection(Layer& layer, F f) {
  f(layer.q_proj, MatrixKind::q_proj, -1);
  f(layer.k_proj, MatrixKind::k_proj, -1);
  f(layer.v_proj, MatrixKind::v_proj, -1);
  f(layer.o_proj, MatrixKind::o_proj, -1);
  if (layer.experts.empty()) {
    f(layer.gate_proj, MatrixKind::gate_proj, -1);
    f(layer.up_proj, MatrixKind::up_proj, -1);
    f(layer.down_proj, MatrixKind::down_proj, -1);
  }
  for (std::size_t e = 0; e < layer.experts.size(); ++e) {
    f(layer.experts[e].gate_proj, MatrixKind::gate_proj, int(e));
    f(layer.experts[e].up_proj, MatrixKind::up_proj, int(e));
    f(layer.experts[e].down_proj, MatrixKind::down_proj, int(e));
  }
}

struct ModelWeights {
  DenseMatrix embed_tokens;  // [vocab_size, hidden_size]
  std::vector<LayerWeights> layers;
  std::vector<float> norm;   // [hidden_size]
  DenseMatrix lm_head;       // [vocab_size, hidden_size]; embed_tokens' data when tied
  // The head bucketed as well (.effort files since format 4's head effort), for products of the
  // head below effort 1; lm_head stays the exact one.
  std::optional<BucketMatrix> head_buckets;
  // Whatever the views above point into: mapped files, aligned copies.
  std::vector<std::shared_ptr<const void>> storage;
};

}  // namespace effort

// dense_weights.cpp: HF tensor names -> ModelWeights, from any SourceModel.
#include "model/dense_weights.h"

#include <string>

namespace effort {

ModelWeights load_dense_weights(std::shared_ptr<const SourceModel> source) {
  const ModelConfig& c = source->config();
  ModelWeights w;
  w.storage.push_back(source);
  auto matrix = [&](const std::string& name, std::int64_t rows, std::int64_t cols) {
    const DenseBytes bytes = source->dense(name, {rows, cols});
    if (bytes.copy) w.storage.push_back(bytes.copy);
    return DenseMatrix{bytes.dtype, bytes.data, std::size_t(rows), std::size_t(cols)};
  };
  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const std::int64_t q_dim = std::int64_t(c.num_attention_heads) * c.head_dim;
  const std::int64_t kv_dim = std::int64_t(c.num_key_value_heads) * c.head_dim;

  w.embed_tokens = matrix("model.embed_tokens.weight", vocab, hidden);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights layer;
    layer.input_layernorm = source->floats(p + "input_layernorm.weight", {hidden});
    layer.q_proj = matrix(p + "self_attn.q_proj.weight", q_dim, hidden);
    layer.k_proj = matrix(p + "self_attn.k_proj.weight", kv_dim, hidden);
    layer.v_proj = matrix(p + "self_attn.v_proj.weight", kv_dim, hidden);
    layer.o_proj = matrix(p + "self_attn.o_proj.weight", hidden, q_dim);
    layer.post_attention_layernorm = source->floats(p + "post_attention_layernorm.weight", {hidden});
    if (c.num_local_experts) {
      layer.router = matrix(router_name(l), c.num_local_experts, hidden);
      for (int e = 0; e < c.num_local_experts; ++e)
        layer.experts.push_back({matrix(expert_projection_name(l, e, MatrixKind::gate_proj), inter, hidden),
                                 matrix(expert_projection_name(l, e, MatrixKind::up_proj), inter, hidden),
                                 matrix(expert_projection_name(l, e, MatrixKind::down_proj), hidden, inter)});
    } else {
      layer.gate_proj = matrix(p + "mlp.gate_proj.weight", inter, hidden);
      layer.up_proj = matrix(p + "mlp.up_proj.weight", inter, hidden);
      layer.down_proj = matrix(p + "mlp.down_proj.weight", hidden, inter);
    }
    w.layers.push_back(std::move(layer));
  }
  w.norm = source->floats("model.norm.weight", {hidden});
  // A tied checkpoint may still carry a copy of lm_head; tying means the embedding is used.
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens : matrix("lm_head.weight", vocab, hidden);
  return w;
}

}  // namespace effort

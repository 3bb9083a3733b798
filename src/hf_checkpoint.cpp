// hf_checkpoint.cpp: HF tensor names -> ModelWeights.
#include "hf_checkpoint.h"

#include <cstring>
#include <string>

#include "effort/error.h"
#include "safetensors.h"

namespace effort {

namespace {

using Shape = std::vector<std::int64_t>;

// Kernels read weights as typed arrays, so a tensor at an offset that is not a multiple of its
// element size (legal in safetensors) is copied once into aligned memory.
DenseMatrix matrix(const TensorView& t, ModelWeights& weights) {
  DenseMatrix m;
  m.dtype = t.dtype();
  m.rows = std::size_t(t.shape[0]);
  m.cols = std::size_t(t.shape[1]);
  m.data = t.data;
  if (reinterpret_cast<std::uintptr_t>(t.data) % kernels::dtype_size(m.dtype) != 0) {
    std::shared_ptr<std::uint8_t[]> copy(new (std::align_val_t(64)) std::uint8_t[t.num_bytes],
                                         [](std::uint8_t* p) { operator delete[](p, std::align_val_t(64)); });
    std::memcpy(copy.get(), t.data, t.num_bytes);
    m.data = copy.get();
    weights.storage.push_back(copy);
  }
  return m;
}

}  // namespace

ModelWeights load_hf_weights(const std::filesystem::path& folder, const ModelConfig& c) {
  auto checkpoint = std::make_shared<Checkpoint>(folder);
  ModelWeights w;
  w.storage.push_back(checkpoint);
  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const std::int64_t q_dim = std::int64_t(c.num_attention_heads) * c.head_dim;
  const std::int64_t kv_dim = std::int64_t(c.num_key_value_heads) * c.head_dim;

  w.embed_tokens = matrix(checkpoint->get("model.embed_tokens.weight", {vocab, hidden}), w);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights layer;
    layer.input_layernorm = checkpoint->get(p + "input_layernorm.weight", {hidden}).to_floats();
    layer.q_proj = matrix(checkpoint->get(p + "self_attn.q_proj.weight", {q_dim, hidden}), w);
    layer.k_proj = matrix(checkpoint->get(p + "self_attn.k_proj.weight", {kv_dim, hidden}), w);
    layer.v_proj = matrix(checkpoint->get(p + "self_attn.v_proj.weight", {kv_dim, hidden}), w);
    layer.o_proj = matrix(checkpoint->get(p + "self_attn.o_proj.weight", {hidden, q_dim}), w);
    layer.post_attention_layernorm = checkpoint->get(p + "post_attention_layernorm.weight", {hidden}).to_floats();
    layer.gate_proj = matrix(checkpoint->get(p + "mlp.gate_proj.weight", {inter, hidden}), w);
    layer.up_proj = matrix(checkpoint->get(p + "mlp.up_proj.weight", {inter, hidden}), w);
    layer.down_proj = matrix(checkpoint->get(p + "mlp.down_proj.weight", {hidden, inter}), w);
    w.layers.push_back(std::move(layer));
  }
  w.norm = checkpoint->get("model.norm.weight", {hidden}).to_floats();
  // A tied checkpoint may still carry a copy of lm_head; tying means the embedding is used.
  w.lm_head = c.tie_word_embeddings ? w.embed_tokens
                                    : matrix(checkpoint->get("lm_head.weight", {vocab, hidden}), w);
  return w;
}

}  // namespace effort

// config.h: model hyper-parameters, named exactly as in Hugging Face's config.json
// (transformers MistralConfig / LlamaConfig).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace effort {

struct ModelConfig {
  std::string model_type;            // "mistral", "llama", or "mixtral" (experts)
  int hidden_size = 0;               // d_model
  int intermediate_size = 0;         // SwiGLU hidden width
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;       // grouped-query attention; defaults to num_attention_heads
  int head_dim = 0;                  // defaults to hidden_size / num_attention_heads
  int vocab_size = 0;
  int max_position_embeddings = 0;   // the model's trained context
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  int sliding_window = 0;            // 0: none (config.json null or absent)
  bool tie_word_embeddings = false;  // lm_head shares embed_tokens
  int bos_token_id = 1;
  std::vector<int> eos_token_ids = {2};  // config.json eos_token_id: a number or a list
  // Mixtral: each layer's MLP is num_local_experts SwiGLU experts of intermediate_size, of which
  // a router picks num_experts_per_tok per token. 0: one dense MLP.
  int num_local_experts = 0;
  int num_experts_per_tok = 0;

  // Reads and validates config.json; errors name the file and the field.
  static ModelConfig from_file(const std::filesystem::path& config_json);
  // Throws effort::Error naming `source` and the first inconsistent field.
  void validate(const std::string& source) const;
};

}  // namespace effort

// config.cpp: config.json -> ModelConfig, with errors naming the file and the field.
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/config_json.h"
#include "effort/error.h"

namespace effort {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(ErrorCode::format, "[config] " + source + ": " + what);
}

int get_int(const json& j, const std::string& source, const char* field, bool required, int fallback) {
  if (!j.contains(field) || j[field].is_null()) {
    if (required) fail(source, std::string("missing field \"") + field + "\"");
    return fallback;
  }
  const json& v = j[field];
  if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > (1 << 30))
    fail(source, std::string("field \"") + field + "\": expected a non-negative integer, got " + v.dump());
  return v.get<int>();
}

double get_number(const json& j, const std::string& source, const char* field, double fallback) {
  if (!j.contains(field) || j[field].is_null()) return fallback;
  if (!j[field].is_number()) fail(source, std::string("field \"") + field + "\": expected a number, got " + j[field].dump());
  return j[field].get<double>();
}

}  // namespace

ModelConfig ModelConfig::from_file(const std::filesystem::path& config_json) {
  const std::string source = config_json.string();
  std::ifstream in(config_json);
  if (!in) throw Error(ErrorCode::io, "[config] " + source + ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  return config_from_json(j, source);
}

ModelConfig config_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, "expected a JSON object");
  ModelConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string())
    fail(source, "missing string field \"model_type\"");
  c.model_type = j["model_type"].get<std::string>();
  c.hidden_size = get_int(j, source, "hidden_size", true, 0);
  c.intermediate_size = get_int(j, source, "intermediate_size", true, 0);
  c.num_hidden_layers = get_int(j, source, "num_hidden_layers", true, 0);
  c.num_attention_heads = get_int(j, source, "num_attention_heads", true, 0);
  c.num_key_value_heads = get_int(j, source, "num_key_value_heads", false, c.num_attention_heads);
  c.head_dim = get_int(j, source, "head_dim", false,
                       c.num_attention_heads ? c.hidden_size / c.num_attention_heads : 0);
  c.vocab_size = get_int(j, source, "vocab_size", true, 0);
  c.max_position_embeddings = get_int(j, source, "max_position_embeddings", false, 4096);
  c.rope_theta = get_number(j, source, "rope_theta", 10000.0);
  c.rms_norm_eps = get_number(j, source, "rms_norm_eps", 1e-6);
  c.sliding_window = get_int(j, source, "sliding_window", false, 0);
  if (j.contains("tie_word_embeddings") && !j["tie_word_embeddings"].is_null()) {
    if (!j["tie_word_embeddings"].is_boolean())
      fail(source, "field \"tie_word_embeddings\": expected true or false, got " + j["tie_word_embeddings"].dump());
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (c.model_type == "mixtral") {
    c.num_local_experts = get_int(j, source, "num_local_experts", true, 0);
    c.num_experts_per_tok = get_int(j, source, "num_experts_per_tok", false, 2);
  }
  c.bos_token_id = get_int(j, source, "bos_token_id", false, 1);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& eos = j["eos_token_id"];
    c.eos_token_ids.clear();
    if (eos.is_number_integer()) {
      c.eos_token_ids.push_back(eos.get<int>());
    } else if (eos.is_array()) {
      for (const auto& e : eos) {
        if (!e.is_number_integer()) fail(source, "field \"eos_token_id\": expected integers, got " + eos.dump());
        c.eos_token_ids.push_back(e.get<int>());
      }
    } else {
      fail(source, "field \"eos_token_id\": expected an integer or a list, got " + eos.dump());
    }
  }
  c.validate(source);
  return c;
}

json config_to_json(const ModelConfig& c) {
  json j = {{"model_type", c.model_type},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"num_key_value_heads", c.num_key_value_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"max_position_embeddings", c.max_position_embeddings},
          {"rope_theta", c.rope_theta},
          {"rms_norm_eps", c.rms_norm_eps},
          {"sliding_window", c.sliding_window ? json(c.sliding_window) : json(nullptr)},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"bos_token_id", c.bos_token_id},
          {"eos_token_id", c.eos_token_ids}};
  if (c.num_local_experts) {
    j["num_local_experts"] = c.num_local_experts;
    j["num_experts_per_tok"] = c.num_experts_per_tok;
  }
  return j;
}

void ModelConfig::validate(const std::string& source) const {
  if (model_type != "mistral" && model_type != "llama" && model_type != "mixtral")
    throw Error(ErrorCode::unsupported, "[config] " + source + ": model_type \"" + model_type +
                                            "\" is not supported (expected \"mistral\", \"llama\" or \"mixtral\")");
  if ((model_type == "mixtral") != (num_local_experts > 0))
    fail(source, model_type == "mixtral" ? "a mixtral model needs num_local_experts >= 1"
                                         : "num_local_experts is for model_type \"mixtral\"");
  if (num_local_experts > 0 && (num_experts_per_tok < 1 || num_experts_per_tok > num_local_experts))
    fail(source, "num_experts_per_tok (" + std::to_string(num_experts_per_tok) + ") must be in [1, num_local_experts = " +
                     std::to_string(num_local_experts) + "]");
  auto positive = [&](const char* field, int value) {
    if (value <= 0) fail(source, std::string("field \"") + field + "\" must be positive, got " + std::to_string(value));
  };
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("vocab_size", vocab_size);
  positive("max_position_embeddings", max_position_embeddings);
  if (num_attention_heads % num_key_value_heads != 0)
    fail(source, "num_attention_heads (" + std::to_string(num_attention_heads) +
                     ") must be a multiple of num_key_value_heads (" + std::to_string(num_key_value_heads) + ")");
  // Sizes the runtime multiplies: each product must fit its index types (and no file holds a
  // matrix of 2^40 elements), so a corrupt config is refused here, not overflowed later.
  auto product = [&](const char* a, std::int64_t x, const char* b, std::int64_t y, std::int64_t limit) {
    if (x * y > limit)
      fail(source, std::string(a) + " x " + b + " = " + std::to_string(x * y) + " exceeds " + std::to_string(limit));
    return x * y;
  };
  const std::int64_t q_dim = product("num_attention_heads", num_attention_heads, "head_dim", head_dim, INT32_MAX);
  product("num_key_value_heads", num_key_value_heads, "head_dim", head_dim, INT32_MAX);
  constexpr std::int64_t kMaxMatrix = std::int64_t(1) << 40;
  product("hidden_size", hidden_size, "intermediate_size", intermediate_size, kMaxMatrix);
  product("hidden_size", hidden_size, "vocab_size", vocab_size, kMaxMatrix);
  product("hidden_size", hidden_size, "num_attention_heads x head_dim", q_dim, kMaxMatrix);
  if (head_dim % 2 != 0) fail(source, "head_dim must be even for rotary embeddings, got " + std::to_string(head_dim));
  if (!(rope_theta > 0)) fail(source, "rope_theta must be positive");
  if (!(rms_norm_eps > 0) || !(rms_norm_eps < 1)) fail(source, "rms_norm_eps must be in (0, 1)");
  auto token_in_vocab = [&](const char* field, int id) {
    if (id < 0 || id >= vocab_size)
      fail(source, std::string("field \"") + field + "\" = " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(vocab_size) + ")");
  };
  token_in_vocab("bos_token_id", bos_token_id);
  for (int id : eos_token_ids) token_in_vocab("eos_token_id", id);
}

}  // namespace effort

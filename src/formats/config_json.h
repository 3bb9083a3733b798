// config_json.h: ModelConfig <-> JSON with Hugging Face config.json names (also the "config"
// object of .effort headers).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "effort/config.h"

namespace effort {

// Validates; errors name `source` and the field.
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json config_to_json(const ModelConfig& config);

}  // namespace effort

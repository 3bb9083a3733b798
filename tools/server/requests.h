// requests.h: OpenAI-style request bodies, checked and turned into what a Session runs.
// Unknown fields are ignored (clients send many); a known field of the wrong type or range is
// refused with an ApiError naming it.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "effort/effort.h"

namespace effort::server {

// An error for the client: its HTTP status and OpenAI error type.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message, std::string type = "invalid_request_error")
      : std::runtime_error(message), status(status), type(std::move(type)) {}
  int status;
  std::string type;
};

enum class Endpoint { completions, chat_completions };

// What the server applies when a request does not say.
struct RequestDefaults {
  float effort = 1.0f;
  float head_effort = 0.0f;  // 0: the request's effort (Session::set_head_effort)
  EarlyExitOptions early_exit;
  bool context_shift = false;
  // The adapters loaded at start (--lora), at their scales: what a request without "lora" runs
  // with, and what its "lora" list chooses from by name or id (index).
  std::vector<AdapterUse> adapters;
};

struct Request {
  std::vector<Token> prompt;
  GenerateOptions generate;  // sampling (seed drawn at random when absent), max_new_tokens, eos
  std::vector<std::string> stop;
  bool stream = false;
  float effort = 1.0f;
  float head_effort = 0.0f;
  std::vector<std::pair<MatrixKind, float>> effort_map;
  EarlyExitOptions early_exit;
  std::vector<AdapterUse> adapters;
};

// Parses and checks a /v1/completions or /v1/chat/completions body for `model`, whose sessions
// hold `context_length` positions. Throws ApiError (status 400).
Request parse_request(std::string_view body, Endpoint endpoint, const Model& model, int context_length,
                      const RequestDefaults& defaults);

// The chat prompt of an OpenAI "messages" array in the model's chat format: system messages
// join the first user turn, an assistant message is a finished answer, and the text ends where
// the next answer begins (or inside a last assistant message, which the answer continues).
std::string chat_prompt(const nlohmann::json& messages, ChatFormat format);

}  // namespace effort::server

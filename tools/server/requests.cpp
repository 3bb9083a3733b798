// requests.cpp: field by field, with the range each field takes.
#include "requests.h"

#include <cstdio>
#include <limits>
#include <random>

namespace effort::server {

using nlohmann::json;

namespace {

[[noreturn]] void refuse(const std::string& message) { throw ApiError(400, message); }

// The field when present and not null.
const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_in(const json& v, const std::string& name, double min, double max, bool min_open) {
  char range[64];
  std::snprintf(range, sizeof range, "%s%g, %g]", min_open ? "(" : "[", min, max);
  if (!v.is_number()) refuse("'" + name + "' must be a number in " + std::string(range) + ", got " + v.dump());
  const double x = v.get<double>();
  if (!(x <= max) || x < min || (min_open && x == min)) refuse("'" + name + "' must be in " + range + ", got " + v.dump());
  return x;
}

double number(const json& body, const char* name, double min, double max, bool min_open, double fallback) {
  const json* v = field(body, name);
  return v ? number_in(*v, name, min, max, min_open) : fallback;
}

long long integer(const json& body, const char* name, long long min, long long max, long long fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number_integer())
    refuse("'" + std::string(name) + "' must be an integer, got " + v->dump());
  const long long x = v->is_number_unsigned() && v->get<std::uint64_t>() > std::uint64_t(max) ? max + 1 : v->get<long long>();
  if (x < min || x > max)
    refuse("'" + std::string(name) + "' must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
           v->dump());
  return x;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) refuse("'" + std::string(name) + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

// A message's content: a string, or OpenAI's array of parts of which the text ones count.
std::string content_text(const json& message, std::size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  const json* content = field(message, "content");
  if (!content) return "";
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) refuse("'" + where + "' must be a string or an array of text parts");
  std::string text;
  for (const json& part : *content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      refuse("'" + where + "' parts must be {\"type\": \"text\", \"text\": \"...\"}");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<std::string> stop_strings(const json& body) {
  const json* v = field(body, "stop");
  if (!v) return {};
  std::vector<std::string> stops;
  if (v->is_string()) {
    stops.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const json& s : *v) {
      if (!s.is_string()) refuse("'stop' must be a string or an array of strings");
      stops.push_back(s.get<std::string>());
    }
  } else {
    refuse("'stop' must be a string or an array of strings, got " + v->dump());
  }
  if (stops.size() > 16) refuse("'stop' takes at most 16 strings");
  for (const std::string& s : stops)
    if (s.empty()) refuse("'stop' strings must not be empty");
  return stops;
}

std::vector<Token> prompt_tokens(const json& body, Endpoint endpoint, const Model& model) {
  const Tokenizer* tokenizer = model.tokenizer();
  auto need_tokenizer = [&](const char* what) {
    if (!tokenizer) refuse(std::string("the model has no tokenizer: ") + what + " (give 'prompt' as an array of token ids)");
  };
  if (endpoint == Endpoint::chat_completions) {
    const json* messages = field(body, "messages");
    if (!messages) refuse("'messages' is required");
    need_tokenizer("it cannot read chat messages");
    return tokenizer->encode_with_special(chat_prompt(*messages, model.chat_format()), true);
  }
  const json* prompt = field(body, "prompt");
  if (!prompt) refuse("'prompt' is required");
  if (prompt->is_string()) {
    need_tokenizer("it cannot read a text prompt");
    return tokenizer->encode(prompt->get<std::string>(), true);
  }
  if (!prompt->is_array() || prompt->empty())
    refuse("'prompt' must be a string or a non-empty array of token ids");
  std::vector<Token> tokens;
  for (const json& id : *prompt) {
    if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() >= model.config().vocab_size)
      refuse("'prompt' token ids must be integers in [0, " + std::to_string(model.config().vocab_size) + "), got " +
             id.dump());
    tokens.push_back(Token(id.get<long long>()));
  }
  return tokens;
}

}  // namespace

std::string chat_prompt(const json& messages, ChatFormat format) {
  if (!messages.is_array() || messages.empty()) refuse("'messages' must be a non-empty array");
  std::string text, system;
  bool first = true, answering = false;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      refuse("'messages[" + std::to_string(i) + "]' must be an object with a string 'role'");
    const std::string role = m["role"].get<std::string>(), content = content_text(m, i);
    answering = false;
    if (role == "system" || role == "developer") {
      system += (system.empty() ? "" : "\n") + content;
    } else if (role == "user") {
      text += chat_user_turn(format, system, content, first);
      system.clear();
      first = false;
      answering = true;
    } else if (role == "assistant") {
      if (first) refuse("'messages[" + std::to_string(i) + "]': an assistant message needs a user message before it");
      text += content;
      // A last assistant message is an answer to continue; an earlier one is closed.
      if (i + 1 < messages.size()) text += chat_answer_end(format);
      answering = i + 1 == messages.size();
    } else {
      refuse("'messages[" + std::to_string(i) + "].role' must be system, user or assistant, got \"" + role + "\"");
    }
  }
  if (!answering) refuse("'messages' must end with a user or assistant message");
  return text;
}

Request parse_request(std::string_view body_text, Endpoint endpoint, const Model& model, int context_length,
                      const RequestDefaults& defaults) {
  const json body = json::parse(body_text, nullptr, false);
  if (body.is_discarded()) refuse("the body is not valid JSON");
  if (!body.is_object()) refuse("the body must be a JSON object");

  Request r;
  r.prompt = prompt_tokens(body, endpoint, model);
  if (int(r.prompt.size()) >= context_length)
    refuse("the prompt has " + std::to_string(r.prompt.size()) + " tokens; the context holds " +
           std::to_string(context_length) + " positions");
  if (integer(body, "n", 1, 1, 1) != 1) refuse("'n' must be 1");
  r.stream = boolean(body, "stream", false);
  r.stop = stop_strings(body);

  GenerateOptions& g = r.generate;
  // Without max_tokens, an answer may fill the context.
  const char* max_tokens = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  g.max_new_tokens = int(integer(body, max_tokens, 0, 1 << 30, context_length - int(r.prompt.size())));
  g.stop_at_eos = !boolean(body, "ignore_eos", false);
  g.context_shift = defaults.context_shift;
  SamplingOptions& s = g.sampling;
  s.temperature = float(number(body, "temperature", 0, 100, false, s.temperature));
  s.top_p = float(number(body, "top_p", 0, 1, true, s.top_p));
  s.top_k = int(integer(body, "top_k", 0, 1 << 30, s.top_k));
  s.min_p = float(number(body, "min_p", 0, 1, false, s.min_p));
  s.repetition_penalty = float(number(body, "repeat_penalty", 0, 100, true, s.repetition_penalty));
  // llama-server's convention: no seed, or -1, draws one.
  const long long seed = integer(body, "seed", -1, std::numeric_limits<long long>::max(), -1);
  s.seed = seed >= 0 ? std::uint64_t(seed) : std::random_device{}() * 0x100000001ull;

  r.effort = float(number(body, "effort", 0, 1, true, defaults.effort));
  if (const json* map = field(body, "effort_map")) {
    if (!map->is_object()) refuse("'effort_map' must be an object of kind: effort, e.g. {\"down\": 0.3}");
    for (const auto& [kind, effort] : map->items()) {
      MatrixKind k;
      try {
        k = parse_matrix_kind(kind);
      } catch (const Error& e) {
        refuse(std::string("'effort_map': ") + e.what());
      }
      r.effort_map.emplace_back(k, float(number_in(effort, "effort_map." + kind, 0, 1, true)));
    }
  }
  r.head_effort = float(number(body, "head_effort", 0, 1, false, defaults.head_effort));
  if (r.head_effort > 0 && r.head_effort < 1 && !model.bucketed_head())
    refuse("'head_effort' below 1 needs a .effort model with a bucketed head (convert it again with this "
           "effort-convert)");
  bool below_one = r.effort < 1;
  for (const auto& [kind, effort] : r.effort_map) below_one = below_one || effort < 1;
  if (below_one && !model.bucketed())
    refuse("effort below 1 needs a .effort model; this model runs dense (convert it with effort-convert)");

  r.adapters = defaults.adapters;
  if (const json* lora = field(body, "lora")) {
    // llama-server's form, [{"id": 0, "scale": 0.5}], or by name: [{"name": "persona"}].
    if (!lora->is_array()) refuse("'lora' must be a list of {\"name\" or \"id\", \"scale\"}");
    std::string loaded;
    for (const AdapterUse& a : defaults.adapters) loaded += (loaded.empty() ? "" : ", ") + a.adapter.name();
    r.adapters.clear();
    for (const json& use : *lora) {
      if (!use.is_object()) refuse("'lora' must be a list of {\"name\" or \"id\", \"scale\"}");
      std::size_t index = defaults.adapters.size();
      if (const json* name = field(use, "name")) {
        for (std::size_t i = 0; i < defaults.adapters.size(); ++i)
          if (name->is_string() && defaults.adapters[i].adapter.name() == name->get<std::string>()) index = i;
        if (index == defaults.adapters.size())
          refuse("'lora': no adapter named " + name->dump() + " (loaded: " + (loaded.empty() ? "none" : loaded) + ")");
      } else {
        if (defaults.adapters.empty() || !field(use, "id"))
          refuse("'lora': each entry needs a \"name\" or an \"id\" (loaded: " + (loaded.empty() ? "none" : loaded) + ")");
        index = std::size_t(integer(use, "id", 0, (long long)defaults.adapters.size() - 1, 0));
      }
      r.adapters.push_back({defaults.adapters[index].adapter, float(number(use, "scale", -100, 100, false, 1.0))});
    }
  }
  r.early_exit = defaults.early_exit;
  if (const json* exit = field(body, "early_exit")) {
    if (exit->is_boolean()) {
      r.early_exit.enabled = exit->get<bool>();
    } else if (exit->is_object()) {
      r.early_exit.enabled = true;
      r.early_exit.threshold = float(number(*exit, "threshold", 0, 1, false, r.early_exit.threshold));
    } else {
      refuse("'early_exit' must be true, false or {\"threshold\": T}");
    }
  }
  return r;
}

}  // namespace effort::server

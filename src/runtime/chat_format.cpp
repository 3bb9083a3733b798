// chat_format.cpp: chat turns in the format of a model's template family. The template in the
// metadata is Jinja; like llama.cpp, we recognise its family by the markers it uses rather than
// run it, and write the turns ourselves.
#include <string>

#include "effort/effort.h"

namespace effort {

ChatFormat detect_chat_format(std::string_view jinja) {
  auto has = [&](std::string_view marker) { return jinja.find(marker) != std::string_view::npos; };
  if (has("<|im_start|>")) return ChatFormat::chatml;
  if (has("<|user|>") && has("<|assistant|>")) return ChatFormat::zephyr;
  if (has("<<SYS>>")) return ChatFormat::llama2;
  return ChatFormat::mistral;  // [INST] templates, and the fallback when there is none
}

std::string_view chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::llama2: return "llama2";
    case ChatFormat::chatml: return "chatml";
    case ChatFormat::zephyr: return "zephyr";
    default: return "mistral";
  }
}

std::string chat_user_turn(ChatFormat format, std::string_view system, std::string_view user, bool first) {
  const std::string u(user), sys = first ? std::string(system) : std::string();
  switch (format) {
    case ChatFormat::llama2:  // later turns open with BOS: <s>[INST] ...
      return (first ? "" : "<s>") + std::string("[INST] ") + (sys.empty() ? "" : "<<SYS>>\n" + sys + "\n<</SYS>>\n\n") + u + " [/INST]";
    case ChatFormat::chatml:
      return (sys.empty() ? "" : "<|im_start|>system\n" + sys + "<|im_end|>\n") + "<|im_start|>user\n" + u +
             "<|im_end|>\n<|im_start|>assistant\n";
    case ChatFormat::zephyr:
      return (sys.empty() ? "" : "<|system|>\n" + sys + "</s>\n") + "<|user|>\n" + u + "</s>\n<|assistant|>\n";
    default:  // Mistral has no system turn: the system prompt opens the first message.
      return "[INST] " + (sys.empty() ? "" : sys + "\n\n") + u + " [/INST]";
  }
}

std::string chat_answer_end(ChatFormat format) {
  switch (format) {
    case ChatFormat::chatml: return "<|im_end|>\n";
    case ChatFormat::zephyr: return "</s>\n";
    default: return "</s>";  // [INST] formats close an answer with EOS
  }
}

}  // namespace effort

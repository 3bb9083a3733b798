// tokenizer.h: SentencePiece tokenizer (through libsentencepiece) and a streaming decoder.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "effort/types.h"

namespace effort {

class Tokenizer {
 public:
  // A SentencePiece tokenizer.model file.
  static Tokenizer from_file(const std::filesystem::path& path);
  // The serialized ModelProto (the bytes of a tokenizer.model); source names it in errors.
  static Tokenizer from_bytes(std::string model_bytes, const std::string& source);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  std::vector<Token> encode(std::string_view text, bool add_bos) const;
  // As encode, but the text of a control token (e.g. "</s>", or "<|im_start|>" where it is one)
  // becomes that token, as llama.cpp's parse_special: for chat templates.
  std::vector<Token> encode_with_special(std::string_view text, bool add_bos) const;
  // As SentencePiece decodes: control tokens dropped, the first piece's leading space removed.
  std::string decode(std::span<const Token> tokens) const;
  // The bytes a token stands for in running text. at_text_start: the token begins the text, so
  // the space SentencePiece's dummy prefix put before its first word is dropped.
  std::string token_bytes(Token token, bool at_text_start = false) const;
  // Control tokens (BOS, EOS) stand for no text.
  bool is_control(Token token) const;
  int vocab_size() const;
  Token bos_id() const;
  Token eos_id() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns generated tokens into text as they come, never splitting a UTF-8 character: bytes of an
// incomplete character are held back until it completes. Invalid bytes become U+FFFD.
class StreamDecoder {
 public:
  // at_start: the next token begins the text, so its leading space is dropped (as decode does).
  explicit StreamDecoder(const Tokenizer& tokenizer, bool at_start = true);
  std::string push(Token token);
  // Whatever is held back, with U+FFFD for each byte of an unfinished character.
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool at_start_;
  std::string pending_;
};

}  // namespace effort

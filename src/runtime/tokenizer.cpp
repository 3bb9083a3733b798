// tokenizer.cpp: SentencePiece through libsentencepiece (exact encodes), plus our own
// token -> bytes mapping for streaming, which reproduces SentencePiece's decode piece by piece.
#include "effort/tokenizer.h"

#include <algorithm>

#include <sentencepiece_processor.h>

#include <fstream>
#include <sstream>

#include "effort/error.h"
#include "formats/sentencepiece_vocab.h"

namespace effort {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::string source;
  // The control pieces (</s>, and <|im_start|> where it is one), longest first, so that a piece
  // is not cut by a shorter one it contains: what encode_with_special looks for. User-defined
  // pieces need nothing: SentencePiece's own encode already keeps them whole.
  std::vector<std::pair<std::string, Token>> control_pieces;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, "[tokenizer] " + path.string() + ": cannot open");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return from_bytes(bytes.str(), path.string());
}

Tokenizer Tokenizer::from_bytes(std::string model_bytes, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  load_sentencepiece(impl->processor, model_bytes, "[tokenizer] " + source);
  impl->source = source;
  const auto& p = impl->processor;
  for (int id = 0; id < p.GetPieceSize(); ++id)
    if (p.IsControl(id) && !p.IdToPiece(id).empty()) impl->control_pieces.emplace_back(p.IdToPiece(id), id);
  std::sort(impl->control_pieces.begin(), impl->control_pieces.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return Tokenizer(std::move(impl));
}

std::vector<Token> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(text, &ids);
  if (!status.ok()) throw Error(ErrorCode::invalid_argument, "[tokenizer] encode failed: " + status.ToString());
  std::vector<Token> tokens;
  tokens.reserve(ids.size() + 1);
  if (add_bos) tokens.push_back(bos_id());
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  return tokens;
}

std::vector<Token> Tokenizer::encode_with_special(std::string_view text, bool add_bos) const {
  const auto& specials = impl_->control_pieces;
  std::vector<Token> tokens;
  if (add_bos) tokens.push_back(bos_id());
  std::size_t start = 0, at = 0;
  auto flush_text = [&](std::size_t end) {
    if (end > start) {
      const auto ids = encode(text.substr(start, end - start), false);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
  };
  while (at < text.size()) {
    const auto match = std::find_if(specials.begin(), specials.end(),
                                    [&](const auto& sp) { return text.compare(at, sp.first.size(), sp.first) == 0; });
    if (match == specials.end()) {
      ++at;
      continue;
    }
    flush_text(at);
    tokens.push_back(match->second);
    at += match->first.size();
    start = at;
  }
  flush_text(text.size());
  return tokens;
}

namespace {
void check_token(const sentencepiece::SentencePieceProcessor& p, Token t) {
  if (t < 0 || t >= p.GetPieceSize())
    throw Error(ErrorCode::invalid_argument, "[tokenizer] token id " + std::to_string(t) +
                                                 " is outside the vocabulary [0, " + std::to_string(p.GetPieceSize()) + ")");
}
}  // namespace

std::string Tokenizer::decode(std::span<const Token> tokens) const {
  for (Token t : tokens) check_token(impl_->processor, t);
  std::string text;
  const auto status = impl_->processor.Decode(std::vector<int>(tokens.begin(), tokens.end()), &text);
  if (!status.ok()) throw Error(ErrorCode::invalid_argument, "[tokenizer] decode failed: " + status.ToString());
  return text;
}

std::string Tokenizer::token_bytes(Token token, bool at_text_start) const {
  const auto& p = impl_->processor;
  check_token(p, token);
  if (p.IsControl(token)) return {};
  if (p.IsUnknown(token)) return " \xE2\x81\x87 ";  // SentencePiece's surface for <unk>: " ⁇ "
  const std::string piece = p.IdToPiece(token);
  if (p.IsByte(token)) return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));  // "<0xNN>"
  std::string text;
  static const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  std::size_t i = at_text_start && piece.compare(0, kSpace.size(), kSpace) == 0 ? kSpace.size() : 0;
  while (i < piece.size()) {
    if (piece.compare(i, kSpace.size(), kSpace) == 0) {
      text += ' ';
      i += kSpace.size();
    } else {
      text += piece[i++];
    }
  }
  return text;
}

bool Tokenizer::is_control(Token token) const {
  check_token(impl_->processor, token);
  return impl_->processor.IsControl(token);
}

int Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }
Token Tokenizer::bos_id() const { return impl_->processor.bos_id(); }
Token Tokenizer::eos_id() const { return impl_->processor.eos_id(); }

namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 character at s[0..n), 0 when it is invalid, -1 when the bytes so far
// are a valid but unfinished start of one.
int utf8_char_length(const unsigned char* s, std::size_t n) {
  const unsigned char c = s[0];
  if (c < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int i = 1; i < len; ++i) {
    if (std::size_t(i) >= n) return -1;
    const unsigned char b = s[i];
    if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
  }
  return len;
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool at_start)
    : tokenizer_(&tokenizer), at_start_(at_start) {}

std::string StreamDecoder::push(Token token) {
  // As in SentencePiece's decode, only the first token that is not a control token starts the text.
  pending_ += tokenizer_->token_bytes(token, at_start_);
  at_start_ = at_start_ && tokenizer_->is_control(token);
  std::string out;
  std::size_t i = 0;
  const auto* s = reinterpret_cast<const unsigned char*>(pending_.data());
  while (i < pending_.size()) {
    const int len = utf8_char_length(s + i, pending_.size() - i);
    if (len < 0) break;  // hold back an unfinished character
    if (len == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(pending_, i, std::size_t(len));
      i += std::size_t(len);
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  for (std::size_t i = 0; i < pending_.size(); ++i) out += kReplacement;
  pending_.clear();
  return out;
}

}  // namespace effort

// sentencepiece_vocab.cpp: SentencePiece models <-> llama-style vocabularies.
#include "formats/sentencepiece_vocab.h"

#include <algorithm>
#include <cstring>
#include <sentencepiece_processor.h>

#include "effort/error.h"

namespace effort {

using nlohmann::json;

namespace {

// Serialized SentencePiece ModelProto (protobuf wire format) for a llama-style BPE vocabulary.
// Field numbers from sentencepiece_model.proto: pieces = 1 {piece 1, score 2, type 3},
// trainer_spec = 2 {model_type 3, vocab_size 4, byte_fallback 35, unk_id 40, bos_id 41,
// eos_id 42, pad_id 43}, normalizer_spec = 3 {name 1, add_dummy_prefix 3, remove_extra_whitespaces 4}.
class ProtoWriter {
 public:
  void varint(std::uint32_t field, std::uint64_t v) {
    key(field, 0);
    raw_varint(v);
  }
  void fixed32(std::uint32_t field, float f) {
    key(field, 5);
    std::uint8_t b[4];
    std::memcpy(b, &f, 4);
    out_.append(reinterpret_cast<const char*>(b), 4);
  }
  void bytes(std::uint32_t field, const std::string& s) {
    key(field, 2);
    raw_varint(s.size());
    out_ += s;
  }
  const std::string& str() const { return out_; }

 private:
  void key(std::uint32_t field, std::uint32_t wire) { raw_varint((std::uint64_t(field) << 3) | wire); }
  void raw_varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_ += char(std::uint8_t(v) | 0x80);
      v >>= 7;
    }
    out_ += char(v);
  }
  std::string out_;
};

}  // namespace

std::string sentencepiece_model(const LlamaVocabulary& vocabulary) {
  const json &tokens = vocabulary.tokens, &scores = vocabulary.scores, &types = vocabulary.types;
  ProtoWriter model;
  bool has_bytes = false;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    ProtoWriter piece;
    piece.bytes(1, tokens[i].get<std::string>());
    piece.fixed32(2, scores.is_array() ? scores[i].get<float>() : 0.0f);
    // GGUF token types use SentencePiece's numbering (1 normal .. 6 byte).
    const int type = types.is_array() ? types[i].get<int>() : 1;
    has_bytes = has_bytes || type == 6;
    piece.varint(3, std::uint64_t(type));
    model.bytes(1, piece.str());
  }
  ProtoWriter trainer;
  trainer.varint(3, 2);  // BPE
  trainer.varint(4, tokens.size());
  trainer.varint(35, has_bytes);
  trainer.varint(40, std::uint64_t(vocabulary.unk));
  trainer.varint(41, std::uint64_t(vocabulary.bos));
  trainer.varint(42, std::uint64_t(vocabulary.eos));
  trainer.varint(43, std::uint64_t(std::int64_t(-1)));  // no pad
  model.bytes(2, trainer.str());
  ProtoWriter normalizer;
  normalizer.bytes(1, "identity");
  normalizer.varint(3, vocabulary.add_space_prefix);
  normalizer.varint(4, 0);
  model.bytes(3, normalizer.str());
  return model.str();
}

void load_sentencepiece(sentencepiece::SentencePieceProcessor& processor, std::string_view serialized_model,
                        const std::string& context) {
  std::string problem;
  try {
    const auto status = processor.LoadFromSerializedProto(serialized_model);
    if (status.ok()) return;
    problem = status.ToString();
  } catch (const std::exception& e) {
    problem = e.what();
  }
  throw Error(ErrorCode::format, context + ": not a SentencePiece model: " + problem);
}

LlamaVocabulary llama_vocabulary(const std::string& serialized_model, const std::string& context) {
  sentencepiece::SentencePieceProcessor sp;
  load_sentencepiece(sp, serialized_model, context);
  json tokens = json::array(), scores = json::array(), types = json::array();
  for (int i = 0; i < sp.GetPieceSize(); ++i) {
    tokens.push_back(sp.IdToPiece(i));
    scores.push_back(sp.GetScore(i));
    // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte.
    types.push_back(sp.IsUnknown(i) ? 2 : sp.IsControl(i) ? 3 : sp.IsByte(i) ? 6 : 1);
  }
  return LlamaVocabulary{.tokens = tokens,
                         .scores = scores,
                         .types = types,
                         .bos = std::max(0, sp.bos_id()),
                         .eos = std::max(0, sp.eos_id()),
                         .unk = std::max(0, sp.unk_id())};
}

}  // namespace effort

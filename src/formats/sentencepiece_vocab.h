// sentencepiece_vocab.h: a llama-style (SentencePiece BPE) vocabulary as GGUF stores it, and the
// SentencePiece model it stands for, in both directions: GGUF files carry the vocabulary, our
// tokenizer runs the model.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace effort {

struct LlamaVocabulary {
  nlohmann::json tokens;  // pieces, by id
  nlohmann::json scores;  // floats, or null: all 0
  nlohmann::json types;   // SentencePiece's numbering (1 normal, 2 unknown, 3 control, 6 byte), or null: all 1
  int bos = 1, eos = 2, unk = 0;
  // SentencePiece's add_dummy_prefix. libsentencepiece does not expose it, so a vocabulary read
  // from a model keeps the default, which every llama-family tokenizer uses.
  bool add_space_prefix = true;
};

// Loads a serialized ModelProto into `processor`; throws effort::Error (format) naming `context`
// when libsentencepiece refuses it, whether it says so or throws (its trie builder throws on a
// zero-length piece, which fuzzing found).
void load_sentencepiece(sentencepiece::SentencePieceProcessor& processor, std::string_view serialized_model,
                        const std::string& context);

// A serialized SentencePiece ModelProto (the bytes of a tokenizer.model) for the vocabulary.
std::string sentencepiece_model(const LlamaVocabulary& vocabulary);

// The vocabulary of a serialized SentencePiece model; errors name `context`.
LlamaVocabulary llama_vocabulary(const std::string& serialized_model, const std::string& context);

}  // namespace effort

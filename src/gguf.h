// gguf.h: GGUF files (llama.cpp's format, versions 2 and 3): a reader that serves llama/mistral
// models to the converter, and a writer for tests and synthetic benchmark models.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata (key, type, value),
// tensor infos (name, dims innermost first, type, offset), then the data section aligned to
// general.alignment (default 32). All little-endian.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mapped_file.h"
#include "source_model.h"

namespace effort {

// ggml tensor types this project reads or writes.
enum class GgufType : std::uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };

struct GgufTensor {
  std::string name;
  std::uint32_t type = 0;
  std::vector<std::uint64_t> dims;  // innermost first: a [out, in] matrix has dims {in, out}
  const std::uint8_t* data = nullptr;
  std::uint64_t num_bytes = 0;
};

class GgufFile {
 public:
  // Validates the whole header; errors name the file and what is wrong.
  explicit GgufFile(const std::filesystem::path& path);
  // Metadata values as JSON (arrays as arrays); null when absent.
  const nlohmann::json& metadata(const std::string& key) const;
  const GgufTensor* find(const std::string& name) const;
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, nlohmann::json> metadata_;
  std::map<std::string, GgufTensor> tensors_;
};

bool is_gguf_file(const std::filesystem::path& path);

// A llama/mistral GGUF as a converter source: HF names, HF row order (q/k rows are permuted
// back to rotate-half pairs), Q8_0 dequantized. Its SentencePiece tokenizer is rebuilt from the
// tokenizer.ggml.* vocabulary when tokenizer.ggml.model is "llama".
std::unique_ptr<SourceModel> open_gguf_source(const std::filesystem::path& path);

// Writes a GGUF v3 file. Metadata values: JSON strings, booleans, integers (written as u32, or
// i32 when negative), floats (f32), or arrays of one of those (integer arrays as i32).
class GgufWriter {
 public:
  void add_metadata(const std::string& key, const nlohmann::json& value);
  // A SentencePiece-style (tokenizer.ggml.model "llama") vocabulary: pieces, scores, token types
  // (SentencePiece numbering) and the special ids.
  void add_llama_vocabulary(const nlohmann::json& tokens, const nlohmann::json& scores, const nlohmann::json& types,
                            int bos, int eos, int unk);
  // Produces the tensor's bytes in `type`'s encoding when write() reaches it, so that large
  // models are never whole in memory; dims innermost first.
  using Producer = std::function<std::vector<std::uint8_t>()>;
  void add_tensor(const std::string& name, GgufType type, const std::vector<std::uint64_t>& dims, Producer produce);
  void add_tensor(const std::string& name, GgufType type, const std::vector<std::uint64_t>& dims,
                  std::vector<std::uint8_t> data);
  // Throws effort::Error naming the tensor if a producer's bytes do not match type x dims.
  void write(const std::filesystem::path& path) const;

 private:
  std::vector<std::pair<std::string, nlohmann::json>> metadata_;
  struct Tensor {
    std::string name;
    GgufType type;
    std::vector<std::uint64_t> dims;
    Producer produce;
  };
  std::vector<Tensor> tensors_;
};

// Adds the vocabulary of a serialized SentencePiece model (add_llama_vocabulary); errors name
// `context`.
void add_sentencepiece_vocabulary(GgufWriter& gguf, const std::string& serialized_model, const std::string& context);

// values in a GGUF tensor type: F32, F16 or Q8_0.
std::vector<std::uint8_t> encode_gguf(GgufType type, const std::vector<float>& values);

// llama.cpp's converter interleaves the rotary pairs of q_proj/k_proj rows: GGUF row h*hd + 2i + j
// holds HF row h*hd + j*hd/2 + i. Reorders rows of row_bytes bytes from HF order to GGUF order
// (to_gguf) or back.
void reorder_rotary_rows(const std::uint8_t* in, std::uint8_t* out, std::size_t heads, std::size_t head_dim,
                         std::size_t row_bytes, bool to_gguf);
// The float rows of an HF q/k matrix in GGUF order.
std::vector<float> interleave_rotary_rows(const std::vector<float>& w, std::size_t heads, std::size_t head_dim,
                                          std::size_t cols);

}  // namespace effort

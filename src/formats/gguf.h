// gguf.h: GGUF files (llama.cpp's format, versions 2 and 3): a reader (gguf_reader.cpp) and a
// writer (gguf_writer.cpp). Models in it are read by gguf_source.h.
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

#include "formats/mapped_file.h"
#include "formats/sentencepiece_vocab.h"

namespace effort {

inline constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32

// ggml tensor types this project reads or writes in place (ggml_types.h knows the others).
enum class GgufType : std::uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };

// Metadata value types.
enum class GgufValue : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12
};

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
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, nlohmann::json> metadata_;
  std::map<std::string, GgufTensor> tensors_;
};

bool is_gguf_file(const std::filesystem::path& path);

// Writes a GGUF v3 file. Metadata values: JSON strings, booleans, integers (written as u32, or
// i32 when negative), floats (f32), or arrays of one of those (integer arrays as i32).
class GgufWriter {
 public:
  void add_metadata(const std::string& key, const nlohmann::json& value);
  // A SentencePiece-style vocabulary (tokenizer.ggml.model "llama").
  void add_llama_vocabulary(const LlamaVocabulary& vocabulary);
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

// values in a GGUF tensor type: F32, F16 or Q8_0.
std::vector<std::uint8_t> encode_gguf(GgufType type, const std::vector<float>& values);

}  // namespace effort

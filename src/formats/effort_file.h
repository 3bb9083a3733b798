// effort_file.h: the .effort container: one file, memory-mapped at load.
//
//   bytes 0..7    magic "EFFORT\0\0"
//   bytes 8..11   format version, u32 little-endian (kEffortFormatVersion)
//   bytes 12..15  zero
//   bytes 16..23  header size N, u64 little-endian
//   bytes 24..    N bytes of JSON: {"config": HF config.json fields, "conversion": parameters,
//                 "tokenizer": tensor name or null, "matrices": {name: {layout, bucket_size,
//                 weights ("f16": U16 units; "q8": I8 units and F16 scales; absent: f16)}},
//                 "tensors": {name: {dtype, shape, data_offsets, xxh3}}}: dtypes are
//                 safetensors' plus Q8_0 (GGUF's blocks, for a q8 file's output head); xxh3 is
//                 the XXH3-64 checksum of the tensor's bytes, 16 hex digits
//   then zeros up to a multiple of 64: the data section, every tensor 64-byte aligned in it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/mapped_file.h"
#include "formats/safetensors.h"

namespace effort {

// 3: buckets of 1-16 outputs with unbiased position bits, no tile groups.
// 4: 8-bit entries in [-127, 127] (the int8 kernels negate them). Older files must be converted
// again.
inline constexpr std::uint32_t kEffortFormatVersion = 4;
inline constexpr char kEffortMagic[8] = {'E', 'F', 'F', 'O', 'R', 'T', 0, 0};

// True when the file starts with the .effort magic.
bool is_effort_file(const std::filesystem::path& path);

class EffortFile {
 public:
  // Validates magic, version, header and every tensor's range; errors name the file.
  explicit EffortFile(const std::filesystem::path& path);
  const nlohmann::json& header() const { return header_; }
  const std::filesystem::path& path() const { return file_->path(); }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws effort::Error naming the file and tensor when missing.
  const TensorView& get(const std::string& name) const;
  // Also when its shape differs, or its dtype when one is given.
  const TensorView& get(const std::string& name, const std::string& dtype, const std::vector<std::int64_t>& shape) const;
  // Reads every tensor and compares its checksum with the header's; throws effort::Error
  // (format) naming the first damaged tensor. Reads the whole file: not done at load.
  void verify() const;

 private:
  std::unique_ptr<MappedFile> file_;
  nlohmann::json header_;
  std::map<std::string, TensorView> tensors_;
};

// Writes a .effort file in two steps: plan every tensor (name, dtype, shape) and fill the
// header, then open() lays out the data section and the tensors are written in any order.
class EffortFileWriter {
 public:
  void plan(const std::string& name, const std::string& dtype, const std::vector<std::int64_t>& shape);
  nlohmann::json& header() { return header_; }
  // Creates `path` (which must not exist) and writes the header.
  void open(const std::filesystem::path& path);
  void write(const std::string& name, const void* data, std::size_t size);
  // Checks that every planned tensor was written, flushes and closes.
  void finish();
  ~EffortFileWriter();

 private:
  struct Planned {
    std::uint64_t offset = 0, size = 0;
    bool written = false;
    std::string checksum;
  };
  nlohmann::json header_ = nlohmann::json::object();
  std::map<std::string, Planned> planned_;
  std::vector<std::string> order_;
  std::filesystem::path path_;
  std::size_t header_bytes_ = 0;
  int fd_ = -1;
  std::uint64_t data_start_ = 0;
};

}  // namespace effort

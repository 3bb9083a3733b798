// gguf_reader.cpp: GGUF headers read with bounds checks; tensors stay in the mapping.
#include <cstring>
#include <fstream>

#include "effort/error.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"

namespace effort {

using nlohmann::json;

namespace {

// Sequential reads that never pass the end of the mapping.
class Cursor {
 public:
  Cursor(std::span<const std::uint8_t> bytes, std::string context) : bytes_(bytes), context_(std::move(context)) {}
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::format, context_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  template <class T>
  T read() {
    if (bytes_.size() - pos_ < sizeof(T)) fail("truncated");
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string() {
    const auto n = read<std::uint64_t>();
    if (n > bytes_.size() - pos_) fail("string of " + std::to_string(n) + " bytes runs past the end of the file");
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), std::size_t(n));
    pos_ += std::size_t(n);
    return s;
  }
  json value(std::uint32_t type, int depth = 0) {
    switch (GgufValue(type)) {
      case GgufValue::u8: return read<std::uint8_t>();
      case GgufValue::i8: return read<std::int8_t>();
      case GgufValue::u16: return read<std::uint16_t>();
      case GgufValue::i16: return read<std::int16_t>();
      case GgufValue::u32: return read<std::uint32_t>();
      case GgufValue::i32: return read<std::int32_t>();
      case GgufValue::f32: return read<float>();
      case GgufValue::boolean: return read<std::uint8_t>() != 0;
      case GgufValue::string: return string();
      case GgufValue::u64: return read<std::uint64_t>();
      case GgufValue::i64: return read<std::int64_t>();
      case GgufValue::f64: return read<double>();
      case GgufValue::array: {
        if (depth > 0) fail("nested arrays are not supported");
        const auto elem = read<std::uint32_t>();
        const auto n = read<std::uint64_t>();
        if (n > (bytes_.size() - pos_) / min_bytes(elem))
          fail("array of " + std::to_string(n) + " elements runs past the end of the file");
        json a = json::array();
        for (std::uint64_t i = 0; i < n; ++i) a.push_back(value(elem, depth + 1));
        return a;
      }
    }
    fail("unknown metadata value type " + std::to_string(type));
  }
  std::size_t pos() const { return pos_; }

 private:
  // The fewest bytes a value of `type` takes (a string: its length), to refuse an array longer
  // than the rest of the file could hold before allocating it.
  std::size_t min_bytes(std::uint32_t type) const {
    switch (GgufValue(type)) {
      case GgufValue::u8: case GgufValue::i8: case GgufValue::boolean: return 1;
      case GgufValue::u16: case GgufValue::i16: return 2;
      case GgufValue::u32: case GgufValue::i32: case GgufValue::f32: return 4;
      case GgufValue::u64: case GgufValue::i64: case GgufValue::f64: case GgufValue::string: return 8;
      case GgufValue::array: return 12;  // refused as nested when read
    }
    fail("unknown metadata value type " + std::to_string(type));
  }

  std::span<const std::uint8_t> bytes_;
  std::string context_;
  std::size_t pos_ = 0;
};

}  // namespace

bool is_gguf_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::uint32_t magic = 0;
  return in.read(reinterpret_cast<char*>(&magic), 4) && magic == kGgufMagic;
}

GgufFile::GgufFile(const std::filesystem::path& path) : file_(std::make_unique<MappedFile>(path)) {
  const std::string context = "[gguf] " + path.string();
  Cursor in(file_->bytes(), context);
  if (in.read<std::uint32_t>() != kGgufMagic) in.fail("not a GGUF file (bad magic)");
  const auto version = in.read<std::uint32_t>();
  if (version != 2 && version != 3)
    throw Error(ErrorCode::unsupported, context + ": GGUF version " + std::to_string(version) + ", this build reads 2 and 3");
  const auto tensor_count = in.read<std::uint64_t>();
  const auto kv_count = in.read<std::uint64_t>();
  if (tensor_count > file_->bytes().size() || kv_count > file_->bytes().size()) in.fail("implausible tensor or metadata count");
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    std::string key = in.string();
    const auto type = in.read<std::uint32_t>();
    metadata_[key] = in.value(type);
  }
  std::vector<GgufTensor> infos;
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensor t;
    t.name = in.string();
    const auto n_dims = in.read<std::uint32_t>();
    if (n_dims == 0 || n_dims > 4) in.fail("tensor " + t.name + " has " + std::to_string(n_dims) + " dimensions");
    for (std::uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(in.read<std::uint64_t>());
    t.type = in.read<std::uint32_t>();
    t.num_bytes = in.read<std::uint64_t>();  // the offset, until resolved below
    infos.push_back(std::move(t));
  }
  std::uint64_t alignment = 32;
  if (metadata_.count("general.alignment")) {
    const json& a = metadata_["general.alignment"];
    if (!a.is_number_unsigned() || a.get<std::uint64_t>() == 0 || (a.get<std::uint64_t>() & (a.get<std::uint64_t>() - 1)))
      in.fail("general.alignment must be a power of two");
    alignment = a.get<std::uint64_t>();
  }
  const std::uint64_t data_start = (in.pos() + alignment - 1) / alignment * alignment;
  const std::uint64_t size = file_->bytes().size();
  for (auto& t : infos) {
    const std::uint64_t offset = t.num_bytes;
    std::uint64_t elements = 1;
    for (auto d : t.dims) {
      if (d > (std::uint64_t(1) << 40) || (d && elements > (std::uint64_t(1) << 48) / d))
        in.fail("tensor " + t.name + " has implausible dimensions");
      elements *= d;
    }
    t.num_bytes = ggml_tensor_bytes(t.type, elements);
    if (const std::size_t block = ggml_block_elements(t.type); block > 1 && t.dims[0] % block != 0)
      in.fail("tensor " + t.name + ": " + ggml_type_name(t.type) + " rows must be a multiple of " + std::to_string(block) +
              " elements");
    if (t.num_bytes && (data_start > size || offset > size - data_start || t.num_bytes > size - data_start - offset))
      in.fail("tensor " + t.name + " (offset " + std::to_string(offset) + ", " + std::to_string(t.num_bytes) +
              " bytes) runs past the end of the file; truncated?");
    t.data = file_->bytes().data() + data_start + offset;
    tensors_[t.name] = t;
  }
}

const json& GgufFile::metadata(const std::string& key) const {
  static const json null;
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? null : it->second;
}

const GgufTensor* GgufFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace effort

// effort_file.cpp: reading and writing the .effort container.
#include "formats/effort_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "effort/error.h"
#include "formats/tensor_table.h"

namespace effort {

using nlohmann::json;

namespace {
constexpr std::uint64_t kAlign = 64;
constexpr std::size_t kPrefix = 24;  // magic, version, reserved, header size
std::uint64_t align_up(std::uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

std::uint64_t read_le(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
}  // namespace

bool is_effort_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, 8) && std::memcmp(magic, kEffortMagic, 8) == 0;
}

EffortFile::EffortFile(const std::filesystem::path& path) : file_(std::make_unique<MappedFile>(path)) {
  const std::string context = "[effort-file] " + path.string();
  auto fail = [&](const std::string& what) -> void { throw Error(ErrorCode::format, context + ": " + what); };
  const auto bytes = file_->bytes();
  if (bytes.empty()) fail("is empty (0 bytes)");
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kEffortMagic, 8) == 0 && bytes.size() < kPrefix)
    fail("truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the " + std::to_string(kPrefix) + "-byte prefix");
  if (bytes.size() < kPrefix || std::memcmp(bytes.data(), kEffortMagic, 8) != 0)
    fail("not an .effort file (it does not start with the EFFORT magic)");
  const auto version = std::uint32_t(read_le(bytes.data() + 8, 4));
  if (version != kEffortFormatVersion)
    throw Error(ErrorCode::unsupported, context + ": format version " + std::to_string(version) + ", this build reads " +
                                            std::to_string(kEffortFormatVersion) +
                                            ": convert the model again with this build's effort-convert");
  const std::uint64_t header_size = read_le(bytes.data() + 16, 8);
  if (header_size > bytes.size() - kPrefix)
    fail("header size " + std::to_string(header_size) + " runs past the end of the file (" + std::to_string(bytes.size()) +
         " bytes; truncated?)");
  try {
    header_ = json::parse(bytes.begin() + kPrefix, bytes.begin() + std::ptrdiff_t(kPrefix + header_size));
  } catch (const json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  for (const char* key : {"config", "matrices", "tensors"})
    if (!header_.is_object() || !header_.contains(key) || !header_[key].is_object())
      fail(std::string("header has no \"") + key + "\" object");
  const std::uint64_t data_start = align_up(kPrefix + header_size);
  if (data_start > bytes.size()) fail("truncated: the data section starts past the end of the file");
  tensors_ = parse_tensor_table(header_["tensors"], bytes.data() + data_start, bytes.size() - data_start, file_.get(), context);
  for (const auto& [name, view] : tensors_)
    if ((view.data - bytes.data()) % kAlign != 0) fail("tensor " + name + " is not 64-byte aligned");
}

namespace {
// XXH3-64 of the bytes, as 16 hex digits.
std::string checksum(const void* data, std::size_t size) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits(data, size)));
  return hex;
}
constexpr const char* kNoChecksum = "0000000000000000";  // the placeholder planned, same length
}  // namespace

void EffortFile::verify() const {
  for (const auto& [name, view] : tensors_) {
    const auto& info = header_["tensors"][name];
    if (!info.contains("xxh3") || !info["xxh3"].is_string())
      throw Error(ErrorCode::format, "[effort-file] " + path().string() + ": tensor " + name + " has no checksum");
    const std::string expected = info["xxh3"].get<std::string>(), actual = checksum(view.data, view.num_bytes);
    if (actual != expected)
      throw Error(ErrorCode::format, "[effort-file] " + path().string() + ": tensor " + name + ": checksum " + actual +
                                         ", the header says " + expected + ": the file is damaged (convert it again)");
  }
}

const TensorView& EffortFile::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw Error(ErrorCode::format, "[effort-file] " + path().string() + ": tensor " + name + " is missing");
  return it->second;
}

const TensorView& EffortFile::get(const std::string& name, const std::string& dtype,
                                  const std::vector<std::int64_t>& shape) const {
  const TensorView& t = get(name);
  if ((!dtype.empty() && t.dtype_name != dtype) || t.shape != shape)
    throw Error(ErrorCode::format, "[effort-file] " + path().string() + ": tensor " + name + ": expected " +
                                       (dtype.empty() ? "" : dtype + " ") + shape_string(shape) + ", got " +
                                       t.dtype_name + " " + shape_string(t.shape));
  return t;
}

void EffortFileWriter::plan(const std::string& name, const std::string& dtype, const std::vector<std::int64_t>& shape) {
  std::uint64_t elements = 1;
  for (auto d : shape) elements *= std::uint64_t(d);
  const auto bytes = tensor_bytes(dtype, elements, shape.empty() ? 1 : std::uint64_t(shape.back()));
  if (!bytes) throw Error(ErrorCode::invalid_argument, "[effort-file] tensor " + name + ": cannot store " + dtype + " " + shape_string(shape));
  const std::uint64_t size = *bytes;
  header_["tensors"][name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {0, 0}}, {"xxh3", kNoChecksum}};
  planned_[name].size = size;
  order_.push_back(name);
}

void EffortFileWriter::open(const std::filesystem::path& path) {
  std::uint64_t offset = 0;
  for (const auto& name : order_) {
    Planned& p = planned_[name];
    p.offset = offset;
    header_["tensors"][name]["data_offsets"] = {offset, offset + p.size};
    offset = align_up(offset + p.size);
  }
  const std::string text = header_.dump();
  header_bytes_ = text.size();
  data_start_ = align_up(kPrefix + text.size());
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(ErrorCode::io, "[effort-file] " + path.string() + ": cannot create: " + std::strerror(errno));
  path_ = path;
  std::vector<std::uint8_t> head(data_start_, 0);
  std::memcpy(head.data(), kEffortMagic, 8);
  for (int i = 0; i < 4; ++i) head[8 + std::size_t(i)] = std::uint8_t(kEffortFormatVersion >> (8 * i));
  for (int i = 0; i < 8; ++i) head[16 + std::size_t(i)] = std::uint8_t(std::uint64_t(text.size()) >> (8 * i));
  std::memcpy(head.data() + kPrefix, text.data(), text.size());
  if (::pwrite(fd_, head.data(), head.size(), 0) != ssize_t(head.size()) || ::ftruncate(fd_, off_t(data_start_ + offset)) != 0)
    throw Error(ErrorCode::io, "[effort-file] " + path.string() + ": write failed: " + std::strerror(errno));
}

void EffortFileWriter::write(const std::string& name, const void* data, std::size_t size) {
  const auto it = planned_.find(name);
  if (it == planned_.end() || it->second.size != size || it->second.written)
    throw Error(ErrorCode::invalid_argument, "[effort-file] " + path_.string() + ": tensor " + name +
                                                 " was not planned with " + std::to_string(size) + " bytes, or is written twice");
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  std::uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd_, bytes + done, size - done, off_t(data_start_ + it->second.offset + done));
    if (n <= 0) throw Error(ErrorCode::io, "[effort-file] " + path_.string() + ": write failed: " + std::strerror(errno));
    done += std::uint64_t(n);
  }
  it->second.written = true;
  it->second.checksum = checksum(data, size);
}

void EffortFileWriter::finish() {
  for (const auto& [name, p] : planned_)
    if (!p.written) throw Error(ErrorCode::invalid_argument, "[effort-file] " + path_.string() + ": tensor " + name + " was never written");
  // The checksums replace their placeholders: the header keeps its length.
  for (const auto& [name, p] : planned_) header_["tensors"][name]["xxh3"] = p.checksum;
  const std::string text = header_.dump();
  if (text.size() != header_bytes_ || ::pwrite(fd_, text.data(), text.size(), off_t(kPrefix)) != ssize_t(text.size()))
    throw Error(ErrorCode::io, "[effort-file] " + path_.string() + ": cannot write the checksums: " + std::strerror(errno));
  if (::fsync(fd_) != 0 || ::close(fd_) != 0)
    throw Error(ErrorCode::io, "[effort-file] " + path_.string() + ": cannot flush: " + std::strerror(errno));
  fd_ = -1;
}

EffortFileWriter::~EffortFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace effort

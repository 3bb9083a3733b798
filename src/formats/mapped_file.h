// mapped_file.h: a read-only memory mapping of a whole file (RAII).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace effort {

class MappedFile {
 public:
  // Throws effort::Error (io) naming the path when it cannot be opened or mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;

  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Maps the pages of [data, data + n) in now (MADV_POPULATE_READ) rather than on first touch;
// a hint: kernels without it (before Linux 5.14) fault them in later.
void populate(const void* data, std::size_t n);

// n bytes moved into anonymous memory that asks for transparent huge pages: weights read from
// there cost far fewer TLB misses than file pages mapped 4 KiB at a time. The source's whole
// pages are dropped from the process as they are copied (MADV_DONTNEED), so that the peak
// resident memory stays near one copy: file pages stay in the page cache, anonymous ones are
// freed, and the source must not be read again. Throws effort::Error (io) when the memory
// cannot be had.
std::shared_ptr<const std::uint8_t> move_into_memory(const void* data, std::size_t n);

}  // namespace effort

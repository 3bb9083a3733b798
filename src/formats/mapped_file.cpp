// mapped_file.cpp: mmap of a whole file; an empty file maps to an empty span.
#include "formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>

#include "effort/error.h"

namespace effort {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorCode::io, "[load] " + path.string() + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::io, "[load] " + path.string() + ": not a regular file");
  }
  size_ = std::size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(ErrorCode::io, "[load] " + path.string() + ": cannot map: " + std::strerror(err));
    }
    data_ = static_cast<const std::uint8_t*>(p);
  }
  ::close(fd);
}

void populate(const void* data, std::size_t n) {
  constexpr int kPopulateRead = 22;  // MADV_POPULATE_READ, absent from older headers
  const auto page = std::uintptr_t(::sysconf(_SC_PAGESIZE));
  const std::uintptr_t begin = std::uintptr_t(data) / page * page;
  ::madvise(reinterpret_cast<void*>(begin), std::uintptr_t(data) + n - begin, kPopulateRead);
}

std::shared_ptr<const std::uint8_t> move_into_memory(const void* data, std::size_t n) {
  constexpr std::size_t kHugePage = std::size_t(2) << 20;
  const std::size_t size = std::max(kHugePage, (n + kHugePage - 1) / kHugePage * kHugePage);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error(ErrorCode::io, "[load] cannot allocate " + std::to_string(n >> 20) + " MiB for weights: " + std::strerror(errno));
  ::madvise(p, size, MADV_HUGEPAGE);  // a request: kernels without THP keep 4 KiB pages
  const auto page = std::uintptr_t(::sysconf(_SC_PAGESIZE));
  constexpr std::size_t kChunk = std::size_t(64) << 20;
  const auto* source = static_cast<const std::uint8_t*>(data);
  for (std::size_t done = 0; done < n; done += kChunk) {
    const std::size_t bytes = std::min(kChunk, n - done);
    std::memcpy(static_cast<std::uint8_t*>(p) + done, source + done, bytes);
    // The whole pages inside the part copied so far (never a page shared with other data).
    const std::uintptr_t begin = (std::uintptr_t(source) + page - 1) / page * page;
    const std::uintptr_t end = (std::uintptr_t(source) + done + bytes) / page * page;
    const std::uintptr_t from = std::max(begin, (std::uintptr_t(source) + done) / page * page);
    if (end > from) ::madvise(reinterpret_cast<void*>(from), end - from, MADV_DONTNEED);
  }
  return std::shared_ptr<const std::uint8_t>(static_cast<const std::uint8_t*>(p),
                                             [size](const std::uint8_t* q) { ::munmap(const_cast<std::uint8_t*>(q), size); });
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

}  // namespace effort

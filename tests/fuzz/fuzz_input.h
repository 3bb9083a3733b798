// fuzz_input.h: what the fuzz targets share: the input as a file (the loaders take paths and
// map them), and the one outcome allowed besides success: effort::Error (or the tools'
// UsageError), a refusal with a message. Anything else (a crash, a sanitizer report, another
// exception, a hang) is a finding.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace effort::fuzz {

// The input written to a per-process file in memory (/dev/shm when there is one).
inline std::filesystem::path as_file(const std::uint8_t* data, std::size_t size, const char* extension) {
  static const std::filesystem::path dir =
      std::filesystem::exists("/dev/shm") ? std::filesystem::path("/dev/shm") : std::filesystem::temp_directory_path();
  const auto path = dir / ("effort-fuzz-" + std::to_string(::getpid()) + extension);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

}  // namespace effort::fuzz

// memory.h: how much memory this process may still take, to refuse a session that would not fit
// before allocating it (an allocation past the limit kills the process instead of failing).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace effort {

// Bytes the process can still allocate: the kernel's MemAvailable, or the cgroup's memory.max
// less memory.current when that is lower. Empty where neither can be read.
std::optional<std::uint64_t> available_memory();

// Throws Error(resources) when `bytes` exceed available_memory(); `what` says what needs them
// and `advice` how to need less.
void require_memory(std::uint64_t bytes, const std::string& what, const std::string& advice);

// "8.59 GB", "512 KB": sizes for messages.
std::string format_bytes(std::uint64_t bytes);

}  // namespace effort

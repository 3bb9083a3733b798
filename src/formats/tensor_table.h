// tensor_table.h: the {name: {dtype, shape, data_offsets}} table that safetensors and .effort
// headers share, validated against the data section it describes.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "formats/safetensors.h"

namespace effort {

// Bytes per element of a safetensors dtype name ("F32", "U16", ...); 0 when unknown.
std::size_t dtype_bytes(const std::string& dtype);
// Bytes of a tensor of `elements` elements whose last dimension is `row`: dtype x elements, or
// for "Q8_0" (GGUF's blocks, which .effort files store for 8-bit heads) 34 bytes per 32 along
// rows of a multiple of 32. std::nullopt for an unknown dtype or rows Q8_0 cannot hold.
std::optional<std::uint64_t> tensor_bytes(const std::string& dtype, std::uint64_t elements, std::uint64_t row);

// Checks every entry: known dtype, offsets inside the data section, size = dtype x shape, no two
// tensors overlapping. Errors start with `context` (e.g. "[safetensors] path") and name the tensor.
std::map<std::string, TensorView> parse_tensor_table(const nlohmann::json& table, const std::uint8_t* data,
                                                     std::uint64_t data_size, const MappedFile* file,
                                                     const std::string& context);

}  // namespace effort

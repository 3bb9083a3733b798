// tensor_table.h: the {name: {dtype, shape, data_offsets}} table that safetensors and .effort
// headers share, validated against the data section it describes.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "safetensors.h"

namespace effort {

// Bytes per element of a safetensors dtype name ("F32", "U16", ...); 0 when unknown.
std::size_t dtype_bytes(const std::string& dtype);

// Checks every entry: known dtype, offsets inside the data section, size = dtype x shape, no two
// tensors overlapping. Errors start with `context` (e.g. "[safetensors] path") and name the tensor.
std::map<std::string, TensorView> parse_tensor_table(const nlohmann::json& table, const std::uint8_t* data,
                                                     std::uint64_t data_size, const MappedFile* file,
                                                     const std::string& context);

}  // namespace effort

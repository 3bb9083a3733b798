// ggml_types.h: ggml's tensor types (GGUF's tensor type codes): names and sizes of the ones
// this project knows; the block-quantized ones decoded to floats for dense runs and conversion, and three of them encoded (Q8_0 for GGUF export, Q4_0 and Q4_K to measure their
// quality beside ours). Written from the GGUF specification and llama.cpp's documented reference
// quantizers; tested against blocks quantized by llama.cpp's own llama-quantize, decoded by its
// gguf-py package.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace effort {

// "Q8_0 (type 8)", or "type N" for a type this build does not know.
std::string ggml_type_name(std::uint32_t type);
// Bytes of a tensor of `elements` elements (a whole number of blocks); 0 for an unknown type.
std::uint64_t ggml_tensor_bytes(std::uint32_t type, std::uint64_t elements);
// Elements per block: 1 for F32/F16/BF16, 32 or 256 for block types, 0 when unknown.
std::size_t ggml_block_elements(std::uint32_t type);

// Whether dequantize() reads ggml type `type`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool is_dequantizable(std::uint32_t type);
// out[0 .. n) from n / ggml_block_elements(type) blocks; n is a multiple of the block size.
void dequantize(std::uint32_t type, const std::uint8_t* blocks, std::size_t n, float* out);

// Whether quantize() writes ggml type `type`: Q8_0, Q4_0, Q4_K.
bool is_quantizable(std::uint32_t type);
// values[0 .. n) as blocks of `type`, as llama.cpp's reference quantizers make them; n is a
// multiple of the block size.
std::vector<std::uint8_t> quantize(std::uint32_t type, const float* values, std::size_t n);

}  // namespace effort

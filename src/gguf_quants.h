// gguf_quants.h: ggml's block-quantized tensor types, decoded to floats for dense runs and
// conversion, and three of them encoded (Q8_0 for GGUF export, Q4_0 and Q4_K to measure their
// quality beside ours). Written from the GGUF specification and llama.cpp's documented reference
// quantizers; tested against blocks quantized by llama.cpp's own llama-quantize, decoded by its
// gguf-py package.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace effort {

// Whether dequantize() reads ggml type `type`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool is_dequantizable(std::uint32_t type);
// Elements per block of the type (32 or 256), 0 when unknown.
std::size_t quant_block_elements(std::uint32_t type);
// out[0 .. n) from n / quant_block_elements(type) blocks; n is a multiple of the block size.
void dequantize(std::uint32_t type, const std::uint8_t* blocks, std::size_t n, float* out);

// Whether quantize() writes ggml type `type`: Q8_0, Q4_0, Q4_K.
bool is_quantizable(std::uint32_t type);
// values[0 .. n) as blocks of `type`, as llama.cpp's reference quantizers make them; n is a
// multiple of the block size.
std::vector<std::uint8_t> quantize(std::uint32_t type, const float* values, std::size_t n);

}  // namespace effort

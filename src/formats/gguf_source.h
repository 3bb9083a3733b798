// gguf_source.h: llama/mistral models in GGUF, and llama.cpp's row order for their q/k matrices.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/source_model.h"

namespace effort {

// A llama/mistral GGUF as a converter source: HF names, HF row order (q/k rows are permuted
// back to rotate-half pairs), Q8_0 in place, other quantized types dequantized. Its SentencePiece
// tokenizer is rebuilt from the tokenizer.ggml.* vocabulary when tokenizer.ggml.model is "llama".
std::unique_ptr<SourceModel> open_gguf_source(const std::filesystem::path& path);

// The GGUF name of an HF tensor name (llama architecture), e.g. "model.layers.3.mlp.up_proj.weight"
// -> "blk.3.ffn_up.weight"; other names unchanged.
std::string gguf_tensor_name(const std::string& hf);

// Every element of a GGUF tensor as floats (F32, F16, BF16, or a type dequantize() decodes), in
// stored order; throws effort::Error (unsupported) for other types.
std::vector<float> gguf_floats(const GgufTensor& t);

// llama.cpp's converter interleaves the rotary pairs of q_proj/k_proj rows: GGUF row h*hd + 2i + j
// holds HF row h*hd + j*hd/2 + i. Reorders rows of row_bytes bytes from HF order to GGUF order
// (to_gguf) or back.
void reorder_rotary_rows(const std::uint8_t* in, std::uint8_t* out, std::size_t heads, std::size_t head_dim,
                         std::size_t row_bytes, bool to_gguf);
// The float rows of an HF q/k matrix in GGUF order.
std::vector<float> interleave_rotary_rows(const std::vector<float>& w, std::size_t heads, std::size_t head_dim,
                                          std::size_t cols);

}  // namespace effort

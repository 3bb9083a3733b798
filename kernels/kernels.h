// kernels.h: the arch-agnostic kernel API. src/ calls kernels only through a KernelTable;
// kernels/ never includes src/.
//
// Legend: rows = output dimension of a matrix, cols = input dimension, n = vector length.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace effort::kernels {

enum class Arch { scalar, avx2, avx512 };

struct BucketView;  // bucket_view.h
// Entries of a bucketed matrix: fp16, or int8 with an fp16 scale per kQ8Block entries.
enum class BucketWeights { f16, q8 };
inline constexpr std::size_t kQ8Block = 32;
// Listed units whose q8 multipliers share one int8 step per block (bucket_matvec_q8.h).
inline constexpr std::size_t kQ8Group = 8;
// Vectors one bucket product multiplies at most, and the alignment of the bucket ranges it is
// split into (a whole number of every arch's tiles and of q8 scale blocks).
inline constexpr std::size_t kMaxVectors = 16;
inline constexpr std::size_t kBucketRangeAlign = 64;
// Room a dispatched list needs past its last possible entry.
inline constexpr std::size_t kDispatchSlack = 16;
// Outputs per panel of a batched product (panel_matmul.h).
inline constexpr std::size_t kPanelWidth = 32;

// Element type of a dense weight matrix as stored (memory-mapped, never converted at load).
// q8_0 is GGUF's: blocks of 32 weights, an fp16 scale then 32 int8 (34 bytes); rows are whole
// blocks.
enum class DType { f32, f16, bf16, q8_0 };
inline constexpr int kNumDTypes = 4;
inline constexpr std::size_t kQ8_0Block = 32, kQ8_0BlockBytes = 34;
// Bytes of n consecutive weights (n a multiple of kQ8_0Block for q8_0).
constexpr std::size_t dtype_bytes(DType dtype, std::size_t n) {
  return dtype == DType::f32 ? 4 * n : dtype == DType::q8_0 ? n / kQ8_0Block * kQ8_0BlockBytes : 2 * n;
}
std::string_view dtype_name(DType dtype);

// One function pointer per kernel; every compiled arch fills the whole table.
struct KernelTable {
  // out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]. out may alias x.
  void (*rms_norm)(float* out, const float* x, const float* weight, std::size_t n, float eps);
  // Rotate-half RoPE on one head in place: pairs (i, i + head_dim/2), with cos/sin[head_dim/2].
  void (*rope)(float* x, const float* cos, const float* sin, std::size_t head_dim);
  // One query head over n_keys cached positions: out = softmax(q.k_t * scale) . v_t.
  // Key t is k + t*kv_stride (likewise v); scores is scratch of n_keys floats.
  void (*attention)(float* out, const float* q, const float* k, const float* v, std::size_t n_keys,
                    std::size_t kv_stride, std::size_t head_dim, float scale, float* scores);
  // y[v*y_stride + r] = sum_c w[r*cols + c] * x[v*x_stride + c] for r < rows and n vectors v,
  // indexed by DType; w is [rows, cols] row-major, each weight read once for the n vectors, and
  // each output the same float whatever n.
  void (*matvec[kNumDTypes])(float* y, std::size_t y_stride, const void* w, const float* x, std::size_t x_stride,
                             std::size_t n, std::size_t rows, std::size_t cols);
  // Batched products (panel_matmul.h): weights unpacked into input-major panels of kPanelWidth
  // outputs, once per batch, then multiplied by every vector of the batch.
  // panel[k][o] = w[o*cols + col0 + k] for o < rows (<= 32), 0 beyond; indexed by DType.
  void (*dense_panel[kNumDTypes])(float* panel, const void* w, std::size_t cols, std::size_t rows,
                                  std::size_t col0, std::size_t k_len);
  // Y[j][o] (+)= sum_k panel[k][o] * xt[k*x_stride + j] for o < width, j < n; Y[j] at y + j*y_stride.
  void (*panel_matmul)(float* y, std::size_t y_stride, const float* panel, const float* xt, std::size_t x_stride,
                       std::size_t k_len, std::size_t n, std::size_t width, bool accumulate);
  // out[i] = silu(gate[i]) * up[i]. out may alias gate.
  void (*silu_mul)(float* out, const float* gate, const float* up, std::size_t n);
  // y[i] += x[i]
  void (*add)(float* y, const float* x, std::size_t n);
  // Effort product over a bucketed matrix (bucket_matvec.h): list the units and their inputs
  // (units and xs hold num_units + kDispatchSlack entries: SIMD stores whole vectors past the
  // list's end), then multiply a list into y [B*S] (outputs in order, padding included).
  std::size_t (*bucket_dispatch)(std::uint32_t* units, float* xs, const BucketView& m, const float* x,
                                 std::size_t num_units, float cutoff);
  // The list multiplied into n vectors at once (1 <= n <= kMaxVectors), each entry decoded once
  // for all of them: xs[i * n + v] is vector v's input for listed unit i (0 where v does not
  // take the unit), and vector v's outputs of buckets [bucket_begin, bucket_end) go to
  // y[v * y_stride + b * S + position]. bucket_begin is a multiple of kBucketRangeAlign, and so
  // is bucket_end unless it is B. Each output is the same float whatever the range and n.
  void (*bucket_matvec)(float* y, std::size_t y_stride, const BucketView& m, const std::uint32_t* units,
                        const float* xs, std::size_t count, std::size_t n, std::size_t bucket_begin,
                        std::size_t bucket_end);
  // The panels of a block of buckets and inputs (bucket_panel.h), for panel_matmul.
  void (*bucket_panel)(float* panels, const BucketView& m, std::size_t loaded_units, std::size_t bucket0,
                       std::size_t buckets, std::size_t col0, std::size_t k_len);
  // out[i] = float(src[i]) for a row of a weight matrix, indexed by DType.
  void (*to_float[kNumDTypes])(float* out, const void* src, std::size_t n);
};

// Arches compiled into this build and supported by this CPU (and OS), best last.
bool arch_supported(Arch arch);
Arch best_arch();
std::string_view arch_name(Arch arch);
// "scalar", "avx2" or "avx512"; throws std::invalid_argument otherwise.
Arch parse_arch(std::string_view name);
// The table for an arch; throws std::invalid_argument when this CPU cannot run it.
const KernelTable& kernel_table(Arch arch);

}  // namespace effort::kernels

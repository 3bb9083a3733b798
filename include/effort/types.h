// types.h: the value types the public API shares with the engine below it: matrix kinds,
// early-exit options and signals, effort statistics. Plain data, no classes that run anything.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace effort {

using Token = std::int32_t;

// The seven projection matrices of a Mistral layer, the ones effort applies to.
enum class MatrixKind { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj };
inline constexpr int kNumMatrixKinds = 7;
// Entries of a .effort file's bucketed matrices: int8 with an fp16 scale per 32 entries, or fp16.
enum class BucketEntries { f16, q8 };

// "q", "k", "v", "o", "gate", "up", "down".
std::string_view matrix_kind_name(MatrixKind kind);
// Accepts the short names above and the HF names ("q_proj", ...); throws effort::Error otherwise.
MatrixKind parse_matrix_kind(std::string_view name);

// Early exit: stop a token's forward pass at a check layer once the output head, applied to the
// normalised hidden state and scored over a small candidate set, is confident enough. Layers
// skipped by an exit still get the token's keys and values, computed from the exit hidden
// state (state propagation), so later tokens attend over complete caches.
struct EarlyExitOptions {
  bool enabled = false;
  // 0-based layers after which to check; empty: three in the second half, never the last two.
  std::vector<int> check_layers;
  // Confidence 1 - exp(-(z1 - z2)) of the top-2 candidate logits needed to exit, in [0, 1];
  // 1 never exits. Calibrated per layer by effort-eval --calibrate (layer_thresholds overrides).
  float threshold = 0.9f;
  std::vector<std::pair<int, float>> layer_thresholds;
  int patience = 2;          // the top token must agree at this many consecutive checks (>= 1)
  int warmup = 16;           // no exits while the session holds fewer tokens than this
  int max_consecutive = 8;   // exits in a row before a full-depth token is forced (>= 1)
  int candidates = 64;       // candidate tokens: the previous token's top ones, plus the current top
  // Checks only when cos(h before, h after the layer) reaches this (0: always check).
  float min_saturation = 0.0f;
  // Calibration: every check records its signal (see ExitSignal) and none exits.
  bool record_signals = false;
};

// What one check saw: after which layer, the top candidate and its confidence, and the token's
// position in the session.
struct ExitSignal {
  int position = 0;
  int layer = 0;
  Token top = 0;
  float confidence = 0;
};

// Multiply-adds of the seven projection kinds since the last reset, for the tokens run at the
// generation effort (prompt tokens are not counted): done by the effort kernels versus what the
// dense product of the full matrices would do.
struct EffortStats {
  double done[kNumMatrixKinds] = {};
  double dense[kNumMatrixKinds] = {};
  double fraction(MatrixKind kind) const;
  double overall() const;  // over all kinds
  // Seconds per stage of the same tokens: choosing units (cutoff and dispatch), multiplying
  // (every projection, dense or bucketed), attention (RoPE, KV write, scores, softmax, sum) and
  // the output head. What a token takes beyond their sum is the rest: embedding, norms,
  // residual adds, SwiGLU, exit checks, and the caller's sampling.
  double dispatch_seconds = 0, multiply_seconds = 0, attention_seconds = 0, head_seconds = 0;
  // Bytes of weights the same tokens' products read: the projections' (for a bucketed matrix
  // the units listed, with their scales, every unit's stat and the probes) and the head's. Per
  // token, against the machine's read bandwidth, it says how near the memory roof a token runs.
  double projection_bytes = 0, head_bytes = 0;
  // Mixture of experts: how often each expert was chosen, over layers and tokens (empty otherwise).
  std::vector<double> expert_uses;
};

// Sees the input vector of every projection as the model runs (layer, matrix kind, input).
using ActivationObserver = std::function<void(int layer, MatrixKind kind, std::span<const float> input)>;

}  // namespace effort

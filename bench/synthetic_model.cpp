// effort-synthetic-model: writes a Mistral-7B-shaped GGUF (F16) with random weights, for speed
// work without downloads, or a tiny one for tests and fuzzing seeds. Both effort-convert and
// llama.cpp load it. Its text is meaningless.
#include <cmath>
#include <cstdio>
#include <array>
#include <cstring>
#include <filesystem>
#include <string>

#include "bench_util.h"
#include "cli.h"
#include "formats/gguf.h"
#include "kernels/fp16.h"

namespace {

using namespace effort;

constexpr const char* kUsage = R"(usage: effort-synthetic-model -o OUT.gguf [options]
  -o PATH        the GGUF file to write (F16 weights)
  --layers N     decoder layers (default 32, as Mistral-7B; 2 with --tiny)
  --tiny         hidden 32, FFN 64, 4 heads, 2 KV heads, head_dim 8, vocab 300 (70 KB), for
                 tests and fuzzing seeds
  --seed S       random seed (default 1)
  --force        replace PATH if it exists
  --experts N    a mixture of experts (llama.cpp's Mixtral tensors): N SwiGLU experts per layer
                 of the FFN width (with the default shape: Mixtral-8x7B's layers at N = 8)
  --experts-per-token K  experts a token uses (default 2)
  --lora-rank R  write a LoRA adapter for that model instead (llama.cpp's GGUF form, F16,
                 alpha 2R, every projection of every layer): to time adapters
Mistral-7B-v0.2 hyper-parameters: hidden 4096, FFN 14336, 32 heads, 8 KV heads, head_dim 128,
vocab 32000, rope theta 1e6. Weights are random with per-matrix and per-layer scales like a
trained model's and heavy tails; the model generates meaningless text, and says so in its name.
)";

struct Random {
  std::uint64_t state;
  std::uint64_t next() { return bench::splitmix64(state); }
  // Approximately standard normal (Irwin-Hall of 4 uniforms), with a heavy tail: one value in
  // 64 is scaled up 4x, as outlier weights are in trained models.
  float normal() {
    const std::uint64_t r = next();
    float sum = 0;
    for (int i = 0; i < 4; ++i) sum += float((r >> (16 * i)) & 0xFFFF) / 65535.0f;
    const float z = (sum - 2.0f) * 1.7320508f;
    return (r & 0x3F00000000000000ull) == 0 ? 4.0f * z : z;
  }
};

std::vector<std::uint8_t> f16_tensor(std::size_t n, float scale, Random& rng) {
  std::vector<std::uint8_t> bytes(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint16_t h = kernels::float_to_half(scale * rng.normal());
    std::memcpy(bytes.data() + 2 * i, &h, 2);
  }
  return bytes;
}

struct Shape {
  std::uint64_t hidden, ffn, heads, kv_heads, head_dim, vocab;
  int layers;
  const char* name;
};
constexpr Shape kMistral7B{4096, 14336, 32, 8, 128, 32000, 32, "synthetic-mistral-7b-shape"};
constexpr Shape kTiny{32, 64, 4, 2, 8, 300, 2, "synthetic-tiny"};

int run(int argc, char** argv) {
  std::string output;
  Shape shape = kMistral7B;
  int layers = 0;
  int lora_rank = 0;
  int experts = 0, experts_per_token = 2;
  std::uint64_t seed = 1;
  bool force = false;
  cli::ArgReader args(argc, argv, kUsage);
  while (!args.done()) {
    const std::string f = args.next_flag();
    if (f == "-o") output = args.value();
    else if (f == "--layers") layers = int(cli::parse_int(f, args.value(), 1, 256));
    else if (f == "--seed") seed = cli::parse_u64(f, args.value());
    else if (f == "--force") force = true;
    else if (f == "--tiny") shape = kTiny;
    else if (f == "--experts") experts = int(cli::parse_int(f, args.value(), 1, 256));
    else if (f == "--experts-per-token") experts_per_token = int(cli::parse_int(f, args.value(), 1, 256));
    else if (f == "--lora-rank") lora_rank = int(cli::parse_int(f, args.value(), 1, 4096));
    else throw cli::UsageError("unknown option '" + f + "' (see --help)");
  }
  if (output.empty()) throw cli::UsageError("missing -o OUT.gguf");
  if (experts && experts_per_token > experts)
    throw cli::UsageError("--experts-per-token " + std::to_string(experts_per_token) + " exceeds --experts " + std::to_string(experts));
  if (std::filesystem::exists(output) && !force) throw cli::UsageError(output + " exists (use --force to replace it)");

  if (!layers) layers = shape.layers;
  const std::uint64_t hidden = shape.hidden, ffn = shape.ffn, heads = shape.heads, kv_heads = shape.kv_heads,
                      head_dim = shape.head_dim, vocab = shape.vocab;
  auto rng = std::make_shared<Random>(Random{seed});
  GgufWriter gguf;
  gguf.add_metadata("general.architecture", "llama");
  if (lora_rank) {
    const std::uint64_t r = std::uint64_t(lora_rank);
    gguf.add_metadata("general.type", "adapter");
    gguf.add_metadata("adapter.type", "lora");
    gguf.add_metadata("adapter.lora.alpha", 2.0f * float(lora_rank));
    const std::pair<const char*, std::array<std::uint64_t, 2>> projections[] = {
        {"attn_q", {heads * head_dim, hidden}}, {"attn_k", {kv_heads * head_dim, hidden}},
        {"attn_v", {kv_heads * head_dim, hidden}}, {"attn_output", {hidden, heads * head_dim}},
        {"ffn_gate", {ffn, hidden}}, {"ffn_up", {ffn, hidden}}, {"ffn_down", {hidden, ffn}}};
    for (int l = 0; l < layers; ++l)
      for (const auto& [name, shape] : projections) {
        const std::string p = "blk." + std::to_string(l) + "." + name + ".weight.lora_";
        const std::uint64_t out = shape[0], in = shape[1];
        gguf.add_tensor(p + "a", GgufType::f16, {in, r}, [=] { return f16_tensor(in * r, 0.02f, *rng); });
        gguf.add_tensor(p + "b", GgufType::f16, {r, out}, [=] { return f16_tensor(out * r, 0.02f, *rng); });
      }
    gguf.write(output);
    std::fprintf(stderr, "wrote %s: a rank-%d adapter, %d layers, %.1f MB\n", output.c_str(), lora_rank, layers,
                 double(std::filesystem::file_size(output)) / 1e6);
    return 0;
  }
  gguf.add_metadata("general.name", std::string(shape.name) +
                                        (experts ? "-moe" + std::to_string(experts) + "x" + std::to_string(experts_per_token) : "") +
                                        " (random weights, meaningless text)");
  gguf.add_metadata("general.file_type", 1);  // mostly F16
  gguf.add_metadata("llama.context_length", 32768);
  gguf.add_metadata("llama.embedding_length", hidden);
  gguf.add_metadata("llama.block_count", layers);
  gguf.add_metadata("llama.feed_forward_length", ffn);
  gguf.add_metadata("llama.attention.head_count", heads);
  gguf.add_metadata("llama.attention.head_count_kv", kv_heads);
  gguf.add_metadata("llama.rope.dimension_count", head_dim);
  gguf.add_metadata("llama.rope.freq_base", 1000000.0f);
  gguf.add_metadata("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  if (experts) {
    gguf.add_metadata("llama.expert_count", experts);
    gguf.add_metadata("llama.expert_used_count", experts_per_token);
  }
  // A SentencePiece-style vocabulary: specials, the 256 byte pieces, then made-up words.
  nlohmann::json tokens = {"<unk>", "<s>", "</s>"}, scores = {0.0f, 0.0f, 0.0f}, types = {2, 3, 3};
  char piece[16];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(piece, sizeof piece, "<0x%02X>", b);
    tokens.push_back(piece);
    scores.push_back(0.0f);
    types.push_back(6);
  }
  for (std::uint64_t i = tokens.size(); i < vocab; ++i) {
    tokens.push_back("\xE2\x96\x81w" + std::to_string(i));
    scores.push_back(-float(i));
    types.push_back(1);
  }
  gguf.add_llama_vocabulary({.tokens = tokens, .scores = scores, .types = types, .bos = 1, .eos = 2, .unk = 0});

  auto matrix = [&](const std::string& name, std::uint64_t rows, std::uint64_t cols, float scale) {
    gguf.add_tensor(name, GgufType::f16, {cols, rows}, [=] { return f16_tensor(rows * cols, scale, *rng); });
  };
  // Norm weights in F32, as llama.cpp's converter keeps every 1-D tensor (its CPU backend adds
  // no F16 vector to an F32 one).
  auto norm = [&](const std::string& name, float scale, float mean) {
    gguf.add_tensor(name, GgufType::f32, {hidden}, [=] {
      std::vector<std::uint8_t> bytes(hidden * 4);
      for (std::uint64_t i = 0; i < hidden; ++i) {
        const float v = mean + scale * rng->normal();
        std::memcpy(bytes.data() + 4 * i, &v, 4);
      }
      return bytes;
    });
  };
  // Scales seen in trained Mistral-style models: ~0.02 for projections out of the residual
  // stream, smaller for the ones back into it, growing a little with depth.
  matrix("token_embd.weight", vocab, hidden, 0.004f);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const float depth = 0.8f + 0.4f * float(l) / float(layers);
    norm(p + "attn_norm.weight", 0.05f, 0.4f * depth);
    matrix(p + "attn_q.weight", heads * head_dim, hidden, 0.02f * depth);
    matrix(p + "attn_k.weight", kv_heads * head_dim, hidden, 0.02f * depth);
    matrix(p + "attn_v.weight", kv_heads * head_dim, hidden, 0.01f * depth);
    matrix(p + "attn_output.weight", hidden, heads * head_dim, 0.01f * depth);
    norm(p + "ffn_norm.weight", 0.05f, 0.4f * depth);
    if (experts) {
      const std::uint64_t E = std::uint64_t(experts);
      gguf.add_tensor(p + "ffn_gate_inp.weight", GgufType::f32, {hidden, E}, [=] {
        std::vector<std::uint8_t> bytes(hidden * E * 4);
        for (std::uint64_t i = 0; i < hidden * E; ++i) {
          const float v = 0.02f * rng->normal();
          std::memcpy(bytes.data() + 4 * i, &v, 4);
        }
        return bytes;
      });
      gguf.add_tensor(p + "ffn_gate_exps.weight", GgufType::f16, {hidden, ffn, E}, [=] { return f16_tensor(hidden * ffn * E, 0.02f * depth, *rng); });
      gguf.add_tensor(p + "ffn_up_exps.weight", GgufType::f16, {hidden, ffn, E}, [=] { return f16_tensor(hidden * ffn * E, 0.015f * depth, *rng); });
      gguf.add_tensor(p + "ffn_down_exps.weight", GgufType::f16, {ffn, hidden, E}, [=] { return f16_tensor(hidden * ffn * E, 0.01f * depth, *rng); });
    } else {
      matrix(p + "ffn_gate.weight", ffn, hidden, 0.02f * depth);
      matrix(p + "ffn_up.weight", ffn, hidden, 0.015f * depth);
      matrix(p + "ffn_down.weight", hidden, ffn, 0.01f * depth);
    }
  }
  norm("output_norm.weight", 0.1f, 2.0f);
  matrix("output.weight", vocab, hidden, 0.01f);
  gguf.write(output);
  std::fprintf(stderr, "wrote %s: %d layers, %.1f MB\n", output.c_str(), layers, double(std::filesystem::file_size(output)) / 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return effort::cli::run_tool("effort-synthetic-model", argc, argv, run); }

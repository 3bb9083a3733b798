// lora_fixture.h: random LoRA adapters for the fixture model, written as PEFT folders and
// llama.cpp GGUF files, and the fixture with one merged in (the tests' reference).
#pragma once
#include <array>
#include <cstring>
#include <functional>
#include <random>

#include "formats/gguf.h"
#include "formats/gguf_source.h"
#include "formats/safetensors.h"
#include "model/weights.h"
#include "test_util.h"

namespace test {

using effort::MatrixKind;
using effort::kNumMatrixKinds;

constexpr const char* kModules[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
constexpr const char* kPeftNames[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

// A random adapter: pairs[layer][kind] (empty vectors: not adapted).
struct RandomAdapter {
  int rank = 4;
  float alpha = 8;
  std::vector<std::array<std::pair<std::vector<float>, std::vector<float>>, kNumMatrixKinds>> pairs;  // A [r, in], B [out, r]

  RandomAdapter(const effort::ModelConfig& c, std::uint32_t seed, const std::function<bool(int, MatrixKind)>& adapts,
                int rank_ = 4) : rank(rank_), pairs(std::size_t(c.num_hidden_layers)) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 0.05f);
    for (int l = 0; l < c.num_hidden_layers; ++l)
      for (int k = 0; k < kNumMatrixKinds; ++k) {
        if (!adapts(l, MatrixKind(k))) continue;
        const auto [out, in] = effort::projection_shape(c, MatrixKind(k));
        auto& [a, b] = pairs[std::size_t(l)][std::size_t(k)];
        a.resize(std::size_t(rank * in));
        b.resize(std::size_t(out * rank));
        for (float& v : a) v = d(rng);
        for (float& v : b) v = d(rng);
      }
  }

  std::vector<std::string> targets() const {
    std::vector<std::string> t;
    for (int k = 0; k < kNumMatrixKinds; ++k)
      for (const auto& layer : pairs)
        if (!layer[std::size_t(k)].first.empty()) {
          t.push_back(kPeftNames[k]);
          break;
        }
    return t;
  }

  void write_peft(const std::filesystem::path& dir, const std::function<void(nlohmann::json&)>& edit = {}) const {
    std::filesystem::create_directories(dir);
    nlohmann::json config = {{"peft_type", "LORA"}, {"r", rank}, {"lora_alpha", alpha}, {"target_modules", targets()},
                             {"lora_dropout", 0.0}, {"bias", "none"}, {"base_model_name_or_path", "stories260K"}};
    if (edit) edit(config);
    write_text(dir / "adapter_config.json", config.dump(1));
    std::map<std::string, RawTensor> tensors;
    for (std::size_t l = 0; l < pairs.size(); ++l)
      for (int k = 0; k < kNumMatrixKinds; ++k) {
        const auto& [a, b] = pairs[l][std::size_t(k)];
        if (a.empty()) continue;
        const std::string p = "base_model.model.model.layers." + std::to_string(l) + "." + kModules[k] + ".";
        tensors[p + "lora_A.weight"] = f32_tensor({rank, std::int64_t(a.size()) / rank}, a);
        tensors[p + "lora_B.weight"] = f32_tensor({std::int64_t(b.size()) / rank, rank}, b);
      }
    write_safetensors(dir / "adapter_model.safetensors", tensors);
  }

  // llama.cpp's form: lora_a dims {in, r}, lora_b dims {r, out} with q/k rows interleaved.
  void write_gguf(const std::filesystem::path& path, const effort::ModelConfig& c, bool with_alpha = true) const {
    effort::GgufWriter gguf;
    gguf.add_metadata("general.architecture", "llama");
    gguf.add_metadata("general.type", "adapter");
    gguf.add_metadata("adapter.type", "lora");
    if (with_alpha) gguf.add_metadata("adapter.lora.alpha", alpha);
    auto bytes = [](const std::vector<float>& v) {
      std::vector<std::uint8_t> b(v.size() * 4);
      std::memcpy(b.data(), v.data(), b.size());
      return b;
    };
    for (std::size_t l = 0; l < pairs.size(); ++l)
      for (int k = 0; k < kNumMatrixKinds; ++k) {
        const auto& [a, b] = pairs[l][std::size_t(k)];
        if (a.empty()) continue;
        const auto [out, in] = effort::projection_shape(c, MatrixKind(k));
        std::vector<float> rows = b;
        if (k <= 1)
          rows = effort::interleave_rotary_rows(b, std::size_t(k == 0 ? c.num_attention_heads : c.num_key_value_heads),
                                        std::size_t(c.head_dim), std::size_t(rank));
        const std::string name = effort::gguf_tensor_name(effort::projection_name(int(l), MatrixKind(k)));
        gguf.add_tensor(name + ".lora_a", effort::GgufType::f32, {std::uint64_t(in), std::uint64_t(rank)}, bytes(a));
        gguf.add_tensor(name + ".lora_b", effort::GgufType::f32, {std::uint64_t(rank), std::uint64_t(out)}, bytes(rows));
      }
    gguf.write(path);
  }

  // The fixture with W + scale * alpha / r * B A, summed in double and rounded once.
  void write_merged(const std::filesystem::path& dir, const effort::ModelConfig& c, float scale) const {
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(fixture_model() / "config.json", dir / "config.json");
    std::filesystem::copy_file(fixture_model() / "tokenizer.model", dir / "tokenizer.model");
    const effort::SafetensorsFile base(fixture_model() / "model.safetensors");
    std::map<std::string, RawTensor> tensors;
    const double s = double(scale) * alpha / rank;
    for (const auto& [name, view] : base.tensors()) {
      std::vector<float> w = view.to_floats();
      for (std::size_t l = 0; l < pairs.size(); ++l)
        for (int k = 0; k < kNumMatrixKinds; ++k) {
          const auto& [a, b] = pairs[l][std::size_t(k)];
          if (a.empty() || name != effort::projection_name(int(l), MatrixKind(k))) continue;
          const auto [out, in] = effort::projection_shape(c, MatrixKind(k));
          for (std::int64_t o = 0; o < out; ++o)
            for (std::int64_t i = 0; i < in; ++i) {
              double delta = 0;
              for (int r = 0; r < rank; ++r) delta += double(b[std::size_t(o * rank + r)]) * double(a[std::size_t(r * in + i)]);
              float& x = w[std::size_t(o * in + i)];
              x = float(double(x) + s * delta);
            }
        }
      tensors[name] = f32_tensor(view.shape, w);
    }
    write_safetensors(dir / "model.safetensors", tensors);
  }
};

}  // namespace test

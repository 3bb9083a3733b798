// lora.cpp: LoRA adapters from PEFT folders and llama.cpp GGUF files, applied and merged.
#include "model/lora.h"

#include <cmath>
#include <fstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "effort/error.h"
#include "formats/gguf.h"
#include "formats/gguf_source.h"
#include "formats/safetensors.h"
#include "model/weights.h"

namespace effort {

using nlohmann::json;

namespace {

// PEFT's module names, in MatrixKind order.
constexpr const char* kModules[kNumMatrixKinds] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::optional<MatrixKind> module_kind(const std::string& name) {
  for (int k = 0; k < kNumMatrixKinds; ++k)
    if (name == kModules[k]) return MatrixKind(k);
  return std::nullopt;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Collects pairs and checks them against the base model as tensors arrive.
class PairTable {
 public:
  PairTable(const std::filesystem::path& path, const ModelConfig& config) : path_(path), config_(config) {
    adapter_.layers.resize(std::size_t(config.num_hidden_layers));
    pending_.resize(std::size_t(config.num_hidden_layers));
  }

  [[noreturn]] void fail(ErrorCode code, const std::string& what) const {
    throw Error(code, "[lora] " + path_.string() + ": " + what);
  }

  // shape: A as [rank, in], B as [out, rank], in the file's terms.
  void add(const std::string& tensor, long long layer, MatrixKind kind, bool is_a, std::vector<std::int64_t> shape,
           std::vector<float> values) {
    if (layer < 0 || layer >= config_.num_hidden_layers)
      fail(ErrorCode::format, "base mismatch: tensor " + tensor + " is for layer " + std::to_string(layer) +
                                  ", the model has " + std::to_string(config_.num_hidden_layers) + " layers");
    if (config_.num_local_experts && int(kind) >= int(MatrixKind::gate_proj))
      fail(ErrorCode::unsupported, "tensor " + tensor + " adapts the MLP, which this mixture-of-experts model has per expert");
    const auto [out, in] = projection_shape(config_, kind);
    const std::int64_t rank = is_a ? shape[0] : shape[1];
    const std::vector<std::int64_t> expected = is_a ? std::vector<std::int64_t>{rank, in} : std::vector<std::int64_t>{out, rank};
    if (shape.size() != 2 || rank <= 0 || shape != expected)
      fail(ErrorCode::format, "base mismatch: tensor " + tensor + " has shape " + shape_text(shape) + ", the model's " +
                                  kModules[int(kind)] + " needs " + (is_a ? "[rank, " + std::to_string(in) + "]" : "[" + std::to_string(out) + ", rank]"));
    Slot& slot = pending_[std::size_t(layer)][int(kind)];
    auto& half = is_a ? slot.a : slot.b;
    if (!half.empty()) fail(ErrorCode::format, "tensor " + tensor + " appears twice");
    half = std::move(values);
    (is_a ? slot.rank_a : slot.rank_b) = std::size_t(rank);
    (is_a ? slot.name_a : slot.name_b) = tensor;
  }

  // Pairs every A with its B; scaling(rank) gives the pair's alpha / rank.
  LoraAdapter finish(const std::function<float(std::size_t rank)>& scaling) {
    for (std::size_t l = 0; l < pending_.size(); ++l)
      for (int k = 0; k < kNumMatrixKinds; ++k) {
        Slot& slot = pending_[l][k];
        if (slot.a.empty() && slot.b.empty()) continue;
        if (slot.a.empty() || slot.b.empty())
          fail(ErrorCode::format, "tensor " + (slot.a.empty() ? slot.name_b : slot.name_a) + " has no " +
                                      (slot.a.empty() ? "A" : "B") + " partner");
        if (slot.rank_a != slot.rank_b)
          fail(ErrorCode::format, "rank mismatch: " + slot.name_a + " has rank " + std::to_string(slot.rank_a) + ", " +
                                      slot.name_b + " has rank " + std::to_string(slot.rank_b));
        adapter_.layers[l][k] = LoraPair{slot.rank_a, scaling(slot.rank_a), std::move(slot.a), std::move(slot.b)};
        adapter_.rank = std::max(adapter_.rank, slot.rank_a);
      }
    if (!adapter_.rank) fail(ErrorCode::format, "no LoRA tensors");
    return std::move(adapter_);
  }

 private:
  struct Slot {
    std::vector<float> a, b;
    std::size_t rank_a = 0, rank_b = 0;
    std::string name_a, name_b;
  };
  std::filesystem::path path_;
  const ModelConfig& config_;
  LoraAdapter adapter_;
  std::vector<std::array<Slot, kNumMatrixKinds>> pending_;
};

// A layer index: digits only, at most six of them; -1 otherwise.
long long layer_index(std::string_view digits) {
  if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string_view::npos) return -1;
  return std::stoll(std::string(digits));
}

struct PeftName {
  long long layer;
  std::string module;
  bool is_a;
};

// "...layers.N.(self_attn|mlp).MODULE.lora_(A|B)[.default].weight".
std::optional<PeftName> parse_peft_name(const std::string& tensor) {
  const std::size_t at = tensor.rfind("layers.");
  if (at == std::string::npos || (at > 0 && tensor[at - 1] != '.')) return std::nullopt;
  std::string_view rest = std::string_view(tensor).substr(at + 7);
  const std::size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const long long layer = layer_index(rest.substr(0, dot));
  rest.remove_prefix(dot + 1);
  for (std::string_view part : {"self_attn.", "mlp."})
    if (rest.substr(0, part.size()) == part) rest.remove_prefix(part.size());
  const std::size_t end = rest.find('.');
  if (end == std::string_view::npos || layer < 0) return std::nullopt;
  const std::string module(rest.substr(0, end));
  rest.remove_prefix(end + 1);
  for (const char* ab : {"A", "B"})
    for (const char* suffix : {".weight", ".default.weight"})
      if (rest == std::string("lora_") + ab + suffix) return PeftName{layer, module, *ab == 'A'};
  return std::nullopt;
}

// PEFT: adapter_config.json beside adapter_model.safetensors; tensors named
// base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ([r, in]) and lora_B ([out, r]).
LoraAdapter load_peft(const std::filesystem::path& path, const ModelConfig& config) {
  const bool folder = std::filesystem::is_directory(path);
  const auto dir = folder ? path : path.parent_path();
  const auto weights = folder ? dir / "adapter_model.safetensors" : path;
  PairTable table(path, config);
  if (!std::filesystem::exists(weights))
    table.fail(ErrorCode::io, std::filesystem::exists(dir / "adapter_model.bin")
                                  ? "adapter_model.bin (a pickle) is not read: save the adapter as safetensors"
                                  : "no adapter_model.safetensors");
  json c;
  {
    std::ifstream in(dir / "adapter_config.json");
    if (!in) table.fail(ErrorCode::io, "no adapter_config.json beside the weights");
    try {
      c = json::parse(in);
    } catch (const json::exception& e) {
      table.fail(ErrorCode::format, std::string("adapter_config.json is not valid JSON: ") + e.what());
    }
  }
  if (!c.is_object()) table.fail(ErrorCode::format, "adapter_config.json must hold an object");
  if (c.contains("peft_type") && c["peft_type"] != "LORA")
    table.fail(ErrorCode::unsupported, "peft_type " + c["peft_type"].dump() + " (expected \"LORA\")");
  if (!c.contains("lora_alpha") || !c["lora_alpha"].is_number()) table.fail(ErrorCode::format, "adapter_config.json has no lora_alpha");
  if (!c.contains("r") || !c["r"].is_number_integer() || c["r"].get<long long>() <= 0)
    table.fail(ErrorCode::format, "adapter_config.json has no positive integer r");
  if (c.value("fan_in_fan_out", false)) table.fail(ErrorCode::unsupported, "fan_in_fan_out adapters (GPT-2 style) are not supported");
  for (const char* pattern : {"rank_pattern", "alpha_pattern"})
    if (c.contains(pattern) && !c[pattern].is_null() && !c[pattern].empty())
      table.fail(ErrorCode::unsupported, std::string(pattern) + " (per-module ranks or alphas) is not supported");
  std::array<bool, kNumMatrixKinds> targeted{};
  const json& targets = c.contains("target_modules") ? c["target_modules"] : json();
  if (targets == "all-linear") {
    targeted.fill(true);
  } else if (targets.is_array() && !targets.empty()) {
    for (const json& t : targets) {
      const auto kind = t.is_string() ? module_kind(t.get<std::string>()) : std::nullopt;
      if (!kind)
        table.fail(ErrorCode::unsupported, "unknown target module " + t.dump() +
                                              " (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
      targeted[int(*kind)] = true;
    }
  } else {
    table.fail(ErrorCode::format, "adapter_config.json's target_modules must be a list of module names or \"all-linear\"");
  }
  const float alpha = c["lora_alpha"].get<float>();
  const std::size_t r = c["r"].get<std::size_t>();
  const bool rslora = c.value("use_rslora", false);

  const SafetensorsFile file(weights);
  for (const auto& [tensor, view] : file.tensors()) {
    const auto name = parse_peft_name(tensor);
    if (!name) table.fail(ErrorCode::format, "tensor " + tensor + " is not the lora_A or lora_B of a decoder projection");
    const auto kind = module_kind(name->module);
    if (!kind) table.fail(ErrorCode::unsupported, "tensor " + tensor + ": unknown target module '" + name->module + "'");
    if (!targeted[int(*kind)])
      table.fail(ErrorCode::format, "tensor " + tensor + " adapts " + name->module + ", which target_modules does not list");
    if (view.shape.size() == 2 && view.shape[name->is_a ? 0 : 1] != std::int64_t(r))
      table.fail(ErrorCode::format, "rank mismatch: tensor " + tensor + " has shape " + shape_text(view.shape) +
                                        ", adapter_config.json says r = " + std::to_string(r));
    table.add(tensor, name->layer, *kind, name->is_a, view.shape, view.to_floats());
  }
  LoraAdapter adapter = table.finish([&](std::size_t rank) { return rslora ? alpha / std::sqrt(float(rank)) : alpha / float(rank); });
  adapter.name = (folder ? path : dir).filename().string();
  adapter.format = "peft";
  adapter.alpha = alpha;
  return adapter;
}

// llama.cpp: general.type "adapter", adapter.lora.alpha; blk.N.attn_q.weight.lora_a (dims
// {in, r}) and .lora_b (dims {r, out}, q/k rows in llama.cpp's rotary order).
LoraAdapter load_gguf(const std::filesystem::path& path, const ModelConfig& config) {
  const GgufFile file(path);
  PairTable table(path, config);
  const json& type = file.metadata("general.type");
  if (type != "adapter")
    table.fail(ErrorCode::format, "general.type is " + (type.is_null() ? std::string("missing") : type.dump()) +
                                      ": not an adapter (expected \"adapter\")");
  if (const json& kind = file.metadata("adapter.type"); !kind.is_null() && kind != "lora")
    table.fail(ErrorCode::unsupported, "adapter.type " + kind.dump() + " (expected \"lora\")");
  const json& arch = file.metadata("general.architecture");
  if (arch != "llama" && arch != "mistral")
    table.fail(ErrorCode::unsupported, "general.architecture " + arch.dump() + " (expected \"llama\")");
  const json& alpha = file.metadata("adapter.lora.alpha");
  if (!alpha.is_number()) table.fail(ErrorCode::format, "no adapter.lora.alpha");

  std::map<std::string, std::pair<int, MatrixKind>> names;  // GGUF projection name -> (layer, kind)
  for (int l = 0; l < config.num_hidden_layers; ++l)
    for (int k = 0; k < kNumMatrixKinds; ++k) names[gguf_tensor_name(projection_name(l, MatrixKind(k)))] = {l, MatrixKind(k)};
  for (const auto& [tensor, t] : file.tensors()) {
    // blk.N.<projection>.weight.lora_a or .lora_b
    const std::size_t cut = tensor.rfind(".lora_");
    const std::string projection = cut == std::string::npos ? "" : tensor.substr(0, cut), ab = cut == std::string::npos ? "" : tensor.substr(cut + 6);
    if (projection.rfind("blk.", 0) != 0 || (ab != "a" && ab != "b"))
      table.fail(ErrorCode::format, "tensor " + tensor + " is not the lora_a or lora_b of a decoder projection");
    const auto it = names.find(projection);
    if (it == names.end()) {
      const std::string digits = projection.substr(4, projection.find('.', 4) - 4);
      if (const long long layer = layer_index(digits); layer >= config.num_hidden_layers)
        table.fail(ErrorCode::format, "base mismatch: tensor " + tensor + " is for layer " + digits + ", the model has " +
                                          std::to_string(config.num_hidden_layers) + " layers");
      table.fail(ErrorCode::unsupported, "tensor " + tensor + ": unknown target module");
    }
    const auto [layer, kind] = it->second;
    if (t.dims.size() != 2) table.fail(ErrorCode::format, "tensor " + tensor + " has " + std::to_string(t.dims.size()) + " dimensions");
    const std::vector<std::int64_t> shape = {std::int64_t(t.dims[1]), std::int64_t(t.dims[0])};
    std::vector<float> values = gguf_floats(t);
    const bool is_a = ab == "a";
    if (!is_a && (kind == MatrixKind::q_proj || kind == MatrixKind::k_proj) && shape == std::vector<std::int64_t>{projection_shape(config, kind)[0], shape[1]}) {
      std::vector<float> hf(values.size());
      const int heads = kind == MatrixKind::q_proj ? config.num_attention_heads : config.num_key_value_heads;
      reorder_rotary_rows(reinterpret_cast<const std::uint8_t*>(values.data()), reinterpret_cast<std::uint8_t*>(hf.data()),
                          std::size_t(heads), std::size_t(config.head_dim), std::size_t(shape[1]) * sizeof(float), false);
      values = std::move(hf);
    }
    table.add(tensor, layer, kind, is_a, shape, std::move(values));
  }
  const float a = alpha.get<float>();
  LoraAdapter adapter = table.finish([&](std::size_t rank) { return a / float(rank); });
  adapter.name = path.stem().string();
  adapter.format = "gguf";
  adapter.alpha = a;
  return adapter;
}

}  // namespace

LoraAdapter load_lora(const std::filesystem::path& path, const ModelConfig& config) {
  if (!std::filesystem::exists(path)) throw Error(ErrorCode::io, "[lora] " + path.string() + ": no such file or folder");
  return !std::filesystem::is_directory(path) && is_gguf_file(path) ? load_gguf(path, config) : load_peft(path, config);
}

void apply_lora(std::span<const ActiveLora> adapters, int layer, MatrixKind kind, const float* x, float* y, std::size_t n,
                const Compute& compute) {
  for (const ActiveLora& use : adapters) {
    const auto& pair = use.adapter->layers[std::size_t(layer)][int(kind)];
    if (!pair || use.scale == 0) continue;
    const std::size_t rank = pair->rank, in = pair->a.size() / rank, out = pair->b.size() / rank;
    const DenseMatrix a{kernels::DType::f32, pair->a.data(), rank, in}, b{kernels::DType::f32, pair->b.data(), out, rank};
    const float s = use.scale * pair->scaling;
    // Per calling thread, sized once: this runs for every adapted projection of every token.
    static thread_local std::vector<float> ax, bax;
    ax.resize(rank);
    bax.resize(out);
    for (std::size_t t = 0; t < n; ++t) {
      matvec(a, x + t * in, ax.data(), compute);
      for (float& v : ax) v *= s;
      matvec(b, ax.data(), bax.data(), compute);
      compute.kernels.add(y + t * out, bax.data(), out);
    }
  }
}

void merge_lora(std::vector<float>& w, const LoraAdapter& adapter, int layer, MatrixKind kind, float scale) {
  const auto& pair = adapter.layers[std::size_t(layer)][int(kind)];
  if (!pair) return;
  const std::size_t rank = pair->rank, in = pair->a.size() / rank, out = pair->b.size() / rank;
  const double s = double(scale) * double(pair->scaling);
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t i = 0; i < in; ++i) {
      double delta = 0;
      for (std::size_t r = 0; r < rank; ++r) delta += double(pair->b[o * rank + r]) * double(pair->a[r * in + i]);
      w[o * in + i] = float(double(w[o * in + i]) + s * delta);
    }
}

}  // namespace effort

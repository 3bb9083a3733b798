// hf_source.cpp: a Hugging Face checkpoint folder as a converter source.
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>

#include <nlohmann/json.hpp>

#include "effort/error.h"
#include "formats/safetensors.h"
#include "formats/source_model.h"

namespace effort {

namespace {

class HfSource : public SourceModel {
 public:
  explicit HfSource(const std::filesystem::path& folder)
      : folder_(folder), config_(ModelConfig::from_file(folder / "config.json")), checkpoint_(folder) {}

  const ModelConfig& config() const override { return config_; }
  std::string format() const override { return "hf"; }

  std::optional<std::string> tokenizer_model() const override {
    std::ifstream in(folder_ / "tokenizer.model", std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
  }

  // tokenizer_config.json's "chat_template": a string, or a list of {name, template} whose
  // "default" one is used.
  std::string chat_template() const override {
    std::ifstream in(folder_ / "tokenizer_config.json");
    if (!in) return "";
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("chat_template")) return "";
    const auto& t = j["chat_template"];
    if (t.is_string()) return t.get<std::string>();
    if (t.is_array())
      for (const auto& item : t)
        if (item.is_object() && item.value("name", "") == "default" && item.contains("template") && item["template"].is_string())
          return item["template"].get<std::string>();
    return "";
  }

  std::vector<float> floats(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    return checkpoint_.get(name, shape).to_floats();
  }

  // Kernels read weights as typed arrays, so a tensor at an offset that is not a multiple of its
  // element size (legal in safetensors) is copied once into aligned memory.
  DenseBytes dense(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    const TensorView& t = checkpoint_.get(name, shape);
    DenseBytes out{t.dtype(), t.data, t.num_bytes, nullptr};  // dtype() throws for the unreadable ones
    if (reinterpret_cast<std::uintptr_t>(t.data) % kernels::dtype_bytes(out.dtype, 1) != 0) {
      auto copy = aligned_bytes(t.num_bytes);
      std::memcpy(copy.get(), t.data, t.num_bytes);
      out.data = copy.get();
      out.copy = std::move(copy);
    }
    return out;
  }

 private:
  std::filesystem::path folder_;
  ModelConfig config_;
  Checkpoint checkpoint_;
};

}  // namespace

std::unique_ptr<SourceModel> open_hf_source(const std::filesystem::path& folder) {
  return std::make_unique<HfSource>(folder);
}

std::shared_ptr<std::uint8_t[]> aligned_bytes(std::size_t n) {
  return std::shared_ptr<std::uint8_t[]>(new (std::align_val_t(64)) std::uint8_t[n],
                                         [](std::uint8_t* p) { operator delete[](p, std::align_val_t(64)); });
}

}  // namespace effort

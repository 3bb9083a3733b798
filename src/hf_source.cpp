// hf_source.cpp: a Hugging Face checkpoint folder as a converter source.
#include <fstream>
#include <sstream>

#include "effort/error.h"
#include "safetensors.h"
#include "source_model.h"

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

  std::vector<float> floats(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    return checkpoint_.get(name, shape).to_floats();
  }

  DenseBytes dense(const std::string& name, const std::vector<std::int64_t>& shape) const override {
    const TensorView& t = checkpoint_.get(name, shape);
    t.dtype();  // throws for dtypes the runtime cannot read
    return DenseBytes{t.dtype_name, std::vector<std::uint8_t>(t.data, t.data + t.num_bytes)};
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

}  // namespace effort

// model.cpp: Model::load: picks the loader for the path, owns config, weights and tokenizer.
#include <optional>

#include "effort/effort.h"
#include "hf_checkpoint.h"
#include "model_impl.h"

namespace effort {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::load(const std::filesystem::path& path, const LoadOptions&) {
  if (!std::filesystem::exists(path))
    throw Error(ErrorCode::io, "[load] " + path.string() + ": no such file or folder");
  if (!std::filesystem::is_directory(path))
    throw Error(ErrorCode::invalid_argument,
                "[load] " + path.string() + ": expected a Hugging Face checkpoint folder (config.json + *.safetensors)");
  auto impl = std::make_unique<Impl>();
  impl->config = ModelConfig::from_file(path / "config.json");
  impl->weights = load_hf_weights(path, impl->config);
  const auto tokenizer_path = path / "tokenizer.model";
  if (std::filesystem::exists(tokenizer_path)) {
    impl->tokenizer = Tokenizer::from_file(tokenizer_path);
    if (impl->tokenizer->vocab_size() > impl->config.vocab_size)
      throw Error(ErrorCode::format, "[load] " + tokenizer_path.string() + ": " +
                                         std::to_string(impl->tokenizer->vocab_size()) +
                                         " pieces, more than the model's vocab_size " +
                                         std::to_string(impl->config.vocab_size));
  }
  impl->transformer.emplace(impl->config, impl->weights);
  return Model(std::move(impl));
}

const ModelConfig& Model::config() const { return impl_->config; }
const Tokenizer* Model::tokenizer() const { return impl_->tokenizer ? &*impl_->tokenizer : nullptr; }

}  // namespace effort

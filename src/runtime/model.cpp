// model.cpp: Model::load: picks the loader for the path, owns config, weights and tokenizer.

#include <cmath>
#include <map>

#include "effort/effort.h"
#include "model/effort_checkpoint.h"
#include "formats/effort_file.h"
#include "model/dense_weights.h"
#include "formats/gguf.h"
#include "formats/gguf_source.h"
#include "formats/mapped_file.h"
#include "model/bucketize.h"
#include "runtime/model_impl.h"

namespace effort {

Model::Model(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

namespace {

// Calls place(data, bytes) for what the kernels stream per token: dense matrices (tied
// embeddings once) and the loaded units of bucketed ones. place may move the bytes.
template <class Place>
void for_each_streamed(ModelWeights& w, Place place) {
  std::map<const void*, const void*> placed;
  auto once = [&](const void* data, std::size_t bytes) {
    if (!placed.count(data)) placed[data] = place(data, bytes);
    return placed[data];
  };
  auto dense = [&](DenseMatrix& m) { m.data = once(m.data, m.rows * kernels::dtype_bytes(m.dtype, m.cols)); };
  dense(w.embed_tokens);
  dense(w.lm_head);
  for (auto& layer : w.layers) {
    if (layer.router.data) dense(layer.router);
    for_each_projection(layer, [&](Matrix& m, MatrixKind, int) {
      if (auto* d = std::get_if<DenseMatrix>(&m)) {
        dense(*d);
      } else {
        auto& b = std::get<BucketMatrix>(m);
        b.view.units = once(b.view.units, b.loaded_units * b.view.num_buckets * b.view.entry_bytes());
        if (b.view.scales)
          b.view.scales = static_cast<const std::uint16_t*>(once(b.view.scales, b.loaded_units * b.view.num_blocks() * 2));
      }
    });
  }
}

}  // namespace

Model Model::load(const std::filesystem::path& path, const LoadOptions& options) {
  if (!(options.mem_fraction > 0.0f && options.mem_fraction <= 1.0f))
    throw Error(ErrorCode::invalid_argument,
                "[load] mem_fraction must be in (0, 1], got " + std::to_string(options.mem_fraction));
  if (!std::filesystem::exists(path))
    throw Error(ErrorCode::io, "[load] " + path.string() + ": no such file or folder");
  if (std::filesystem::is_regular_file(path) && std::filesystem::file_size(path) == 0)
    throw Error(ErrorCode::format, "[load] " + path.string() + " is empty (0 bytes)");
  auto impl = std::make_unique<Impl>();
  const bool folder = std::filesystem::is_directory(path), gguf = !folder && is_gguf_file(path);
  if (folder || gguf) {
    if (options.verify)
      throw Error(ErrorCode::invalid_argument, "[load] " + path.string() +
                                                   ": verify needs a .effort file (GGUF and safetensors files carry no checksums)");
    if (options.mem_fraction != 1.0f)
      throw Error(ErrorCode::invalid_argument, "[load] " + path.string() +
                                                   ": mem_fraction below 1 needs a .effort model (convert it with effort-convert)");
    std::shared_ptr<const SourceModel> source = folder ? open_hf_source(path) : open_gguf_source(path);
    impl->config = source->config();
    impl->chat_template = source->chat_template();
    if (auto tokenizer = source->tokenizer_model())
      impl->tokenizer = Tokenizer::from_bytes(std::move(*tokenizer), path.string() + " (tokenizer)");
    impl->weights = load_dense_weights(std::move(source));
  } else if (is_effort_file(path)) {
    auto checkpoint = load_effort_checkpoint(path, options.mem_fraction, options.verify);
    impl->config = std::move(checkpoint.config);
    impl->weights = std::move(checkpoint.weights);
    impl->chat_template = std::move(checkpoint.chat_template);
    if (checkpoint.tokenizer_model)
      impl->tokenizer = Tokenizer::from_bytes(std::move(*checkpoint.tokenizer_model), path.string() + " (tokenizer)");
  } else {
    throw Error(ErrorCode::invalid_argument, "[load] " + path.string() +
                                                 ": expected a .effort file, a GGUF file (F32, F16, BF16 or quantized) or a "
                                                 "Hugging Face checkpoint folder (config.json + *.safetensors)");
  }
  if (impl->tokenizer && impl->tokenizer->vocab_size() > impl->config.vocab_size)
    throw Error(ErrorCode::format, "[load] " + path.string() + ": the tokenizer has " +
                                       std::to_string(impl->tokenizer->vocab_size()) +
                                       " pieces, more than the model's vocab_size " + std::to_string(impl->config.vocab_size));
  // Mapped weights get their page tables filled now (as llama.cpp's MAP_POPULATE, but only for
  // the part in use), not by faults during the first tokens; or they move into process memory.
  for_each_streamed(impl->weights, [&](const void* data, std::size_t bytes) -> const void* {
    if (options.use_mmap) return populate(data, bytes), data;
    auto moved = move_into_memory(data, bytes);
    impl->weights.storage.push_back(moved);
    return moved.get();
  });
  impl->transformer.emplace(impl->config, impl->weights);
  return Model(std::shared_ptr<const Impl>(std::move(impl)));
}

bool Model::bucketed() const { return impl_->bucketed(); }
bool Model::bucketed_head() const { return impl_->weights.head_buckets.has_value(); }

const std::string& Model::chat_template() const { return impl_->chat_template; }
ChatFormat Model::chat_format() const { return detect_chat_format(impl_->chat_template); }

Adapter Model::load_adapter(const std::filesystem::path& path) const {
  return Adapter(std::make_shared<const Adapter::Impl>(Adapter::Impl{load_lora(path, impl_->config), impl_.get()}));
}

Adapter::Adapter(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
const std::string& Adapter::name() const { return impl_->lora.name; }
std::string_view Adapter::format() const { return impl_->lora.format; }
int Adapter::rank() const { return int(impl_->lora.rank); }
float Adapter::alpha() const { return impl_->lora.alpha; }
int Adapter::num_pairs() const {
  int n = 0;
  for (const auto& layer : impl_->lora.layers)
    for (const auto& pair : layer) n += pair.has_value();
  return n;
}

std::string Model::layout() const {
  if (!bucketed()) return "dense";
  const auto& view = std::get<BucketMatrix>(impl_->weights.layers[0].q_proj).view;
  return layout_name(view.bucket_size, view.weights);
}

const ModelConfig& Model::config() const { return impl_->config; }
const Tokenizer* Model::tokenizer() const { return impl_->tokenizer ? &*impl_->tokenizer : nullptr; }

}  // namespace effort

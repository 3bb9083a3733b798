// dense_weights.h: a checkpoint (Hugging Face folder or GGUF file) as ModelWeights that run
// dense, at effort 1.
#pragma once
#include <memory>

#include "formats/source_model.h"
#include "model/weights.h"

namespace effort {

// Every tensor is looked up by its HF name and shape-checked against the source's config.
// Matrices stay memory-mapped where the source stores them as the kernels read them; the rest
// (GGUF q/k rows, Q8_0) are converted copies. The weights keep the source alive.
ModelWeights load_dense_weights(std::shared_ptr<const SourceModel> source);

}  // namespace effort

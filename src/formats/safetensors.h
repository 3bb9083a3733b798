// safetensors.h: reader for Hugging Face safetensors files (single or sharded), memory-mapped.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data; offsets are relative to the end of the header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "formats/mapped_file.h"

namespace effort {

struct TensorView {
  std::string name;
  std::string dtype_name;       // as in the file: "F32", "BF16", ...
  std::vector<std::int64_t> shape;
  const std::uint8_t* data = nullptr;
  std::size_t num_bytes = 0;
  const MappedFile* file = nullptr;

  std::int64_t num_elements() const;
  // The dtype when it is one the kernels read; throws effort::Error (unsupported) otherwise.
  kernels::DType dtype() const;
  // Every element as a float (F32, F16 or BF16; throws like dtype() otherwise).
  std::vector<float> to_floats() const;
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header: offsets inside the file, no overlaps, sizes matching
  // dtype x shape. Throws effort::Error (format) naming the file and the tensor.
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  std::unique_ptr<MappedFile> file_;  // stable address: TensorView::file points at it
  std::map<std::string, TensorView> tensors_;
};

// All tensors of a checkpoint folder: model.safetensors, or the shards named by
// model.safetensors.index.json.
class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& folder);
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws effort::Error naming the tensor when it is missing (or its shape differs).
  const TensorView& get(const std::string& name) const;
  const TensorView& get(const std::string& name, const std::vector<std::int64_t>& shape) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> tensors_;
};

std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace effort

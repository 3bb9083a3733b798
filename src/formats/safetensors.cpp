// safetensors.cpp: header parsing and validation, shard resolution.
#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "effort/error.h"
#include "kernels/fp16.h"
#include "formats/tensor_table.h"

namespace effort {

using nlohmann::json;

std::size_t dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
      {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"U16", 2},
      {"U32", 4}, {"U64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::optional<std::uint64_t> tensor_bytes(const std::string& dtype, std::uint64_t elements, std::uint64_t row) {
  if (dtype == "Q8_0") {
    if (row % kernels::kQ8_0Block != 0) return std::nullopt;
    return kernels::dtype_bytes(kernels::DType::q8_0, elements);
  }
  const std::size_t size = dtype_bytes(dtype);
  if (size == 0) return std::nullopt;
  return elements * size;
}

namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorCode::format, "[safetensors] " + path.string() + ": " + what);
}

}  // namespace

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::int64_t TensorView::num_elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

kernels::DType TensorView::dtype() const {
  if (dtype_name == "F32") return kernels::DType::f32;
  if (dtype_name == "F16") return kernels::DType::f16;
  if (dtype_name == "BF16") return kernels::DType::bf16;
  if (dtype_name == "Q8_0") return kernels::DType::q8_0;
  throw Error(ErrorCode::unsupported, "[load] " + (file ? file->path().string() + ": " : "") +
                                          "tensor " + name + " has dtype " + dtype_name +
                                          "; expected F32, F16, BF16 or Q8_0");
}

std::map<std::string, TensorView> parse_tensor_table(const json& table, const std::uint8_t* data,
                                                     std::uint64_t data_size, const MappedFile* file,
                                                     const std::string& context) {
  auto fail = [&](const std::string& what) -> void { throw Error(ErrorCode::format, context + ": " + what); };
  std::map<std::string, TensorView> tensors;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  std::vector<std::string> range_names;
  for (const auto& [name, info] : table.items()) {
    if (name == "__metadata__") continue;
    auto bad = [&, &name = name](const std::string& what) { fail("tensor " + name + ": " + what); };
    if (!info.is_object() || !info.contains("dtype") || !info["dtype"].is_string() ||
        !info.contains("shape") || !info["shape"].is_array() || !info.contains("data_offsets") ||
        !info["data_offsets"].is_array() || info["data_offsets"].size() != 2)
      bad("expected {\"dtype\": string, \"shape\": [..], \"data_offsets\": [begin, end]}");
    TensorView view;
    view.name = name;
    view.dtype_name = info["dtype"].get<std::string>();
    view.file = file;
    std::uint64_t elements = 1;
    for (const auto& d : info["shape"]) {
      if (!d.is_number_unsigned()) bad("shape must hold non-negative integers");
      const auto dim = d.get<std::uint64_t>();
      if (dim > (std::uint64_t(1) << 40) || (dim && elements > (std::uint64_t(1) << 48) / dim))
        bad("shape " + info["shape"].dump() + " is implausibly large");
      elements *= dim;
      view.shape.push_back(std::int64_t(dim));
    }
    for (const auto& o : info["data_offsets"])
      if (!o.is_number_unsigned()) bad("data_offsets must be non-negative integers");
    const auto begin = info["data_offsets"][0].get<std::uint64_t>();
    const auto end = info["data_offsets"][1].get<std::uint64_t>();
    if (begin > end || end > data_size)
      bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
          "] outside the data section of " + std::to_string(data_size) + " bytes");
    const auto bytes = tensor_bytes(view.dtype_name, elements, view.shape.empty() ? 1 : std::uint64_t(view.shape.back()));
    if (!bytes)
      bad(view.dtype_name == "Q8_0" ? "Q8_0 rows must be a multiple of 32 long" : "unknown dtype " + view.dtype_name);
    if (end - begin != *bytes)
      bad("data_offsets cover " + std::to_string(end - begin) + " bytes, but " + view.dtype_name + " " +
          shape_string(view.shape) + " needs " + std::to_string(*bytes));
    view.data = data + begin;
    view.num_bytes = end - begin;
    if (view.num_bytes) {
      ranges.emplace_back(begin, end);
      range_names.push_back(name);
    }
    tensors.emplace(name, std::move(view));
  }
  std::vector<std::size_t> order(ranges.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return ranges[a] < ranges[b]; });
  for (std::size_t i = 1; i < order.size(); ++i)
    if (ranges[order[i]].first < ranges[order[i - 1]].second)
      fail("tensors " + range_names[order[i - 1]] + " and " + range_names[order[i]] + " overlap in the data section");
  return tensors;
}

std::vector<float> TensorView::to_floats() const {
  std::vector<float> out(static_cast<std::size_t>(num_elements()));
  const auto type = dtype();
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (type == kernels::DType::q8_0) {
      out[i] = kernels::weight_at<kernels::DType::q8_0>(data, i);
    } else if (type == kernels::DType::f32) {
      std::memcpy(&out[i], data + 4 * i, 4);
    } else {
      std::uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      out[i] = type == kernels::DType::f16 ? kernels::half_to_float(h) : kernels::bf16_to_float(h);
    }
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : file_(std::make_unique<MappedFile>(path)) {
  const auto bytes = file_->bytes();
  if (bytes.size() < 8) fail(path, "truncated: " + std::to_string(bytes.size()) +
                                       " bytes, shorter than the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[std::size_t(i)];
  if (header_len > bytes.size() - 8)
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(bytes.size()) + " bytes)");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(header_len));
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  tensors_ = parse_tensor_table(header, bytes.data() + 8 + header_len, bytes.size() - 8 - header_len, file_.get(),
                                "[safetensors] " + path.string());
}

Checkpoint::Checkpoint(const std::filesystem::path& folder) {
  const auto single = folder / "model.safetensors";
  const auto index = folder / "model.safetensors.index.json";
  std::vector<std::filesystem::path> shards;
  if (std::filesystem::exists(index)) {
    std::ifstream in(index);
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      throw Error(ErrorCode::format, "[load] " + index.string() + ": not valid JSON: " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorCode::format, "[load] " + index.string() + ": expected a \"weight_map\" object");
    std::set<std::string> names;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
        throw Error(ErrorCode::format, "[load] " + index.string() + ": weight_map[\"" + tensor +
                                           "\"] must be a file name in the same folder");
      names.insert(file.get<std::string>());
    }
    for (const auto& name : names) shards.push_back(folder / name);
  } else if (std::filesystem::exists(single)) {
    shards.push_back(single);
  } else {
    throw Error(ErrorCode::io, "[load] " + folder.string() +
                                   ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& shard : shards) {
    files_.push_back(std::make_unique<SafetensorsFile>(shard));
    for (const auto& [name, view] : files_.back()->tensors()) {
      if (!tensors_.emplace(name, &view).second)
        throw Error(ErrorCode::format, "[load] " + shard.string() + ": tensor " + name +
                                           " appears in more than one shard");
    }
  }
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(ErrorCode::format, "[load] missing tensor " + name);
  return *it->second;
}

const TensorView& Checkpoint::get(const std::string& name,
                                  const std::vector<std::int64_t>& shape) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw Error(ErrorCode::format, "[load] missing tensor " + name + " (expected shape " +
                                       shape_string(shape) + ")");
  const TensorView& view = *it->second;
  if (view.shape != shape)
    throw Error(ErrorCode::format, "[load] " + view.file->path().string() + ": tensor " + name +
                                       ": expected shape " + shape_string(shape) + ", got " +
                                       shape_string(view.shape));
  return view;
}

}  // namespace effort

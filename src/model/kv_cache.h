// kv_cache.h: per-layer keys and values of the positions a query may attend to. With a sliding
// window W the cache is a ring of W slots: position p lives in slot p % W, and the filled slots
// are exactly the positions in the window (attention does not depend on key order).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace effort {

class KvCache {
 public:
  // capacity: slots per layer; kv_dim: num_key_value_heads * head_dim.
  KvCache(int num_layers, int capacity, int kv_dim)
      : capacity_(capacity), kv_dim_(kv_dim),
        keys_(std::size_t(num_layers) * std::size_t(capacity) * std::size_t(kv_dim)),
        values_(keys_.size()) {}

  static std::uint64_t bytes(int num_layers, int capacity, int kv_dim) {  // keys and values
    return 2 * sizeof(float) * std::uint64_t(num_layers) * std::uint64_t(capacity) * std::uint64_t(kv_dim);
  }

  int capacity() const { return capacity_; }
  int slot(int position) const { return position % capacity_; }
  // Slots a query at `position` attends over once its own key is stored.
  int visible(int position) const { return std::min(position + 1, capacity_); }

  float* keys(int layer) { return keys_.data() + offset(layer); }      // [capacity, kv_dim]
  float* values(int layer) { return values_.data() + offset(layer); }  // [capacity, kv_dim]
  const float* keys(int layer) const { return keys_.data() + offset(layer); }
  const float* values(int layer) const { return values_.data() + offset(layer); }
  int num_layers() const { return capacity_ ? int(keys_.size() / (std::size_t(capacity_) * std::size_t(kv_dim_))) : 0; }

  // Every layer's slots of positions [first, first + count), copied to be put back: in a ring,
  // writing position p overwrites position p - capacity, which speculative drafts must not lose.
  struct Saved {
    int first = 0, count = 0;
    std::vector<float> keys, values;  // [layer, count, kv_dim]
  };
  Saved save(int first, int count) const {
    Saved s{first, count, {}, {}};
    for (int l = 0; l < num_layers(); ++l)
      for (int p = first; p < first + count; ++p) {
        const float* k = keys(l) + std::size_t(slot(p)) * std::size_t(kv_dim_);
        const float* v = values(l) + std::size_t(slot(p)) * std::size_t(kv_dim_);
        s.keys.insert(s.keys.end(), k, k + kv_dim_);
        s.values.insert(s.values.end(), v, v + kv_dim_);
      }
    return s;
  }
  // Puts back the saved slots of positions [from, saved.first + saved.count).
  void restore(const Saved& s, int from) {
    for (int l = 0; l < num_layers(); ++l)
      for (int p = std::max(from, s.first); p < s.first + s.count; ++p) {
        const std::size_t row = (std::size_t(l) * std::size_t(s.count) + std::size_t(p - s.first)) * std::size_t(kv_dim_);
        std::copy_n(&s.keys[row], kv_dim_, keys(l) + std::size_t(slot(p)) * std::size_t(kv_dim_));
        std::copy_n(&s.values[row], kv_dim_, values(l) + std::size_t(slot(p)) * std::size_t(kv_dim_));
      }
  }

 private:
  std::size_t offset(int layer) const { return std::size_t(layer) * std::size_t(capacity_) * std::size_t(kv_dim_); }
  int capacity_;
  int kv_dim_;
  std::vector<float> keys_, values_;
};

}  // namespace effort

// kv_cache.h: per-layer keys and values of the positions a query may attend to. With a sliding
// window W the cache is a ring of W slots: position p lives in slot p % W, and the filled slots
// are exactly the positions in the window (attention does not depend on key order).
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

namespace effort {

class KvCache {
 public:
  // capacity: slots per layer; kv_dim: num_key_value_heads * head_dim.
  KvCache(int num_layers, int capacity, int kv_dim)
      : capacity_(capacity), kv_dim_(kv_dim),
        keys_(std::size_t(num_layers) * std::size_t(capacity) * std::size_t(kv_dim)),
        values_(keys_.size()) {}

  int capacity() const { return capacity_; }
  int slot(int position) const { return position % capacity_; }
  // Slots a query at `position` attends over once its own key is stored.
  int visible(int position) const { return std::min(position + 1, capacity_); }

  float* keys(int layer) { return keys_.data() + offset(layer); }      // [capacity, kv_dim]
  float* values(int layer) { return values_.data() + offset(layer); }  // [capacity, kv_dim]

 private:
  std::size_t offset(int layer) const { return std::size_t(layer) * std::size_t(capacity_) * std::size_t(kv_dim_); }
  int capacity_;
  int kv_dim_;
  std::vector<float> keys_, values_;
};

}  // namespace effort

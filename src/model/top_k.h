// top_k.h: the indices of the k largest values, largest first, ties to the lower index: the one
// order the exit candidates, Mixtral's router and the sampler's top-k share, so that a seed
// gives the same tokens on every CPU whatever sorts the standard library does.
#pragma once
#include <algorithm>
#include <cstddef>
#include <numeric>
#include <span>
#include <vector>

namespace effort {

template <class Index>
void top_k(std::span<const float> values, std::size_t k, std::vector<Index>& indices) {
  k = std::min(k, values.size());
  indices.resize(values.size());
  std::iota(indices.begin(), indices.end(), Index(0));
  std::partial_sort(indices.begin(), indices.begin() + std::ptrdiff_t(k), indices.end(), [&](Index a, Index b) {
    return values[std::size_t(a)] > values[std::size_t(b)] || (values[std::size_t(a)] == values[std::size_t(b)] && a < b);
  });
  indices.resize(k);
}

}  // namespace effort

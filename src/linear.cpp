// linear.cpp: row-parallel dense matvec.
#include "linear.h"

#include <algorithm>

namespace effort {

namespace {
// Below this many multiply-adds per thread, waking a worker costs more than it saves.
constexpr std::size_t kMinMacsPerThread = 32 * 1024;
}

void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute) {
  const auto fn = compute.kernels.matvec[int(w.dtype)];
  const std::size_t grain = std::max<std::size_t>(4, (kMinMacsPerThread / std::max<std::size_t>(w.cols, 1) + 3) / 4 * 4);
  compute.pool.parallel_for(w.rows, grain, [&](std::size_t begin, std::size_t end) {
    fn(y + begin, w.row(begin), x, end - begin, w.cols);
  });
}

}  // namespace effort

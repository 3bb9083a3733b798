// linear.h: y = W x for the model's weight matrices, split across the session's threads.
#pragma once
#include "kernels/kernels.h"
#include "thread_pool.h"
#include "weights.h"

namespace effort {

// What every op needs to run: the kernels of the chosen arch and the session's threads.
struct Compute {
  const kernels::KernelTable& kernels;
  ThreadPool& pool;
};

// Each output row is computed whole by one thread, so y does not depend on the thread count.
void matvec(const DenseMatrix& w, const float* x, float* y, const Compute& compute);

}  // namespace effort

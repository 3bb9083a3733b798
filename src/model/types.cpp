// types.cpp: the functions of the public value types (include/effort/types.h).
#include "effort/types.h"

#include <string>

#include "effort/error.h"

namespace effort {

std::string_view matrix_kind_name(MatrixKind kind) {
  static constexpr std::string_view names[kNumMatrixKinds] = {"q", "k", "v", "o", "gate", "up", "down"};
  return names[int(kind)];
}

MatrixKind parse_matrix_kind(std::string_view name) {
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    const std::string_view short_name = matrix_kind_name(MatrixKind(k));
    if (name == short_name || name == std::string(short_name) + "_proj") return MatrixKind(k);
  }
  throw Error(ErrorCode::invalid_argument, "unknown matrix kind '" + std::string(name) +
                                               "' (expected q, k, v, o, gate, up or down)");
}

double EffortStats::fraction(MatrixKind kind) const {
  return dense[int(kind)] > 0 ? done[int(kind)] / dense[int(kind)] : 0.0;
}

double EffortStats::overall() const {
  double d = 0, t = 0;
  for (int k = 0; k < kNumMatrixKinds; ++k) {
    d += done[k];
    t += dense[k];
  }
  return t > 0 ? d / t : 0.0;
}

}  // namespace effort

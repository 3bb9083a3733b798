// kernel_tables.h: fills a KernelTable for one arch. Included only by the arch_*.cpp files, each
// compiled with that arch's flags.
#pragma once
#include "attention.h"
#include "bucket_matvec.h"
#include "bucket_panel.h"
#include "elementwise.h"
#include "matvec.h"
#include "panel_matmul.h"
#include "rms_norm.h"
#include "rope.h"

namespace effort::kernels {
inline namespace EFFORT_KERNEL_UNIT {

constexpr KernelTable make_reference_table() {
  using namespace reference;
  return KernelTable{
      rms_norm,
      rope,
      attention,
      {matvec<DType::f32>, matvec<DType::f16>, matvec<DType::bf16>, matvec<DType::q8_0>},
      {dense_panel<DType::f32>, dense_panel<DType::f16>, dense_panel<DType::bf16>, dense_panel<DType::q8_0>},
      panel_matmul,
      silu_mul,
      add,
      bucket_dispatch,
      bucket_matvec,
      bucket_panel,
      {to_float<DType::f32>, to_float<DType::f16>, to_float<DType::bf16>, to_float<DType::q8_0>},
  };
}

template <class A>
constexpr KernelTable make_simd_table() {
  using namespace simd;
  return KernelTable{
      rms_norm<A>,
      rope<A>,
      attention<A>,
      {matvec<A, DType::f32>, matvec<A, DType::f16>, matvec<A, DType::bf16>, matvec<A, DType::q8_0>},
      {dense_panel<A, DType::f32>, dense_panel<A, DType::f16>, dense_panel<A, DType::bf16>, dense_panel<A, DType::q8_0>},
      panel_matmul<A>,
      silu_mul<A>,
      add<A>,
      bucket_dispatch<A>,
      bucket_matvec<A>,
      bucket_panel<A>,
      {to_float<A, DType::f32>, to_float<A, DType::f16>, to_float<A, DType::bf16>, to_float<A, DType::q8_0>},
  };
}

}  // namespace EFFORT_KERNEL_UNIT
}  // namespace effort::kernels

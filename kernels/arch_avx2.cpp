// arch_avx2.cpp: the SIMD kernels for AVX2 + FMA + F16C (compiled with those flags only).
#include "kernel_tables.h"

namespace effort::kernels {
extern constinit const KernelTable kAvx2Table = make_simd_table<simd::Avx2>();
}

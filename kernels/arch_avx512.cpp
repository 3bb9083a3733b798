// arch_avx512.cpp: the SIMD kernels for AVX-512 F/BW/DQ/VL (compiled with those flags only).
#include "kernel_tables.h"

namespace effort::kernels {
extern constinit const KernelTable kAvx512Table = make_simd_table<simd::Avx512>();
}

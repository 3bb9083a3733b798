// dispatch.cpp: picks the kernel table for the CPU we run on.
#include <cpuid.h>

#include <stdexcept>
#include <string>

#include "kernels.h"

namespace effort::kernels {

extern const KernelTable kScalarTable;
extern const KernelTable kAvx2Table;
extern const KernelTable kAvx512Table;

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::q8_0: return "Q8_0";
  }
  return "?";
}

namespace {
// CPUID leaf 1, ECX bit 29: clang 14's __builtin_cpu_supports does not know "f16c".
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
}  // namespace

bool arch_supported(Arch arch) {
  switch (arch) {
    case Arch::scalar: return true;
    case Arch::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case Arch::avx512:
      return arch_supported(Arch::avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

Arch best_arch() {
  if (arch_supported(Arch::avx512)) return Arch::avx512;
  if (arch_supported(Arch::avx2)) return Arch::avx2;
  return Arch::scalar;
}

std::string_view arch_name(Arch arch) {
  switch (arch) {
    case Arch::scalar: return "scalar";
    case Arch::avx2: return "avx2";
    case Arch::avx512: return "avx512";
  }
  return "?";
}

Arch parse_arch(std::string_view name) {
  for (Arch arch : {Arch::scalar, Arch::avx2, Arch::avx512})
    if (name == arch_name(arch)) return arch;
  throw std::invalid_argument("unknown kernel arch '" + std::string(name) +
                              "' (expected scalar, avx2 or avx512)");
}

const KernelTable& kernel_table(Arch arch) {
  if (!arch_supported(arch))
    throw std::invalid_argument("kernel arch " + std::string(arch_name(arch)) +
                                " is not supported by this CPU");
  switch (arch) {
    case Arch::avx2: return kAvx2Table;
    case Arch::avx512: return kAvx512Table;
    default: return kScalarTable;
  }
}

}  // namespace effort::kernels

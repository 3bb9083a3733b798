// arch_scalar.cpp: the scalar reference kernels, compiled for the baseline ISA.
#include "kernel_tables.h"

namespace effort::kernels {
extern constinit const KernelTable kScalarTable = make_reference_table();
}

// unit.h: the namespace of what a translation unit compiles from kernels/' headers.
//
// Each arch_*.cpp is compiled with its own instruction set and names its unit (EFFORT_KERNEL_UNIT,
// set by kernels/CMakeLists.txt): scalar, avx2 or avx512. Every inline function of the headers
// then has a name of its unit's, so the linker, which keeps one copy of an inline function, can
// never hand the AVX-512 copy to a caller on an AVX2-only CPU. Every other file is `generic`.
// The headers open it as `inline namespace EFFORT_KERNEL_UNIT` inside effort::kernels, so
// callers still write kernels::half_to_float. A test disassembles the library to hold this.
#pragma once
#ifndef EFFORT_KERNEL_UNIT
#define EFFORT_KERNEL_UNIT generic
#endif

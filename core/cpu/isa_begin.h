// Opens a per-ISA kernel region. The kernel files (the list in CMakeLists.txt) are compiled once
// per level with SCION_KERNEL_ISA = 0 (plain), 1 (AVX2+FMA+F16C) or 2 (AVX-512 F/BW/VL/DQ); each
// defines its functions in namespace scion::cpu::SCION_ISA_NS, and dispatch.cpp calls the
// variant for active_isa(). Include this after every other header and isa_end.h at the end.
// NOTE: the ISA is given as a target pragma over the kernel code, not as -mavx2 on the command
// line, so the inline functions and templates of the headers above (std::vector, Tensor, ...)
// stay baseline code: the linker keeps one copy of each, and with command-line flags it could
// keep the AVX-512 one and run it on an AVX2 CPU. Those functions are still inlined into the
// kernels and vectorized there for the region's ISA.
#ifndef SCION_KERNEL_ISA
#error "per-ISA kernel file compiled without SCION_KERNEL_ISA (see CMakeLists.txt)"
#endif

#if SCION_KERNEL_ISA == 0
#define SCION_ISA_NS isa_plain
#elif SCION_KERNEL_ISA == 1
#define SCION_ISA_NS isa_avx2
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#elif SCION_KERNEL_ISA == 2
#define SCION_ISA_NS isa_avx512
#if defined(__clang__)
#pragma clang attribute push(                                                    \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")
#endif
#else
#error "SCION_KERNEL_ISA must be 0, 1 or 2"
#endif

// Closes the region opened by isa_begin.h.
#if SCION_KERNEL_ISA > 0
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

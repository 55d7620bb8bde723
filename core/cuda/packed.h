// Vectors of f32 or bf16 elements that one thread loads or stores as one access, for the kernel
// bodies that nvcc compiles for the device and g++ for the host (norm_rows.h, depthwise_rows.h),
// where tests run them on emulated threads. bf16 values are their 16 bits here (uint16_t); a
// Vec's alignment is its size, so a load of an aligned address is one 4-, 8- or 16-byte access on
// the device.
#pragma once

#include <cstdint>

#include "core/kernel_math.h"

#if defined(__CUDA_ARCH__)  // the device pass only: g++ compiles the host pass
#define SCION_PACKED_UNROLL _Pragma("unroll")
#else
#define SCION_PACKED_UNROLL
#endif

namespace scion::cuda::packed {

template <class T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

SCION_HD float to_float(float v) {
  return v;
}
SCION_HD float to_float(uint16_t bits) {
  return kmath::bf16_to_float(bits);
}
template <class T>
SCION_HD T from_float(float v) {
  if constexpr (sizeof(T) == 2)
    return kmath::float_to_bf16(v);
  else
    return v;
}

// out = the N elements at p (aligned to N elements) as f32.
template <class T, int N>
SCION_HD void load(const T* p, float (&out)[N]) {
  const Vec<T, N> v = *reinterpret_cast<const Vec<T, N>*>(p);
  SCION_PACKED_UNROLL
  for (int e = 0; e < N; ++e) out[e] = to_float(v.v[e]);
}

// The N elements at p (aligned to N elements) = v, rounded to T.
template <class T, int N>
SCION_HD void store(T* p, const float (&v)[N]) {
  Vec<T, N> out;
  SCION_PACKED_UNROLL
  for (int e = 0; e < N; ++e) out.v[e] = from_float<T>(v[e]);
  *reinterpret_cast<Vec<T, N>*>(p) = out;
}

}  // namespace scion::cuda::packed

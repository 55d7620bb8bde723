// The CUDA backend's element types in memory and their loads and stores, in plain C++ that nvcc
// compiles for the device and g++ for the host, where tests run kernel bodies that use them
// (maps.h: tests/core/test_maps_emulated.cpp).
#pragma once

#include <cstdint>

#include "core/cuda/packed.h"
#include "core/kernel_math.h"

namespace scion::cuda {

// bf16 in device memory: the upper 16 bits of an f32 (as BFloat16 on the host).
struct bf16_t {
  uint16_t bits;
};

// The type arithmetic runs in (acc_t on the host): f32 for f32 and bf16, f64 for f64, int64 for
// integers, bool for bool.
template <class T>
struct AccOf {
  using type = int64_t;
};
template <>
struct AccOf<float> {
  using type = float;
};
template <>
struct AccOf<bf16_t> {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <>
struct AccOf<bool> {
  using type = bool;
};
template <class T>
using acc = typename AccOf<T>::type;

template <class T>
SCION_HD acc<T> load(const T* p) {
  return acc<T>(*p);
}
template <>
SCION_HD float load<bf16_t>(const bf16_t* p) {
  return kmath::bf16_to_float(p->bits);
}

// Stores v converted to T (bf16 rounds once from f32, as the host's BFloat16(float(v))).
template <class T, class V>
SCION_HD void store(T* p, V v) {
  *p = T(v);
}
template <class V>
SCION_HD void store(bf16_t* p, V v) {
  p->bits = kmath::float_to_bf16(float(v));
}
template <class V>
SCION_HD void store(bool* p, V v) {
  *p = v != V(0);
}

// V elements of T as one aligned access.
template <class T, int V>
using Pack = packed::Vec<T, V>;

}  // namespace scion::cuda

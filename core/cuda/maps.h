// The bodies of the CUDA backend's contiguous elementwise maps (map_flat and map_broadcast in
// common.cuh: autocast's casts, GELU and its gradient, residual adds, masks, ConvNeXt's layer
// scale), plain C++ that nvcc compiles for the device and g++ for the host, where
// tests/core/test_maps_emulated.cpp runs every thread of a launch.
// One flat loop over strided offsets makes one access of each operand per element (2 bytes for
// bf16) and, as f stores before the next element's loads (its operands may alias), keeps one load
// per thread in flight: about half of the memory's bandwidth on an H200 (run 8's GELU and copies).
// A map gives each thread V elements per step as one aligned access per operand (16 bytes for the
// widest, vector_width in plan.h) and loads all of them before computing or storing any, as
// PyTorch's vectorized elementwise kernels do. A thread touches only its own elements, so out may
// be an input (in place). Per element it is the same load, f and store as the flat loop: the same
// numbers.
#pragma once

#include <cstdint>

#include "core/cuda/elements.h"
#include "core/cuda/plan.h"

#if defined(__CUDA_ARCH__)  // the device pass only: g++ compiles the host pass
#define SCION_MAPS_UNROLL _Pragma("unroll")
#else
#define SCION_MAPS_UNROLL
#endif

namespace scion::cuda {

// Elements per 16-byte access of the widest of the types T (at least 1): the V of a map's vectors.
template <class... T>
constexpr int pack_width() {
  size_t w = 1;
  for (size_t s : {sizeof(T)...}) w = s > w ? s : w;
  return w >= 16 ? 1 : int(16 / w);
}

// The V a map of n elements runs with: pack_width when vector_width allows it (every pointer
// aligned to its vector, n at least one vector) and, for a broadcast b other than a scalar, the
// row length `period` is a multiple of it (so no vector straddles a row end); else 1.
template <class O, class... I>
int map_width(int64_t n, const O* out, const I*... in) {
  const int v = vector_width(n, {{out, sizeof(O)}, {in, sizeof(I)}...});
  return v == pack_width<O, I...>() ? v : 1;
}
template <StridedPlan::Broadcast M, class O, class A, class B>
int map_broadcast_width(int64_t n, int64_t period, const O* out, const A* a, const B* b) {
  const int v = map_width(n, out, a, b);
  return M != StridedPlan::Broadcast::scalar && period % v != 0 ? 1 : v;
}

template <int V, class F, class O, class... P>
SCION_HD void map_pack(const F& f, Pack<O, V>* out, const P... in) {
  Pack<O, V> r;
  SCION_MAPS_UNROLL
  for (int k = 0; k < V; ++k) store(&r.v[k], f(load(&in.v[k])...));
  *out = r;
}

// Thread `index` of a grid of `count` threads (a grid-stride loop): out[i] = f(load(in[i])...)
// for the whole vectors v = index, index + count, ..., and element n - n % V + index of the
// n % V after them (threads 0 .. n % V - 1, all in the first block).
template <int V, class F, class O, class... I>
SCION_HD void map_thread(int64_t index, int64_t count, int64_t n, const F& f, O* out,
                         const I*... in) {
  const int64_t vectors = n / V;
  for (int64_t v = index; v < vectors; v += count)
    map_pack<V>(f, reinterpret_cast<Pack<O, V>*>(out) + v,
                reinterpret_cast<const Pack<I, V>*>(in)[v]...);
  const int64_t i = vectors * V + index;
  if (i < n) store(out + i, f(load(in + i)...));
}

// The same for out[i] = f(a[i], b[j]) with b broadcast along a dense a and out
// (StridedPlan::broadcast_of): j = i mod period (a row repeated: vectors of b too), i / period (a
// value per row) or 0 (one value).
template <int V, StridedPlan::Broadcast M, class F, class O, class A, class B>
SCION_HD void map_broadcast_thread(int64_t index, int64_t count, int64_t n, int64_t period,
                                   const F& f, O* out, const A* a, const B* b) {
  using Bc = StridedPlan::Broadcast;
  const int64_t vectors = n / V;
  for (int64_t v = index; v < vectors; v += count) {
    const Pack<A, V> av = reinterpret_cast<const Pack<A, V>*>(a)[v];
    if constexpr (M == Bc::row) {
      map_pack<V>(f, reinterpret_cast<Pack<O, V>*>(out) + v, av,
                  *reinterpret_cast<const Pack<B, V>*>(b + v * V % period));
    } else {
      const auto bv = load(b + (M == Bc::row_value ? v * V / period : 0));
      Pack<O, V> r;
      SCION_MAPS_UNROLL
      for (int k = 0; k < V; ++k) store(&r.v[k], f(load(&av.v[k]), bv));
      reinterpret_cast<Pack<O, V>*>(out)[v] = r;
    }
  }
  const int64_t i = vectors * V + index;
  const int64_t j = M == Bc::row ? i % period : M == Bc::row_value ? i / period : 0;
  if (i < n) store(out + i, f(load(a + i), load(b + j)));
}

}  // namespace scion::cuda

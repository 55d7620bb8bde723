// Fast f32/bf16 kernels for gelu (exact, erf form) and last-dim softmax, written once on vec.h's
// vector (16, 8 or 1 lanes per ISA build) with masked tails, computing in f32 and rounding bf16
// results once.
//   gelu(x)  = x * Phi(x)            gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2/2)/sqrt(2 pi)
//   softmax: y = exp(x - max) / sum  dx = y * (dy - sum(dy * y))
#include <cmath>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
#include "core/kernel_math.h"
// clang-format off
#include "core/cpu/isa_begin.h"
#include "core/cpu/vec.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

namespace {

using namespace vec;

constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// Exact gelu in the AVX2 and AVX-512 builds takes the steps of core/kernel_math.h's scalar
// functions (what the CUDA kernels run), FMAs included, so they give the same bits. The plain
// build runs those functions where the target has an FMA instruction (arm64: __FP_FAST_FMAF);
// on x86-64, which has none at the baseline, std::fma would be a library call per step (the
// quickstart 44% slower under SCION_MAX_ISA=plain), so it keeps its own loop, products and sums
// rounded separately, checked against f64 instead.
#if SCION_KERNEL_ISA == 0 && defined(__FP_FAST_FMAF)
#define SCION_GELU_SCALAR 1
#else
#define SCION_GELU_SCALAR 0
#endif
template <class T>
void gelu_fwd(const T* x, T* y, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
#if SCION_GELU_SCALAR
    for (int64_t i = b; i < e; ++i) y[i] = T(kmath::gelu_erf_f32(float(x[i])));
#else
    for (int64_t i = b; i < e; i += kLanes) {
      V v = load(x + i, e - i);
      store(y + i, v * normal_cdf(v), e - i);
    }
#endif
  });
}

template <class T>
void gelu_bwd(const T* g, const T* x, T* dx, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
#if SCION_GELU_SCALAR
    for (int64_t i = b; i < e; ++i)
      dx[i] = T(kmath::gelu_erf_backward_f32(float(g[i]), float(x[i])));
#else
    const V minus_half = set1(-0.5f), k = set1(kInvSqrt2Pi);
    for (int64_t i = b; i < e; i += kLanes) {
      V v = load(x + i, e - i), gv = load(g + i, e - i);
      V pdf = vec::exp(minus_half * v * v) * k;
      store(dx + i, gv * fmadd(v, pdf, normal_cdf(v)), e - i);
    }
#endif
  });
}

template <class T>
void softmax_fwd(const T* x, T* y, int64_t rows, int64_t d) {
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / d), [&](int64_t r0, int64_t r1) {
    std::vector<float> e(static_cast<size_t>(d));
    const V minus_inf = set1(-INFINITY);
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
      V mx = minus_inf;
      for (int64_t i = 0; i < d; i += kLanes)
        mx = max(mx, select(d - i, load(xr + i, d - i), minus_inf));
      const V vmax = set1(reduce_max(mx));
      V acc = zero();
      for (int64_t i = 0; i < d; i += kLanes) {
        V ev = keep(vec::exp(load(xr + i, d - i) - vmax), d - i);
        acc = acc + ev;
        store(e.data() + i, ev, d - i);
      }
      const V inv = set1(1.0f / reduce_add(acc));
      for (int64_t i = 0; i < d; i += kLanes) store(yr + i, load(e.data() + i, d - i) * inv, d - i);
    }
  });
}

template <class T>
void softmax_bwd(const T* y, const T* dy, T* dx, int64_t rows, int64_t d) {
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* yr = y + r * d;
      const T* gr = dy + r * d;
      T* dr = dx + r * d;
      V acc = zero();
      for (int64_t i = 0; i < d; i += kLanes)
        acc = fmadd(load(yr + i, d - i), load(gr + i, d - i), acc);
      const V dot = set1(reduce_add(acc));
      for (int64_t i = 0; i < d; i += kLanes)
        store(dr + i, load(yr + i, d - i) * (load(gr + i, d - i) - dot), d - i);
    }
  });
}

template <class F>
void dispatch_f32_bf16(DType t, const F& f) {
  if (t == DType::f32)
    f(float{});
  else if (t == DType::bf16)
    f(BFloat16{});
  else
    throw Error(detail::str_cat("fast kernel called on ", dtype_name(t)));
}

}  // namespace

void gelu_erf_forward(const Tensor& x, const Tensor& y) {
  dispatch_f32_bf16(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    gelu_fwd(x.data<T>(), y.data<T>(), x.numel());
  });
}

void gelu_erf_backward(const Tensor& g, const Tensor& x, const Tensor& dx) {
  dispatch_f32_bf16(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    gelu_bwd(g.data<T>(), x.data<T>(), dx.data<T>(), x.numel());
  });
}

void softmax_lastdim_forward(const Tensor& x, const Tensor& y) {
  int64_t d = x.size(-1);
  dispatch_f32_bf16(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    softmax_fwd(x.data<T>(), y.data<T>(), x.numel() / d, d);
  });
}

void softmax_lastdim_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  int64_t d = y.size(-1);
  dispatch_f32_bf16(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    softmax_bwd(y.data<T>(), dy.data<T>(), dx.data<T>(), y.numel() / d, d);
  });
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

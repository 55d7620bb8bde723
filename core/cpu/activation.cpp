// Fast f32/bf16 kernels for gelu (exact, erf form) and last-dim softmax, on AVX-512 with masked
// tails, computing in f32 and rounding bf16 results once. See vec_math.h for the math.
//   gelu(x)  = x * Phi(x)            gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2/2)/sqrt(2
//   pi) softmax: y = exp(x - max) / sum  dx = y * (dy - sum(dy * y))
#include <vector>

#include "core/cpu/fast_kernels.h"
#include "core/cpu/parallel.h"
#include "core/cpu/vec_math.h"

namespace scion::cpu {

namespace {

#ifdef SCION_AVX512
using vec::load;
using vec::store;
using vec::tail_mask;
#endif

constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

template <class T>
void gelu_fwd(const T* x, T* y, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
#ifdef SCION_AVX512
    for (int64_t i = b; i < e; i += 16) {
      __mmask16 m = tail_mask(e - i);
      __m512 v = load(x + i, m);
      store(y + i, _mm512_mul_ps(v, vec::normal_cdf512(v)), m);
    }
#else
    for (int64_t i = b; i < e; ++i) {
      float v = float(x[i]);
      y[i] = T(v * vec::normal_cdf(v));
    }
#endif
  });
}

template <class T>
void gelu_bwd(const T* g, const T* x, T* dx, int64_t n) {
  parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
#ifdef SCION_AVX512
    const __m512 minus_half = _mm512_set1_ps(-0.5f), k = _mm512_set1_ps(kInvSqrt2Pi);
    for (int64_t i = b; i < e; i += 16) {
      __mmask16 m = tail_mask(e - i);
      __m512 v = load(x + i, m), gv = load(g + i, m);
      __m512 pdf = _mm512_mul_ps(vec::exp512(_mm512_mul_ps(minus_half, _mm512_mul_ps(v, v))), k);
      __m512 d = _mm512_fmadd_ps(v, pdf, vec::normal_cdf512(v));
      store(dx + i, _mm512_mul_ps(gv, d), m);
    }
#else
    for (int64_t i = b; i < e; ++i) {
      float v = float(x[i]);
      float d = vec::normal_cdf(v) + v * std::exp(-0.5f * v * v) * kInvSqrt2Pi;
      dx[i] = T(float(g[i]) * d);
    }
#endif
  });
}

template <class T>
void softmax_fwd(const T* x, T* y, int64_t rows, int64_t d) {
  parallel_for(0, rows, std::max<int64_t>(1, 4096 / d), [&](int64_t r0, int64_t r1) {
    std::vector<float> e(static_cast<size_t>(d));
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * d;
      T* yr = y + r * d;
#ifdef SCION_AVX512
      __m512 mx = _mm512_set1_ps(-INFINITY);
      for (int64_t i = 0; i < d; i += 16) {
        __mmask16 m = tail_mask(d - i);
        mx = _mm512_mask_max_ps(mx, m, mx, load(xr + i, m));
      }
      __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
      __m512 acc = _mm512_setzero_ps();
      for (int64_t i = 0; i < d; i += 16) {
        __mmask16 m = tail_mask(d - i);
        __m512 ev = vec::exp512(_mm512_sub_ps(load(xr + i, m), vmax));
        acc = _mm512_mask_add_ps(acc, m, acc, ev);
        _mm512_mask_storeu_ps(e.data() + i, m, ev);
      }
      __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(acc));
      for (int64_t i = 0; i < d; i += 16) {
        __mmask16 m = tail_mask(d - i);
        store(yr + i, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, e.data() + i), inv), m);
      }
#else
      float mx = float(xr[0]), s = 0;
      for (int64_t i = 1; i < d; ++i) mx = std::max(mx, float(xr[i]));
      for (int64_t i = 0; i < d; ++i) s += e[i] = std::exp(float(xr[i]) - mx);
      for (int64_t i = 0; i < d; ++i) yr[i] = T(e[i] / s);
#endif
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
#ifdef SCION_AVX512
      __m512 acc = _mm512_setzero_ps();
      for (int64_t i = 0; i < d; i += 16) {
        __mmask16 m = tail_mask(d - i);
        acc = _mm512_fmadd_ps(load(yr + i, m), load(gr + i, m), acc);
      }
      __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
      for (int64_t i = 0; i < d; i += 16) {
        __mmask16 m = tail_mask(d - i);
        store(dr + i, _mm512_mul_ps(load(yr + i, m), _mm512_sub_ps(load(gr + i, m), dot)), m);
      }
#else
      float dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += float(yr[i]) * float(gr[i]);
      for (int64_t i = 0; i < d; ++i) dr[i] = T(float(yr[i]) * (float(gr[i]) - dot));
#endif
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

bool fast_kernel_applies(const Tensor& t) {
  return (t.dtype() == DType::f32 || t.dtype() == DType::bf16) && t.is_contiguous();
}

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

}  // namespace scion::cpu

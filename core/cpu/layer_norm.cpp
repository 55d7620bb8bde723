// Layer norm kernels over rows of D contiguous elements, parallel over rows. Statistics are kept
// in f32 (f64 for f64 input): mean and rstd = 1/sqrt(var + eps) with the biased variance, as torch;
// the variance is computed from centered values (two passes), not E[x^2] - E[x]^2.
// Backward, with xhat = (x - mean) * rstd and dxhat = dy * w:
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dw = sum dy*xhat,  db = sum dy
// dw/db are summed per thread into private buffers, then added in thread order (fixed for a given
// thread count). f32/bf16 rows run on vec.h's vectors (masked tails); f64 rows on plain loops.
// An f32 x may have a bf16 y (the f32 result rounded once) and a bf16 dy (widened exactly): the
// cast autocast puts between a layer norm and a linear layer, fused (layer_norm_to).
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

template <class T, class Y, class A>
void forward_row(const T* x, const T* w, const T* b, Y* y, int64_t d, A eps, A& mu_out, A& rs_out) {
  if constexpr (!std::is_same_v<T, double>) {
    using namespace vec;
    V acc = zero();
    for (int64_t i = 0; i < d; i += kLanes) acc = acc + load(x + i, d - i);
    const float mu = reduce_add(acc) / float(d);
    const V vmu = set1(mu);
    acc = zero();
    for (int64_t i = 0; i < d; i += kLanes) {
      V c = keep(load(x + i, d - i) - vmu, d - i);
      acc = fmadd(c, c, acc);
    }
    const float rs = 1.0f / std::sqrt(reduce_add(acc) / float(d) + eps);
    const V vrs = set1(rs);
    for (int64_t i = 0; i < d; i += kLanes) {
      V h = (load(x + i, d - i) - vmu) * vrs;
      if (w) h = h * load(w + i, d - i);
      if (b) h = h + load(b + i, d - i);
      store(y + i, h, d - i);
    }
    mu_out = mu;
    rs_out = rs;
    return;
  }
  A s = 0;
  for (int64_t i = 0; i < d; ++i) s += A(x[i]);
  A mu = s / A(d), v = 0;
  for (int64_t i = 0; i < d; ++i) v += (A(x[i]) - mu) * (A(x[i]) - mu);
  A rs = A(1) / std::sqrt(v / A(d) + eps);
  for (int64_t i = 0; i < d; ++i) {
    A h = (A(x[i]) - mu) * rs;
    if (w) h = h * A(w[i]);
    if (b) h = h + A(b[i]);
    y[i] = Y(h);
  }
  mu_out = mu;
  rs_out = rs;
}

// One row of the backward pass; adds this row's dw/db terms into pw/pb (length d, f32 or f64).
template <class T, class G, class A>
void backward_row(const T* x, const G* g, const T* w, T* dx, int64_t d, A mu, A rs, A* pw, A* pb) {
  if constexpr (!std::is_same_v<T, double>) {
    using namespace vec;
    const V vmu = set1(mu), vrs = set1(rs);
    V s1 = zero(), s2 = zero();
    for (int64_t i = 0; i < d; i += kLanes) {
      const int64_t n = d - i;
      V h = keep(load(x + i, n) - vmu, n) * vrs;
      V gv = load(g + i, n);
      V gw = w ? gv * load(w + i, n) : gv;
      s1 = s1 + gw;
      s2 = fmadd(gw, h, s2);
      store(pw + i, fmadd(gv, h, load(pw + i, n)), n);
      store(pb + i, gv + load(pb + i, n), n);
    }
    const V m1 = set1(reduce_add(s1) / float(d)), m2 = set1(reduce_add(s2) / float(d));
    for (int64_t i = 0; i < d; i += kLanes) {
      const int64_t n = d - i;
      V h = (load(x + i, n) - vmu) * vrs;
      V gv = load(g + i, n);
      V gw = w ? gv * load(w + i, n) : gv;
      store(dx + i, fnmadd(h, m2, gw - m1) * vrs, n);
    }
    return;
  }
  A s1 = 0, s2 = 0;
  for (int64_t i = 0; i < d; ++i) {
    A h = (A(x[i]) - mu) * rs, gv = A(g[i]);
    A gw = w ? gv * A(w[i]) : gv;
    s1 += gw;
    s2 += gw * h;
    pw[i] += gv * h;
    pb[i] += gv;
  }
  s1 /= A(d);
  s2 /= A(d);
  for (int64_t i = 0; i < d; ++i) {
    A h = (A(x[i]) - mu) * rs, gv = A(g[i]);
    A gw = w ? gv * A(w[i]) : gv;
    dx[i] = T(rs * (gw - s1 - h * s2));
  }
}

}  // namespace

// Runs f with the element type of y (or dy) for an x of element type T: T itself, or bf16 for an
// f32 x.
template <class T, class F>
void with_partner(DType partner, F&& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (partner == DType::bf16) return f(BFloat16());
  }
  f(T());
}

void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                        DType out, Tensor& y, Tensor& mean, Tensor& rstd) {
  int64_t rows = d > 0 ? x.numel() / d : 0;
  DType stat_dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  y = empty(x.shape(), out);
  mean = empty({rows}, stat_dt);
  rstd = empty({rows}, stat_dt);
  dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    with_partner<T>(out, [&](auto ytag) {
      using Y = decltype(ytag);
      const T* xp = x.data<T>();
      const T* wp = w.defined() ? w.data<T>() : nullptr;
      const T* bp = b.defined() ? b.data<T>() : nullptr;
      Y* yp = y.data<Y>();
      A* mp = mean.data<A>();
      A* rp = rstd.data<A>();
      parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(d, 1)),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r)
                       forward_row<T, Y, A>(xp + r * d, wp, bp, yp + r * d, d, A(eps), mp[r],
                                            rp[r]);
                   });
    });
  });
}

void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                         const Tensor& rstd, int64_t d, Tensor& dx, Tensor& dw, Tensor& db) {
  int64_t rows = d > 0 ? x.numel() / d : 0;
  dx = empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), "layer_norm backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    with_partner<T>(dy.dtype(), [&](auto gtag) {
      using G = decltype(gtag);
      const T* xp = x.data<T>();
      const G* gp = dy.data<G>();
      const T* wp = w.defined() ? w.data<T>() : nullptr;
      const A* mp = mean.data<A>();
      const A* rp = rstd.data<A>();
      T* dxp = dx.data<T>();
      int nt = num_threads();
      // Per-thread dw/db partial sums; thread t of the parallel_for owns row chunk t.
      std::vector<A> partial(static_cast<size_t>(2 * nt * d), A(0));
      parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
        int t = omp_in_parallel() ? omp_get_thread_num() : 0;
        A* pw = partial.data() + size_t(2 * t) * size_t(d);
        A* pb = pw + d;
        for (int64_t r = r0; r < r1; ++r)
          backward_row<T, G, A>(xp + r * d, gp + r * d, wp, dxp + r * d, d, mp[r], rp[r], pw, pb);
      });
      dw = empty({d}, x.dtype());
      db = empty({d}, x.dtype());
      T* dwp = dw.data<T>();
      T* dbp = db.data<T>();
      for (int64_t i = 0; i < d; ++i) {
        A sw = 0, sb = 0;
        for (int t = 0; t < nt; ++t) {
          sw += partial[size_t(2 * t) * size_t(d) + size_t(i)];
          sb += partial[size_t(2 * t + 1) * size_t(d) + size_t(i)];
        }
        dwp[i] = T(sw);
        dbp[i] = T(sb);
      }
    });
  });
  if (w.defined()) {
    dw = dw.reshape(w.shape());
    db = db.reshape(w.shape());
  }
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

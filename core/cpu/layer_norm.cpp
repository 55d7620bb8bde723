// Layer norm kernels over rows of D contiguous elements, parallel over rows. Statistics are kept
// in f32 (f64 for f64 input): mean and rstd = 1/sqrt(var + eps) with the biased variance, as torch.
// Backward, with xhat = (x - mean) * rstd and dxhat = dy * w:
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dw = sum dy*xhat,  db = sum dy
// dw/db are summed per thread into private buffers, then added (fixed order for a thread count).
#include <cmath>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

namespace scion::cpu {

void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                        Tensor& y, Tensor& mean, Tensor& rstd) {
  int64_t rows = d > 0 ? x.numel() / d : 0;
  DType stat_dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  y = empty(x.shape(), x.dtype());
  mean = empty({rows}, stat_dt);
  rstd = empty({rows}, stat_dt);
  dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    const T* wp = w.defined() ? w.data<T>() : nullptr;
    const T* bp = b.defined() ? b.data<T>() : nullptr;
    T* yp = y.data<T>();
    A* mp = mean.data<A>();
    A* rp = rstd.data<A>();
    parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(d, 1)), [&](int64_t r0, int64_t r1) {
      std::vector<A> xf(static_cast<size_t>(d));
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * d;
        A s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < d; ++i) {
          xf[i] = A(xr[i]);
          s += xf[i];
        }
        A mu = s / A(d), v = 0;
#pragma omp simd reduction(+ : v)
        for (int64_t i = 0; i < d; ++i) v += (xf[i] - mu) * (xf[i] - mu);
        A rs = A(1) / std::sqrt(v / A(d) + A(eps));
        mp[r] = mu;
        rp[r] = rs;
        T* yr = yp + r * d;
        for (int64_t i = 0; i < d; ++i) {
          A h = (xf[i] - mu) * rs;
          if (wp) h = h * A(wp[i]);
          if (bp) h = h + A(bp[i]);
          yr[i] = T(h);
        }
      }
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
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    const T* wp = w.defined() ? w.data<T>() : nullptr;
    const A* mp = mean.data<A>();
    const A* rp = rstd.data<A>();
    T* dxp = dx.data<T>();
    int nt = num_threads();
    std::vector<std::vector<A>> dw_part(static_cast<size_t>(nt)), db_part(static_cast<size_t>(nt));
    // One chunk of rows per thread (thread t owns part t), so the sum order is fixed.
    parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
      int t = omp_in_parallel() ? omp_get_thread_num() : 0;
      std::vector<A>& pw = dw_part[size_t(t)];
      std::vector<A>& pb = db_part[size_t(t)];
      pw.assign(size_t(d), A(0));
      pb.assign(size_t(d), A(0));
      std::vector<A> xh(static_cast<size_t>(d)), gh(static_cast<size_t>(d));
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * d;
        const T* gr = gp + r * d;
        A mu = mp[r], rs = rp[r], s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < d; ++i) {
          A h = (A(xr[i]) - mu) * rs, g = A(gr[i]);
          A gw = wp ? g * A(wp[i]) : g;
          xh[i] = h;
          gh[i] = gw;
          pw[i] += g * h;
          pb[i] += g;
          s1 += gw;
          s2 += gw * h;
        }
        s1 /= A(d);
        s2 /= A(d);
        T* out = dxp + r * d;
        for (int64_t i = 0; i < d; ++i) out[i] = T(rs * (gh[i] - s1 - xh[i] * s2));
      }
    });
    std::vector<A> sw(size_t(d), A(0)), sb(size_t(d), A(0));
    for (int t = 0; t < nt; ++t) {
      if (dw_part[size_t(t)].empty()) continue;
      for (int64_t i = 0; i < d; ++i) {
        sw[i] += dw_part[size_t(t)][i];
        sb[i] += db_part[size_t(t)][i];
      }
    }
    dw = empty({d}, x.dtype());
    db = empty({d}, x.dtype());
    T* dwp = dw.data<T>();
    T* dbp = db.data<T>();
    for (int64_t i = 0; i < d; ++i) {
      dwp[i] = T(sw[i]);
      dbp[i] = T(sb[i]);
    }
  });
  if (w.defined()) {
    dw = dw.reshape(w.shape());
    db = db.reshape(w.shape());
  }
}

}  // namespace scion::cpu

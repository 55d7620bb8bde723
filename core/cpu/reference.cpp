// Reference kernels: straightforward loops for f64 (the dtype of finite-difference gradient
// checks), where oneDNN has no f64 support. Written for clarity, not speed.
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cpu/onednn.h"
#include "core/cpu/parallel.h"

namespace scion::cpu {

void matmul_reference(const Tensor& a, const Tensor& b, const Tensor& out) {
  // a: (Ba, M, K), b: (Bb, K, N), out: (B, M, N) contiguous; Ba, Bb are B or 1.
  int64_t bn = out.size(0), m = out.size(1), n = out.size(2), k = a.size(2);
  dispatch_floating(out.dtype(), "matmul_reference", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* op = out.data<T>();
    const auto& as = a.strides();
    const auto& bs = b.strides();
    for (int64_t z = 0; z < bn; ++z) {
      const T* az = ap + (a.size(0) == 1 ? 0 : z * as[0]);
      const T* bz = bp + (b.size(0) == 1 ? 0 : z * bs[0]);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          A s = 0;
          for (int64_t p = 0; p < k; ++p)
            s += A(az[i * as[1] + p * as[2]]) * A(bz[p * bs[1] + j * bs[2]]);
          op[(z * m + i) * n + j] = T(s);
        }
    }
  });
}

void softmax_reference(bool log, const Tensor& x, const Tensor& y) {
  int64_t d = x.size(-1), rows = x.numel() / d;
  dispatch_floating(x.dtype(), "softmax_reference", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * d;
      T* yr = yp + r * d;
      A mx = A(xr[0]);
      for (int64_t i = 1; i < d; ++i) mx = std::max(mx, A(xr[i]));
      A s = 0;
      for (int64_t i = 0; i < d; ++i) s += std::exp(A(xr[i]) - mx);
      for (int64_t i = 0; i < d; ++i)
        yr[i] = T(log ? A(xr[i]) - mx - std::log(s) : std::exp(A(xr[i]) - mx) / s);
    }
  });
}

void softmax_backward_reference(bool log, const Tensor& y, const Tensor& dy, const Tensor& dx) {
  // softmax: dx = y * (dy - sum(dy * y));  log_softmax: dx = dy - exp(y) * sum(dy)
  int64_t d = y.size(-1), rows = y.numel() / d;
  dispatch_floating(y.dtype(), "softmax_backward_reference", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* yp = y.data<T>();
    const T* gp = dy.data<T>();
    T* dp = dx.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = yp + r * d;
      const T* gr = gp + r * d;
      T* dr = dp + r * d;
      A s = 0;
      for (int64_t i = 0; i < d; ++i) s += log ? A(gr[i]) : A(gr[i]) * A(yr[i]);
      for (int64_t i = 0; i < d; ++i)
        dr[i] = T(log ? A(gr[i]) - std::exp(A(yr[i])) * s : A(yr[i]) * (A(gr[i]) - s));
    }
  });
}

namespace {

// Calls f(n, oc, oy, ox, ic, ky, kx, iy, ix) for every input tap that lands inside the image.
template <class F>
void conv_taps(const Shape& xs, const Shape& ws, const Shape& ys, const ConvShape& cs, F f) {
  int64_t n = xs[0], c = xs[1], h = xs[2], w = xs[3];
  int64_t o = ws[0], cg = ws[1], kh = ws[2], kw = ws[3], oh = ys[2], ow = ys[3];
  int64_t og = o / cs.groups;
  (void)c;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc) {
      int64_t grp = oc / og;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox)
          for (int64_t j = 0; j < cg; ++j) {
            int64_t ic = grp * cg + j;
            for (int64_t ky = 0; ky < kh; ++ky) {
              int64_t iy = oy * cs.stride_h - cs.pad_h + ky * cs.dil_h;
              if (iy < 0 || iy >= h) continue;
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t ix = ox * cs.stride_w - cs.pad_w + kx * cs.dil_w;
                if (ix < 0 || ix >= w) continue;
                f(((b * o + oc) * oh + oy) * ow + ox, ((b * c + ic) * h + iy) * w + ix,
                  ((oc * cg + j) * kh + ky) * kw + kx);
              }
            }
          }
    }
}

}  // namespace

void conv2d_reference(const Tensor& x, const Tensor& w, const Tensor& y, const ConvShape& cs) {
  dispatch_floating(x.dtype(), "conv2d_reference", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* yp = y.data<T>();
    std::vector<double> acc(size_t(y.numel()), 0.0);
    conv_taps(x.shape(), w.shape(), y.shape(), cs, [&](int64_t yi, int64_t xi, int64_t wi) {
      acc[yi] += double(xp[xi]) * double(wp[wi]);
    });
    for (size_t i = 0; i < acc.size(); ++i) yp[i] = T(acc_t<T>(acc[i]));
  });
}

void conv2d_backward_data_reference(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const ConvShape& cs) {
  dispatch_floating(dx.dtype(), "conv2d_backward_data_reference", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = dy.data<T>();
    const T* wp = w.data<T>();
    std::vector<double> acc(size_t(dx.numel()), 0.0);
    conv_taps(dx.shape(), w.shape(), dy.shape(), cs, [&](int64_t yi, int64_t xi, int64_t wi) {
      acc[xi] += double(gp[yi]) * double(wp[wi]);
    });
    T* dp = dx.data<T>();
    for (size_t i = 0; i < acc.size(); ++i) dp[i] = T(acc_t<T>(acc[i]));
  });
}

void conv2d_backward_weights_reference(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                       const ConvShape& cs) {
  dispatch_floating(dw.dtype(), "conv2d_backward_weights_reference", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* gp = dy.data<T>();
    std::vector<double> acc(size_t(dw.numel()), 0.0);
    conv_taps(x.shape(), dw.shape(), dy.shape(), cs, [&](int64_t yi, int64_t xi, int64_t wi) {
      acc[wi] += double(gp[yi]) * double(xp[xi]);
    });
    T* dp = dw.data<T>();
    for (size_t i = 0; i < acc.size(); ++i) dp[i] = T(acc_t<T>(acc[i]));
  });
}

}  // namespace scion::cpu

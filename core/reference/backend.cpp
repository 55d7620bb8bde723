// The reference backend: every kernel of core/backend.h written as plainly as possible. Inputs
// are read element by element in logical (row-major) order into f64 values, whatever their
// strides, dtype or memory format; the math runs in f64 on those vectors; results are rounded
// once into the output's dtype. Written for clarity, not speed: it is the independent second
// implementation the backend-ops test compares the CPU backend against, the f64 kernels of the
// CPU backend (the dtype of gradient checks), and a device (`reference`) to debug a training run
// on. Its memory is host memory from the CPU caching allocator.
#include <cmath>
#include <limits>

#include "core/backend.h"
#include "core/ops.h"

namespace scion::reference {

namespace {

using Values = std::vector<double>;

// Element offsets of a view of `shape` with strides `st`, in logical order.
std::vector<int64_t> offsets(const Shape& shape, const Shape& st) {
  const int64_t n = shape_numel(shape), nd = int64_t(shape.size());
  std::vector<int64_t> out(static_cast<size_t>(n)), idx(static_cast<size_t>(nd), 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[size_t(i)] = off;
    for (int64_t d = nd - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < shape[size_t(d)]) {
        off += st[size_t(d)];
        break;
      }
      off -= st[size_t(d)] * (shape[size_t(d)] - 1);
      idx[size_t(d)] = 0;
    }
  }
  return out;
}

// t's values broadcast to `shape` (NumPy rules), in logical order.
Values read(const Tensor& t, const Shape& shape) {
  const int64_t lead = int64_t(shape.size()) - t.dim();
  Shape st(shape.size(), 0);
  for (int64_t d = 0; d < t.dim(); ++d)
    st[size_t(lead + d)] = t.shape()[size_t(d)] == 1 ? 0 : t.strides()[size_t(d)];
  std::vector<int64_t> offs = offsets(shape, st);
  Values v(offs.size());
  dispatch_all(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(t.raw_data());
    for (size_t i = 0; i < v.size(); ++i) v[i] = double(acc_t<T>(p[offs[i]]));
  });
  return v;
}

Values read(const Tensor& t) {
  return read(t, t.shape());
}

// Stores v (logical order) into t's elements, rounding once to t's dtype.
void write(const Tensor& t, const Values& v) {
  std::vector<int64_t> offs = offsets(t.shape(), t.strides());
  dispatch_all(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(t.raw_data());
    for (size_t i = 0; i < v.size(); ++i) p[offs[i]] = T(acc_t<T>(v[i]));
  });
}

// v rounded to dt as write would store it, and read back.
double rounded(DType dt, double v) {
  double r = 0;
  dispatch_all(dt, [&](auto tag) {
    using T = decltype(tag);
    r = double(acc_t<T>(T(acc_t<T>(v))));
  });
  return r;
}

Tensor make(const Shape& shape, DType dt, const Tensor& like, const Values& v) {
  Tensor out = empty(shape, dt, like.device());
  write(out, v);
  return out;
}

// Positions in the logical order of attention's packed qkv (B, N, 3, H, d) and of its output
// (B, N, H, d).
struct Qkv {
  int64_t b, n, c, d;
  Qkv(const Tensor& qkv, int64_t heads)
      : b(qkv.size(0)), n(qkv.size(1)), c(qkv.size(2) / 3), d(qkv.size(2) / 3 / heads) {}
  size_t at(int64_t bi, int64_t i, int64_t which, int64_t h, int64_t e) const {
    return size_t(((bi * n + i) * 3 + which) * c + h * d + e);
  }
  size_t out(int64_t bi, int64_t i, int64_t h, int64_t e) const {
    return size_t((bi * n + i) * c + h * d + e);
  }
};

// Logical row-major index <-> coordinates.
Shape unravel(int64_t i, const Shape& shape) {
  Shape c(shape.size());
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    c[size_t(d)] = i % shape[size_t(d)];
    i /= shape[size_t(d)];
  }
  return c;
}
int64_t ravel(const Shape& c, const Shape& shape) {
  int64_t i = 0;
  for (size_t d = 0; d < shape.size(); ++d) i = i * shape[d] + c[d];
  return i;
}

// (outer, n, inner) of a shape around `dim`.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};
Around around(const Shape& shape, int64_t dim) {
  Around a;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < dim) a.outer *= shape[size_t(d)];
    if (d > dim) a.inner *= shape[size_t(d)];
  }
  a.n = shape.empty() ? 1 : shape[size_t(dim)];
  return a;
}

double apply(BinaryOp op, double x, double y, bool integral) {
  switch (op) {
    case BinaryOp::add:
      return x + y;
    case BinaryOp::sub:
      return x - y;
    case BinaryOp::mul:
      return x * y;
    case BinaryOp::div:
      return integral ? double(int64_t(x) / int64_t(y)) : x / y;
    case BinaryOp::pow:
      return std::pow(x, y);
    case BinaryOp::maximum:
      return std::isnan(x) || std::isnan(y) ? std::numeric_limits<double>::quiet_NaN()
                                            : std::max(x, y);
    case BinaryOp::minimum:
      return std::isnan(x) || std::isnan(y) ? std::numeric_limits<double>::quiet_NaN()
                                            : std::min(x, y);
    case BinaryOp::eq:
      return x == y;
    case BinaryOp::ne:
      return x != y;
    case BinaryOp::lt:
      return x < y;
    case BinaryOp::le:
      return x <= y;
    case BinaryOp::gt:
      return x > y;
    case BinaryOp::ge:
      return x >= y;
  }
  return 0;
}

bool is_compare(BinaryOp op) {
  return op >= BinaryOp::eq;
}

constexpr double kSqrt2 = 1.4142135623730951, kSqrt2OverPi = 0.7978845608028654,
                 kInvSqrt2Pi = 0.3989422804014327, kGeluC = 0.044715;

double apply(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::rsqrt:
      return 1.0 / std::sqrt(x);
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::erf:
      return std::erf(x);
    case UnaryOp::relu:
      return x > 0 ? x : (std::isnan(x) ? x : 0.0);
    case UnaryOp::sigmoid:
      return 1.0 / (1.0 + std::exp(-x));
    case UnaryOp::gelu_erf:
      return 0.5 * x * (1.0 + std::erf(x / kSqrt2));
    case UnaryOp::gelu_tanh:
      return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluC * x * x * x)));
  }
  return 0;
}

// Direct convolution over logical NCHW values: calls f(x index, w index, y index) per tap.
template <class F>
void conv_taps(const Shape& xs, const Shape& ws, const Shape& ys, const ConvShape& cs, F f) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], w = xs[3];
  const int64_t o = ws[0], cg = ws[1], kh = ws[2], kw = ws[3];
  const int64_t oh = ys[2], ow = ys[3], og = o / cs.groups;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc) {
      const int64_t g = oc / og;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j)
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t hi = i * cs.stride_h - cs.pad_h + p * cs.dil_h;
                const int64_t wi = j * cs.stride_w - cs.pad_w + q * cs.dil_w;
                if (hi < 0 || hi >= h || wi < 0 || wi >= w) continue;
                f(((b * c + g * cg + ci) * h + hi) * w + wi, ((oc * cg + ci) * kh + p) * kw + q,
                  ((b * o + oc) * oh + i) * ow + j);
              }
    }
}

class ReferenceBackend final : public Backend {
 public:
  const char* name() const override { return "reference"; }

  void* allocate(size_t bytes) override { return CachingAllocator::cpu().allocate(bytes); }
  void release(void* p, size_t bytes) override { CachingAllocator::cpu().release(p, bytes); }

  void copy(const Tensor& dst, const Tensor& src) override { write(dst, read(src, dst.shape())); }
  void fill(const Tensor& dst, double value) override {
    write(dst, Values(size_t(dst.numel()), value));
  }
  void add_scaled(const Tensor& dst, const Tensor& src, double alpha) override {
    Values d = read(dst), s = read(src, dst.shape());
    for (size_t i = 0; i < d.size(); ++i) d[i] += alpha * s[i];
    write(dst, d);
  }
  void scale(const Tensor& dst, double value) override {
    Values d = read(dst);
    for (double& x : d) x *= value;
    write(dst, d);
  }

  void random_fill(const Tensor& t, const RandomFill& r) override {
    Values v(size_t(t.numel()));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = r.sample(philox4x32(r.key, r.counter + uint64_t(i), r.stream));
    write(t, v);
  }

  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    const Shape shape = broadcast_shapes(a.shape(), b.shape());
    Values x = read(a, shape), y = read(b, shape);
    const bool integral = !is_floating(a.dtype());
    for (size_t i = 0; i < x.size(); ++i) x[i] = apply(op, x[i], y[i], integral);
    const DType out = mixed_float_operands(op, a.dtype(), b.dtype()) ? DType::f32 : a.dtype();
    return make(shape, is_compare(op) ? DType::bool_ : out, a, x);
  }
  // Per element as binary's mul then add: the product rounded to x's dtype, then the sum.
  void layer_scale_rows(const Tensor& x, const Tensor& t, const Tensor& s,
                        const Tensor& out) override {
    Values xv = read(x), tv = read(t), sv = read(s, x.shape());
    for (size_t i = 0; i < xv.size(); ++i) xv[i] += rounded(x.dtype(), tv[i] * sv[i]);
    write(out, xv);
  }
  void layer_scale_rows_backward(const Tensor& g, const Tensor& t, const Tensor& s,
                                 const Tensor& dt, const Tensor& ds) override {
    Values gv = read(g), sv = read(s, g.shape());
    if (dt.defined()) {
      Values d(gv.size());
      for (size_t i = 0; i < gv.size(); ++i) d[i] = rounded(g.dtype(), gv[i] * sv[i]);
      write(dt, d);
    }
    if (ds.defined()) {
      const Values tv = read(t);
      const size_t c = size_t(s.numel());
      Values sums(c, 0.0);
      for (size_t i = 0; i < gv.size(); ++i) sums[i % c] += rounded(g.dtype(), gv[i] * tv[i]);
      write(ds, sums);
    }
  }
  Tensor unary(UnaryOp op, const Tensor& x) override {
    Values v = read(x);
    for (double& e : v) e = apply(op, e);
    return make(x.shape(), x.dtype(), x, v);
  }
  Tensor gelu_backward(const Tensor& g, const Tensor& x, bool tanh_form) override {
    Values gv = read(g, x.shape()), xv = read(x);
    for (size_t i = 0; i < xv.size(); ++i) {
      const double t = xv[i];
      double d;
      if (tanh_form) {
        const double u = std::tanh(kSqrt2OverPi * (t + kGeluC * t * t * t));
        d = 0.5 * (1 + u) + 0.5 * t * (1 - u * u) * kSqrt2OverPi * (1 + 3 * kGeluC * t * t);
      } else {
        d = 0.5 * (1 + std::erf(t / kSqrt2)) + t * kInvSqrt2Pi * std::exp(-0.5 * t * t);
      }
      xv[i] = d * gv[i];
    }
    return make(x.shape(), x.dtype(), x, xv);
  }
  Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) override {
    const Shape shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape()));
    Values c = read(cond, shape), x = read(a, shape), y = read(b, shape);
    for (size_t i = 0; i < x.size(); ++i) x[i] = c[i] != 0 ? x[i] : y[i];
    return make(shape, a.dtype(), a, x);
  }

  Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                      const Shape& out_shape) override {
    Values s = read(src), out(size_t(shape_numel(out_shape)));
    const Around in = around(src.shape(), dim), o = around(out_shape, dim);
    for (int64_t a = 0; a < o.outer; ++a)
      for (int64_t j = 0; j < o.n; ++j)
        for (int64_t i = 0; i < o.inner; ++i)
          out[size_t((a * o.n + j) * o.inner + i)] =
              s[size_t((a * in.n + idx[size_t(j)]) * in.inner + i)];
    return make(out_shape, src.dtype(), src, out);
  }
  Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                   const Shape& out_shape) override {
    Values s = read(src), out(size_t(shape_numel(out_shape)), 0.0);
    const Around in = around(src.shape(), dim), o = around(out_shape, dim);
    for (int64_t a = 0; a < in.outer; ++a)
      for (int64_t j = 0; j < in.n; ++j)
        for (int64_t i = 0; i < in.inner; ++i)
          out[size_t((a * o.n + idx[size_t(j)]) * o.inner + i)] +=
              s[size_t((a * in.n + j) * in.inner + i)];
    return make(out_shape, src.dtype(), src, out);
  }
  Tensor gather(const Tensor& src, int64_t dim, const Tensor& index) override {
    Values s = read(src), ix = read(index), out(ix.size());
    for (size_t p = 0; p < ix.size(); ++p) {
      Shape c = unravel(int64_t(p), index.shape());
      c[size_t(dim)] = int64_t(ix[p]);
      out[p] = s[size_t(ravel(c, src.shape()))];
    }
    return make(index.shape(), src.dtype(), src, out);
  }
  Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index,
                     const Shape& out_shape) override {
    Values s = read(src), ix = read(index), out(size_t(shape_numel(out_shape)), 0.0);
    for (size_t p = 0; p < ix.size(); ++p) {
      Shape c = unravel(int64_t(p), index.shape());
      c[size_t(dim)] = int64_t(ix[p]);
      out[size_t(ravel(c, out_shape))] += s[p];
    }
    return make(out_shape, src.dtype(), src, out);
  }

  Tensor reduce_sum(const Tensor& x, const Shape& dims, bool keepdim) override {
    std::vector<bool> red(size_t(x.dim()), dims.empty());
    for (int64_t d : dims) red[size_t(d)] = true;
    Shape kept;  // the output shape with reduced dims as 1
    for (int64_t d = 0; d < x.dim(); ++d) kept.push_back(red[size_t(d)] ? 1 : x.shape()[size_t(d)]);
    Values v = read(x), out(size_t(shape_numel(kept)), 0.0);
    for (size_t i = 0; i < v.size(); ++i) {
      Shape c = unravel(int64_t(i), x.shape());
      for (size_t d = 0; d < c.size(); ++d)
        if (red[d]) c[d] = 0;
      out[size_t(ravel(c, kept))] += v[i];
    }
    Shape shape;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (!red[size_t(d)] || keepdim) shape.push_back(kept[size_t(d)]);
    return make(shape, x.dtype(), x, out);
  }
  void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values,
                  Tensor& indices) override {
    const Around a = around(x.shape(), dim);
    SCION_CHECK(a.n > 0, "max: cannot reduce over an empty dimension");
    Values v = read(x), best(size_t(a.outer * a.inner)), arg(best.size());
    for (int64_t o = 0; o < a.outer; ++o)
      for (int64_t i = 0; i < a.inner; ++i) {
        size_t k = size_t(o * a.inner + i), b = 0;
        for (int64_t j = 1; j < a.n; ++j) {
          const double cur = v[size_t((o * a.n + b) * a.inner + i)];
          const double e = v[size_t((o * a.n + j) * a.inner + i)];
          if (std::isnan(cur)) break;  // the first NaN wins, like torch
          if (e > cur || std::isnan(e)) b = size_t(j);
        }
        best[k] = v[size_t((o * a.n + int64_t(b)) * a.inner + i)];
        arg[k] = double(b);
      }
    Shape shape = x.shape();
    if (keepdim)
      shape[size_t(dim)] = 1;
    else
      shape.erase(shape.begin() + dim);
    values = make(shape, x.dtype(), x, best);
    indices = make(shape, DType::i64, x, arg);
  }

  void matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) override {
    const bool flat = a.dim() == 2;
    const Tensor a3 = flat ? a.unsqueeze(0) : a, b3 = flat ? b.unsqueeze(0) : b;
    const int64_t bn = std::max(a3.size(0), b3.size(0)), m = a3.size(1), k = a3.size(2),
                  n = b3.size(2);
    Values av = read(a3), bv = read(b3), ov(size_t(bn * m * n));
    Values biasv = bias.defined() ? read(bias) : Values(size_t(n), 0.0);
    for (int64_t z = 0; z < bn; ++z) {
      const size_t za = size_t(a3.size(0) == 1 ? 0 : z * m * k);
      const size_t zb = size_t(b3.size(0) == 1 ? 0 : z * k * n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = biasv[size_t(j)];
          for (int64_t p = 0; p < k; ++p)
            s += av[za + size_t(i * k + p)] * bv[zb + size_t(p * n + j)];
          ov[size_t((z * m + i) * n + j)] = s;
        }
    }
    write(out, ov);
  }

  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                      const ConvShape& cs) override {
    Values xv = read(x), wv = read(w), yv(size_t(y.numel()), 0.0);
    conv_taps(x.shape(), w.shape(), y.shape(), cs, [&](int64_t xi, int64_t wi, int64_t yi) {
      yv[size_t(yi)] += xv[size_t(xi)] * wv[size_t(wi)];
    });
    if (b.defined()) {
      Values bv = read(b);
      const int64_t o = y.size(1), hw = y.size(2) * y.size(3);
      for (size_t i = 0; i < yv.size(); ++i) yv[i] += bv[size_t(int64_t(i) / hw % o)];
    }
    write(y, yv);
  }
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                            const ConvShape& cs) override {
    Values dyv = read(dy), wv = read(w), dxv(size_t(dx.numel()), 0.0);
    conv_taps(dx.shape(), w.shape(), dy.shape(), cs, [&](int64_t xi, int64_t wi, int64_t yi) {
      dxv[size_t(xi)] += dyv[size_t(yi)] * wv[size_t(wi)];
    });
    write(dx, dxv);
  }
  void conv2d_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                               const ConvShape& cs) override {
    Values xv = read(x), dyv = read(dy), dwv(size_t(dw.numel()), 0.0);
    conv_taps(x.shape(), dw.shape(), dy.shape(), cs, [&](int64_t xi, int64_t wi, int64_t yi) {
      dwv[size_t(wi)] += dyv[size_t(yi)] * xv[size_t(xi)];
    });
    write(dw, dwv);
  }

  void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                          DType out, Tensor& y, Tensor& mean, Tensor& rstd) override {
    const int64_t rows = d == 0 ? 0 : x.numel() / d;
    Values xv = read(x), wv = w.defined() ? read(w) : Values(size_t(d), 1.0),
           bv = b.defined() ? read(b) : Values(size_t(d), 0.0), mv(static_cast<size_t>(rows)),
           rv(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      double* row = xv.data() + r * d;
      double mu = 0, var = 0;
      for (int64_t i = 0; i < d; ++i) mu += row[i];
      mu /= double(d);
      for (int64_t i = 0; i < d; ++i) var += (row[i] - mu) * (row[i] - mu);
      const double rs = 1.0 / std::sqrt(var / double(d) + eps);
      for (int64_t i = 0; i < d; ++i) row[i] = (row[i] - mu) * rs * wv[size_t(i)] + bv[size_t(i)];
      mv[size_t(r)] = mu;
      rv[size_t(r)] = rs;
    }
    const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
    y = make(x.shape(), out, x, xv);
    mean = make({rows}, stat, x, mv);
    rstd = make({rows}, stat, x, rv);
  }
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, int64_t d, Tensor& dx, Tensor& dw,
                           Tensor& db) override {
    const int64_t rows = d == 0 ? 0 : x.numel() / d;
    Values xv = read(x), gv = read(dy), mv = read(mean), rv = read(rstd);
    Values wv = w.defined() ? read(w) : Values(size_t(d), 1.0);
    Values dxv(xv.size()), dwv(size_t(d), 0.0), dbv(size_t(d), 0.0), xhat(static_cast<size_t>(d)),
        dxh(static_cast<size_t>(d));
    for (int64_t r = 0; r < rows; ++r) {
      double m1 = 0, m2 = 0;  // mean(dxhat), mean(dxhat * xhat)
      for (int64_t i = 0; i < d; ++i) {
        const size_t e = size_t(r * d + i);
        xhat[size_t(i)] = (xv[e] - mv[size_t(r)]) * rv[size_t(r)];
        dxh[size_t(i)] = gv[e] * wv[size_t(i)];
        m1 += dxh[size_t(i)];
        m2 += dxh[size_t(i)] * xhat[size_t(i)];
        dwv[size_t(i)] += gv[e] * xhat[size_t(i)];
        dbv[size_t(i)] += gv[e];
      }
      m1 /= double(d);
      m2 /= double(d);
      for (int64_t i = 0; i < d; ++i)
        dxv[size_t(r * d + i)] = rv[size_t(r)] * (dxh[size_t(i)] - m1 - xhat[size_t(i)] * m2);
    }
    dx = make(x.shape(), x.dtype(), x, dxv);
    const Shape wshape = w.defined() ? w.shape() : Shape{d};
    dw = make(wshape, x.dtype(), x, dwv);
    db = make(wshape, x.dtype(), x, dbv);
  }

  void softmax_forward(bool log, int64_t dim, const Tensor& x, const Tensor& y) override {
    const Around a = around(x.shape(), dim);
    Values v = read(x);
    for (int64_t o = 0; o < a.outer; ++o)
      for (int64_t i = 0; i < a.inner; ++i) {
        auto at = [&](int64_t j) -> double& { return v[size_t((o * a.n + j) * a.inner + i)]; };
        double mx = -std::numeric_limits<double>::infinity(), s = 0;
        for (int64_t j = 0; j < a.n; ++j) mx = std::max(mx, at(j));
        for (int64_t j = 0; j < a.n; ++j) s += std::exp(at(j) - mx);
        for (int64_t j = 0; j < a.n; ++j)
          at(j) = log ? at(j) - mx - std::log(s) : std::exp(at(j) - mx) / s;
      }
    write(y, v);
  }
  void softmax_backward(bool log, int64_t dim, const Tensor& y, const Tensor& dy,
                        const Tensor& dx) override {
    // softmax: dx = y * (dy - sum(dy * y));  log_softmax: dx = dy - exp(y) * sum(dy)
    const Around a = around(y.shape(), dim);
    Values yv = read(y), gv = read(dy), out(yv.size());
    for (int64_t o = 0; o < a.outer; ++o)
      for (int64_t i = 0; i < a.inner; ++i) {
        auto e = [&](int64_t j) { return size_t((o * a.n + j) * a.inner + i); };
        double s = 0;
        for (int64_t j = 0; j < a.n; ++j) s += log ? gv[e(j)] : gv[e(j)] * yv[e(j)];
        for (int64_t j = 0; j < a.n; ++j)
          out[e(j)] = log ? gv[e(j)] - std::exp(yv[e(j)]) * s : yv[e(j)] * (gv[e(j)] - s);
      }
    write(dx, out);
  }

  // Attention straight from its definition, one (batch, head) at a time:
  // P = softmax(scale Q K^T), O = P V; dS = P o (dP - rowsum(dO o O)) with dP = dO V^T.
  void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                         const Tensor& lse) override {
    const Qkv g(qkv, heads);
    Values x = read(qkv), o(size_t(g.b * g.n * g.c)), l(size_t(g.b * heads * g.n)), p(size_t(g.n));
    for (int64_t bi = 0; bi < g.b; ++bi)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < g.n; ++i) {
          double mx = -std::numeric_limits<double>::infinity(), s = 0;
          for (int64_t j = 0; j < g.n; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < g.d; ++e)
              dot += x[g.at(bi, i, 0, h, e)] * x[g.at(bi, j, 1, h, e)];
            p[size_t(j)] = scale * dot;
            mx = std::max(mx, p[size_t(j)]);
          }
          for (int64_t j = 0; j < g.n; ++j) s += std::exp(p[size_t(j)] - mx);
          l[size_t((bi * heads + h) * g.n + i)] = mx + std::log(s);
          for (int64_t e = 0; e < g.d; ++e) {
            double acc = 0;
            for (int64_t j = 0; j < g.n; ++j)
              acc += std::exp(p[size_t(j)] - mx) / s * x[g.at(bi, j, 2, h, e)];
            o[g.out(bi, i, h, e)] = acc;
          }
        }
    write(out, o);
    write(lse, l);
  }
  void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                          const Tensor& lse, int64_t heads, double scale,
                          const Tensor& dqkv) override {
    const Qkv g(qkv, heads);
    const int64_t n = g.n;
    Values x = read(qkv), ov = read(out), gv = read(dout), l = read(lse), dx(x.size(), 0.0);
    Values p(size_t(n * n)), ds(size_t(n * n));
    for (int64_t bi = 0; bi < g.b; ++bi)
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < n; ++i) {
          double row = 0;  // rowsum(dO o O)
          for (int64_t e = 0; e < g.d; ++e) row += gv[g.out(bi, i, h, e)] * ov[g.out(bi, i, h, e)];
          for (int64_t j = 0; j < n; ++j) {
            double qk = 0, dp = 0;
            for (int64_t e = 0; e < g.d; ++e) {
              qk += x[g.at(bi, i, 0, h, e)] * x[g.at(bi, j, 1, h, e)];
              dp += gv[g.out(bi, i, h, e)] * x[g.at(bi, j, 2, h, e)];
            }
            p[size_t(i * n + j)] = std::exp(scale * qk - l[size_t((bi * heads + h) * n + i)]);
            ds[size_t(i * n + j)] = p[size_t(i * n + j)] * (dp - row);
          }
        }
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            for (int64_t e = 0; e < g.d; ++e) {
              double pij = p[size_t(i * n + j)], dsij = ds[size_t(i * n + j)];
              dx[g.at(bi, i, 0, h, e)] += scale * dsij * x[g.at(bi, j, 1, h, e)];
              dx[g.at(bi, j, 1, h, e)] += scale * dsij * x[g.at(bi, i, 0, h, e)];
              dx[g.at(bi, j, 2, h, e)] += pij * gv[g.out(bi, i, h, e)];
            }
      }
    write(dqkv, dx);
  }

  Tensor cross_entropy(const Tensor& logits, const Tensor& q, const Tensor& lp) override {
    softmax_forward(true, 1, logits, lp);
    Values l = read(lp), qv = read(q);
    double s = 0;
    for (size_t i = 0; i < l.size(); ++i) s += qv[i] * l[i];
    return make({}, logits.dtype(), logits, {-s / double(logits.size(0))});
  }

  void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const OptimStep& s) override {
    Values pv = read(p), gv = read(g), mv = read(m), vv = read(v);
    const double bc1 = 1 - std::pow(s.beta1, double(s.step)),
                 bc2 = 1 - std::pow(s.beta2, double(s.step));
    for (size_t i = 0; i < pv.size(); ++i) {
      mv[i] = s.beta1 * mv[i] + (1 - s.beta1) * gv[i];
      vv[i] = s.beta2 * vv[i] + (1 - s.beta2) * gv[i] * gv[i];
      pv[i] = pv[i] * (1 - s.lr * s.weight_decay) -
              s.lr / bc1 * mv[i] / (std::sqrt(vv[i]) / std::sqrt(bc2) + s.eps);
    }
    write(p, pv);
    write(m, mv);
    write(v, vv);
  }
  void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) override {
    Values pv = read(p), gv = read(g), mv = read(m);
    for (size_t i = 0; i < pv.size(); ++i) {
      double d = gv[i] + s.weight_decay * pv[i];
      if (s.momentum != 0) {
        mv[i] = s.step == 1 ? d : s.momentum * mv[i] + d;
        d = s.nesterov ? d + s.momentum * mv[i] : mv[i];
      }
      pv[i] -= s.lr * d;
    }
    write(p, pv);
    write(m, mv);
  }
  double sum_squares(const Tensor& x) override {
    double s = 0;
    for (double e : read(x)) s += e * e;
    return s;
  }
  void add_sum_squares(const Tensor& x, const Tensor& total) override {
    *total.data<double>() += sum_squares(x);
  }
  void scale_by(const Tensor& dst, const Tensor& s) override { scale(dst, *s.data<double>()); }
};

}  // namespace

Backend& backend() {
  static ReferenceBackend b;
  return b;
}

}  // namespace scion::reference

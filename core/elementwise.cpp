// Elementwise ops and their gradients. Binary ops broadcast; each input's gradient is summed back
// to its own shape (sum_to). Mixed dtypes promote like torch: a 0-d tensor (a Python scalar)
// takes the other operand's floating dtype, otherwise f64 > f32 > bf16 > integers.
#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

DType promote(const Tensor& a, const Tensor& b) {
  if (a.dtype() == b.dtype()) return a.dtype();
  if (a.dim() == 0 && is_floating(b.dtype())) return b.dtype();
  if (b.dim() == 0 && is_floating(a.dtype())) return a.dtype();
  return promote_types(a.dtype(), b.dtype());
}

Tensor run_binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  DType t = promote(a, b);
  return backend_for("binary op", {&a, &b}).binary(op, a.to(t).detach(), b.to(t).detach());
}

std::vector<Tensor> grads2(const Tensor& ga, const Shape& sa, const Tensor& gb, const Shape& sb) {
  return {ga.defined() ? sum_to(ga, sa) : Tensor(), gb.defined() ? sum_to(gb, sb) : Tensor()};
}

// What the graph of a binary op keeps until backward: as torch's, only what the gradient needs.
enum class Keep {
  shapes,  // add, sub: only the operands' shapes
  both,    // both operands
  cross,   // mul: a only when b needs a gradient, b only when a does
  div,     // div: b, and a only when b needs a gradient
};

// Records a binary op: `fn(g, a, b, need_a, need_b)` returns the full-shape gradients (an operand
// the rule does not keep arrives undefined); they are summed to the operands' shapes. Kept operands
// are kept as given and promoted again in backward, so that a mixed-dtype op under autocast (a bf16
// branch times an f32 layer scale) does not keep an f32 copy of its bf16 operand until backward.
//
// An f32 and a bf16 operand of add, sub, mul or div (under autocast: a residual add of a bf16
// branch, a layer scale) go to the backend as they are (mixed_float_operands), which widens the
// bf16 one as it reads it: the same numbers as widening it first, without the widened copy. Their
// gradients are then narrowed to each operand's dtype here, as the widening's backward did.
template <Keep kKeep, class F>
Tensor binary_op(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, F fn) {
  const DType t = promote(a, b);
  const bool direct = t == DType::f32 && mixed_float_operands(op, a.dtype(), b.dtype());
  Tensor ac = direct ? a : a.to(t), bc = direct ? b : b.to(t);
  Tensor out = backend_for(name, {&a, &b}).binary(op, ac.detach(), bc.detach());
  if (any_requires_grad({&ac, &bc})) {
    const Shape sa = ac.shape(), sb = bc.shape();
    const DType da = ac.dtype(), db = bc.dtype();
    const bool need_a = ac.requires_grad(), need_b = bc.requires_grad();
    const bool keep_a = kKeep == Keep::both || (kKeep != Keep::shapes && need_b);
    const bool keep_b =
        kKeep == Keep::both || kKeep == Keep::div || (kKeep == Keep::cross && need_a);
    Tensor a0 = keep_a ? a.detach() : Tensor(), b0 = keep_b ? b.detach() : Tensor();
    record(out, name, {ac, bc}, [=](const Tensor& g) {
      // Kept operands go to the gradient's ops as given (mixed ones again without a copy).
      auto promoted = [&](const Tensor& x) { return direct ? x : x.to(t); };
      auto [ga, gb] =
          fn(g, keep_a ? promoted(a0) : Tensor(), keep_b ? promoted(b0) : Tensor(), need_a, need_b);
      std::vector<Tensor> gs = grads2(ga, sa, gb, sb);
      if (gs[0].defined() && gs[0].dtype() != da) gs[0] = gs[0].to(da);
      if (gs[1].defined() && gs[1].dtype() != db) gs[1] = gs[1].to(db);
      return gs;
    });
  }
  return out;
}

template <class F>
Tensor unary_op(UnaryOp op, const char* name, const Tensor& x, F fn) {
  Tensor out = backend_for(name, {&x}).unary(op, x);
  if (any_requires_grad({&x})) {
    Tensor xd = x.detach(), yd = out.detach();
    record(out, name, {x}, [=](const Tensor& g) { return std::vector<Tensor>{fn(g, xd, yd)}; });
  }
  return out;
}

Tensor scalar_like(double v, const Tensor& t) {
  return scalar_tensor(v, is_floating(t.dtype()) ? t.dtype() : DType::f32, t.device());
}

using Pair = std::pair<Tensor, Tensor>;

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    SCION_CHECK(x == y || x == 1 || y == 1, "shapes ", shape_str(a), " and ", shape_str(b),
                " cannot be broadcast together");
    out[i] = x == 1 ? y : x;
  }
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::shapes>(BinaryOp::add, "add", a, b,
                                 [](const Tensor& g, const Tensor&, const Tensor&, bool, bool) {
                                   return Pair{g, g};
                                 });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::shapes>(BinaryOp::sub, "sub", a, b,
                                 [](const Tensor& g, const Tensor&, const Tensor&, bool, bool nb) {
                                   return Pair{g, nb ? neg(g) : Tensor()};
                                 });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::cross>(
      BinaryOp::mul, "mul", a, b,
      [](const Tensor& g, const Tensor& a, const Tensor& b, bool na, bool nb) {
        return Pair{na ? mul(g, b) : Tensor(), nb ? mul(g, a) : Tensor()};
      });
}

Tensor div(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::div>(
      BinaryOp::div, "div", a, b,
      [](const Tensor& g, const Tensor& a, const Tensor& b, bool na, bool nb) {
        Tensor ga = div(g, b);  // a arrives only when b needs a gradient
        return Pair{na ? ga : Tensor(), nb ? neg(div(mul(ga, a), b)) : Tensor()};
      });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::both>(
      BinaryOp::pow, "pow", a, b,
      [](const Tensor& g, const Tensor& a, const Tensor& b, bool na, bool nb) {
        Tensor ga, gb;
        if (na) ga = mul(g, mul(b, pow(a, sub(b, scalar_like(1.0, b)))));
        if (nb) gb = mul(g, mul(pow(a, b), log(a)));
        return Pair{ga, gb};
      });
}

Tensor pow(const Tensor& a, double exponent) {
  return pow(a, scalar_like(exponent, a));
}

namespace {
// torch splits the gradient evenly between equal operands of maximum/minimum.
Pair minmax_grad(const Tensor& g, const Tensor& a, const Tensor& b, bool a_wins_gt) {
  Tensor zero = scalar_like(0.0, g), half = mul(g, scalar_like(0.5, g));
  Tensor a_wins = a_wins_gt ? gt(a, b) : lt(a, b), b_wins = a_wins_gt ? lt(a, b) : gt(a, b);
  Tensor tie = eq(a, b);
  Tensor ga = where(a_wins, g, where(tie, half, zero));
  Tensor gb = where(b_wins, g, where(tie, half, zero));
  return {ga, gb};
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::both>(BinaryOp::maximum, "maximum", a, b,
                               [](const Tensor& g, const Tensor& a, const Tensor& b, bool, bool) {
                                 return minmax_grad(g, a, b, true);
                               });
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary_op<Keep::both>(BinaryOp::minimum, "minimum", a, b,
                               [](const Tensor& g, const Tensor& a, const Tensor& b, bool, bool) {
                                 return minmax_grad(g, a, b, false);
                               });
}

Tensor eq(const Tensor& a, const Tensor& b) {
  return run_binary(BinaryOp::eq, a, b);
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return run_binary(BinaryOp::ne, a, b);
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return run_binary(BinaryOp::lt, a, b);
}
Tensor le(const Tensor& a, const Tensor& b) {
  return run_binary(BinaryOp::le, a, b);
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return run_binary(BinaryOp::gt, a, b);
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return run_binary(BinaryOp::ge, a, b);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  DType t = promote(a, b);
  Tensor ac = a.to(t), bc = b.to(t);
  Backend& be = backend_for("where", {&cond, &a, &b});
  Tensor out = be.where(cond, ac.detach(), bc.detach());
  if (any_requires_grad({&ac, &bc})) {
    Tensor c = cond.detach();
    Shape sa = ac.shape(), sb = bc.shape();
    record(out, "where", {ac, bc}, [c, sa, sb, &be](const Tensor& g) {
      Tensor zero = scalar_like(0.0, g);
      return grads2(be.where(c, g, zero), sa, be.where(c, zero, g), sb);
    });
  }
  return out;
}

namespace {

// Whether a has `shape` and, over every dimension of more than one element, `strides`.
bool has_layout(const Tensor& a, const Shape& shape, const Shape& strides) {
  if (a.shape() != shape) return false;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (a.size(d) > 1 && a.strides()[size_t(d)] != strides[size_t(d)]) return false;
  return true;
}

// The dimension of x along which s varies when add(x, mul(t, s)) can run as
// Backend::layer_scale_rows: x and t of one shape and dtype (or a bf16 t for an f32 x), on one
// device, dense in one layout whose innermost dimension in memory is that one; s of x's dtype,
// of size 1 in every other dimension. -1 otherwise.
int64_t layer_scale_dim(const Tensor& x, const Tensor& t, const Tensor& s) {
  const DType dt = x.dtype();
  if (!is_floating(dt) || s.dtype() != dt ||
      !(t.dtype() == dt || (dt == DType::f32 && t.dtype() == DType::bf16)))
    return -1;
  if (x.device() != t.device() || x.device() != s.device()) return -1;
  if (x.numel() == 0 || s.dim() > x.dim() || !is_dense(x) || !has_layout(t, x.shape(), x.strides()))
    return -1;
  const int64_t lead = x.dim() - s.dim();
  int64_t dim = -1;
  for (int64_t d = 0; d < s.dim(); ++d) {
    if (s.size(d) == 1) continue;
    if (dim >= 0 || s.size(d) != x.size(lead + d)) return -1;
    dim = lead + d;
  }
  if (dim < 0 || x.strides()[size_t(dim)] != 1) return -1;
  return dim;
}

// A dense tensor whose innermost dimension in memory has c elements, as contiguous (rows, c).
Tensor rows_of(const Tensor& t, int64_t c) {
  return as_strided(t, {t.numel() / c, c}, {c, 1}, t.offset());
}

}  // namespace

Tensor addcmul(const Tensor& x, const Tensor& t, const Tensor& s) {
  const int64_t dim = layer_scale_dim(x, t, s);
  if (dim < 0) return add(x, mul(t, s));
  const int64_t c = x.size(dim);
  Backend& be = backend_for("addcmul", {&x, &t, &s});
  const Tensor sc = s.detach().contiguous().reshape({c});
  Tensor out = empty_like(x);  // x's layout
  be.layer_scale_rows(rows_of(x, c), rows_of(t, c), sc, rows_of(out, c));
  if (any_requires_grad({&x, &t, &s})) {
    const bool need_x = x.requires_grad(), need_t = t.requires_grad(), need_s = s.requires_grad();
    // As mul's graph: t only for s's gradient (s, c elements, is kept either way).
    const Tensor t0 = need_s ? t.detach() : Tensor();
    const Shape s_shape = s.shape();
    const DType t_dtype = t.dtype();
    const Shape shape = out.shape(), strides = out.strides();
    record(out, "addcmul", {x, t, s}, [=, &be](const Tensor& g) {
      Tensor dt, ds;
      if (has_layout(g, shape, strides)) {  // out's layout, hence dense
        if (need_t) dt = empty_like(g, t_dtype);
        if (need_s) ds = empty({c}, g.dtype(), g.device());
        be.layer_scale_rows_backward(rows_of(g, c), need_s ? rows_of(t0, c) : Tensor(), sc,
                                     need_t ? rows_of(dt, c) : Tensor(), ds);
        if (need_s) ds = ds.reshape(s_shape);
      } else {  // mul's gradients, as add(x, mul(t, s)) gives them
        if (need_t) dt = mul(g, sc.reshape(s_shape)).to(t_dtype);
        if (need_s) ds = sum_to(mul(g, t0), s_shape);
      }
      return std::vector<Tensor>{need_x ? g : Tensor(), dt, ds};
    });
  }
  return out;
}

Tensor neg(const Tensor& x) {
  return unary_op(UnaryOp::neg, "neg", x, [](const Tensor& g, auto&, auto&) { return neg(g); });
}

Tensor exp(const Tensor& x) {
  return unary_op(UnaryOp::exp, "exp", x,
                  [](const Tensor& g, auto&, const Tensor& y) { return mul(g, y); });
}

Tensor log(const Tensor& x) {
  return unary_op(UnaryOp::log, "log", x,
                  [](const Tensor& g, const Tensor& x, auto&) { return div(g, x); });
}

Tensor sqrt(const Tensor& x) {
  return unary_op(UnaryOp::sqrt, "sqrt", x, [](const Tensor& g, auto&, const Tensor& y) {
    return div(g, mul(y, scalar_like(2.0, y)));
  });
}

Tensor rsqrt(const Tensor& x) {
  return unary_op(UnaryOp::rsqrt, "rsqrt", x, [](const Tensor& g, auto&, const Tensor& y) {
    return mul(g, mul(pow(y, 3.0), scalar_like(-0.5, y)));
  });
}

Tensor tanh(const Tensor& x) {
  return unary_op(UnaryOp::tanh, "tanh", x, [](const Tensor& g, auto&, const Tensor& y) {
    return mul(g, sub(scalar_like(1.0, y), mul(y, y)));
  });
}

Tensor erf(const Tensor& x) {
  return unary_op(UnaryOp::erf, "erf", x, [](const Tensor& g, const Tensor& x, auto&) {
    return mul(g, mul(exp(neg(mul(x, x))), scalar_like(2.0 / std::sqrt(M_PI), x)));
  });
}

Tensor relu(const Tensor& x) {
  return unary_op(UnaryOp::relu, "relu", x, [](const Tensor& g, const Tensor& x, auto&) {
    return backend_for("relu backward", {&g, &x})
        .where(gt(x, scalar_like(0.0, x)), g, scalar_like(0.0, g));
  });
}

Tensor sigmoid(const Tensor& x) {
  return unary_op(UnaryOp::sigmoid, "sigmoid", x, [](const Tensor& g, auto&, const Tensor& y) {
    return mul(g, mul(y, sub(scalar_like(1.0, y), y)));
  });
}

Tensor gelu(const Tensor& x, const std::string& approximate) {
  SCION_CHECK(approximate == "none" || approximate == "tanh",
              "gelu: approximate must be 'none' or 'tanh', got '", approximate, "'");
  bool tanh_form = approximate == "tanh";
  return unary_op(tanh_form ? UnaryOp::gelu_tanh : UnaryOp::gelu_erf, "gelu", x,
                  [tanh_form](const Tensor& g, const Tensor& x, auto&) {
                    return backend_for("gelu backward", {&g, &x}).gelu_backward(g, x, tanh_form);
                  });
}

Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
Tensor operator-(const Tensor& a) {
  return neg(a);
}
Tensor operator+(const Tensor& a, double b) {
  return add(a, scalar_like(b, a));
}
Tensor operator-(const Tensor& a, double b) {
  return sub(a, scalar_like(b, a));
}
Tensor operator*(const Tensor& a, double b) {
  return mul(a, scalar_like(b, a));
}
Tensor operator/(const Tensor& a, double b) {
  return div(a, scalar_like(b, a));
}
Tensor operator+(double a, const Tensor& b) {
  return add(scalar_like(a, b), b);
}
Tensor operator-(double a, const Tensor& b) {
  return sub(scalar_like(a, b), b);
}
Tensor operator*(double a, const Tensor& b) {
  return mul(scalar_like(a, b), b);
}
Tensor operator/(double a, const Tensor& b) {
  return div(scalar_like(a, b), b);
}

}  // namespace scion

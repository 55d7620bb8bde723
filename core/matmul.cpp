// matmul and linear on oneDNN (f32, bf16 with f32 accumulation) with an f64 reference path.
// Batch dims broadcast; an operand whose batch dims are all broadcast is passed with batch 1 so
// oneDNN broadcasts it without a copy, and transposed operands go in by their strides.
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

// (B|1, R, C) view of x expanded to batch + (R, C); copies only when strides cannot express it.
Tensor as_batched(const Tensor& x, const Shape& batch, int64_t bn) {
  int64_t r = x.size(-2), c = x.size(-1);
  bool all_broadcast = true;
  int64_t lead = int64_t(batch.size()) - (x.dim() - 2);
  for (int64_t d = 0; d < x.dim() - 2; ++d)
    if (x.shape()[d] != 1 && batch[lead + d] != 1) all_broadcast = false;
  Tensor v;
  if (all_broadcast) {
    Tensor m = x;
    while (m.dim() > 2) m = m.squeeze(0);
    v = m.unsqueeze(0);
  } else {
    Shape full = batch;
    full.push_back(r);
    full.push_back(c);
    v = x.expand(full).reshape({bn, r, c});
  }
  if (v.strides()[2] != 1 && v.strides()[1] != 1) v = v.contiguous();
  if (v.shape()[0] == 1)
    v = as_strided(v, v.shape(), {r * c, v.strides()[1], v.strides()[2]}, v.offset());
  return v;
}

// (..., M, K) @ (..., K, N) without autograd.
Tensor mm(const Tensor& a, const Tensor& b) {
  SCION_CHECK(a.size(-1) == b.size(-2), "matmul: shapes ", shape_str(a.shape()), " and ",
              shape_str(b.shape()), " cannot be multiplied (", a.size(-1), " != ", b.size(-2), ")");
  Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ab, bb);
  int64_t bn = shape_numel(batch), m = a.size(-2), n = b.size(-1), k = a.size(-1);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  if (bn * m * n == 0) return zeros(out_shape, a.dtype(), a.device());
  if (k == 0) return zeros(out_shape, a.dtype(), a.device());
  Tensor a3 = as_batched(a, batch, bn), b3 = as_batched(b, batch, bn);
  Tensor out = empty({bn, m, n}, a.dtype(), a.device());
  backend_for("matmul", {&a, &b}).matmul(a3, b3, Tensor(), out);
  return out.reshape(out_shape);
}

void check_floating_pair(const Tensor& a, const Tensor& b, const char* op) {
  SCION_CHECK(is_floating(a.dtype()), op, ": expected a floating tensor, got ",
              dtype_name(a.dtype()));
  SCION_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " and ",
              dtype_name(b.dtype()), ")");
}

Tensor matmul_impl(const Tensor& a_in, const Tensor& b_in);

}  // namespace

Tensor matmul(const Tensor& a_low, const Tensor& b_low) {
  if (autocast_enabled()) return matmul_impl(autocast_low(a_low), autocast_low(b_low));
  return matmul_impl(a_low, b_low);
}

namespace {
Tensor matmul_impl(const Tensor& a_in, const Tensor& b_in) {
  check_floating_pair(a_in, b_in, "matmul");
  SCION_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: 0-d operands are not allowed");
  Tensor a = a_in.dim() == 1 ? a_in.unsqueeze(0) : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.unsqueeze(1) : b_in;
  Tensor out = mm(a.detach(), b.detach());
  if (any_requires_grad({&a, &b})) {
    Tensor ad = a.detach(), bd = b.detach();
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(out, "matmul", {a, b}, [=](const Tensor& g) {
      Tensor ga, gb;
      if (na) ga = sum_to(mm(g, bd.transpose(-1, -2)), ad.shape());
      if (nb) gb = sum_to(mm(ad.transpose(-1, -2), g), bd.shape());
      return std::vector<Tensor>{ga, gb};
    });
  }
  if (a_in.dim() == 1) out = out.squeeze(-2);
  if (b_in.dim() == 1) out = out.squeeze(-1);
  return out;
}
}  // namespace

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  const Tensor x = autocast_low(x_in), w = autocast_low(w_in), b = autocast_low(b_in);
  check_floating_pair(x, w, "linear");
  SCION_CHECK(w.dim() == 2, "linear: weight must be (out, in), got ", shape_str(w.shape()));
  SCION_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", shape_str(x.shape()),
              " does not match weight ", shape_str(w.shape()), " (in_features ", w.size(1), ")");
  if (b.defined())
    SCION_CHECK(b.dim() == 1 && b.size(0) == w.size(0) && b.dtype() == w.dtype(),
                "linear: bias must be (", w.size(0), ") of ", dtype_name(w.dtype()), ", got ",
                shape_str(b.shape()), " of ", dtype_name(b.dtype()));
  int64_t in = w.size(1), out_f = w.size(0);
  Tensor x2 = x.detach().reshape({-1, in});
  if (x2.strides()[1] != 1 && x2.strides()[0] != 1) x2 = x2.contiguous();
  int64_t m = x2.size(0);
  Tensor y = empty({m, out_f}, x.dtype(), x.device());
  Tensor wd = w.detach(), bd = b.defined() ? b.detach() : Tensor();
  if (m > 0)
    backend_for("linear", {&x, &w, &b})
        .matmul(x2, wd.t(), bd.defined() ? bd.reshape({1, out_f}) : Tensor(), y);
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor out = y.reshape(out_shape);
  if (any_requires_grad({&x, &w, &b})) {
    bool nx = x.requires_grad(), nw = w.requires_grad(), nb = b.defined() && b.requires_grad();
    Shape x_shape = x.shape();
    record(out, "linear", {x, w, b}, [=](const Tensor& g) {
      Tensor g2 = g.reshape({-1, out_f});
      Tensor gx, gw, gb;
      if (nx) gx = mm(g2, wd).reshape(x_shape);
      if (nw) gw = mm(g2.t(), x2);
      if (nb) gb = sum(g2, {0});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return out;
}

}  // namespace scion

// layer_norm, softmax and log_softmax with their gradients. softmax/log_softmax run on oneDNN for
// f32/bf16 (any axis of a contiguous tensor) and on reference loops over the last dim for f64.
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/cpu/fast_kernels.h"
#include "core/cpu/kernels.h"
#include "core/cpu/onednn.h"
#include "core/ops.h"

namespace scion {

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight_in,
                  const Tensor& bias_in, double eps) {
  const Tensor x = autocast_f32(x_in), weight = autocast_f32(weight_in),
               bias = autocast_f32(bias_in);
  int64_t k = int64_t(normalized_shape.size());
  SCION_CHECK(k >= 1 && k <= x.dim(), "layer_norm: normalized_shape ", shape_str(normalized_shape),
              " does not fit input ", shape_str(x.shape()));
  for (int64_t i = 0; i < k; ++i)
    SCION_CHECK(x.shape()[x.dim() - k + i] == normalized_shape[i], "layer_norm: input ",
                shape_str(x.shape()), " does not end with normalized_shape ",
                shape_str(normalized_shape));
  for (const Tensor* p : {&weight, &bias})
    if (p->defined())
      SCION_CHECK(p->shape() == normalized_shape && p->dtype() == x.dtype(),
                  "layer_norm: weight "
                  "and bias must be ",
                  shape_str(normalized_shape), " of ", dtype_name(x.dtype()), ", got ",
                  shape_str(p->shape()), " of ", dtype_name(p->dtype()));
  int64_t d = shape_numel(normalized_shape);
  Tensor xc = x.detach().contiguous();
  Tensor wd = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor bd = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y, mu, rstd;
  cpu::layer_norm_forward(xc, wd, bd, eps, d, y, mu, rstd);
  if (any_requires_grad({&x, &weight, &bias})) {
    bool nw = weight.defined() && weight.requires_grad(),
         nb = bias.defined() && bias.requires_grad();
    record(y, "layer_norm", {x, weight, bias}, [=](const Tensor& g) {
      Tensor dx, dw, db;
      cpu::layer_norm_backward(g.contiguous(), xc, wd, mu, rstd, d, dx, dw, db);
      return std::vector<Tensor>{dx, nw ? dw : Tensor(), nb ? db : Tensor()};
    });
  }
  return y;
}

namespace {

Tensor softmax_impl(const Tensor& x_in, int64_t dim, bool log) {
  const Tensor x = autocast_f32(x_in);
  const char* op = log ? "log_softmax" : "softmax";
  int64_t nd = std::max<int64_t>(x.dim(), 1);
  SCION_CHECK(dim >= -nd && dim < nd, op, ": dimension ", dim, " out of range for a ", x.dim(),
              "-d tensor");
  if (dim < 0) dim += nd;
  SCION_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor, got ",
              dtype_name(x.dtype()));
  Tensor xv = x.dim() == 0 ? x.reshape({1}) : x;
  bool onednn = cpu::dnnl_supports(x.dtype());
  // Plain softmax over the last dim runs on the AVX-512 kernel (faster than oneDNN 2.6 on short
  // rows).
  bool fast = !log && onednn && dim == std::max<int64_t>(x.dim(), 1) - 1;
  // oneDNN takes any axis; the reference loops want it last.
  int64_t last = xv.dim() - 1;
  Tensor xc = onednn ? xv.detach().contiguous() : xv.detach().transpose(dim, last).contiguous();
  Tensor y = empty(xc.shape(), xc.dtype());
  if (xc.numel() > 0) {
    if (fast)
      cpu::softmax_lastdim_forward(xc, y);
    else if (onednn)
      cpu::softmax_forward(log, int(dim), xc, y);
    else
      cpu::softmax_reference(log, xc, y);
  }
  Tensor out = onednn ? y : y.transpose(dim, last);
  out = out.reshape(x.shape());
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [=](const Tensor& g) {
      Tensor gv = g.reshape(xv.shape());
      Tensor gc = onednn ? gv.contiguous() : gv.transpose(dim, last).contiguous();
      Tensor dx = empty(y.shape(), y.dtype());
      if (y.numel() > 0) {
        if (fast)
          cpu::softmax_lastdim_backward(y, gc, dx);
        else if (onednn)
          cpu::softmax_backward(log, int(dim), y, gc, dx);
        else
          cpu::softmax_backward_reference(log, y, gc, dx);
      }
      Tensor r = onednn ? dx : dx.transpose(dim, last);
      return std::vector<Tensor>{r.reshape(in_shape)};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(x, dim, true);
}

}  // namespace scion

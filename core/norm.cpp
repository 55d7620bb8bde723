// layer_norm, softmax and log_softmax with their gradients (kernels: the inputs' backend).
#include <optional>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

// layer_norm computed in x's dtype (f32 under autocast), its result in out_dtype (x's if none).
Tensor layer_norm_impl(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight_in,
                       const Tensor& bias_in, double eps, std::optional<DType> out_dtype) {
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
  const DType out = out_dtype.value_or(x.dtype());
  SCION_CHECK(out == x.dtype() || (x.dtype() == DType::f32 && out == DType::bf16),
              "layer_norm_to: a ", dtype_name(x.dtype()), " input gives ", dtype_name(x.dtype()),
              (x.dtype() == DType::f32 ? " or bf16" : ""), ", not ", dtype_name(out));
  int64_t d = shape_numel(normalized_shape);
  Tensor xc = x.detach().contiguous();
  Tensor wd = weight.defined() ? weight.detach().contiguous() : Tensor();
  Tensor bd = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y, mu, rstd;
  Backend& be = backend_for("layer_norm", {&x, &weight, &bias});
  be.layer_norm_forward(xc, wd, bd, eps, d, out, y, mu, rstd);
  if (any_requires_grad({&x, &weight, &bias})) {
    bool nw = weight.defined() && weight.requires_grad(),
         nb = bias.defined() && bias.requires_grad();
    record(y, "layer_norm", {x, weight, bias}, [=, &be](const Tensor& g) {
      Tensor dx, dw, db;
      be.layer_norm_backward(g.contiguous(), xc, wd, mu, rstd, d, dx, dw, db);
      return std::vector<Tensor>{dx, nw ? dw : Tensor(), nb ? db : Tensor()};
    });
  }
  return y;
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps) {
  return layer_norm_impl(x, normalized_shape, weight, bias, eps, std::nullopt);
}

Tensor layer_norm_to(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                     const Tensor& bias, double eps, DType out) {
  return layer_norm_impl(x, normalized_shape, weight, bias, eps, out);
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
  Backend& be = backend_for(op, {&x});
  Tensor xc = xv.detach().contiguous();
  Tensor y = empty(xc.shape(), xc.dtype(), xc.device());
  be.softmax_forward(log, dim, xc, y);
  Tensor out = y.reshape(x.shape());
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    record(out, op, {x}, [=, &be](const Tensor& g) {
      Tensor dx = empty(y.shape(), y.dtype(), y.device());
      be.softmax_backward(log, dim, y, g.reshape(xv.shape()).contiguous(), dx);
      return std::vector<Tensor>{dx.reshape(in_shape)};
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

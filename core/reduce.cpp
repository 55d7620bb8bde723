// Reductions and their gradients: sum/mean broadcast the gradient back over the reduced dims,
// max routes it to the chosen index, var is composed from mean and sum so autograd derives it.
#include <algorithm>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

Shape normalize_dims(const Shape& dims, int64_t ndim, const char* op) {
  Shape out;
  for (int64_t d : dims) {
    int64_t n = std::max<int64_t>(ndim, 1);
    SCION_CHECK(d >= -n && d < n, op, ": dimension ", d, " out of range for a ", ndim, "-d tensor");
    int64_t w = d < 0 ? d + n : d;
    SCION_CHECK(std::find(out.begin(), out.end(), w) == out.end(), op, ": dimension ", d,
                " repeated");
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Re-inserts the reduced dims (size 1) into g so it broadcasts against the input.
Tensor unsqueeze_reduced(const Tensor& g, const Shape& dims, int64_t ndim, bool keepdim) {
  if (keepdim) return g;
  Shape sh = g.shape();
  Shape all = dims;
  if (all.empty())
    for (int64_t d = 0; d < ndim; ++d) all.push_back(d);
  for (int64_t d : all) sh.insert(sh.begin() + d, 1);
  return g.reshape(sh);
}

}  // namespace

Tensor sum(const Tensor& x, const Shape& dims_in, bool keepdim) {
  Shape dims = normalize_dims(dims_in, x.dim(), "sum");
  Tensor out = backend_for("sum", {&x}).reduce_sum(x, dims, keepdim);
  if (any_requires_grad({&x})) {
    Shape in_shape = x.shape();
    int64_t nd = x.dim();
    record(out, "sum", {x}, [=](const Tensor& g) {
      return std::vector<Tensor>{unsqueeze_reduced(g, dims, nd, keepdim).expand(in_shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, const Shape& dims_in, bool keepdim) {
  Shape dims = normalize_dims(dims_in, x.dim(), "mean");
  int64_t n = 1;
  if (dims.empty())
    n = x.numel();
  else
    for (int64_t d : dims) n *= x.shape()[d];
  return sum(x, dims, keepdim) * (1.0 / double(n));
}

Tensor var(const Tensor& x, const Shape& dims_in, int64_t correction, bool keepdim) {
  Shape dims = normalize_dims(dims_in, x.dim(), "var");
  int64_t n = 1;
  if (dims.empty())
    n = x.numel();
  else
    for (int64_t d : dims) n *= x.shape()[d];
  SCION_CHECK(n - correction > 0, "var: ", n, " elements with correction ", correction);
  Tensor centered = x - mean(x, dims, true);
  return sum(centered * centered, dims, keepdim) * (1.0 / double(n - correction));
}

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  Shape d = normalize_dims({dim}, x.dim(), "max");
  MaxResult r;
  Tensor xv = x.dim() == 0 ? x.reshape({1}) : x;
  backend_for("max", {&x}).reduce_max(xv, d[0], keepdim, r.values, r.indices);
  if (any_requires_grad({&x})) {
    Tensor idx = unsqueeze_reduced(r.indices, d, xv.dim(), keepdim);
    Shape in_shape = x.shape();
    int64_t dd = d[0], nd = xv.dim();
    record(r.values, "max", {x}, [=](const Tensor& g) {
      Tensor gk = unsqueeze_reduced(g, {dd}, nd, keepdim);
      // Each row's gradient goes to its argmax (the adjoint of picking one index).
      Tensor out = backend_for("max backward", {&gk})
                       .scatter_add(gk.contiguous(), dd, idx.contiguous(), xv.shape());
      return std::vector<Tensor>{out.reshape(in_shape)};
    });
  }
  return r;
}

Tensor max(const Tensor& x) {
  SCION_CHECK(x.numel() > 0, "max: empty tensor");
  MaxResult r = max(x.detach().reshape({x.numel()}), 0, false);
  Tensor out = r.values;
  if (any_requires_grad({&x})) {
    Tensor xd = x.detach(), m = out.detach();
    record(out, "max_all", {x}, [xd, m](const Tensor& g) {
      Tensor mask = eq(xd, m).to(g.dtype());
      return std::vector<Tensor>{mask * (g / sum(mask))};
    });
  }
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return max(x, dim, keepdim).indices;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  int64_t lead = g.dim() - int64_t(shape.size());
  SCION_ASSERT(lead >= 0, "sum_to: cannot reduce ", shape_str(g.shape()), " to ", shape_str(shape));
  Shape dims;
  for (int64_t d = 0; d < g.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)) dims.push_back(d);
  Tensor s = dims.empty() ? g : sum(g, dims, true);
  return s.reshape(shape);
}

}  // namespace scion

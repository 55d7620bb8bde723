// index_select and gather, and their adjoints (index_add and scatter_add into zeros), which sum
// gradients when an index repeats.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

int64_t wrap(int64_t d, int64_t nd, const char* op) {
  int64_t n = std::max<int64_t>(nd, 1);
  SCION_CHECK(d >= -n && d < n, op, ": dimension ", d, " out of range for a ", nd, "-d tensor");
  return d < 0 ? d + n : d;
}

std::vector<int64_t> index_values(const Tensor& index, int64_t bound, const char* op) {
  SCION_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
              ": index must be i64 or i32, got ", dtype_name(index.dtype()));
  std::vector<int64_t> v;
  for (double d : index.to_vector()) {
    int64_t i = int64_t(d);
    SCION_CHECK(i >= 0 && i < bound, op, ": index ", i, " out of range for size ", bound);
    v.push_back(i);
  }
  return v;
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = wrap(dim, x.dim(), "index_select");
  SCION_CHECK(index.dim() <= 1, "index_select: index must be 1-d, got shape ",
              shape_str(index.shape()));
  std::vector<int64_t> idx = index_values(index, x.shape()[dim], "index_select");
  Shape out_shape = x.shape();
  out_shape[dim] = int64_t(idx.size());
  Backend& be = backend_for("index_select", {&x});
  Tensor out = be.index_select(x.detach(), dim, idx, out_shape);
  Shape in_shape = x.shape();
  record(out, "index_select", {x}, [=, &be](const Tensor& g) {
    return std::vector<Tensor>{be.index_add(g, dim, idx, in_shape)};
  });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = wrap(dim, x.dim(), "gather");
  SCION_CHECK(index.dim() == x.dim(), "gather: index has ", index.dim(), " dims, input has ",
              x.dim());
  for (int64_t d = 0; d < x.dim(); ++d)
    SCION_CHECK(d == dim || index.shape()[d] <= x.shape()[d], "gather: index shape ",
                shape_str(index.shape()), " exceeds input shape ", shape_str(x.shape()), " at dim ",
                d);
  Backend& be = backend_for("gather", {&x, &index});
  Tensor ix = index.detach().to(DType::i64).contiguous();
  for (double v : ix.to_vector())
    SCION_CHECK(v >= 0 && v < double(x.shape()[dim]), "gather: index ", int64_t(v),
                " out of range for size ", x.shape()[dim], " of dim ", dim);
  Tensor out = be.gather(x.detach(), dim, ix);
  Shape in_shape = x.shape();
  record(out, "gather", {x}, [=, &be](const Tensor& g) {
    return std::vector<Tensor>{be.scatter_add(g, dim, ix, in_shape)};
  });
  return out;
}

}  // namespace scion

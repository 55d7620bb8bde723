// cat, split and chunk. split/chunk return narrow views (their gradients flow through narrow);
// cat copies each input into its slice of the output and hands each input its slice of the
// gradient.
#include "core/autograd.h"
#include "core/ops.h"

namespace scion {

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  SCION_CHECK(!xs.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = xs[0];
  int64_t nd = first.dim();
  SCION_CHECK(dim >= -nd && dim < nd, "cat: dimension ", dim, " out of range for ", nd,
              "-d tensors");
  if (dim < 0) dim += nd;
  Shape shape = first.shape();
  shape[dim] = 0;
  // Mixed dtypes promote as torch.cat's (an f32 class token before bf16 patch tokens under
  // autocast gives f32): each input is converted as it is copied in, its gradient converted back.
  DType dt = first.dtype();
  std::vector<DType> dtypes;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    dt = promote_types(dt, x.dtype());
    dtypes.push_back(x.dtype());
    SCION_CHECK(x.dim() == nd, "cat: tensor ", i, " has shape ", shape_str(x.shape()),
                ", expected ", nd, " dims");
    for (int64_t d = 0; d < nd; ++d)
      SCION_CHECK(d == dim || x.shape()[d] == first.shape()[d], "cat: tensor ", i, " has shape ",
                  shape_str(x.shape()), ", incompatible with ", shape_str(first.shape()),
                  " outside dim ", dim);
    shape[dim] += x.shape()[dim];
  }
  Tensor out = empty(shape, dt, first.device());
  Shape sizes;
  {
    NoGradGuard ng;
    int64_t at = 0;
    for (const Tensor& x : xs) {
      out.narrow(dim, at, x.shape()[dim]).copy_(x);
      at += x.shape()[dim];
      sizes.push_back(x.shape()[dim]);
    }
  }
  record(out, "cat", xs, [sizes, dtypes, dim](const Tensor& g) {
    std::vector<Tensor> gs;
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const Tensor piece = g.narrow(dim, at, sizes[i]);
      gs.push_back(is_floating(dtypes[i]) ? piece.to(dtypes[i]) : piece);
      at += sizes[i];
    }
    return gs;
  });
  return out;
}

std::vector<Tensor> split(const Tensor& x, const Shape& sizes, int64_t dim) {
  int64_t n = x.size(dim), total = 0;
  for (int64_t s : sizes) total += s;
  SCION_CHECK(total == n, "split: sizes ", shape_str(sizes), " do not add up to ", n);
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(dim, at, s));
    at += s;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  SCION_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  int64_t n = x.size(dim);
  Shape sizes;
  for (int64_t at = 0; at < n; at += split_size) sizes.push_back(std::min(split_size, n - at));
  if (sizes.empty()) sizes.push_back(0);
  return split(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  SCION_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  int64_t n = x.size(dim);
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

}  // namespace scion

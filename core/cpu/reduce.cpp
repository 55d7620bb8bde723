// Reduction kernels. sum: when the reduced dims are the trailing (or leading) dims of a contiguous
// tensor it reduces rows (or columns) in place; otherwise the kept dims are permuted to the front
// and made contiguous first. Row sums of f32 accumulate in f64 so long reductions stay accurate.
#include <algorithm>
#include <numeric>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

namespace scion::cpu {

namespace {

Shape reduced_shape(const Shape& in, const std::vector<bool>& red, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    if (!red[d])
      out.push_back(in[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

}  // namespace

Tensor reduce_sum(const Tensor& x_in, const Shape& dims, bool keepdim) {
  const int64_t nd = x_in.dim();
  std::vector<bool> red(size_t(nd), dims.empty());
  for (int64_t d : dims) red[size_t(d)] = true;
  Shape out_shape = reduced_shape(x_in.shape(), red, keepdim);
  // Kept dims first (in order), reduced dims last: rows of `inner` elements to sum.
  Shape perm;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) perm.push_back(d), outer *= x_in.shape()[d];
  for (int64_t d = 0; d < nd; ++d)
    if (red[d]) perm.push_back(d), inner *= x_in.shape()[d];
  // Leading reduced dims of a contiguous tensor: column sums, no copy.
  int64_t lead = 0;
  while (lead < nd && red[lead]) ++lead;
  bool leading_only =
      lead > 0 && std::all_of(red.begin() + lead, red.end(), [](bool r) { return !r; });
  Tensor out = empty(out_shape, x_in.dtype());
  dispatch_floating(x_in.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    T* o = out.data<T>();
    if (leading_only && x_in.is_contiguous() && inner > 1) {
      const T* p = x_in.data<T>();
      int64_t rows = inner, cols = outer;
      parallel_for(0, cols, 1024, [&](int64_t c0, int64_t c1) {
        std::vector<A> acc(size_t(c1 - c0), A(0));
        for (int64_t r = 0; r < rows; ++r) {
          const T* row = p + r * cols;
          for (int64_t c = c0; c < c1; ++c) acc[c - c0] += A(row[c]);
        }
        for (int64_t c = c0; c < c1; ++c) o[c] = T(acc[c - c0]);
      });
      return;
    }
    Tensor xc = x_in.permute(perm).contiguous();
    const T* p = xc.data<T>();
    using R = double;  // f64 accumulation for every dtype: rows can be long
    parallel_for(0, outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
                 [&](int64_t r0, int64_t r1) {
                   for (int64_t r = r0; r < r1; ++r) {
                     const T* row = p + r * inner;
                     R acc = 0;
                     for (int64_t i = 0; i < inner; ++i) acc += R(A(row[i]));
                     o[r] = T(A(acc));
                   }
                 });
  });
  return out;
}

void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values, Tensor& indices) {
  const int64_t nd = x.dim();
  std::vector<bool> red(size_t(nd), false);
  red[size_t(dim)] = true;
  Shape out_shape = reduced_shape(x.shape(), red, keepdim);
  Shape perm;
  for (int64_t d = 0; d < nd; ++d)
    if (d != dim) perm.push_back(d);
  perm.push_back(dim);
  int64_t inner = x.shape()[dim], outer = x.numel() / std::max<int64_t>(inner, 1);
  SCION_CHECK(inner > 0, "max: cannot reduce over an empty dimension");
  values = empty(out_shape, x.dtype());
  indices = empty(out_shape, DType::i64);
  dispatch_all(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    Tensor xc = x.permute(perm).contiguous();
    const T* p = xc.data<T>();
    T* v = values.data<T>();
    int64_t* ix = indices.data<int64_t>();
    parallel_for(0, outer, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = p + r * inner;
        A best = A(row[0]);
        int64_t bi = 0;
        for (int64_t i = 1; i < inner; ++i) {
          A a = A(row[i]);
          if (best != best) break;  // NaN wins, like torch
          if (a > best || a != a) best = a, bi = i;
        }
        v[r] = T(best);
        ix[r] = bi;
      }
    });
  });
}

}  // namespace scion::cpu

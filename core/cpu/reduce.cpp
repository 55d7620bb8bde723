// Reduction kernels. sum: when the reduced dims are the trailing dims of a contiguous tensor it
// reduces rows in place, when they come first in memory (leading dims, or N, H, W of a
// channels-last tensor) it sums columns in place; otherwise the kept dims are permuted to the
// front and made contiguous first. Sums of f32 accumulate in f64 so long reductions stay accurate.
#include <algorithm>
#include <numeric>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

// clang-format off
#include "core/cpu/isa_begin.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

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

// Column sums of a dense rows x cols matrix: tasks of (row chunk, block of up to 256 columns) sum
// in f64 into per-chunk partials, added in chunk order, so the split depends on the shape only,
// never on the thread count.
template <class T>
void sum_columns(const T* p, int64_t rows, int64_t cols, T* o) {
  using A = acc_t<T>;
  constexpr int64_t block = 256;
  const int64_t chunks =
      cols >= 4096 ? 1 : std::min<int64_t>({rows, 64, (rows * cols + 65535) / 65536});
  const int64_t chunk_rows = (rows + chunks - 1) / chunks, blocks = (cols + block - 1) / block;
  std::vector<double> partial(size_t(chunks * cols));
  parallel_for(0, chunks * blocks, 1, [&](int64_t t0, int64_t t1) {
    double acc[block];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k = t / blocks, c0 = (t % blocks) * block, c1 = std::min(cols, c0 + block);
      std::fill(acc, acc + (c1 - c0), 0.0);
      for (int64_t r = k * chunk_rows; r < std::min(rows, (k + 1) * chunk_rows); ++r) {
        const T* row = p + r * cols + c0;
        for (int64_t c = 0; c < c1 - c0; ++c) acc[c] += double(A(row[c]));
      }
      std::copy(acc, acc + (c1 - c0), partial.begin() + k * cols + c0);
    }
  });
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0;
    for (int64_t k = 0; k < chunks; ++k) s += partial[size_t(k * cols + c)];
    o[c] = T(A(s));
  }
}

// Row sums of a dense rows x cols matrix, each in f64 (rows can be long).
template <class T>
void sum_rows(const T* p, int64_t rows, int64_t cols, T* o) {
  using A = acc_t<T>;
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const T* row = p + r * cols;
                   double acc = 0;
                   for (int64_t i = 0; i < cols; ++i) acc += double(A(row[i]));
                   o[r] = T(A(acc));
                 }
               });
}

}  // namespace

Tensor reduce_sum(const Tensor& x_in, const Shape& dims, bool keepdim) {
  const int64_t nd = x_in.dim();
  std::vector<bool> red(size_t(nd), dims.empty());
  for (int64_t d : dims) red[size_t(d)] = true;
  // Kept dims first (in order), reduced dims last: rows of `inner` elements to sum.
  Shape perm;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) perm.push_back(d), outer *= x_in.shape()[d];
  for (int64_t d = 0; d < nd; ++d)
    if (red[d]) perm.push_back(d), inner *= x_in.shape()[d];
  // Reduced dims first, then kept dims (each in order): when x is dense in that order, the sums
  // are column sums over its memory, no copy. Leading dims of a contiguous tensor are; so is a
  // channels-last (N, C, H, W) tensor summed over N, H and W (a convolution's bias gradient).
  Shape red_first;
  for (int64_t d = 0; d < nd; ++d)
    if (red[d]) red_first.push_back(d);
  for (int64_t d = 0; d < nd; ++d)
    if (!red[d]) red_first.push_back(d);
  const bool columns = inner > 1 && outer > 1 && x_in.permute(red_first).is_contiguous();
  Tensor out = empty(reduced_shape(x_in.shape(), red, keepdim), x_in.dtype());
  dispatch_floating(x_in.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    if (columns) {
      sum_columns(x_in.data<T>(), inner, outer, out.data<T>());
    } else {
      const Tensor xc = x_in.permute(perm).contiguous();
      sum_rows(xc.data<T>(), outer, inner, out.data<T>());
    }
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

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

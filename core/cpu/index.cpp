// index_select / index_add and gather / scatter_add on the CPU: plain loops over contiguous
// copies, parallel over the outer dims for index_select. Indices are checked by the ops.
#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

namespace scion::cpu {

namespace {

// (outer, size, inner) view of a contiguous tensor around dim.
void split_dims(const Shape& s, int64_t dim, int64_t& outer, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (int64_t d = dim + 1; d < int64_t(s.size()); ++d) inner *= s[d];
}

// dst[o, idx[j], i] (+)= src[o, j, i]   or   dst[o, j, i] = src[o, idx[j], i]
template <bool kScatter>
Tensor index_copy(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                  const Shape& out_shape) {
  Tensor s = src.contiguous();
  Tensor out = kScatter ? zeros(out_shape, src.dtype()) : empty(out_shape, src.dtype());
  int64_t outer, inner;
  split_dims(out_shape, dim, outer, inner);
  int64_t src_n = s.shape()[dim], out_n = out_shape[dim];
  dispatch_all(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* sp = s.data<T>();
    T* op = out.data<T>();
    parallel_for(0, outer, 1, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (size_t j = 0; j < idx.size(); ++j) {
          if constexpr (kScatter) {
            const T* a = sp + (o * src_n + int64_t(j)) * inner;
            T* b = op + (o * out_n + idx[j]) * inner;
            for (int64_t i = 0; i < inner; ++i) b[i] = T(acc_t<T>(b[i]) + acc_t<T>(a[i]));
          } else {
            const T* a = sp + (o * src_n + idx[j]) * inner;
            T* b = op + (o * out_n + int64_t(j)) * inner;
            for (int64_t i = 0; i < inner; ++i) b[i] = a[i];
          }
        }
    });
  });
  return out;
}

// gather (kScatter false): out[p] = x[p with p[dim] = index[p]]; scatter_add is its adjoint.
template <bool kScatter>
Tensor gather_scatter(const Tensor& src, int64_t dim, const Tensor& index, const Shape& out_shape) {
  Tensor s = src.contiguous();
  Tensor out = kScatter ? zeros(out_shape, src.dtype()) : empty(index.shape(), src.dtype());
  const Shape& is = index.shape();
  const Shape& big = kScatter ? out_shape : src.shape();  // the tensor indexed along dim
  Shape big_strides = contiguous_strides(big);
  int64_t nd = int64_t(is.size()), n = index.numel();
  const int64_t* ip = index.data<int64_t>();  // i64 and contiguous (the ops' contract)
  dispatch_all(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* sp = s.data<T>();
    T* op = out.data<T>();
    std::vector<int64_t> pos(size_t(nd), 0);
    for (int64_t k = 0; k < n; ++k) {
      int64_t off = 0;
      for (int64_t d = 0; d < nd; ++d) off += (d == dim ? ip[k] : pos[d]) * big_strides[d];
      if constexpr (kScatter)
        op[off] = T(acc_t<T>(op[off]) + acc_t<T>(sp[k]));
      else
        op[k] = sp[off];
      for (int64_t d = nd - 1; d >= 0; --d) {
        if (++pos[d] < is[d]) break;
        pos[d] = 0;
      }
    }
  });
  return out;
}

}  // namespace

Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                    const Shape& out_shape) {
  return index_copy<false>(src, dim, idx, out_shape);
}
Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                 const Shape& out_shape) {
  return index_copy<true>(src, dim, idx, out_shape);
}
Tensor gather(const Tensor& src, int64_t dim, const Tensor& index) {
  return gather_scatter<false>(src, dim, index, {});
}
Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Shape& out_shape) {
  return gather_scatter<true>(src, dim, index, out_shape);
}

}  // namespace scion::cpu

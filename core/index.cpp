// index_select and gather, and their adjoints (index_add and scatter_add into zeros), which sum
// gradients when an index repeats.
#include "core/autograd.h"
#include "core/cpu/parallel.h"
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
    cpu::parallel_for(0, outer, 1, [&](int64_t o0, int64_t o1) {
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
  Tensor ix = index.to(DType::i64).contiguous();
  Tensor out = kScatter ? zeros(out_shape, src.dtype()) : empty(index.shape(), src.dtype());
  const Shape& is = index.shape();
  const Shape& big = kScatter ? out_shape : src.shape();  // the tensor indexed along dim
  Shape big_strides = contiguous_strides(big);
  int64_t nd = int64_t(is.size()), n = index.numel();
  const int64_t* ip = ix.data<int64_t>();
  for (int64_t k = 0; k < n; ++k)
    SCION_CHECK(ip[k] >= 0 && ip[k] < big[dim], "gather: index ", ip[k], " out of range for size ",
                big[dim], " of dim ", dim);
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

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  dim = wrap(dim, x.dim(), "index_select");
  SCION_CHECK(index.dim() <= 1, "index_select: index must be 1-d, got shape ",
              shape_str(index.shape()));
  std::vector<int64_t> idx = index_values(index, x.shape()[dim], "index_select");
  Shape out_shape = x.shape();
  out_shape[dim] = int64_t(idx.size());
  Tensor out = index_copy<false>(x.detach(), dim, idx, out_shape);
  Shape in_shape = x.shape();
  record(out, "index_select", {x}, [=](const Tensor& g) {
    return std::vector<Tensor>{index_copy<true>(g, dim, idx, in_shape)};
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
  Tensor out = gather_scatter<false>(x.detach(), dim, index, {});
  Tensor ix = index.detach();
  Shape in_shape = x.shape();
  record(out, "gather", {x}, [=](const Tensor& g) {
    return std::vector<Tensor>{gather_scatter<true>(g, dim, ix, in_shape)};
  });
  return out;
}

}  // namespace scion

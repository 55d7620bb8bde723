// Index ops: index_select and its adjoint index_add (deterministic: each output position sums
// its sources in index order, from inverse lists built on the host), gather and its adjoint
// scatter_add (atomic adds into an f32/f64 buffer, as torch's CUDA scatter_add: the order of the
// additions, and so the last bits of a sum of repeated indices, can vary between runs).
#include <vector>

#include "core/cuda/common.cuh"
#include "core/ops.h"

namespace scion::cuda {

namespace {

Tensor device_i64(const std::vector<int64_t>& v) {
  Tensor h = empty({int64_t(v.size())}, DType::i64);
  std::copy(v.begin(), v.end(), h.data<int64_t>());
  Tensor d = dev_empty({int64_t(v.size())}, DType::i64);
  d.copy_(h);
  return d;
}

Tensor contiguous_on_device(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = dev_empty(t.shape(), t.dtype());
  copy_kernel(c, t);
  return c;
}

// Shape sizes and element strides of up to kMaxDims dims, for gather/scatter coordinates.
struct Geometry {
  int ndim;
  int64_t sizes[kMaxDims], strides[kMaxDims];
};
Geometry geometry(const Shape& shape, const Shape& strides) {
  SCION_CHECK(shape.size() <= size_t(kMaxDims), "gather/scatter on CUDA: at most ", kMaxDims,
              " dims");
  Geometry g{};
  g.ndim = int(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    g.sizes[d] = shape[d];
    g.strides[d] = strides[d];
  }
  return g;
}

// Offset in the target (strides t) of position p of the index's shape, with p[dim] = k.
__device__ __forceinline__ int64_t moved_offset(const Geometry& ix, const Geometry& t, int dim,
                                                int64_t p, int64_t k) {
  int64_t off = 0;
  for (int d = ix.ndim - 1; d >= 0; --d) {
    const int64_t c = p % ix.sizes[d];
    p /= ix.sizes[d];
    off += (d == dim ? k : c) * t.strides[d];
  }
  return off;
}

}  // namespace

Tensor index_select_kernel(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                           const Shape& out_shape) {
  Tensor out = dev_empty(out_shape, src.dtype());
  if (out.numel() == 0) return out;
  const Tensor s = contiguous_on_device(src);
  const Tensor di = device_i64(idx);
  const Around in = around(src.shape(), dim), o = around(out_shape, dim);
  const int64_t* ip = di.data<int64_t>();
  SCION_DISPATCH_ALL(src.dtype(), T, {
    const T* sp = static_cast<const T*>(s.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t n_out = o.n, inner = o.inner, n_in = in.n;
    for_index(out.numel(), [=] __device__(int64_t e) {
      const int64_t i = e % inner, j = (e / inner) % n_out, a = e / (inner * n_out);
      op[e] = sp[(a * n_in + ip[j]) * inner + i];
    });
  });
  return out;
}

Tensor index_add_kernel(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                        const Shape& out_shape) {
  Tensor out = dev_empty(out_shape, src.dtype());
  if (out.numel() == 0) return out;
  // Inverse lists: for output position k, the source positions j with idx[j] == k, in order.
  const int64_t n_out = out_shape[size_t(dim)];
  std::vector<int64_t> start(size_t(n_out) + 1, 0), order(idx.size());
  for (int64_t k : idx) ++start[size_t(k) + 1];
  for (size_t k = 0; k < size_t(n_out); ++k) start[k + 1] += start[k];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (size_t j = 0; j < idx.size(); ++j) order[size_t(fill[size_t(idx[j])]++)] = int64_t(j);
  const Tensor dstart = device_i64(start),
               dorder = device_i64(order.empty() ? std::vector<int64_t>{0} : order);
  const Tensor s = contiguous_on_device(src);
  const Around in = around(src.shape(), dim);
  const int64_t* st = dstart.data<int64_t>();
  const int64_t* ord = dorder.data<int64_t>();
  SCION_DISPATCH_FLOATING(src.dtype(), "index_add", T, {
    using A = acc<T>;
    const T* sp = static_cast<const T*>(s.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    const int64_t inner = in.inner, n_in = in.n;
    for_index(out.numel(), [=] __device__(int64_t e) {
      const int64_t i = e % inner, k = (e / inner) % n_out, a = e / (inner * n_out);
      A sum = 0;
      for (int64_t q = st[k]; q < st[k + 1]; ++q) sum += load(sp + (a * n_in + ord[q]) * inner + i);
      store(op + e, sum);
    });
  });
  return out;
}

Tensor gather_kernel(const Tensor& src, int64_t dim, const Tensor& index) {
  Tensor out = dev_empty(index.shape(), src.dtype());
  if (out.numel() == 0) return out;
  const Tensor ix = contiguous_on_device(index);
  const Geometry gi = geometry(index.shape(), contiguous_strides(index.shape()));
  const Geometry gs = geometry(src.shape(), src.strides());
  const int64_t* ip = ix.data<int64_t>();
  const int d = int(dim);
  SCION_DISPATCH_ALL(src.dtype(), T, {
    const T* sp = static_cast<const T*>(src.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    for_index(out.numel(),
              [=] __device__(int64_t p) { op[p] = sp[moved_offset(gi, gs, d, p, ip[p])]; });
  });
  return out;
}

Tensor scatter_add_kernel(const Tensor& src, int64_t dim, const Tensor& index,
                          const Shape& out_shape) {
  Tensor out = dev_empty(out_shape, src.dtype());
  const DType accum = src.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor buf = dev_empty(out_shape, accum);
  fill_kernel(buf, 0.0);
  if (index.numel() > 0) {
    const Tensor ix = contiguous_on_device(index), s = contiguous_on_device(src);
    const Geometry gi = geometry(index.shape(), contiguous_strides(index.shape()));
    const Geometry go = geometry(out_shape, contiguous_strides(out_shape));
    const int64_t* ip = ix.data<int64_t>();
    const int d = int(dim);
    SCION_DISPATCH_FLOATING(src.dtype(), "scatter_add", T, {
      using A = acc<T>;
      const T* sp = static_cast<const T*>(s.raw_data());
      A* bp = static_cast<A*>(buf.raw_data());
      for_index(index.numel(), [=] __device__(int64_t p) {
        atomicAdd(bp + moved_offset(gi, go, d, p, ip[p]), load(sp + p));
      });
    });
  }
  copy_kernel(out, buf);
  return out;
}

}  // namespace scion::cuda

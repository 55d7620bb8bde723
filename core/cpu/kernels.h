// CPU kernels behind the ops in core/ops.h: plain loops for what oneDNN has no primitive for (or
// for f64 reference paths), each computing in acc_t<T> and writing a fresh output tensor.
#pragma once

#include <vector>

#include "core/backend.h"

namespace scion::cpu {

using scion::BinaryOp;
using scion::ConvShape;
using scion::UnaryOp;

// dst = src broadcast to dst's shape, converting the dtype; fill; dst += alpha * src (broadcast);
// dst *= value. dst may be any strided view.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);
void add_scaled(const Tensor& dst, const Tensor& src, double alpha);
void scale(const Tensor& dst, double value);

// Element i of contiguous floating t = r.sample(philox4x32(r.key, r.counter + i, r.stream)).
void random_fill(const Tensor& t, const RandomFill& r);

// out = op(a, b) broadcast to `shape`; a and b share dtype `compute`; comparisons yield bool.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor unary(UnaryOp op, const Tensor& x);
// d gelu(x)/dx * g.
Tensor gelu_backward(const Tensor& g, const Tensor& x, bool tanh_form);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// Along `dim`: out[..., j, ...] = src[..., idx[j], ...] (out_shape given), and its adjoint
// index_add into zeros of out_shape (repeated indices sum); gather: out[p] = src[p with p[dim] =
// index[p]] (index i64, same ndim), and its adjoint scatter_add into zeros of out_shape.
Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                    const Shape& out_shape);
Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                 const Shape& out_shape);
Tensor gather(const Tensor& src, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Shape& out_shape);

// Sum over `dims` (all when empty): column sums in place when the reduced dims lead a contiguous
// tensor, otherwise the kept dims are permuted first and each row is summed in f64.
Tensor reduce_sum(const Tensor& x, const Shape& dims, bool keepdim);
// Max along one dim: values and first indices.
void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values, Tensor& indices);

// Layer norm over the last `d` elements of each row of contiguous x. mean, rstd: (rows) f32/f64.
void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                        Tensor& y, Tensor& mean, Tensor& rstd);
void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                         const Tensor& rstd, int64_t d, Tensor& dx, Tensor& dw, Tensor& db);

// Optimizer updates and the squared norm (core/cpu/optim.cpp); see Backend.
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const OptimStep& s);
void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s);
double sum_squares(const Tensor& x);

}  // namespace scion::cpu

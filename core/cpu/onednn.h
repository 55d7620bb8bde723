// The oneDNN side of the CPU backend: one engine and stream, memory descriptors built from a
// tensor's shape and strides (so transposed views go in without copies), and cached primitives.
// Primitive descriptors are cached by a key of everything that defines them (kind, shapes,
// strides, dtypes, attributes), so a training step creates each primitive once.
// Every call is checked: oneDNN's exceptions become scion::Error naming the primitive and shapes.
#pragma once

#include <dnnl.hpp>

#include "core/backend.h"

namespace scion::cpu {

dnnl::engine& engine();
dnnl::stream& stream();
dnnl::memory::data_type dnnl_dtype(DType t);
bool dnnl_supports(DType t);  // f32, and bf16 where oneDNN has bf16 primitives (isa.h)
dnnl::memory::desc memory_desc(const Tensor& t);
dnnl::memory make_memory(const Tensor& t);

// dst = eltwise(src) with oneDNN's algorithm and (alpha, beta); src and dst contiguous, same shape.
void eltwise_forward(dnnl::algorithm alg, float alpha, float beta, const Tensor& src,
                     const Tensor& dst);
// diff_src = d eltwise / d src * diff_dst, evaluated at `data` (src, or dst for *_use_dst_for_bwd).
void eltwise_backward(dnnl::algorithm alg, float alpha, float beta, const Tensor& diff_dst,
                      const Tensor& data, const Tensor& diff_src);

// dst (B, M, N) = src (B|1, M, K) @ wei (B|1, K, N) (+ bias (1, 1, N)); any strides on src/wei.
// 2-d operands are allowed too (then all three are 2-d).
void matmul(const Tensor& src, const Tensor& wei, const Tensor& bias, const Tensor& dst);

// Softmax or log-softmax along `axis` of a contiguous tensor, and their backward from dst.
void softmax_forward(bool log, int axis, const Tensor& src, const Tensor& dst);
void softmax_backward(bool log, int axis, const Tensor& dst, const Tensor& diff_dst,
                      const Tensor& diff_src);

using scion::ConvShape;
// Activations contiguous in NCHW or NHWC (ConvShape::channels_last), weights contiguous OIHW.
// oneDNN picks its layouts and we reorder around the call, except that depthwise convolutions of
// NHWC tensors run in NHWC (oneDNN 2.6's brdgmm forward and JIT backward kernels), so an NHWC
// model pays no reorders, and depthwise backward-weights always runs in NHWC (the only fast
// kernel).
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                    const ConvShape& cs);
void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const ConvShape& cs);
void conv2d_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& db,
                             const ConvShape& cs);
// Bytes of the copies in oneDNN's own layouts that the convolutions have made so far (scion's
// caching allocator gives them, for the length of the call).
int64_t onednn_layout_copy_bytes();

}  // namespace scion::cpu

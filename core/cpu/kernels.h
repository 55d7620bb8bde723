// CPU kernels behind the ops in core/ops.h: plain loops for what oneDNN has no primitive for (or
// for f64 reference paths), each computing in acc_t<T> and writing a fresh output tensor, and
// hand-vectorized f32/bf16 kernels where they beat oneDNN.
// The hot ones (kernel_api.inc) are compiled once per ISA level; calling scion::cpu::f runs the
// variant for active_isa() (dispatch.cpp), and isa_<level>::f names one variant (tests).
#pragma once

#include <vector>

#include "core/backend.h"

namespace scion::cpu {

using scion::BinaryOp;
using scion::ConvShape;
using scion::UnaryOp;

#include "core/cpu/kernel_api.inc"

namespace isa_plain {
#include "core/cpu/kernel_api.inc"
}
namespace isa_avx2 {
#include "core/cpu/kernel_api.inc"
}
namespace isa_avx512 {
#include "core/cpu/kernel_api.inc"
}

// Whether the fast gelu/softmax kernels take t: f32 or bf16, contiguous.
inline bool fast_kernel_applies(const Tensor& t) {
  return (t.dtype() == DType::f32 || t.dtype() == DType::bf16) && t.is_contiguous();
}

// Whether this CPU (under SCION_MAX_ISA) runs bf16 attention's products on bf16 dot products
// (the AVX512-BF16 micro-kernel), and whether on AMX tiles (a CPU with AMX-BF16 whose OS grants
// this process the tile state, under a cap of amx).
bool attention_bf16_kernel_available();
bool attention_amx_kernel_available();

// Whether a bf16 matmul without bf16 GEMM primitives runs block-wise (matmul_bf16_widened) where
// it can; SCION_BF16_WIDENED_BLOCKS=0 keeps whole widened copies (to compare the two).
bool bf16_widened_blocks_enabled();

// Along `dim`: out[..., j, ...] = src[..., idx[j], ...] (out_shape given), and its adjoint
// index_add into zeros of out_shape (repeated indices sum); gather: out[p] = src[p with p[dim] =
// index[p]] (index i64, same ndim), and its adjoint scatter_add into zeros of out_shape.
Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                    const Shape& out_shape);
Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                 const Shape& out_shape);
Tensor gather(const Tensor& src, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index, const Shape& out_shape);

}  // namespace scion::cpu

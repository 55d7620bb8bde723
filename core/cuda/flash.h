// Fused attention kernels for bf16 (flash.cu), used by attention.cu where they fit.
#pragma once

#include <initializer_list>

#include "core/tensor.h"

namespace scion::cuda {

// Whether the fused kernels take this case: bf16 qkv (B, N, 3 H d) with d 32 or 64, contiguous
// and 16-byte aligned, as are `others` (the output, its gradient, the input's gradient).
bool flash_attention_fits(const Tensor& qkv, int64_t heads, std::initializer_list<Tensor> others);
void flash_attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                             const Tensor& lse);
void flash_attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                              const Tensor& lse, int64_t heads, double scale, const Tensor& dqkv);

}  // namespace scion::cuda

// Hand-vectorized f32/bf16 kernels (core/cpu/activation.cpp) used instead of oneDNN where they are
// faster on these CPUs: exact gelu and softmax over the last dim of a contiguous tensor, and fused attention.
#pragma once

#include "core/tensor.h"

namespace scion::cpu {

bool fast_kernel_applies(const Tensor& t);  // f32 or bf16, contiguous
void gelu_erf_forward(const Tensor& x, const Tensor& y);
void gelu_erf_backward(const Tensor& g, const Tensor& x, const Tensor& dx);
void softmax_lastdim_forward(const Tensor& x, const Tensor& y);
void softmax_lastdim_backward(const Tensor& y, const Tensor& dy, const Tensor& dx);

// Fused attention (core/cpu/attention.cpp), f32 or bf16; see Backend::attention_forward.
void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                       const Tensor& lse);
void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout, const Tensor& lse,
                        int64_t heads, double scale, const Tensor& dqkv);
// Whether this CPU runs bf16 attention on the AVX512-BF16 micro-kernel.
bool attention_bf16_kernel_available();

}  // namespace scion::cpu

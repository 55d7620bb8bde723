// Hand-vectorized f32/bf16 kernels (core/cpu/activation.cpp) used instead of oneDNN where they are
// faster on these CPUs: exact gelu and softmax over the last dim of a contiguous tensor.
#pragma once

#include "core/tensor.h"

namespace scion::cpu {

bool fast_kernel_applies(const Tensor& t);  // f32 or bf16, contiguous
void gelu_erf_forward(const Tensor& x, const Tensor& y);
void gelu_erf_backward(const Tensor& g, const Tensor& x, const Tensor& dx);
void softmax_lastdim_forward(const Tensor& x, const Tensor& y);
void softmax_lastdim_backward(const Tensor& y, const Tensor& dy, const Tensor& dx);

}  // namespace scion::cpu

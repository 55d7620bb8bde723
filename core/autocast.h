// bf16 autocast, as torch.autocast("cpu", dtype=torch.bfloat16) with the policy scion uses: while
// an AutocastGuard is alive on this thread, matmul, linear and conv2d cast their floating inputs
// (activations, weights, biases) to bf16 and compute with f32 accumulation, and layer_norm,
// softmax, log_softmax and cross_entropy cast theirs to f32 (CUDA autocast's lists, on every
// device: CPU autocast runs layer_norm in bf16). One deliberate difference from torch: depthwise
// convolutions compute in f32 (scion runs them on f32 kernels anyway) and keep a bf16 copy of
// their input for the weight gradient, as torch's bf16 ones keep theirs (core/conv.cpp).
// Parameters stay f32 (master weights): the casts are ordinary differentiable `to` ops, so
// gradients arrive in f32.
#pragma once

#include "core/tensor.h"

namespace scion {

bool autocast_enabled();

class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_;
};

// Under autocast: f32 -> bf16 (for matmul-class ops); otherwise t unchanged. Undefined stays
// undefined.
Tensor autocast_low(const Tensor& t);
// Under autocast: bf16 -> f32 (for norms, softmax, losses); otherwise t unchanged.
Tensor autocast_f32(const Tensor& t);

}  // namespace scion

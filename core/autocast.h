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

#include <vector>

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

// A model's forward under autocast (nn/vit.cpp, nn/convnext.cpp): while alive, the f32 tensors
// of `params` (the model's linear and convolution weights and biases, nn::autocast_parameters)
// are cast to bf16 all at once (to_all: one kernel on a GPU, where a cast per weight and bias was
// ~100 launches per ViT-T step) and autocast_low of one of them returns that cast, as torch's
// autocast caches its casts of leaf tensors. Each cast is the differentiable cast autocast_low
// would have made (the same bits, the same gradient). Nothing happens without autocast. Scopes
// nest (a teacher's forward within a student's step).
class AutocastCache {
 public:
  explicit AutocastCache(const std::vector<Tensor>& params);
  ~AutocastCache();
  AutocastCache(const AutocastCache&) = delete;
  AutocastCache& operator=(const AutocastCache&) = delete;

 private:
  bool active_ = false;
};

// Under autocast: f32 -> bf16 (for matmul-class ops; a parameter of a live AutocastCache gives
// its cast); otherwise t unchanged. Undefined stays undefined.
Tensor autocast_low(const Tensor& t);
// Under autocast: bf16 -> f32 (for norms, softmax, losses); otherwise t unchanged.
Tensor autocast_f32(const Tensor& t);

}  // namespace scion

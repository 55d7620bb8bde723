// The public API of scion's core in one include: tensors and views, autograd, ops, RNG,
// safetensors.
//
//   #include "core/scion.h"
//   using namespace scion;
//   Tensor w = randn({10, 784}).requires_grad_();
//   Tensor loss = cross_entropy(linear(x, w), labels);
//   loss.backward();          // w.grad() now holds d loss / d w
//   { NoGradGuard ng; w.add_(w.grad(), -0.1); }
#pragma once

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/tensor.h"

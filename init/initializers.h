// Initializers fill a built model's parameters (modules only allocate). This file holds timm's
// default initialization, scion's `trunc_normal` initializer:
//   ViT (timm init_weights_vit_timm): Linear weights trunc_normal(std .02) and zero bias; pos_embed
//     trunc_normal(.02); cls_token normal(1e-6); the patch-embedding conv keeps PyTorch's default
//     (kaiming_uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in)) for weight and bias);
//     LayerNorm weight 1, bias 0; LayerScale gamma = layer_scale.
//   ConvNeXt (timm _init_weights): Conv2d and Linear weights trunc_normal(.02), biases 0; LayerNorm
//     1/0; gamma = layer_scale (1e-6 by default).
// timm's trunc_normal_ truncates at absolute bounds [-2, 2], which at std .02 is no truncation.
#pragma once

#include "core/rng.h"
#include "nn/model.h"

namespace scion::init {

void trunc_normal_init(nn::Model& model, Generator& gen);

}  // namespace scion::init

// Layer forwards. Dropout and DropPath draw from the default generator, so a seeded run repeats.
#include "nn/layers.h"

#include <cmath>
#include <functional>

#include "core/autocast.h"

namespace scion::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, bool conv1x1)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", conv1x1 ? zeros({out, in, 1, 1}) : zeros({out, in}));
  if (with_bias) bias = register_parameter("bias", zeros({out}));
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight.dim() == 4 ? weight.view({out_features, in_features}) : weight, bias);
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding, int64_t groups,
               bool with_bias) {
  SCION_CHECK(in % groups == 0 && out % groups == 0, "Conv2d: channels ", in, " -> ", out,
              " not divisible by groups ", groups);
  options.stride = {stride, stride};
  options.padding = {padding, padding};
  options.groups = groups;
  weight = register_parameter("weight", zeros({out, in / groups, k, k}));
  if (with_bias) bias = register_parameter("bias", zeros({out}));
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight, bias, options);
}

LayerNorm::LayerNorm(int64_t d, double e, bool affine) : dim(d), eps(e) {
  if (affine) {
    weight = register_parameter("weight", zeros({d}));
    bias = register_parameter("bias", zeros({d}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  return layer_norm(x, {dim}, weight, bias, eps);
}

Tensor LayerNorm::forward_low(const Tensor& x) {
  const bool f32 = x.dtype() == DType::f32 || x.dtype() == DType::bf16;  // f32 under autocast
  if (!autocast_enabled() || !f32 || (weight.defined() && weight.dtype() != DType::f32))
    return LayerNorm::forward(x);  // over the last dim (LayerNorm2d's permutes around this)
  return layer_norm_to(x, {dim}, weight, bias, eps, DType::bf16);
}

Tensor LayerNorm2d::forward_low(const Tensor& x) {
  return LayerNorm::forward_low(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

Tensor LayerNorm2d::forward(const Tensor& x) {
  return LayerNorm::forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

Tensor Dropout::forward(const Tensor& x) {
  return dropout(x, p, is_training());
}

Tensor DropPath::forward(const Tensor& x) {
  if (!active()) return x;
  double keep = 1.0 - p;
  Shape mask_shape(size_t(x.dim()), 1);
  mask_shape[0] = x.size(0);
  DType dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor mask = bernoulli(mask_shape, keep, dt, default_generator(), x.device());
  return x * (mask * (1.0 / keep));
}

LayerScale::LayerScale(int64_t dim) {
  gamma = register_parameter("gamma", zeros({dim}));
}

Mlp::Mlp(int64_t in, int64_t hidden, double drop, bool conv1x1) {
  fc1 = register_module("fc1", std::make_shared<Linear>(in, hidden, true, conv1x1));
  act = register_module("act", std::make_shared<GELU>());
  drop1 = register_module("drop1", std::make_shared<Dropout>(drop));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, in, true, conv1x1));
  drop2 = register_module("drop2", std::make_shared<Dropout>(drop));
}

Tensor Mlp::forward(const Tensor& x) {
  return drop2->forward(fc2->forward(drop1->forward(act->forward(fc1->forward(x)))));
}

Attention::Attention(int64_t dim, int64_t heads, bool qkv_bias, double adrop, double pdrop)
    : num_heads(heads) {
  SCION_CHECK(heads > 0 && dim % heads == 0, "Attention: dim ", dim,
              " is not divisible by num_heads ", heads);
  head_dim = dim / heads;
  scale = 1.0 / std::sqrt(double(head_dim));
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, qkv_bias));
  attn_drop = register_module("attn_drop", std::make_shared<Dropout>(adrop));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim));
  proj_drop = register_module("proj_drop", std::make_shared<Dropout>(pdrop));
}

Tensor Attention::forward(const Tensor& x) {
  int64_t b = x.size(0), n = x.size(1), c = x.size(2);
  Tensor qkv_out = qkv->forward(x);  // (B, N, 3 * C) = (B, N, 3, H, hd)
  // Without attention dropout (timm's default, and always in evaluation) the fused op, as timm's
  // fused_attn path; with it, the same math step by step so that the dropout mask applies to the
  // probabilities.
  if (!(is_training() && attn_drop->p > 0))
    return proj_drop->forward(proj->forward(attention(qkv_out, num_heads, scale)));
  Tensor t = qkv_out.reshape({b, n, 3, num_heads, head_dim}).permute({2, 0, 3, 1, 4});
  Tensor q = t.select(0, 0), k = t.select(0, 1), v = t.select(0, 2);
  Tensor attn = attn_drop->forward(softmax(matmul(q * scale, k.transpose(-2, -1)), -1));
  Tensor y = matmul(attn, v).transpose(1, 2).reshape({b, n, c});  // (B, N, C)
  return proj_drop->forward(proj->forward(y));
}

PatchEmbed::PatchEmbed(int64_t img, int64_t patch, int64_t in_chans, int64_t embed_dim)
    : img_size(img), patch_size(patch) {
  SCION_CHECK(patch > 0 && img % patch == 0, "PatchEmbed: img_size ", img,
              " is not a multiple of patch_size ", patch);
  num_patches = (img / patch) * (img / patch);
  proj = register_module("proj", std::make_shared<Conv2d>(in_chans, embed_dim, patch, patch));
}

Tensor PatchEmbed::forward(const Tensor& x) {
  SCION_CHECK(x.dim() == 4 && x.size(2) == img_size && x.size(3) == img_size,
              "PatchEmbed: expected ", "images (B, C, ", img_size, ", ", img_size, "), got ",
              shape_str(x.shape()));
  return proj->forward(x).flatten(2).transpose(1, 2);  // (B, N, C)
}

std::vector<Tensor> autocast_parameters(const Module& m) {
  std::vector<Tensor> out;
  std::function<void(const Module&)> walk = [&](const Module& mod) {
    if (auto* l = dynamic_cast<const Linear*>(&mod)) out.insert(out.end(), {l->weight, l->bias});
    if (auto* c = dynamic_cast<const Conv2d*>(&mod))
      if (!is_depthwise(c->weight, c->options.groups)) out.insert(out.end(), {c->weight, c->bias});
    for (const auto& [name, child] : mod.named_children()) walk(*child);
  };
  walk(m);
  return out;
}

}  // namespace scion::nn

// Layers with torch.nn / timm names and semantics. Parameter shapes follow PyTorch: Linear weight
// (out, in), Conv2d weight (out, in/groups, kh, kw), LayerNorm weight/bias (dim).
#pragma once

#include <memory>
#include <string>

#include "core/ops.h"
#include "nn/module.h"

namespace scion::nn {

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
};

// conv1x1: the weight is stored as a 1x1 convolution's, (out, in, 1, 1) (timm's ConvMlp), and
// used as the (out, in) matrix it is.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, bool conv1x1 = false);
  Tensor forward(const Tensor& x) override;
  int64_t in_features, out_features;
  Tensor weight, bias;  // (out, in) or (out, in, 1, 1), (out) or undefined
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Conv2dOptions options;
  Tensor weight, bias;  // (out, in/groups, k, k), (out) or undefined
};

// LayerNorm over the last dim (timm's default eps for ViT/ConvNeXt is 1e-6).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-6, bool affine = true);
  Tensor forward(const Tensor& x) override;
  // For a norm whose output only feeds a layer autocast runs in bf16 (timm's blocks: norm1 -> qkv,
  // norm2 -> fc1; ConvNeXt's downsampling norm -> conv): under autocast, forward(x) already rounded
  // to bf16, the dtype that layer would cast it to, in the norm's own pass (layer_norm_to; the same
  // bits as forward then the cast, both ways).
  // Otherwise forward(x).
  virtual Tensor forward_low(const Tensor& x);
  int64_t dim;
  double eps;
  Tensor weight, bias;
};

// timm's LayerNorm2d: LayerNorm over channels of (N, C, H, W), computed channels-last.
class LayerNorm2d : public LayerNorm {
 public:
  using LayerNorm::LayerNorm;
  Tensor forward(const Tensor& x) override;
  Tensor forward_low(const Tensor& x) override;
};

class GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none") : approximate_(std::move(approximate)) {}
  Tensor forward(const Tensor& x) override { return gelu(x, approximate_); }

 private:
  std::string approximate_;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5) : p(p) {}
  Tensor forward(const Tensor& x) override;
  double p;
};

// Stochastic depth per sample (timm's DropPath, scale_by_keep): in training, each sample's
// branch output is zeroed with probability p and the survivors are scaled by 1/(1-p).
class DropPath : public Module {
 public:
  explicit DropPath(double p = 0.0) : p(p) {}
  Tensor forward(const Tensor& x) override;
  // Whether forward draws a mask (training with p > 0); otherwise it is the identity.
  bool active() const { return is_training() && p > 0.0; }
  double p;
};

class LayerScale : public Module {
 public:
  explicit LayerScale(int64_t dim);
  Tensor forward(const Tensor& x) override { return x * gamma; }
  Tensor gamma;  // (dim)
};

// timm's Mlp: fc1 -> GELU -> dropout -> fc2 -> dropout.
class Mlp : public Module {
 public:
  Mlp(int64_t in_features, int64_t hidden_features, double drop = 0.0, bool conv1x1 = false);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<GELU> act;
  std::shared_ptr<Dropout> drop1, drop2;
};

// timm's Attention with a fused qkv projection: x (B, N, C) -> heads of head_dim = C / heads,
// softmax(q k^T * head_dim^-0.5) v, then proj.
class Attention : public Module {
 public:
  Attention(int64_t dim, int64_t num_heads, bool qkv_bias = true, double attn_drop = 0.0,
            double proj_drop = 0.0);
  Tensor forward(const Tensor& x) override;
  int64_t num_heads, head_dim;
  double scale;
  std::shared_ptr<Linear> qkv, proj;
  std::shared_ptr<Dropout> attn_drop, proj_drop;
};

// Image to patch tokens: a conv with kernel = stride = patch, then (B, C, H', W') -> (B, H'W', C).
class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim);
  Tensor forward(const Tensor& x) override;
  int64_t img_size, patch_size, num_patches;
  std::shared_ptr<Conv2d> proj;
};

// The parameters autocast casts to bf16 in a forward of m: every Linear's and every Conv2d's
// weight and bias but a depthwise one's (conv2d runs those in f32), for a model's AutocastCache.
std::vector<Tensor> autocast_parameters(const Module& m);

}  // namespace scion::nn

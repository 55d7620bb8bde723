// Initializers fill a built model's parameters (modules only allocate), chosen by the config's
// `init:` section and matched by parameter-name patterns:
//   trunc_normal     timm's default init. ViT (init_weights_vit_timm): Linear weights
//                    trunc_normal(std .02), zero biases, pos_embed trunc_normal(.02), cls_token
//                    normal(1e-6), the patch-embedding conv PyTorch's default
//                    (U(+-1/sqrt(fan_in))); ConvNeXt (_init_weights): Conv2d and Linear weights
//                    trunc_normal(.02), zero biases. Everywhere LayerNorm weight 1, bias 0 and
//                    layer scale gamma = layer_scale. (timm truncates at absolute +-2, which at std
//                    .02 is no truncation.)
//   xavier_uniform / xavier_normal / kaiming_uniform / kaiming_normal
//                    the named rule on every weight matrix and conv kernel (fan by `mode`, gain
//                    `gain`, default 1 for Xavier and sqrt(2) for Kaiming); the rest as
//                    trunc_normal.
//   checkpoint       load a weight file by key, strict, the head excluded when the class
//                    count differs.
//   weight_selection select from a larger teacher (init/weight_selection.h).
//   mimetic          data-free (Trockman & Kolter 2023): attention weights whose products W_q^T W_k
//                    and W_v^T W_proj^T imitate a trained ViT's (init/mimetic.cpp); ViT only.
//   net2net          grow from a smaller trained model (init/net2net.h): `teacher` is its weights,
//                    `teacher_model` its registered name (default: the model's own), `noise`.
#pragma once

#include <string>
#include <vector>

#include "core/rng.h"
#include "nn/model.h"

namespace scion::init {

struct InitConfig {
  std::string type = "trunc_normal";
  std::string teacher, teacher_model;  // weight_selection / net2net source weights (and model name)
  std::string layers = "first", elements = "uniform";
  std::string qkv = "per_block";   // weight_selection: per_block | official (fused-row linspace)
  std::string components = "all";  // weight_selection: "all", "attn,mlp", "-attn" (ablation)
  std::string checkpoint;
  std::string mode = "fan_in";  // xavier/kaiming fan
  double gain = 0.0;            // 0: the rule's default
  double noise = 0.0;           // net2net symmetry-breaking noise
  bool head = false;            // weight_selection: also select the head when class counts match
  bool head_norm = false;       // weight_selection: also select ConvNeXt's head.norm
};

// The registered initializer names, in the order the docs list them.
const std::vector<std::string>& initializer_names();

// Runs the configured initializer; `source` names the config in errors.
void initialize(nn::Model& model, const InitConfig& cfg, Generator& gen, const std::string& source);

void trunc_normal_init(nn::Model& model, Generator& gen);
// Mimetic initialization of a ViT (init/mimetic.cpp); InputError for another family.
void mimetic_init(nn::Model& model, Generator& gen, const std::string& source);
// The SVD of a row-major n x n matrix a = U diag(s) V^T (one-sided Jacobi; s decreasing): u and v
// row-major n x n, their columns the singular vectors.
void svd_square(const std::vector<double>& a, int64_t n, std::vector<double>& u,
                std::vector<double>& s, std::vector<double>& v);
// An InputError naming `what` and the first tensor of `model` that holds NaN or infinity.
void require_finite(const nn::Module& model, const std::string& what);
// fan_in / fan_out of a weight as torch.nn.init computes them.
void fans(const Tensor& w, int64_t& fan_in, int64_t& fan_out);

}  // namespace scion::init

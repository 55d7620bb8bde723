// ViT forward: patches -> [cls; tokens] + pos_embed -> blocks -> norm -> head(cls token).
#include "nn/vit.h"

#include <map>

#include "core/autocast.h"

namespace scion::nn {

VitBlock::VitBlock(int64_t dim, int64_t heads, double mlp_ratio, double dp, double ls) {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, 1e-6));
  attn = register_module("attn", std::make_shared<Attention>(dim, heads));
  ls1 = ls > 0 ? ModulePtr(std::make_shared<LayerScale>(dim))
               : ModulePtr(std::make_shared<Identity>());
  register_module("ls1", ls1);
  drop_path1 = register_module("drop_path1", std::make_shared<DropPath>(dp));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, 1e-6));
  mlp = register_module("mlp", std::make_shared<Mlp>(dim, int64_t(double(dim) * mlp_ratio)));
  ls2 = ls > 0 ? ModulePtr(std::make_shared<LayerScale>(dim))
               : ModulePtr(std::make_shared<Identity>());
  register_module("ls2", ls2);
  drop_path2 = register_module("drop_path2", std::make_shared<DropPath>(dp));
}

Tensor VitBlock::forward(const Tensor& x) {
  Tensor h = x + drop_path1->forward(ls1->forward(attn->forward(norm1->forward_low(x))));
  return h + drop_path2->forward(ls2->forward(mlp->forward(norm2->forward_low(h))));
}

namespace {

struct VitSize {
  int64_t dim, depth, heads;
};

const std::map<std::string, VitSize>& vit_sizes() {
  static const std::map<std::string, VitSize> sizes = {{"vit_tiny", {192, 12, 3}},
                                                       {"vit_small", {384, 12, 6}},
                                                       {"vit_base", {768, 12, 12}},
                                                       {"vit_large", {1024, 24, 16}}};
  return sizes;
}

}  // namespace

VisionTransformer::VisionTransformer(const ModelConfig& c) : Model(c) {
  const VitSize& base = vit_sizes().at(c.name);
  embed_dim = c.embed_dim.value_or(base.dim);
  depth = c.depth.value_or(base.depth);
  num_heads = c.num_heads.value_or(base.heads);
  double mlp_ratio = c.mlp_ratio.value_or(4.0);
  SCION_CHECK(!c.conv_mlp, "model ", c.name, ": conv_mlp is a ConvNeXt option");
  double ls = c.layer_scale.value_or(0.0);
  SCION_CHECK(embed_dim > 0 && depth > 0 && num_heads > 0 && mlp_ratio > 0, "model ", c.name,
              ": embed_dim, depth, num_heads and mlp_ratio must be positive");
  SCION_CHECK(embed_dim % num_heads == 0, "model.num_heads: embed_dim ", embed_dim,
              " is not divisible by num_heads ", num_heads, " (model ", c.name, ")");
  patch_embed = std::make_shared<PatchEmbed>(c.img_size, c.patch_size, c.in_chans, embed_dim);
  cls_token = register_parameter("cls_token", zeros({1, 1, embed_dim}));
  pos_embed = register_parameter("pos_embed", zeros({1, patch_embed->num_patches + 1, embed_dim}));
  register_module("patch_embed", patch_embed);
  blocks = register_module("blocks", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < depth; ++i) {
    double dp = depth > 1 ? c.drop_path * double(i) / double(depth - 1) : 0.0;
    blocks->push_back(std::make_shared<VitBlock>(embed_dim, num_heads, mlp_ratio, dp, ls));
  }
  norm = register_module("norm", std::make_shared<LayerNorm>(embed_dim, 1e-6));
  head = register_module("head", std::make_shared<Linear>(embed_dim, c.num_classes));
}

const std::string& VisionTransformer::family() const {
  static const std::string f = "vit";
  return f;
}

Tensor VisionTransformer::forward(const Tensor& x) {
  const AutocastCache casts(autocast_enabled() ? autocast_parameters(*this)
                                               : std::vector<Tensor>{});
  Tensor t = patch_embed->forward(x);  // (B, N, D)
  int64_t b = t.size(0);
  // Under autocast the f32 class token and the bf16 patch tokens join in f32, as torch.cat
  // promotes them in timm's _pos_embed.
  t = cat({cls_token.expand({b, 1, embed_dim}), t}, 1) + pos_embed;  // (B, 1 + N, D)
  for (size_t i = 0; i < blocks->size(); ++i) t = (*blocks)[i]->forward(t);
  t = norm->forward(t);
  return head->forward(t.select(1, 0));  // class token
}

}  // namespace scion::nn

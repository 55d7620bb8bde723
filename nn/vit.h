// Vision Transformer with timm's architecture and state_dict keys (timm VisionTransformer with
// class token, learned position embedding over class + patch tokens, pre-norm blocks, LayerNorm
// eps 1e-6, exact GELU, qkv bias, optional LayerScale "ls1.gamma"/"ls2.gamma", token pooling).
// Drop path rates rise linearly over the blocks from 0 to drop_path, as timm.
#pragma once

#include "nn/layers.h"
#include "nn/model.h"

namespace scion::nn {

class VitBlock : public Module {
 public:
  VitBlock(int64_t dim, int64_t heads, double mlp_ratio, double drop_path, double layer_scale);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
  ModulePtr ls1, ls2;  // LayerScale or Identity
  std::shared_ptr<DropPath> drop_path1, drop_path2;
};

class VisionTransformer : public Model {
 public:
  explicit VisionTransformer(const ModelConfig& c);
  Tensor forward(const Tensor& x) override;  // (B, C, H, W) -> (B, num_classes)
  const std::string& family() const override;
  int64_t embed_dim, depth, num_heads;
  Tensor cls_token;  // (1, 1, D)
  Tensor pos_embed;  // (1, 1 + N, D)
  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<ModuleList> blocks;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Linear> head;
};

}  // namespace scion::nn

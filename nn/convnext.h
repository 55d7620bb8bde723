// ConvNeXt with timm's architecture and state_dict keys, in the Linear-MLP form (timm's
// conv_mlp=False): patchify stem (conv 4x4/4 + LayerNorm2d), four stages of [downsample
// (LayerNorm2d
// + conv 2x2/2, stages 1-3)] + blocks (depthwise 7x7 conv -> channels-last LayerNorm -> Linear MLP
// -> layer scale "gamma" -> drop path + residual; with conv_mlp the fc weights are stored as timm's
// 1x1 convolutions, (4C, C, 1, 1), and computed as the same Linear), then NormMlpClassifierHead (global average pool,
// LayerNorm2d "head.norm", Linear "head.fc"). LayerNorm eps 1e-6. Drop path rates rise linearly
// over all blocks from 0 to drop_path, as timm.
//
// After the stem's LayerNorm2d the activations are channels-last in memory (NHWC), and stay so:
// the depthwise convs run on oneDNN's NHWC kernels and the permutes around the MLP are free.
#pragma once

#include "nn/layers.h"
#include "nn/model.h"

namespace scion::nn {

class ConvNextBlock : public Module {
 public:
  ConvNextBlock(int64_t dim, double drop_path, double layer_scale, bool conv_mlp);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv_dw;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Mlp> mlp;
  Tensor gamma;  // (dim) or undefined without layer scale
  std::shared_ptr<DropPath> drop_path;
};

class ConvNextStage : public Module {
 public:
  ConvNextStage(int64_t in_dim, int64_t out_dim, bool downsample, int64_t depth,
                const std::vector<double>& drop_paths, double layer_scale, bool conv_mlp);
  Tensor forward(const Tensor& x) override;
  ModulePtr downsample;                          // Sequential(LayerNorm2d, Conv2d) or Identity
  std::shared_ptr<LayerNorm2d> downsample_norm;  // its two layers, or null
  std::shared_ptr<Conv2d> downsample_conv;
  std::shared_ptr<Sequential> blocks;
};

class NormMlpClassifierHead : public Module {
 public:
  NormMlpClassifierHead(int64_t dim, int64_t num_classes);
  Tensor forward(const Tensor& x) override;  // (B, C, H, W) -> (B, classes)
  std::shared_ptr<LayerNorm2d> norm;
  std::shared_ptr<Linear> fc;
};

class ConvNeXt : public Model {
 public:
  explicit ConvNeXt(const ModelConfig& c);
  Tensor forward(const Tensor& x) override;
  const std::string& family() const override;
  std::vector<int64_t> depths, dims;
  std::shared_ptr<Sequential> stem, stages;
  std::shared_ptr<NormMlpClassifierHead> head;
};

}  // namespace scion::nn

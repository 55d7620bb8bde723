// ConvNeXt forward.
#include "nn/convnext.h"

#include <map>

#include "core/autocast.h"

namespace scion::nn {

ConvNextBlock::ConvNextBlock(int64_t dim, double dp, double ls, bool conv_mlp) {
  conv_dw = register_module("conv_dw", std::make_shared<Conv2d>(dim, dim, 7, 1, 3, dim));
  norm = register_module("norm", std::make_shared<LayerNorm>(dim, 1e-6));
  mlp = register_module("mlp", std::make_shared<Mlp>(dim, 4 * dim, 0.0, conv_mlp));
  if (ls > 0) gamma = register_parameter("gamma", zeros({dim}));
  drop_path = register_module("drop_path", std::make_shared<DropPath>(dp));
}

Tensor ConvNextBlock::forward(const Tensor& x) {
  Tensor h = conv_dw->forward(x).permute({0, 2, 3, 1});  // (B, H, W, C)
  h = mlp->forward(norm->forward_low(h)).permute({0, 3, 1, 2});
  // x + h * gamma in one pass each way (addcmul: the same numbers) when drop path is the identity.
  if (gamma.defined() && !drop_path->active()) return addcmul(x, h, gamma.reshape({1, -1, 1, 1}));
  if (gamma.defined()) h = h * gamma.reshape({1, -1, 1, 1});
  return drop_path->forward(h) + x;
}

ConvNextStage::ConvNextStage(int64_t in_dim, int64_t out_dim, bool ds, int64_t depth,
                             const std::vector<double>& dps, double ls, bool conv_mlp) {
  if (ds) {
    auto seq = std::make_shared<Sequential>();
    downsample_norm = std::make_shared<LayerNorm2d>(in_dim, 1e-6);
    downsample_conv = std::make_shared<Conv2d>(in_dim, out_dim, 2, 2);
    seq->push_back(downsample_norm);
    seq->push_back(downsample_conv);
    downsample = seq;
  } else {
    SCION_ASSERT(in_dim == out_dim, "stage without downsample changes width");
    downsample = std::make_shared<Identity>();
  }
  register_module("downsample", downsample);
  blocks = register_module("blocks", std::make_shared<Sequential>());
  for (int64_t i = 0; i < depth; ++i)
    blocks->push_back(std::make_shared<ConvNextBlock>(out_dim, dps[i], ls, conv_mlp));
}

Tensor ConvNextStage::forward(const Tensor& x) {
  // norm -> conv: under autocast the norm writes the bf16 input the convolution would cast its
  // result to (forward_low: the same bits, without the cast's pass either way).
  if (downsample_norm)
    return blocks->forward(downsample_conv->forward(downsample_norm->forward_low(x)));
  return blocks->forward(downsample->forward(x));
}

NormMlpClassifierHead::NormMlpClassifierHead(int64_t dim, int64_t classes) {
  norm = register_module("norm", std::make_shared<LayerNorm2d>(dim, 1e-6));
  fc = register_module("fc", std::make_shared<Linear>(dim, classes));
}

Tensor NormMlpClassifierHead::forward(const Tensor& x) {
  Tensor pooled = mean(x, {2, 3}, true);  // (B, C, 1, 1)
  return fc->forward(norm->forward_low(pooled).flatten(1));
}

namespace {

struct ConvNextSize {
  std::vector<int64_t> depths, dims;
};

const std::map<std::string, ConvNextSize>& convnext_sizes() {
  static const std::map<std::string, ConvNextSize> sizes = {
      {"convnext_atto", {{2, 2, 6, 2}, {40, 80, 160, 320}}},
      {"convnext_femto", {{2, 2, 6, 2}, {48, 96, 192, 384}}},
      {"convnext_pico", {{2, 2, 6, 2}, {64, 128, 256, 512}}},
      {"convnext_nano", {{2, 2, 8, 2}, {80, 160, 320, 640}}},
      {"convnext_tiny", {{3, 3, 9, 3}, {96, 192, 384, 768}}},
      {"convnext_small", {{3, 3, 27, 3}, {96, 192, 384, 768}}},
      {"convnext_base", {{3, 3, 27, 3}, {128, 256, 512, 1024}}}};
  return sizes;
}

}  // namespace

ConvNeXt::ConvNeXt(const ModelConfig& c) : Model(c) {
  const ConvNextSize& base = convnext_sizes().at(c.name);
  depths = c.depths.value_or(base.depths);
  dims = c.dims.value_or(base.dims);
  SCION_CHECK(depths.size() == 4 && dims.size() == 4, "model ", c.name,
              ": depths and dims need 4 entries (one per stage)");
  for (size_t i = 0; i < 4; ++i)
    SCION_CHECK(depths[i] > 0 && dims[i] > 0, "model ", c.name,
                ": depths and dims must be positive");
  double ls = c.layer_scale.value_or(1e-6);
  stem = register_module("stem", std::make_shared<Sequential>());
  stem->push_back(std::make_shared<Conv2d>(c.in_chans, dims[0], 4, 4));
  stem->push_back(std::make_shared<LayerNorm2d>(dims[0], 1e-6));
  stages = register_module("stages", std::make_shared<Sequential>());
  int64_t total = 0;
  for (int64_t d : depths) total += d;
  int64_t block = 0;
  for (size_t i = 0; i < 4; ++i) {
    std::vector<double> dps;
    for (int64_t j = 0; j < depths[i]; ++j, ++block)
      dps.push_back(total > 1 ? c.drop_path * double(block) / double(total - 1) : 0.0);
    stages->push_back(std::make_shared<ConvNextStage>(i == 0 ? dims[0] : dims[i - 1], dims[i],
                                                      i > 0, depths[i], dps, ls, c.conv_mlp));
  }
  head = register_module("head", std::make_shared<NormMlpClassifierHead>(dims[3], c.num_classes));
}

const std::string& ConvNeXt::family() const {
  static const std::string f = "convnext";
  return f;
}

Tensor ConvNeXt::forward(const Tensor& x) {
  const AutocastCache casts(autocast_enabled() ? autocast_parameters(*this)
                                               : std::vector<Tensor>{});
  return head->forward(stages->forward(stem->forward(x)));
}

}  // namespace scion::nn

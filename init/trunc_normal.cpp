// timm's default initialization (the trunc_normal initializer, see initializers.h), matched by
// name.
#include <cmath>

#include "core/autograd.h"
#include "init/initializers.h"

namespace scion::init {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_norm(const std::string& name) {
  return name.find("norm") != std::string::npos || ends_with(name, "stem.1.weight") ||
         ends_with(name, "stem.1.bias") || name.find("downsample.0.") != std::string::npos;
}

}  // namespace

void trunc_normal_init(nn::Model& model, Generator& gen) {
  NoGradGuard ng;
  const double ls = model.config().layer_scale.value_or(model.family() == "vit" ? 0.0 : 1e-6);
  for (auto& [name, p] : model.named_parameters()) {
    Tensor t = p;
    if (name == "cls_token") {
      normal_(t, 0.0, 1e-6, gen);
    } else if (name == "pos_embed") {
      trunc_normal_(t, 0.0, 0.02, -2.0, 2.0, gen);
    } else if (ends_with(name, "gamma")) {
      t.fill_(ls);
    } else if (is_norm(name)) {
      t.fill_(ends_with(name, "weight") ? 1.0 : 0.0);
    } else if (model.family() == "vit" && name.rfind("patch_embed.proj.", 0) == 0) {
      int64_t fan_in = model.find("patch_embed.proj.weight").numel() /
                       model.find("patch_embed.proj.weight").size(0);
      double bound = 1.0 / std::sqrt(double(fan_in));
      uniform_(t, -bound, bound, gen);
    } else if (ends_with(name, "bias")) {
      t.fill_(0.0);
    } else {
      trunc_normal_(t, 0.0, 0.02, -2.0, 2.0, gen);
    }
  }
}

}  // namespace scion::init

// Model configuration and the registry of model names (DESIGN.md "Models and names").
// A ModelConfig names a registered architecture and the options timm accepts for it; unset
// architecture overrides keep the named model's values. create_model() builds the module tree
// (zero-filled: initializers fill it).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"

namespace scion::nn {

struct ModelConfig {
  std::string name = "vit_tiny";
  int64_t img_size = 224;
  int64_t patch_size = 16;  // ViT only
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
  double drop_path = 0.0;
  // Layer-scale init value; unset: the family default (none for ViT, 1e-6 for ConvNeXt); 0: none.
  std::optional<double> layer_scale;
  // ViT architecture overrides.
  std::optional<int64_t> embed_dim, depth, num_heads;
  std::optional<double> mlp_ratio;
  // ConvNeXt architecture overrides.
  std::optional<std::vector<int64_t>> depths, dims;
  // ConvNeXt MLP stored as 1x1 convolutions, timm's conv_mlp=True (its default for atto..nano):
  // the same function, fc weights saved as (4C, C, 1, 1) instead of (4C, C). Either form loads.
  bool conv_mlp = false;
};

// Sets one option from text ("img_size", "32"; "dims", "[48, 96, 192, 384]"); an InputError names
// the key and what was expected.
void set_model_option(ModelConfig& config, const std::string& key, const std::string& value);

// The config as "key=value;key=value" (the "scion_model" metadata of saved weights), and back.
std::string model_config_string(const ModelConfig& config);
ModelConfig parse_model_config(const std::string& text);

class Model : public Module {
 public:
  virtual const std::string& family() const = 0;  // "vit" or "convnext"
  const ModelConfig& config() const { return config_; }
  // Saves the weights (timm keys) with the config as "scion_model" metadata.
  void save(const std::string& path,
            const std::map<std::string, std::string>& metadata = {}) const override;

 protected:
  explicit Model(ModelConfig c) : config_(std::move(c)) {}
  ModelConfig config_;
};

using ModelPtr = std::shared_ptr<Model>;
using ModelFactory = std::function<ModelPtr(const ModelConfig&)>;

// Registered names in registration order; factories by name.
const std::vector<std::string>& model_names();
ModelPtr create_model(const ModelConfig& config);
void register_model(const std::string& name, ModelFactory factory);

}  // namespace scion::nn

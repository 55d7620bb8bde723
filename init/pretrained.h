// Where source weights come from: a safetensors file, or the folder a timm model on the Hugging
// Face hub ships (`huggingface-cli download timm/<name> --local-dir DIR`: config.json with its
// "architecture", and model.safetensors). The folder's architecture names the model to build:
// timm's "vit_small_patch16_224" is scion's vit_small with patch 16 at 224 px, "convnext_tiny" is
// convnext_tiny; an architecture outside the registry is an error listing the known names.
#pragma once

#include <string>

#include "nn/model.h"

namespace scion::init {

bool is_directory(const std::string& path);

// The weights file of a source: `path` itself, or DIR/model.safetensors for a folder.
std::string weights_file(const std::string& path);

// The model config a hub folder describes (name, patch and image size, class count), read from
// DIR/config.json; an InputError names the file and field.
nn::ModelConfig hub_model_config(const std::string& dir);

// A timm architecture name as a registry config ("vit_base_patch16_224" -> vit_base, patch 16,
// 224 px); an InputError from `source` listing the known names when it is not one of ours.
nn::ModelConfig model_from_timm_name(const std::string& architecture, const std::string& source);

}  // namespace scion::init

// Hugging Face timm folders as weight sources (see pretrained.h).
#include "init/pretrained.h"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "core/files.h"

namespace scion::init {

bool is_directory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string weights_file(const std::string& path) {
  return is_directory(path) ? path + "/model.safetensors" : path;
}

nn::ModelConfig model_from_timm_name(const std::string& arch, const std::string& source) {
  nn::ModelConfig c;
  static const std::regex vit(R"(^(vit_(tiny|small|base|large))_patch(\d+)_(\d+)$)");
  std::smatch m;
  if (std::regex_match(arch, m, vit)) {
    c.name = m[1];
    c.patch_size = std::stoll(m[3]);
    c.img_size = std::stoll(m[4]);
    return c;
  }
  for (const std::string& n : nn::model_names())
    if (n == arch && n.rfind("convnext_", 0) == 0) {
      c.name = n;
      return c;
    }
  std::string known;
  for (const std::string& n : nn::model_names())
    known += (known.empty() ? "" : ", ") + (n.rfind("vit_", 0) == 0 ? n + "_patch<P>_<IMG>" : n);
  throw InputError(source + ": architecture '" + arch +
                   "' is not a model scion builds (known: " + known + ")");
}

nn::ModelConfig hub_model_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  const std::string text =
      read_text_file(path,
                     "a timm hub folder's config.json file (the folder holds config.json and "
                     "model.safetensors)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path + ": not valid JSON");
  }
  if (!j.is_object() || !j.contains("architecture") || !j["architecture"].is_string())
    throw InputError(path +
                     ": architecture: missing (expected a timm model name like "
                     "\"vit_small_patch16_224\")");
  nn::ModelConfig c =
      model_from_timm_name(j["architecture"].get<std::string>(), path + ": architecture");
  if (j.contains("num_classes")) {
    if (!j["num_classes"].is_number_integer() || j["num_classes"].get<int64_t>() < 1)
      throw InputError(path + ": num_classes: expected a positive integer");
    c.num_classes = j["num_classes"].get<int64_t>();
  }
  return c;
}

}  // namespace scion::init

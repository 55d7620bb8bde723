// The model registry and option parsing for --set model.key=value and YAML configs.
#include <algorithm>
#include <map>
#include <sstream>

#include "nn/convnext.h"
#include "nn/model.h"
#include "nn/vit.h"

namespace scion::nn {

namespace {

struct Registry {
  std::vector<std::string> names;
  std::map<std::string, ModelFactory> factories;
};

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry();
    auto add = [&](const std::string& n, ModelFactory f) {
      reg->names.push_back(n);
      reg->factories[n] = std::move(f);
    };
    for (const char* n : {"vit_tiny", "vit_small", "vit_base", "vit_large"})
      add(n, [](const ModelConfig& c) { return std::make_shared<VisionTransformer>(c); });
    for (const char* n : {"convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano",
                          "convnext_tiny", "convnext_small", "convnext_base"})
      add(n, [](const ModelConfig& c) { return std::make_shared<ConvNeXt>(c); });
    return reg;
  }();
  return *r;
}

int64_t parse_int(const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    if (used == v.size()) return int64_t(x);
  } catch (const std::exception&) {
  }
  throw InputError("model." + key + ": expected an integer, got '" + v + "'");
}

double parse_double(const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw InputError("model." + key + ": expected a number, got '" + v + "'");
}

bool parse_bool(const std::string& key, const std::string& v) {
  if (v == "1" || v == "true" || v == "True") return true;
  if (v == "0" || v == "false" || v == "False") return false;
  throw InputError("model." + key + ": expected true or false, got '" + v + "'");
}

std::vector<int64_t> parse_list(const std::string& key, std::string v) {
  v.erase(std::remove_if(v.begin(), v.end(),
                         [](char ch) { return ch == '[' || ch == ']' || ch == ' '; }),
          v.end());
  std::vector<int64_t> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_int(key, item));
  if (out.empty())
    throw InputError("model." + key + ": expected a list of integers like [2, 2, 6, 2]");
  return out;
}

// Every size-like option bounded (an InputError names it), so a typo cannot ask for a model that
// exhausts memory or one whose feature maps shrink to nothing.
void validate(const ModelConfig& c) {
  auto bad = [&](const std::string& key, const std::string& msg) {
    throw InputError("model." + key + ": " + msg + " (model " + c.name + ")");
  };
  auto range = [&](const std::string& key, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi))
      bad(key, "value " + std::to_string(v) + " out of range [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "]");
  };
  range("img_size", double(c.img_size), 1, 4096);
  range("in_chans", double(c.in_chans), 1, 64);
  range("num_classes", double(c.num_classes), 1, 100000);
  range("drop_path", c.drop_path, 0, 0.99);
  if (c.layer_scale) range("layer_scale", *c.layer_scale, 0, 10);
  const bool vit = c.name.rfind("vit_", 0) == 0;
  if (vit) {
    range("patch_size", double(c.patch_size), 1, double(c.img_size));
    if (c.img_size % c.patch_size != 0)
      bad("img_size", std::to_string(c.img_size) + " is not a multiple of patch_size " +
                          std::to_string(c.patch_size));
    if (c.embed_dim) range("embed_dim", double(*c.embed_dim), 1, 16384);
    if (c.depth) range("depth", double(*c.depth), 1, 1000);
    if (c.num_heads) range("num_heads", double(*c.num_heads), 1, 1024);
    if (c.mlp_ratio) range("mlp_ratio", *c.mlp_ratio, 0.01, 64);
    if (c.conv_mlp) bad("conv_mlp", "a ConvNeXt option");
  } else {
    // Stem (stride 4) and three 2x downsamples: below 32 px the last stage would be empty.
    range("img_size", double(c.img_size), 32, 4096);
    for (const auto* list : {&c.depths, &c.dims}) {
      if (!*list) continue;
      const bool depths = list == &c.depths;
      if ((*list)->size() != 4)
        bad(depths ? "depths" : "dims", "expected 4 entries (one per stage)");
      for (int64_t v : **list)
        range(depths ? "depths" : "dims", double(v), 1, depths ? 1000 : 16384);
    }
  }
}

}  // namespace

const std::vector<std::string>& model_names() {
  return registry().names;
}

void Model::save(const std::string& path,
                 const std::map<std::string, std::string>& metadata) const {
  std::map<std::string, std::string> meta = metadata;
  meta["scion_model"] = model_config_string(config_);
  Module::save(path, meta);
}

void register_model(const std::string& name, ModelFactory factory) {
  Registry& r = registry();
  if (!r.factories.count(name)) r.names.push_back(name);
  r.factories[name] = std::move(factory);
}

ModelPtr create_model(const ModelConfig& c) {
  Registry& r = registry();
  auto it = r.factories.find(c.name);
  if (it == r.factories.end()) {
    std::string known;
    for (const auto& n : r.names) known += (known.empty() ? "" : ", ") + n;
    throw InputError("model.name: unknown model '" + c.name + "' (known: " + known + ")");
  }
  validate(c);
  return it->second(c);
}

std::string model_config_string(const ModelConfig& c) {
  std::ostringstream o;
  auto list = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "]";
  };
  o << "name=" << c.name << ";img_size=" << c.img_size << ";patch_size=" << c.patch_size
    << ";in_chans=" << c.in_chans << ";num_classes=" << c.num_classes
    << ";drop_path=" << c.drop_path;
  if (c.layer_scale) o << ";layer_scale=" << *c.layer_scale;
  if (c.embed_dim) o << ";embed_dim=" << *c.embed_dim;
  if (c.depth) o << ";depth=" << *c.depth;
  if (c.num_heads) o << ";num_heads=" << *c.num_heads;
  if (c.mlp_ratio) o << ";mlp_ratio=" << *c.mlp_ratio;
  if (c.depths) o << ";depths=" << list(*c.depths);
  if (c.dims) o << ";dims=" << list(*c.dims);
  if (c.conv_mlp) o << ";conv_mlp=1";
  return o.str();
}

ModelConfig parse_model_config(const std::string& text) {
  ModelConfig c;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ';')) {
    auto eq = item.find('=');
    SCION_CHECK(eq != std::string::npos, "model config '", text, "': expected key=value items");
    set_model_option(c, item.substr(0, eq), item.substr(eq + 1));
  }
  return c;
}

void set_model_option(ModelConfig& c, const std::string& key, const std::string& v) {
  if (key == "name")
    c.name = v;
  else if (key == "img_size")
    c.img_size = parse_int(key, v);
  else if (key == "patch_size")
    c.patch_size = parse_int(key, v);
  else if (key == "in_chans")
    c.in_chans = parse_int(key, v);
  else if (key == "num_classes")
    c.num_classes = parse_int(key, v);
  else if (key == "drop_path")
    c.drop_path = parse_double(key, v);
  else if (key == "layer_scale")
    c.layer_scale = parse_double(key, v);
  else if (key == "embed_dim")
    c.embed_dim = parse_int(key, v);
  else if (key == "depth")
    c.depth = parse_int(key, v);
  else if (key == "num_heads")
    c.num_heads = parse_int(key, v);
  else if (key == "mlp_ratio")
    c.mlp_ratio = parse_double(key, v);
  else if (key == "depths")
    c.depths = parse_list(key, v);
  else if (key == "dims")
    c.dims = parse_list(key, v);
  else if (key == "conv_mlp")
    c.conv_mlp = parse_bool(key, v);
  else
    throw InputError("model." + key +
                     ": unknown model option (known: name, img_size, patch_size, "
                     "in_chans, num_classes, drop_path, layer_scale, embed_dim, depth, num_heads, "
                     "mlp_ratio, depths, dims, conv_mlp)");
}

}  // namespace scion::nn

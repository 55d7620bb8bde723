// Xavier and Kaiming initializers (torch.nn.init's formulas) and the initializer registry.
#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "init/initializers.h"
#include "init/net2net.h"
#include "init/pretrained.h"
#include "init/weight_selection.h"

namespace scion::init {

void fans(const Tensor& w, int64_t& fan_in, int64_t& fan_out) {
  SCION_ASSERT(w.dim() >= 2, "fans of a tensor with fewer than 2 dims");
  int64_t receptive = 1;
  for (int64_t d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  fan_in = w.size(1) * receptive;
  fan_out = w.size(0) * receptive;
}

namespace {

bool is_matrix_weight(const std::string& name, const Tensor& p) {
  return p.dim() >= 2 && name != "pos_embed" && name != "cls_token";
}

void classic_init(nn::Model& model, const InitConfig& cfg, Generator& gen,
                  const std::string& source) {
  SCION_CHECK(cfg.mode == "fan_in" || cfg.mode == "fan_out", source,
              ": init.mode: expected fan_in or fan_out, got '", cfg.mode, "'");
  trunc_normal_init(model, gen);  // norms, biases, tokens, layer scales
  bool xavier = cfg.type.rfind("xavier", 0) == 0,
       uniform = cfg.type.find("uniform") != std::string::npos;
  double gain = cfg.gain > 0 ? cfg.gain : (xavier ? 1.0 : std::sqrt(2.0));
  NoGradGuard ng;
  for (auto& [name, p] : model.named_parameters()) {
    if (!is_matrix_weight(name, p)) continue;
    int64_t fin, fout;
    fans(p, fin, fout);
    double std = xavier ? gain * std::sqrt(2.0 / double(fin + fout))
                        : gain / std::sqrt(double(cfg.mode == "fan_in" ? fin : fout));
    Tensor t = p;
    if (uniform) {
      double bound = std::sqrt(3.0) * std;  // U(-b, b) has std b / sqrt(3)
      uniform_(t, -bound, bound, gen);
    } else {
      normal_(t, 0.0, std, gen);
    }
  }
}

// A missing source-weights file: say where to get it (timm's hub name, or the scion run to make it).
// A folder must be a timm hub folder: config.json naming a known architecture and model.safetensors.
void require_weights(const std::string& path, const std::string& key, const std::string& source) {
  std::string stem = path.substr(path.find_last_of('/', path.size() - 2) + 1);
  if (!stem.empty() && stem.back() == '/') stem.pop_back();
  if (is_directory(path)) {
    hub_model_config(path);
    if (std::FILE* f = std::fopen(weights_file(path).c_str(), "rb")) {
      std::fclose(f);
      return;
    }
    throw InputError(source + ": " + key + ": " + weights_file(path) +
                     " not found; download it from https://huggingface.co/timm/" + stem +
                     "/resolve/main/model.safetensors");
  }
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    return;
  }
  if (stem.size() > 12 && stem.substr(stem.size() - 12) == ".safetensors")
    stem.resize(stem.size() - 12);
  std::string hint =
      stem.find('.') != std::string::npos
          ? "; download timm's " + stem + " weights from https://huggingface.co/timm/" + stem +
                "/resolve/main/model.safetensors and save them as " + path +
                " (or the whole folder: huggingface-cli download timm/" + stem +
                " --local-dir DIR, and name DIR)"
          : "; train that model first (see the comment next to " + key + " in the config)";
  throw InputError(source + ": " + key + ": weight file " + path + " not found" + hint);
}

void checkpoint_init(nn::Model& model, const InitConfig& cfg, Generator& gen,
                     const std::string& source) {
  SCION_CHECK(!cfg.checkpoint.empty(), source, ": init.checkpoint: missing path to the weights");
  require_weights(cfg.checkpoint, "init.checkpoint", source);
  trunc_normal_init(model, gen);  // the head keeps this when the class count differs
  NamedTensors ts;
  bool has_head = false;
  for (auto& [key, t] : load_teacher(cfg.checkpoint)) {
    bool head = key == "head.weight" || key == "head.bias" || key == "head.fc.weight" ||
                key == "head.fc.bias";
    if (head && t.size(0) != model.config().num_classes) continue;
    has_head |= head;
    ts.emplace_back(key, t);
  }
  NamedTensors own = model.state_dict();
  if (!has_head)  // strict on everything but the excluded head
    for (auto& [n, t] : own)
      if (n.rfind("head", 0) == 0) ts.emplace_back(n, t.detach().clone());
  model.load_state_dict(ts, true, cfg.checkpoint);
}

void weight_selection_init(nn::Model& model, const InitConfig& cfg, Generator& gen,
                           const std::string& source) {
  SCION_CHECK(!cfg.teacher.empty(), source,
              ": init.teacher: missing path to the teacher's weights");
  require_weights(cfg.teacher, "init.teacher", source);
  // What selection does not cover (the head) keeps the student's own initialization.
  trunc_normal_init(model, gen);
  SelectionOptions o;
  o.layers = cfg.layers;
  o.elements = cfg.elements;
  o.head = cfg.head;
  o.head_norm = cfg.head_norm;
  o.qkv = cfg.qkv;
  o.components = parse_components(cfg.components, source + ": init.components");
  o.seed = gen.seed();
  select_weights(model, load_teacher(cfg.teacher), o, cfg.teacher);
}

void net2net_init(nn::Model& model, const InitConfig& cfg, Generator& gen,
                  const std::string& source) {
  SCION_CHECK(!cfg.teacher.empty(), source,
              ": init.teacher: missing path to the weights to grow from");
  require_weights(cfg.teacher, "init.teacher", source);
  trunc_normal_init(model, gen);  // new blocks keep this for their inner weights
  GrowOptions o;
  o.noise = cfg.noise;
  o.seed = gen.seed();
  grow_from_file(model, cfg.teacher, cfg.teacher_model, o);
}

}  // namespace

const std::vector<std::string>& initializer_names() {
  static const std::vector<std::string> names = {
      "trunc_normal", "xavier_uniform", "xavier_normal",    "kaiming_uniform", "kaiming_normal",
      "mimetic",      "checkpoint",     "weight_selection", "net2net"};
  return names;
}

void require_finite(const nn::Module& model, const std::string& what) {
  for (const auto& [name, t] : model.state_dict()) {
    if (!is_floating(t.dtype())) continue;
    Tensor v = t.detach().cpu().to(DType::f32).contiguous();
    const float* p = v.data<float>();
    const int64_t n = v.numel();
    int64_t bad = 0, nan = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) {
        ++bad;
        nan += std::isnan(p[i]);
      }
    SCION_CHECK(bad == 0, what, ": the result is not finite: ", name, " holds ", bad, " of ",
                v.numel(), " values NaN or infinite (", nan,
                " NaN); nothing was written. Check the source weights (scion inspect shows "
                "each tensor's mean and std) or lower the noise.");
  }
}

void initialize(nn::Model& model, const InitConfig& cfg, Generator& gen,
                const std::string& source) {
  if (cfg.type == "trunc_normal") return trunc_normal_init(model, gen);
  if (cfg.type == "mimetic") return mimetic_init(model, gen, source);
  if (cfg.type == "xavier_uniform" || cfg.type == "xavier_normal" ||
      cfg.type == "kaiming_uniform" || cfg.type == "kaiming_normal")
    return classic_init(model, cfg, gen, source);
  // The initializers that read weights refuse a non-finite result (a NaN teacher, an overflow).
  const std::string from = source + ": init.type " + cfg.type + " from ";
  if (cfg.type == "checkpoint") {
    checkpoint_init(model, cfg, gen, source);
    return require_finite(model, from + "init.checkpoint " + cfg.checkpoint);
  }
  if (cfg.type == "weight_selection") {
    weight_selection_init(model, cfg, gen, source);
    return require_finite(model, from + "init.teacher " + cfg.teacher);
  }
  if (cfg.type == "net2net") {
    net2net_init(model, cfg, gen, source);
    return require_finite(model, from + "init.teacher " + cfg.teacher);
  }
  std::string known;
  for (const auto& n : initializer_names()) known += (known.empty() ? "" : ", ") + n;
  throw InputError(source + ": init.type: '" + cfg.type +
                   "' is not available (available: " + known + ")");
}

}  // namespace scion::init

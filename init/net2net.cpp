// Net2Net growth (see net2net.h).
#include "init/net2net.h"

#include <cmath>
#include <map>
#include <regex>

#include "core/autograd.h"
#include "core/ops.h"
#include "init/pretrained.h"
#include "init/weight_selection.h"
#include "nn/convnext.h"
#include "nn/vit.h"

namespace scion::init {

namespace {

struct Axis {
  const std::vector<int64_t>* map = nullptr;  // null: unchanged
  bool divide = false;                        // the tensor reads from these units along this axis
};

std::vector<int64_t> counts(const std::vector<int64_t>& map, int64_t old_n) {
  std::vector<int64_t> c(static_cast<size_t>(old_n), 0);
  for (int64_t u : map) ++c[size_t(u)];
  return c;
}

// new[..., j, ...] = old[..., map[j], ...] (/ count[map[j]] on divide axes).
Tensor widen_tensor(const Tensor& old, const std::vector<Axis>& axes) {
  Tensor t = old;
  for (size_t d = 0; d < axes.size(); ++d) {
    if (!axes[d].map) continue;
    const auto& m = *axes[d].map;
    std::vector<double> idx(m.begin(), m.end());
    t = index_select(t, int64_t(d), from_vector(idx, {int64_t(idx.size())}, DType::i64));
    if (axes[d].divide) {
      std::vector<int64_t> c = counts(m, old.size(int64_t(d)));
      std::vector<double> scale(m.size());
      for (size_t j = 0; j < m.size(); ++j) scale[j] = 1.0 / double(c[size_t(m[j])]);
      Shape s(size_t(t.dim()), 1);
      s[d] = int64_t(scale.size());
      t = t * from_vector(scale, s, t.dtype());
    }
  }
  return t;
}

// Old block for each new block (-1: a new identity block), old blocks interleaved evenly.
std::vector<int64_t> depth_map(int64_t old_n, int64_t new_n) {
  std::vector<int64_t> m(static_cast<size_t>(new_n), -1);
  for (int64_t i = 0; i < old_n; ++i) m[size_t(i * new_n / old_n)] = i;
  return m;
}

bool has_parameter(const nn::Model& m, const std::string& name) {
  for (const auto& [k, v] : m.named_parameters())
    if (k == name) return true;
  return false;
}

// Writes the big model's parameters from the small model's: widen() copies a small tensor
// widened along its axes, with the options' symmetry-breaking noise; keep() copies one whose
// shape does not change; zero() clears one (the outputs of a new identity block).
class Grower {
 public:
  Grower(nn::Model& big, const nn::Model& small, const GrowOptions& opt, Generator& gen)
      : big_(big), small_(small), opt_(opt), gen_(gen) {}

  void widen(const std::string& to, const std::string& from, const std::vector<Axis>& axes) {
    assign(to, widen_tensor(small_.find(from), axes), true);
  }
  void widen(const std::string& name, const std::vector<Axis>& axes) { widen(name, name, axes); }
  void keep(const std::string& name) { assign(name, small_.find(name), false); }
  void zero(const std::string& name) {
    Tensor t = big_.find(name);
    t.fill_(0.0);
  }

 private:
  void assign(const std::string& name, const Tensor& value, bool widened) {
    Tensor dst = big_.find(name);
    Tensor value_in_form = nn::as_form(value, dst.shape());  // a conv_mlp target: (O, I, 1, 1)
    SCION_CHECK(dst.shape() == value_in_form.shape(), "net2net: ", name, " grows to ",
                shape_str(value.shape()), " but the target model has ", shape_str(dst.shape()));
    Tensor v = value_in_form.contiguous();
    if (opt_.noise > 0 && widened && v.dim() >= 2) {
      double sd = std::sqrt(var(v.to(DType::f64)).item());
      Tensor n = randn(v.shape(), DType::f32, gen_);
      v = v + n * (opt_.noise * sd);
    }
    dst.copy_(v);
  }

  nn::Model& big_;
  const nn::Model& small_;
  const GrowOptions& opt_;
  Generator& gen_;
};

// Axes of widened units. G: the residual width (embed_dim), Gd: the same where a tensor reads
// from it (divided by each unit's copy count, so the sum over copies is unchanged).
void grow_vit(nn::VisionTransformer& big, const nn::VisionTransformer& small,
              const GrowOptions& opt, Generator& gen, const std::string& source) {
  const int64_t hd = small.embed_dim / small.num_heads;
  SCION_CHECK(big.embed_dim / big.num_heads == hd, source,
              ": Net2Net widens attention by copying whole heads, so ", "head_dim must stay ", hd,
              " (target has ", big.embed_dim, " / ", big.num_heads, " heads)");
  SCION_CHECK(big.embed_dim >= small.embed_dim && big.num_heads >= small.num_heads &&
                  big.depth >= small.depth,
              source, ": Net2Net only grows: target ", big.embed_dim, " dims, ", big.num_heads,
              " heads, ", big.depth, " blocks vs source ", small.embed_dim, ", ", small.num_heads,
              ", ", small.depth);
  SCION_CHECK(big.pos_embed.shape()[1] == small.pos_embed.shape()[1] &&
                  big.config().num_classes == small.config().num_classes,
              source, ": image size, patch size and class count must be the same");
  std::vector<int64_t> g = widen_map(small.embed_dim, big.embed_dim, gen);
  const Axis G{&g, false}, Gd{&g, true}, none;
  NoGradGuard ng;
  Grower grow(big, small, opt, gen);
  grow.widen("cls_token", {none, none, G});
  grow.widen("pos_embed", {none, none, G});
  grow.widen("patch_embed.proj.weight", {G, none, none, none});
  grow.widen("patch_embed.proj.bias", {G});
  std::vector<int64_t> blocks = depth_map(small.depth, big.depth);
  for (int64_t j = 0; j < big.depth; ++j) {
    const std::string nb = "blocks." + std::to_string(j) + ".";
    if (blocks[size_t(j)] < 0) {  // identity: zero the branch outputs
      for (const char* p : {"attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"})
        grow.zero(nb + p);
      continue;
    }
    const std::string ob = "blocks." + std::to_string(blocks[size_t(j)]) + ".";
    // Attention units: whole heads copied; the q, k and v rows take the same ones.
    std::vector<int64_t> heads = widen_map(small.num_heads, big.num_heads, gen), a, a3;
    for (int64_t h : heads)
      for (int64_t e = 0; e < hd; ++e) a.push_back(h * hd + e);
    for (int64_t blk = 0; blk < 3; ++blk)
      for (int64_t u : a) a3.push_back(blk * small.embed_dim + u);
    std::vector<int64_t> m = widen_map(small.find(ob + "mlp.fc1.weight").size(0),
                                       big.find(nb + "mlp.fc1.weight").size(0), gen);
    const Axis Ad{&a, true}, A3{&a3, false}, M{&m, false}, Md{&m, true};
    auto widen = [&](const char* p, const std::vector<Axis>& axes) {
      grow.widen(nb + p, ob + p, axes);
    };
    for (const char* n : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"})
      widen(n, {G});
    widen("attn.qkv.weight", {A3, Gd});
    widen("attn.qkv.bias", {A3});
    widen("attn.proj.weight", {G, Ad});
    widen("attn.proj.bias", {G});
    widen("mlp.fc1.weight", {M, Gd});
    widen("mlp.fc1.bias", {M});
    widen("mlp.fc2.weight", {G, Md});
    widen("mlp.fc2.bias", {G});
    for (const char* n : {"ls1.gamma", "ls2.gamma"}) {
      const bool has_small = has_parameter(small, ob + n);
      SCION_CHECK(has_small == has_parameter(big, nb + n), source,
                  ": source and target must both have or lack layer scale");
      if (has_small) widen(n, {G});
    }
  }
  for (const char* n : {"norm.weight", "norm.bias"}) grow.widen(n, {G});
  grow.widen("head.weight", {none, Gd});
  grow.keep("head.bias");
}

// Per stage s: G the stage's width, P the previous stage's (the downsampling reads from it).
void grow_convnext(nn::ConvNeXt& big, const nn::ConvNeXt& small, const GrowOptions& opt,
                   Generator& gen, const std::string& source) {
  for (size_t i = 0; i < 4; ++i)
    SCION_CHECK(big.dims[i] >= small.dims[i] && big.depths[i] >= small.depths[i], source,
                ": Net2Net only grows: stage ", i, " target ", big.dims[i], " dims x ",
                big.depths[i], " blocks vs source ", small.dims[i], " x ", small.depths[i]);
  SCION_CHECK(big.config().num_classes == small.config().num_classes, source,
              ": class counts must match");
  std::vector<std::vector<int64_t>> g;
  for (size_t i = 0; i < 4; ++i) g.push_back(widen_map(small.dims[i], big.dims[i], gen));
  const Axis none;
  NoGradGuard ng;
  Grower grow(big, small, opt, gen);
  const Axis G0{&g[0], false};
  grow.widen("stem.0.weight", {G0, none, none, none});
  for (const char* n : {"stem.0.bias", "stem.1.weight", "stem.1.bias"}) grow.widen(n, {G0});
  const bool small_ls = small.config().layer_scale.value_or(1e-6) > 0,
             big_ls = big.config().layer_scale.value_or(1e-6) > 0;
  SCION_CHECK(small_ls == big_ls, source, ": source and target must both have or lack layer scale");
  for (size_t st = 0; st < 4; ++st) {
    const std::string sp = "stages." + std::to_string(st) + ".";
    const Axis G{&g[st], false}, Gd{&g[st], true};
    if (st > 0) {
      const Axis P{&g[st - 1], false}, Pd{&g[st - 1], true};
      for (const char* n : {"downsample.0.weight", "downsample.0.bias"}) grow.widen(sp + n, {P});
      grow.widen(sp + "downsample.1.weight", {G, Pd, none, none});
      grow.widen(sp + "downsample.1.bias", {G});
    }
    std::vector<int64_t> blocks = depth_map(small.depths[st], big.depths[st]);
    for (int64_t j = 0; j < big.depths[st]; ++j) {
      const std::string nb = sp + "blocks." + std::to_string(j) + ".";
      if (blocks[size_t(j)] < 0) {  // identity: zero layer scale, or the MLP output without it
        if (big_ls)
          grow.zero(nb + "gamma");
        else
          for (const char* p : {"mlp.fc2.weight", "mlp.fc2.bias"}) grow.zero(nb + p);
        continue;
      }
      const std::string ob = sp + "blocks." + std::to_string(blocks[size_t(j)]) + ".";
      std::vector<int64_t> m = widen_map(small.find(ob + "mlp.fc1.weight").size(0),
                                         big.find(nb + "mlp.fc1.weight").size(0), gen);
      const Axis M{&m, false}, Md{&m, true};
      auto widen = [&](const char* p, const std::vector<Axis>& axes) {
        grow.widen(nb + p, ob + p, axes);
      };
      widen("conv_dw.weight", {G, none, none, none});
      for (const char* n : {"conv_dw.bias", "norm.weight", "norm.bias"}) widen(n, {G});
      widen("mlp.fc1.weight", {M, Gd});
      widen("mlp.fc1.bias", {M});
      widen("mlp.fc2.weight", {G, Md});
      widen("mlp.fc2.bias", {G});
      if (small_ls) widen("gamma", {G});
    }
  }
  const Axis G3{&g[3], false}, G3d{&g[3], true};
  for (const char* n : {"head.norm.weight", "head.norm.bias"}) grow.widen(n, {G3});
  grow.widen("head.fc.weight", {none, G3d});
  grow.keep("head.fc.bias");
}

}  // namespace

std::vector<int64_t> widen_map(int64_t old_n, int64_t new_n, Generator& gen) {
  SCION_CHECK(new_n >= old_n && old_n > 0, "net2net: cannot widen ", old_n, " units to ", new_n);
  std::vector<int64_t> m(static_cast<size_t>(new_n));
  for (int64_t i = 0; i < old_n; ++i) m[size_t(i)] = i;
  std::vector<int64_t> perm;
  for (int64_t i = old_n; i < new_n; ++i) {
    if (perm.empty()) {  // a fresh random order of the old units each round: balanced copies
      for (int64_t u = 0; u < old_n; ++u) perm.push_back(u);
      for (int64_t k = old_n - 1; k > 0; --k)
        std::swap(perm[size_t(k)], perm[size_t(gen.next_uniform() * double(k + 1))]);
    }
    m[size_t(i)] = perm.back();
    perm.pop_back();
  }
  return m;
}

void grow_from_file(nn::Model& big, const std::string& path, const std::string& from_model,
                    const GrowOptions& opt) {
  NamedTensors src = load_teacher(path);
  TeacherArch arch = infer_architecture(src, path);
  nn::ModelConfig c = big.config();
  c.name = !from_model.empty()  ? from_model
           : is_directory(path) ? hub_model_config(path).name
                                : big.config().name;
  c.embed_dim.reset();
  c.depth.reset();
  c.num_heads.reset();
  c.mlp_ratio.reset();
  c.depths.reset();
  c.dims.reset();
  if (arch.family == "vit") {
    c.embed_dim = arch.embed_dim;
    c.depth = arch.depth;
    c.mlp_ratio = double(arch.mlp_hidden) / double(arch.embed_dim);
  } else {
    c.depths = arch.depths;
    c.dims = arch.dims;
  }
  SafetensorsFile f = SafetensorsFile::open(weights_file(path));
  if (f.metadata().count("scion_model")) try {
      c = nn::parse_model_config(f.metadata().at("scion_model"));  // exact heads
    } catch (const std::exception& e) {
      throw InputError(path + ": metadata scion_model: " + e.what());
    }
  c.conv_mlp = false;  // growth works on Linear-form fc weights; either file form loads
  nn::ModelPtr small = nn::create_model(c);
  small->load_state_dict(src, true, path);
  grow(big, *small, opt, path);
}

void grow(nn::Model& big, const nn::Model& small, const GrowOptions& opt,
          const std::string& source) {
  SCION_CHECK(big.family() == small.family(), source, ": cannot grow a ", small.family(),
              " into a ", big.family());
  Generator gen(opt.seed, 0x4E324E);
  if (big.family() == "vit")
    grow_vit(dynamic_cast<nn::VisionTransformer&>(big),
             dynamic_cast<const nn::VisionTransformer&>(small), opt, gen, source);
  else
    grow_convnext(dynamic_cast<nn::ConvNeXt&>(big), dynamic_cast<const nn::ConvNeXt&>(small), opt,
                  gen, source);
}

}  // namespace scion::init

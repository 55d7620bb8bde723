// Weight selection (see weight_selection.h).
#include "init/weight_selection.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <regex>
#include <set>

#include "core/autograd.h"
#include "core/ops.h"
#include "init/pretrained.h"

namespace scion::init {

namespace {

const NamedTensors::value_type* find(const NamedTensors& ts, const std::string& name) {
  for (const auto& nt : ts)
    if (nt.first == name) return &nt;
  return nullptr;
}

// The classifier (ViT head.*, ConvNeXt head.fc.*).
bool is_classifier(const std::string& name) {
  return name == "head.weight" || name == "head.bias" || name == "head.fc.weight" ||
         name == "head.fc.bias";
}

// The official code selects no key containing "head"; the options bring back the classifier
// (when the class counts match, checked later) and ConvNeXt's head.norm.
bool selectable(const std::string& name, const SelectionOptions& opt) {
  if (name.find("head") == std::string::npos) return true;
  if (is_classifier(name)) return opt.head;
  if (name.rfind("head.norm.", 0) == 0) return opt.head_norm;
  return false;
}

// Selects `idx[d]` along every dimension d of t.
Tensor select_dims(Tensor t, const std::vector<std::vector<int64_t>>& idx) {
  for (size_t d = 0; d < idx.size(); ++d) {
    if (int64_t(idx[d].size()) == t.size(int64_t(d))) {
      bool identity = true;
      for (size_t k = 0; k < idx[d].size() && identity; ++k) identity = idx[d][k] == int64_t(k);
      if (identity) continue;
    }
    std::vector<double> v(idx[d].begin(), idx[d].end());
    t = index_select(t, int64_t(d), from_vector(v, {int64_t(v.size())}, DType::i64));
  }
  return t;
}

// The axis of dimension d of a tensor whose dimensions 0, 1, ... index `axes`; "" past them.
std::string axis_of(int64_t d, std::initializer_list<std::string> axes) {
  return d >= 0 && d < int64_t(axes.size()) ? *(axes.begin() + d) : "";
}

// dim_group for ConvNeXt's names; nullopt for a name that is not one.
std::optional<std::string> convnext_dim_group(const std::string& name, int64_t d,
                                              int64_t last_stage) {
  static const std::regex block(R"(^stages\.(\d+)\.blocks\.(\d+)\.(.*)$)"),
      down(R"(^stages\.(\d+)\.downsample\.(\d)\.(.*)$)");
  std::smatch m;
  if (std::regex_match(name, m, block)) {
    const std::string stage = "s" + m[1].str(), rest = m[3];
    const std::string hidden = stage + "." + m[2].str() + ".mlp";
    if (rest.rfind("mlp.fc1.", 0) == 0) return axis_of(d, {hidden, stage});
    if (rest.rfind("mlp.fc2.", 0) == 0) return axis_of(d, {stage, hidden});
    return axis_of(d, {stage});  // conv_dw, norm, gamma
  }
  if (std::regex_match(name, m, down)) {
    const int64_t k = std::stoll(m[1]);
    const std::string here = "s" + std::to_string(k), before = "s" + std::to_string(k - 1);
    if (m[2] == "0") return axis_of(d, {before});  // the LayerNorm on the previous stage's output
    return axis_of(d, {here, before});
  }
  const std::string last = "s" + std::to_string(last_stage);
  if (name.rfind("stem.", 0) == 0) return axis_of(d, {"s0"});
  if (name.rfind("head.norm.", 0) == 0) return axis_of(d, {last});
  if (name.rfind("head.fc.", 0) == 0) return axis_of(d, {"", last});
  return std::nullopt;
}

// dim_group for ViT's names; nullopt for a name that is not one.
std::optional<std::string> vit_dim_group(const std::string& name, int64_t d) {
  static const std::regex block(R"(^blocks\.(\d+)\.(.*)$)");
  std::smatch m;
  if (std::regex_match(name, m, block)) {
    const std::string b = m[1], rest = m[2];
    if (rest.rfind("attn.qkv.", 0) == 0) return axis_of(d, {b + ".attn", "embed"});
    if (rest == "attn.proj.weight") return axis_of(d, {"embed", b + ".attn"});
    if (rest.rfind("mlp.fc1.", 0) == 0) return axis_of(d, {b + ".mlp", "embed"});
    if (rest == "mlp.fc2.weight") return axis_of(d, {"embed", b + ".mlp"});
    return axis_of(d, {"embed"});  // norms, biases of proj/fc2, layer scale
  }
  if (name == "cls_token" || name == "pos_embed") return axis_of(d, {"", "", "embed"});
  for (const char* prefix : {"patch_embed.", "norm.", "fc_norm."})
    if (name.rfind(prefix, 0) == 0) return axis_of(d, {"embed"});
  if (name == "head.weight") return axis_of(d, {"", "embed"});
  return std::nullopt;
}

// Pruning-style selection (elements l1 | magnitude): the axis a tensor's dimension indexes, named
// so that every tensor sharing it gets the same indices: "embed" (ViT's residual width), "<b>.attn"
// (block b's q/k/v inner width, qkv rows folded per block), "<b>.mlp" (its hidden units); ConvNeXt
// "s<k>" (stage k's width), "s<k>.<b>.mlp". "" for a dimension on no such axis (kernel taps,
// tokens, classes). Names are the teacher's (after the layer map).
std::string dim_group(const std::string& name, int64_t d, int64_t last_stage) {
  if (auto axis = convnext_dim_group(name, d, last_stage)) return *axis;
  return vit_dim_group(name, d).value_or("");
}

// Per-index sums of |w| (l1) or w^2 (magnitude) of `t` along dimension d; qkv rows folded per block
// (row r counts for inner index r mod Dt).
std::vector<double> slice_sums(const Tensor& t, int64_t d, bool square, bool fold_qkv) {
  Tensor c = t.detach().cpu().to(DType::f32).contiguous();
  const float* v = c.data<float>();
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= c.size(k);
  for (int64_t k = d + 1; k < c.dim(); ++k) inner *= c.size(k);
  const int64_t n = c.size(d), width = fold_qkv ? n / 3 : n;
  std::vector<double> out(size_t(width), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      const float* row = v + (o * n + j) * inner;
      for (int64_t i = 0; i < inner; ++i)
        acc += square ? double(row[i]) * row[i] : std::fabs(row[i]);
      out[size_t(j % width)] += acc;
    }
  return out;
}

// Step 1, layer selection: student block-name prefix -> teacher block-name prefix ("blocks.3." ->
// "blocks.6."; for ConvNeXt per stage, "stages.1.blocks.0." -> "stages.1.blocks.2.").
using BlockMap = std::map<std::string, std::string>;

BlockMap vit_block_map(const NamedTensors& student, const TeacherArch& ta,
                       const std::string& layers, const std::string& source) {
  static const std::regex block(R"(^blocks\.(\d+)\.)");
  std::set<int64_t> indices;
  for (const auto& [n, t] : student) {
    std::smatch m;
    if (std::regex_search(n, m, block)) indices.insert(std::stoll(m[1]));
  }
  const int64_t ls = int64_t(indices.size());
  SCION_CHECK(ls <= ta.depth, source, ": the teacher has ", ta.depth,
              " blocks, fewer than the student's ", ls);
  BlockMap map;
  for (int64_t i = 0; i < ls; ++i)
    map["blocks." + std::to_string(i) + "."] =
        "blocks." + std::to_string(teacher_layer(layers, i, ls, ta.depth)) + ".";
  return map;
}

BlockMap convnext_block_map(const NamedTensors& student, const TeacherArch& ta,
                            const std::string& layers, const std::string& source) {
  static const std::regex block(R"(^stages\.(\d+)\.blocks\.(\d+)\.)");
  std::map<int64_t, int64_t> depths;  // stage -> the student's blocks in it
  for (const auto& [n, t] : student) {
    std::smatch m;
    if (std::regex_search(n, m, block)) {
      int64_t& depth = depths[std::stoll(m[1])];
      depth = std::max<int64_t>(depth, std::stoll(m[2]) + 1);
    }
  }
  SCION_CHECK(depths.size() == ta.depths.size(), source, ": the teacher has ", ta.depths.size(),
              " stages, the student ", depths.size());
  BlockMap map;
  for (const auto& [s, ls] : depths) {
    const int64_t lt = ta.depths[size_t(s)];
    SCION_CHECK(ls <= lt, source, ": stage ", s, " of the teacher has ", lt,
                " blocks, fewer than the student's ", ls);
    const std::string stage = "stages." + std::to_string(s) + ".blocks.";
    for (int64_t i = 0; i < ls; ++i)
      map[stage + std::to_string(i) + "."] =
          stage + std::to_string(teacher_layer(layers, i, ls, lt)) + ".";
  }
  return map;
}

// Step 2, component mapping: the student's name with its block renumbered to the teacher's.
std::string teacher_name(const BlockMap& blocks, const std::string& name) {
  for (const auto& [from, to] : blocks)
    if (name.rfind(from, 0) == 0) return to + name.substr(from.size());
  return name;
}

// Whether the options select the student's parameter `name` (step 4): a selectable key of a
// listed component; the classifier follows opt.head alone.
bool wanted(const std::string& name, const SelectionOptions& opt) {
  if (!selectable(name, opt)) return false;
  const std::string component = component_of(name);
  return component == "head" ||
         std::find(opt.components.begin(), opt.components.end(), component) != opt.components.end();
}

void check_teacher_covers(const Tensor& t, const Tensor& p, const std::string& tname,
                          const std::string& source) {
  SCION_CHECK(t.dim() == p.dim(), source, ": '", tname, "' has shape ", shape_str(t.shape()),
              ", incompatible with the student's ", shape_str(p.shape()));
  for (int64_t d = 0; d < p.dim(); ++d)
    SCION_CHECK(t.size(d) >= p.size(d), source, ": the teacher is smaller than the student at '",
                tname, "' dimension ", d, " (", t.size(d), " < ", p.size(d),
                "); weight selection needs a teacher at least as large in every dimension");
}

// The teacher's importance of each index on every pruning axis (dim_group): the sums of |w| (l1)
// or w^2 (magnitude) over every tensor on the axis (all blocks for the residual width).
std::map<std::string, std::vector<double>> axis_importance(const NamedTensors& teacher, bool square,
                                                           int64_t last_stage,
                                                           const std::string& source) {
  std::map<std::string, std::vector<double>> importance;
  for (const auto& [tname, t] : teacher) {
    if (!is_floating(t.dtype())) continue;
    for (int64_t d = 0; d < t.dim(); ++d) {
      const std::string g = dim_group(tname, d, last_stage);
      if (g.empty()) continue;
      const bool fold = d == 0 && tname.find(".attn.qkv.") != std::string::npos;
      std::vector<double> sums = slice_sums(t, d, square, fold);
      auto [it, fresh] = importance.emplace(g, sums);
      if (fresh) continue;
      SCION_CHECK(it->second.size() == sums.size(), source, ": '", tname, "' dimension ", d,
                  " has ", sums.size(), " entries, but other tensors on its axis ", g, " have ",
                  it->second.size());
      for (size_t i = 0; i < sums.size(); ++i) it->second[i] += sums[i];
    }
  }
  return importance;
}

// Step 3, element selection: the indices along dimension d of a teacher tensor (t entries) for s
// student entries. The modes of element_indices draw in the order tensors are selected; the
// pruning modes take the s most important indices of the dimension's axis, one set shared by
// every tensor on it (uniform for a dimension on no axis).
class IndexChooser {
 public:
  IndexChooser(const SelectionOptions& opt, const NamedTensors& teacher, const TeacherArch& ta,
               const std::string& source)
      : mode_(opt.elements),
        pruning_(mode_ == "l1" || mode_ == "magnitude"),
        last_stage_(ta.family == "convnext" ? int64_t(ta.dims.size()) - 1 : -1),
        gen_(opt.seed, 0x5E1EC7) {
    if (pruning_) importance_ = axis_importance(teacher, mode_ == "magnitude", last_stage_, source);
  }

  bool pruning() const { return pruning_; }

  std::vector<int64_t> operator()(const std::string& tname, int64_t d, int64_t t, int64_t s) {
    if (!pruning_) return element_indices(mode_, t, s, gen_, &drawn_);
    const std::string axis = dim_group(tname, d, last_stage_);
    if (axis.empty() || s == t) return element_indices("uniform", t, s, gen_, &drawn_);
    auto key = std::make_pair(axis, s);
    auto it = chosen_.find(key);
    if (it == chosen_.end())
      it = chosen_.emplace(key, most_important(importance_.at(axis), s)).first;
    return it->second;
  }

 private:
  std::string mode_;
  bool pruning_;
  int64_t last_stage_;
  Generator gen_;
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> drawn_;       // "random": per (s, t)
  std::map<std::string, std::vector<double>> importance_;                   // pruning: per axis
  std::map<std::pair<std::string, int64_t>, std::vector<int64_t>> chosen_;  // per (axis, s)
};

// Teacher tensor t (named tname) selected down to the student's shape, dimension by dimension.
// per_block: t is a fused qkv projection (3 Dt, ...), selected as (3, Dt, ...) with the same
// indices in the q, k and v blocks so they stay aligned.
Tensor select_tensor(const Tensor& t, const Shape& shape, const std::string& tname, bool per_block,
                     IndexChooser& choose) {
  std::vector<std::vector<int64_t>> idx;
  if (!per_block) {
    for (size_t d = 0; d < shape.size(); ++d)
      idx.push_back(choose(tname, int64_t(d), t.size(int64_t(d)), shape[d]));
    return select_dims(t, idx);
  }
  Shape blocks = t.shape();
  blocks[0] /= 3;
  blocks.insert(blocks.begin(), 3);
  idx.push_back({0, 1, 2});
  idx.push_back(choose(tname, 0, t.size(0) / 3, shape[0] / 3));
  for (size_t d = 1; d < shape.size(); ++d)
    idx.push_back(choose(tname, int64_t(d), t.size(int64_t(d)), shape[d]));
  return select_dims(t.reshape(blocks), idx).reshape(shape);
}

}  // namespace

std::vector<int64_t> most_important(const std::vector<double>& importance, int64_t s) {
  SCION_CHECK(s <= int64_t(importance.size()), "element selection: cannot select ", s, " of ",
              importance.size(), " elements");
  std::vector<int64_t> order(importance.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return importance[size_t(a)] > importance[size_t(b)];
  });
  order.resize(size_t(s));
  std::sort(order.begin(), order.end());  // kept in the teacher's order
  return order;
}

std::vector<int64_t> element_indices(
    const std::string& mode, int64_t t, int64_t s, Generator& gen,
    std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>>* cache) {
  SCION_CHECK(s <= t, "element selection: cannot select ", s, " of ", t, " elements");
  std::vector<int64_t> idx(static_cast<size_t>(s));
  if (mode == "consecutive" || s == t) {
    for (int64_t i = 0; i < s; ++i) idx[size_t(i)] = i;
  } else if (mode == "uniform") {
    if (t % s == 0) {
      for (int64_t i = 0; i < s; ++i) idx[size_t(i)] = i * (t / s);
    } else {
      // torch.round(torch.linspace(0, t - 1, s)): float32 linspace (the second half counted back
      // from the end, as torch computes it), rounded half to even.
      float start = 0.0f, end = float(t - 1), step = (end - start) / float(s - 1);
      int64_t halfway = s / 2;
      for (int64_t i = 0; i < s; ++i) {
        float v = i < halfway ? start + step * float(i) : end - step * float(s - i - 1);
        idx[size_t(i)] = int64_t(std::nearbyint(v));
      }
    }
  } else if (mode == "random" || mode == "random-inconsistent") {
    auto key = std::make_pair(s, t);
    if (mode == "random" && cache && cache->count(key)) return cache->at(key);
    std::vector<int64_t> all(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) all[size_t(i)] = i;
    for (int64_t i = t - 1; i > 0; --i)
      std::swap(all[size_t(i)], all[size_t(gen.next_uniform() * double(i + 1))]);
    std::copy(all.begin(), all.begin() + s, idx.begin());
    std::sort(idx.begin(), idx.end());
    if (mode == "random" && cache) (*cache)[key] = idx;
  } else {
    throw InputError("init.elements: unknown element selection '" + mode +
                     "' (known: uniform, consecutive, random, random-inconsistent, l1, magnitude)");
  }
  return idx;
}

int64_t teacher_layer(const std::string& mode, int64_t i, int64_t ls, int64_t lt) {
  SCION_CHECK(ls <= lt, "layer selection: the student has ", ls, " layers, the teacher only ", lt);
  if (mode == "first") return i;
  if (mode == "last") return lt - ls + i;
  if (mode == "mid") return (lt - ls) / 2 + i;
  if (mode == "uniform")
    return ls == 1 ? 0 : int64_t(std::nearbyint(double(i) * double(lt - 1) / double(ls - 1)));
  throw InputError("init.layers: unknown layer selection '" + mode +
                   "' (known: first, uniform, last, mid)");
}

const std::vector<std::string>& component_names() {
  static const std::vector<std::string> names{"patch_embed", "pos_embed",  "attn",
                                              "mlp",         "norm",       "layer_scale",
                                              "conv_dw",     "downsample", "head"};
  return names;
}

std::string component_of(const std::string& name) {
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  auto starts = [&](const char* prefix) { return name.rfind(prefix, 0) == 0; };
  if (starts("head.norm.") || has(".norm") || starts("norm.") || starts("fc_norm.") ||
      starts("stem.1.") || has(".downsample.0."))
    return "norm";
  if (starts("head.") || starts("head_")) return "head";
  if (starts("patch_embed.") || starts("stem.0.")) return "patch_embed";
  if (starts("pos_embed") || starts("cls_token")) return "pos_embed";
  if (has(".downsample.1.")) return "downsample";
  if (has(".attn.")) return "attn";
  if (has(".mlp.")) return "mlp";
  if (has(".conv_dw.")) return "conv_dw";
  if (has(".ls1.") || has(".ls2.") || has(".gamma")) return "layer_scale";
  return "other";
}

std::vector<std::string> parse_components(const std::string& spec, const std::string& where) {
  const std::vector<std::string>& all = component_names();
  std::vector<std::string> items;
  std::string cur;
  for (char c : spec + ",") {
    if (c == ',') {
      if (!cur.empty()) items.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur.push_back(c);
    }
  }
  std::string known;
  for (const auto& n : all) known += (known.empty() ? "" : ", ") + n;
  SCION_CHECK(!items.empty(), where,
              ": empty (\"all\", a list such as "
              "\"attn,mlp\", or removals such as \"-attn\"; components: ",
              known, ")");
  if (items.size() == 1 && items[0] == "all") return all;
  const bool removing = items[0][0] == '-';
  std::vector<std::string> out = removing ? all : std::vector<std::string>{};
  for (const std::string& item : items) {
    SCION_CHECK((item[0] == '-') == removing, where, ": '", spec,
                "' mixes names and removals (give \"attn,mlp\" or \"-attn,-mlp\")");
    const std::string n = removing ? item.substr(1) : item;
    SCION_CHECK(std::find(all.begin(), all.end(), n) != all.end(), where, ": unknown component '",
                n, "' (known: ", known, ")");
    if (removing)
      out.erase(std::remove(out.begin(), out.end(), n), out.end());
    else if (std::find(out.begin(), out.end(), n) == out.end())
      out.push_back(n);
  }
  return out;
}

TeacherArch infer_architecture(const NamedTensors& ts, const std::string& source) {
  TeacherArch a;
  static const std::regex vit_block(R"(^blocks\.(\d+)\.)"),
      cnx_block(R"(^stages\.(\d+)\.blocks\.(\d+)\.)");
  if (find(ts, "cls_token") && find(ts, "pos_embed")) {
    a.family = "vit";
    a.embed_dim = find(ts, "cls_token")->second.size(2);
    a.tokens = find(ts, "pos_embed")->second.size(1);
    std::set<int64_t> blocks;
    for (const auto& [n, t] : ts) {
      std::smatch m;
      if (std::regex_search(n, m, vit_block)) blocks.insert(std::stoll(m[1]));
    }
    a.depth = int64_t(blocks.size());
    if (auto* fc1 = find(ts, "blocks.0.mlp.fc1.weight")) a.mlp_hidden = fc1->second.size(0);
    if (auto* pe = find(ts, "patch_embed.proj.weight")) a.patch_size = pe->second.size(2);
    if (auto* h = find(ts, "head.weight")) a.num_classes = h->second.size(0);
  } else if (find(ts, "stem.0.weight")) {
    a.family = "convnext";
    std::map<int64_t, std::set<int64_t>> stages;
    for (const auto& [n, t] : ts) {
      std::smatch m;
      if (std::regex_search(n, m, cnx_block)) stages[std::stoll(m[1])].insert(std::stoll(m[2]));
    }
    for (auto& [s, blocks] : stages) {
      a.depths.push_back(int64_t(blocks.size()));
      auto* dw = find(ts, "stages." + std::to_string(s) + ".blocks.0.conv_dw.weight");
      SCION_CHECK(dw, source, ": ConvNeXt teacher lacks stages.", s, ".blocks.0.conv_dw.weight");
      a.dims.push_back(dw->second.size(0));
    }
    if (auto* h = find(ts, "head.fc.weight")) a.num_classes = h->second.size(0);
  } else {
    throw InputError(
        source +
        ": not a timm ViT or ConvNeXt weight file (no cls_token/pos_embed or stem.0.weight)");
  }
  return a;
}

NamedTensors load_teacher(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(weights_file(path));
  NamedTensors ts;
  bool scion_checkpoint = f.contains("model.cls_token") || f.contains("model.stem.0.weight");
  for (const auto& n : f.names()) {
    if (scion_checkpoint) {
      if (n.rfind("model.", 0) == 0) ts.emplace_back(n.substr(6), f.get(n));
    } else {
      ts.emplace_back(n, f.get(n).to(DType::f32));
    }
  }
  for (auto& [n, t] : ts)
    if (t.dtype() != DType::f32) t = t.to(DType::f32);
  return ts;
}

std::vector<std::string> select_weights(nn::Model& student, const NamedTensors& teacher,
                                        const SelectionOptions& opt, const std::string& source) {
  const TeacherArch ta = infer_architecture(teacher, source);
  SCION_CHECK(ta.family == student.family(), source, ": the teacher is a ", ta.family,
              " but the student (", student.config().name, ") is a ", student.family(),
              "; weight selection needs one family");
  const NamedTensors params = student.named_parameters();
  const BlockMap blocks = ta.family == "vit" ? vit_block_map(params, ta, opt.layers, source)
                                             : convnext_block_map(params, ta, opt.layers, source);
  IndexChooser choose(opt, teacher, ta, source);
  std::vector<std::string> selected;
  NoGradGuard ng;
  for (const auto& [name, p] : params) {
    if (!wanted(name, opt)) continue;
    const std::string tname = teacher_name(blocks, name);
    const auto* tt = find(teacher, tname);
    SCION_CHECK(tt, source, ": the teacher has no tensor '", tname, "' for the student's '", name,
                "'");
    Tensor t = nn::as_form(tt->second, p.shape());  // timm conv_mlp fc weights: (O, I, 1, 1)
    if (is_classifier(name) && t.shape()[0] != p.shape()[0])
      continue;  // class counts differ: keep the student's head
    check_teacher_covers(t, p, tname, source);
    const bool per_block =
        name.find(".attn.qkv.") != std::string::npos && (opt.qkv != "official" || choose.pruning());
    Tensor dst = p;  // shares the parameter's storage
    dst.copy_(select_tensor(t, p.shape(), tname, per_block, choose));
    selected.push_back(name);
  }
  return selected;
}

}  // namespace scion::init

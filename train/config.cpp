// YAML -> Config with strict checking. Each section is read by a Reader that records which keys it
// consumed; any key left over is reported as unknown, with the list of keys that section knows.
#include "train/config.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "core/cpu/isa.h"
#include "core/device.h"
#include "core/error.h"
#include "core/files.h"
#include "init/weight_selection.h"

namespace scion::train {

namespace {

class Reader {
 public:
  Reader(const YAML::Node& node, std::string path, std::string source)
      : node_(node), path_(std::move(path)), source_(std::move(source)) {
    if (node_ && !node_.IsNull() && !node_.IsMap())
      fail(path_.empty() ? "config" : path_, "expected a mapping");
    if (node_ && node_.IsMap()) {  // yaml-cpp keeps both entries of a repeated key; first wins
      std::set<std::string> seen;
      for (auto it = node_.begin(); it != node_.end(); ++it)
        if (!seen.insert(it->first.as<std::string>()).second)
          fail(key(it->first.as<std::string>()), "duplicate key");
    }
  }
  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    throw InputError(source_ + ": " + key + ": " + msg);
  }
  std::string key(const std::string& k) const { return path_.empty() ? k : path_ + "." + k; }
  YAML::Node get(const std::string& k) {
    known_.insert(k);
    return node_ && node_.IsMap() ? node_[k] : YAML::Node();
  }
  template <class T>
  void read(const std::string& k, T& out, const char* expected) {
    YAML::Node n = get(k);
    if (!n || n.IsNull()) return;
    if (!n.IsScalar()) fail(key(k), std::string("expected ") + expected);
    try {
      out = n.as<T>();
    } catch (const YAML::Exception&) {
      fail(key(k), std::string("expected ") + expected + ", got '" + n.Scalar() + "'");
    }
  }
  void num(const std::string& k, double& out, double lo, double hi) {
    read(k, out, "a number");
    if (!(out >= lo && out <= hi)) fail(key(k), range_msg(out, lo, hi));  // NaN fails too
  }
  void integer(const std::string& k, int64_t& out, int64_t lo, int64_t hi) {
    read(k, out, "an integer");
    if (out < lo || out > hi) fail(key(k), range_msg(double(out), double(lo), double(hi)));
  }
  void str(const std::string& k, std::string& out) { read(k, out, "a string"); }
  void choice(const std::string& k, std::string& out, const std::vector<std::string>& allowed) {
    str(k, out);
    for (const auto& a : allowed)
      if (out == a) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(key(k), "expected one of " + list + ", got '" + out + "'");
  }
  void boolean(const std::string& k, bool& out) { read(k, out, "true or false"); }
  Reader sub(const std::string& k) { return Reader(get(k), key(k), source_); }
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      std::string k = it->first.as<std::string>();
      if (!known_.count(k)) {
        std::string list;
        for (const auto& n : known_) list += (list.empty() ? "" : ", ") + n;
        fail(key(k), "unknown key (known here: " + list + ")");
      }
    }
  }

 private:
  static std::string range_msg(double v, double lo, double hi) {
    std::ostringstream o;
    o << "value " << v << " out of range [" << lo << ", " << hi << "]";
    return o.str();
  }
  YAML::Node node_;
  std::string path_, source_;
  std::set<std::string> known_;
};

void apply_override(YAML::Node& root, const std::string& text, const std::string& source) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(source + ": --set " + text + ": expected key.path=value");
  std::string path = text.substr(0, eq), value = text.substr(eq + 1);
  if (value.find_first_not_of(" \t") == std::string::npos)
    throw InputError(source + ": --set " + text + ": empty value (write the value after '=')");
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string p;
  while (std::getline(ss, p, '.')) parts.push_back(p);
  YAML::Node value_node;
  try {
    value_node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw InputError(source + ": --set " + text + ": cannot parse value: " + e.what());
  }
  // Walk with fresh handles (yaml-cpp nodes alias on assignment).
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (!next || next.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    }
    if (!next.IsMap())
      throw InputError(source + ": --set " + text + ": " + parts[i] + " is not a section");
    chain.push_back(next);
  }
  chain.back()[parts.back()] = value_node;
}

// ---- the keys, spelled once ---------------------------------------------------------------------
// visit() walks every key of a Config in the order to_yaml writes them, with its checks (ranges,
// choices). V is ConfigReader (YAML -> Config, unknown keys rejected) or ConfigWriter (Config ->
// YAML); adding a key is one line here and its field in config.h.

template <class V>
void visit_model(V& v, nn::ModelConfig& m) {
  v.text("name", m.name);
  v.integer("img_size", m.img_size, 1, 4096);
  v.integer("patch_size", m.patch_size, 1, 1024);
  v.integer("in_chans", m.in_chans, 1, 64);
  v.integer("num_classes", m.num_classes, 1, 100000);
  v.number("drop_path", m.drop_path, 0.0, 0.99);
  v.optional("layer_scale", m.layer_scale, 0.0, 10.0);
  v.optional("embed_dim", m.embed_dim, 1, 100000);
  v.optional("depth", m.depth, 1, 100000);
  v.optional("num_heads", m.num_heads, 1, 100000);
  v.optional("mlp_ratio", m.mlp_ratio, 0.01, 64.0);
  v.optional_list("depths", m.depths);
  v.optional_list("dims", m.dims);
  v.flag("conv_mlp", m.conv_mlp);
}

template <class V>
void visit_init(V& v, InitConfig& i) {
  v.choice("type", i.type,
           {"trunc_normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
            "mimetic", "weight_selection", "net2net", "checkpoint"});
  v.text("teacher", i.teacher);
  v.text("teacher_model", i.teacher_model);
  v.choice("layers", i.layers, {"first", "uniform", "last", "mid"});
  v.choice("elements", i.elements,
           {"uniform", "consecutive", "random", "random-inconsistent", "l1", "magnitude"});
  v.choice("qkv", i.qkv, {"per_block", "official"});
  v.text("components", i.components);
  v.text("checkpoint", i.checkpoint);
  v.number("noise", i.noise, 0.0, 10.0);
  v.choice("mode", i.mode, {"fan_in", "fan_out"});
  v.number("gain", i.gain, 0.0, 100.0);
  v.flag("head", i.head);
  v.flag("head_norm", i.head_norm);
}

template <class V>
void visit_augment(V& v, AugmentConfig& a) {
  v.text("randaugment", a.randaugment);
  v.number("mixup", a.mixup, 0, 100);
  v.number("cutmix", a.cutmix, 0, 100);
  v.number("mixup_prob", a.mixup_prob, 0, 1);
  v.number("switch_prob", a.switch_prob, 0, 1);
  v.number("label_smoothing", a.label_smoothing, 0, 1);
  v.number("reprob", a.reprob, 0, 1);
  v.number("color_jitter", a.color_jitter, 0, 1);
  v.choice("interpolation", a.interpolation, {"bicubic", "bilinear", "nearest"});
  v.choice("crop", a.crop, {"rrc", "random_crop", "resize"});
  v.number("scale_min", a.scale_min, 0.0, 1.0);
  v.number("crop_pct", a.crop_pct, 0.05, 1.0);
  v.number("hflip", a.hflip, 0, 1);
  v.integer("padding", a.padding, 0, 512);
}

template <class V>
void visit_data(V& v, DataConfig& d) {
  const std::vector<std::string> splits{"train", "val", "test"};
  v.choice("dataset", d.dataset,
           {"cifar10", "cifar100", "image_folder", "tiny_imagenet", "fashion_mnist", "mnist",
            "stl10", "svhn", "flowers102", "pets", "food101", "dtd", "eurosat"});
  v.text("root", d.root);
  v.choice("train_split", d.train_split, splits);
  v.choice("val_split", d.val_split, splits);
  v.integer("train_subset", d.train_subset, 0, INT64_MAX);
  v.integer("val_subset", d.val_subset, 0, INT64_MAX);
  v.integer("workers", d.workers, 0, 64);
  v.integer("max_image_pixels", d.max_image_pixels, 1, int64_t(1) << 40);
  v.triple("mean", d.mean, false);
  v.triple("std", d.std, true);
  v.section("augment", [&](auto& s) { visit_augment(s, d.augment); });
}

template <class V>
void visit_train(V& v, TrainConfig& t) {
  v.integer("epochs", t.epochs, 1, 100000);
  v.integer("batch_size", t.batch_size, 1, 1 << 20);
  v.integer("accum_steps", t.accum_steps, 1, 4096);
  v.section("optimizer", [&](auto& s) {
    s.choice("type", t.optimizer.type, {"adamw", "sgd"});
    s.number("lr", t.optimizer.lr, 0, 1e30);
    s.number("weight_decay", t.optimizer.weight_decay, 0, 10);
    s.betas("betas", t.optimizer.betas);
    s.number("eps", t.optimizer.eps, 0, 1);
    s.number("momentum", t.optimizer.momentum, 0, 1);
    s.flag("nesterov", t.optimizer.nesterov);
  });
  v.section("schedule", [&](auto& s) {
    s.choice("type", t.schedule.type, {"cosine", "step", "constant"});
    s.number("warmup_epochs", t.schedule.warmup_epochs, 0, 1e6);
    s.number("min_lr", t.schedule.min_lr, 0, 100);
    s.number("warmup_lr", t.schedule.warmup_lr, 0, 100);
    s.number("decay_epochs", t.schedule.decay_epochs, 1e-9, 1e6);
    s.number("decay_rate", t.schedule.decay_rate, 0, 1);
  });
  v.choice("precision", t.precision, {"f32", "bf16", "auto"});
  v.section("ema", [&](auto& s) { s.number("decay", t.ema_decay, 0, 1); });
  v.number("clip_grad", t.clip_grad, 0, 1e9);
  v.section("distill", [&](auto& s) {
    s.nullable_text("teacher", t.distill.teacher);
    s.text("model", t.distill.model);
    s.number("alpha", t.distill.alpha, 0, 1);
    s.number("temperature", t.distill.temperature, 1e-3, 1e3);
  });
  v.integer("log_interval", t.log_interval, 1, 1 << 30);
  v.choice("freeze", t.freeze, {"none", "backbone"});
  v.number("progress_seconds", t.progress_seconds, 0.0, 86400.0);
}

template <class V>
void visit(V& v, Config& c) {
  v.integer("seed", c.seed, 0, INT64_MAX);
  v.text("device", c.device);
  v.integer("threads", c.threads, 0, 1024);
  v.text("output_dir", c.output_dir);
  v.section("model", [&](auto& s) { visit_model(s, c.model); });
  v.section("init", [&](auto& s) { visit_init(s, c.init); });
  v.section("data", [&](auto& s) { visit_data(s, c.data); });
  v.section("train", [&](auto& s) { visit_train(s, c.train); });
  v.section("dist", [&](auto& s) {
    s.number("bucket_mb", c.dist.bucket_mb, 0.001, 4096);
    s.choice("compress", c.dist.compress, {"none", "bf16"});
    s.number("timeout_seconds", c.dist.timeout_seconds, 1, 1e6);
  });
}

// YAML -> fields, each checked; a section's unknown keys are reported when it ends.
class ConfigReader {
 public:
  explicit ConfigReader(Reader r) : r_(std::move(r)) {}
  template <class Int>
  void integer(const char* k, Int& out, int64_t lo, int64_t hi) {
    int64_t v = int64_t(out);
    r_.integer(k, v, lo, hi);
    out = Int(v);
  }
  void number(const char* k, double& out, double lo, double hi) { r_.num(k, out, lo, hi); }
  void text(const char* k, std::string& out) { r_.str(k, out); }
  void nullable_text(const char* k, std::string& out) {
    YAML::Node n = r_.get(k);
    if (n && !n.IsNull()) r_.str(k, out);
  }
  void choice(const char* k, std::string& out, const std::vector<std::string>& allowed) {
    r_.choice(k, out, allowed);
  }
  void flag(const char* k, bool& out) { r_.boolean(k, out); }
  void optional(const char* k, std::optional<int64_t>& out, int64_t lo, int64_t hi) {
    if (!present(k)) return;
    int64_t v = 0;
    r_.integer(k, v, lo, hi);
    out = v;
  }
  void optional(const char* k, std::optional<double>& out, double lo, double hi) {
    if (!present(k)) return;
    double v = 0;
    r_.num(k, v, lo, hi);
    out = v;
  }
  void optional_list(const char* k, std::optional<std::vector<int64_t>>& out) {
    if (!present(k)) return;
    try {
      out = r_.get(k).as<std::vector<int64_t>>();
    } catch (const YAML::Exception&) {
      r_.fail(r_.key(k), "expected a list of integers like [2, 2, 6, 2]");
    }
  }
  void triple(const char* k, std::array<float, 3>& out, bool positive) {
    if (!present(k)) return;
    std::vector<float> v;
    try {
      v = r_.get(k).as<std::vector<float>>();
    } catch (const YAML::Exception&) {
    }
    if (v.size() != 3) r_.fail(r_.key(k), "expected a list of 3 numbers");
    for (float x : v)
      if (!std::isfinite(x) || (positive && !(x > 0)))
        r_.fail(r_.key(k),
                std::string("expected 3 finite numbers") + (positive ? ", each > 0" : ""));
    std::copy(v.begin(), v.end(), out.begin());
  }
  void betas(const char* k, std::array<double, 2>& out) {
    if (!present(k)) return;
    std::vector<double> b;
    try {
      b = r_.get(k).as<std::vector<double>>();
    } catch (const YAML::Exception&) {
    }
    if (b.size() != 2 || !(b[0] >= 0 && b[0] < 1) || !(b[1] >= 0 && b[1] < 1))
      r_.fail(r_.key(k), "expected two numbers in [0, 1), like [0.9, 0.999]");
    out = {b[0], b[1]};
  }
  template <class F>
  void section(const char* k, F f) {
    ConfigReader sub(r_.sub(k));
    f(sub);
    sub.r_.finish();
  }
  Reader& reader() { return r_; }

 private:
  bool present(const char* k) {
    YAML::Node n = r_.get(k);
    return n && !n.IsNull();
  }
  Reader r_;
};

// Fields -> YAML, in visit order; unset optionals are left out.
class ConfigWriter {
 public:
  explicit ConfigWriter(YAML::Emitter& e) : e_(e) {}
  template <class Int>
  void integer(const char* k, const Int& v, int64_t, int64_t) {
    e_ << YAML::Key << k << YAML::Value << v;
  }
  // yaml-cpp writes 1e-08, which YAML 1.1 readers (PyYAML) take for a string: write 1.0e-08.
  void number(const char* k, double v, double, double) {
    YAML::Emitter t;
    t << v;
    std::string text = t.c_str();
    size_t e = text.find_first_of("eE");
    if (e != std::string::npos && text.find('.') == std::string::npos) text.insert(e, ".0");
    e_ << YAML::Key << k << YAML::Value << text;
  }
  void text(const char* k, const std::string& v) { e_ << YAML::Key << k << YAML::Value << v; }
  void nullable_text(const char* k, const std::string& v) {
    e_ << YAML::Key << k << YAML::Value;
    if (v.empty())
      e_ << YAML::Null;
    else
      e_ << v;
  }
  void choice(const char* k, const std::string& v, const std::vector<std::string>&) { text(k, v); }
  void flag(const char* k, bool v) { e_ << YAML::Key << k << YAML::Value << v; }
  template <class T, class B>
  void optional(const char* k, const std::optional<T>& v, B, B) {
    if (v) e_ << YAML::Key << k << YAML::Value << *v;
  }
  void optional_list(const char* k, const std::optional<std::vector<int64_t>>& v) {
    if (v) list(k, *v);
  }
  void triple(const char* k, const std::array<float, 3>& v, bool) { list(k, v); }
  void betas(const char* k, const std::array<double, 2>& v) { list(k, v); }
  template <class F>
  void section(const char* k, F f) {
    e_ << YAML::Key << k << YAML::Value << YAML::BeginMap;
    f(*this);
    e_ << YAML::EndMap;
  }

 private:
  template <class L>
  void list(const char* k, const L& v) {
    e_ << YAML::Key << k << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (auto x : v) e_ << x;
    e_ << YAML::EndSeq;
  }
  YAML::Emitter& e_;
};

Config from_node(const YAML::Node& root, const std::string& source) {
  Config c;
  c.source = source;
  ConfigReader r(Reader(root, "", source));
  visit(r, c);
  r.reader().finish();
  auto fail = [&](const std::string& key, const std::string& msg) {
    throw InputError(source + ": " + key + ": " + msg);
  };
  parse_device(c.device, source + ": device");  // cpu, reference, cuda or cuda:N
  if (c.train.precision == "auto")
    std::tie(c.train.precision, c.train.precision_choice) = auto_precision(c.device);
  else if (c.train.precision == "bf16")
    c.train.precision_choice = slower_bf16_note(c.device);
  if (c.output_dir.empty()) fail("output_dir", "empty (name the folder for the run's outputs)");
  const std::vector<std::string> models = nn::model_names();
  if (std::find(models.begin(), models.end(), c.model.name) == models.end()) {
    std::string list;
    for (const auto& n : models) list += (list.empty() ? "" : ", ") + n;
    fail("model.name", "unknown model '" + c.model.name + "' (known: " + list + ")");
  }
  if (c.data.root.empty()) fail("data.root", "missing: the folder of the data set");
  init::parse_components(c.init.components, source + ": init.components");  // exit 2 here
  if (c.data.augment.mixup > 0 || c.data.augment.cutmix > 0)
    if (c.train.batch_size % 2 != 0)
      fail("train.batch_size", "Mixup/CutMix need an even batch size");
  return c;
}

// The kernel paths the precision notes name: "scion kernels avx2, oneDNN avx2".
std::string cpu_kernel_paths() {
  return std::string("scion kernels ") + cpu::isa_name(cpu::active_isa()) + ", oneDNN " +
         cpu::onednn_isa_name();
}

}  // namespace

std::pair<std::string, std::string> auto_precision(const std::string& device) {
  if (device.rfind("cuda", 0) == 0) return {"bf16", "auto: bf16 on CUDA devices"};
  if (device == "reference") return {"f32", "auto: f32 on the reference backend"};
  const std::string where = cpu_kernel_paths();
  if (cpu::bf16_outpaces_f32())
    return {"bf16", "auto: this CPU has native bf16 dot products that outpace its f32 FMAs (" +
                        where + ")"};
  if (cpu::native_bf16())
    return {"f32", "auto: this CPU's native bf16 dot products (" + where + ", " +
                       cpu::cpu_vendor() +
                       ", no AMX) do no more work per cycle than its f32 FMAs, and bf16 adds "
                       "casts; precision: bf16 still runs them"};
  return {"f32", "auto: this CPU has no native bf16 dot products (" + where +
                     "); bf16 would run through f32 kernels"};
}

std::string slower_bf16_note(const std::string& device) {
  if (device != "cpu" || cpu::bf16_outpaces_f32()) return "";
  const std::string where = cpu_kernel_paths();
  if (cpu::native_bf16())
    return "as set; this CPU's native bf16 dot products (" + where + ", " + cpu::cpu_vendor() +
           ", no AMX) do no more work per cycle than its f32 FMAs, so f32 is as fast or faster "
           "(precision: auto picks f32 here)";
  return "as set; this CPU has no native bf16 dot products (" + where +
         "), so bf16 runs through f32 kernels: bf16's numbers, more slowly than f32 (precision: "
         "auto picks f32 here)";
}

Config parse_config(const std::string& text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(source + ": invalid YAML: " + e.what());
  }
  if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    throw InputError(source +
                     ": expected a mapping of sections (seed, model, data, train, ...) "
                     "at the top level, got a " +
                     (root.IsSequence() ? std::string("list") : std::string("single value")));
  try {
    for (const auto& o : overrides) apply_override(root, o, source);
    return from_node(root, source);
  } catch (const YAML::Exception& e) {  // any shape the checks above did not foresee
    throw InputError(source + ": " + e.what());
  }
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_config(read_text_file(path, "a YAML config file"), path, overrides);
}

std::vector<std::string> config_warnings(const Config& c) {
  std::vector<std::string> out;
  const ScheduleConfig& s = c.train.schedule;
  if (s.type == "cosine" && s.warmup_epochs > double(c.train.epochs)) {
    // As timm's schedulers do, the warmup keeps its own slope; the run ends inside it.
    const double end = s.warmup_lr + (c.train.optimizer.lr - s.warmup_lr) * double(c.train.epochs) /
                                         s.warmup_epochs;
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "%s: train.schedule.warmup_epochs %g exceeds train.epochs %lld: the learning "
                  "rate is still warming up when training ends (it reaches %.3g, not lr %.3g, "
                  "and never decays to min_lr %.3g)",
                  c.source.c_str(), s.warmup_epochs, (long long)c.train.epochs, end,
                  c.train.optimizer.lr, s.min_lr);
    out.push_back(buf);
  }
  return out;
}

std::string to_yaml(const Config& c) {
  YAML::Emitter e;
  ConfigWriter w(e);
  e << YAML::BeginMap;
  visit(w, const_cast<Config&>(c));  // the writer only reads
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace scion::train

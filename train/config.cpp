// YAML -> Config with strict checking. Each section is read by a Reader that records which keys it
// consumed; any key left over is reported as unknown, with the list of keys that section knows.
#include "train/config.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"

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

void read_model(Reader r, nn::ModelConfig& m) {
  r.str("name", m.name);
  r.integer("img_size", m.img_size, 1, 4096);
  r.integer("patch_size", m.patch_size, 1, 1024);
  r.integer("in_chans", m.in_chans, 1, 64);
  r.integer("num_classes", m.num_classes, 1, 100000);
  r.num("drop_path", m.drop_path, 0.0, 0.99);
  auto opt_int = [&](const char* k, std::optional<int64_t>& out) {
    if (r.get(k) && !r.get(k).IsNull()) {
      int64_t v = 0;
      r.integer(k, v, 1, 100000);
      out = v;
    }
  };
  auto opt_list = [&](const char* k, std::optional<std::vector<int64_t>>& out) {
    YAML::Node n = r.get(k);
    if (!n || n.IsNull()) return;
    try {
      out = n.as<std::vector<int64_t>>();
    } catch (const YAML::Exception&) {
      r.fail(r.key(k), "expected a list of integers like [2, 2, 6, 2]");
    }
  };
  if (r.get("layer_scale") && !r.get("layer_scale").IsNull()) {
    double v = 0;
    r.num("layer_scale", v, 0.0, 10.0);
    m.layer_scale = v;
  }
  opt_int("embed_dim", m.embed_dim);
  opt_int("depth", m.depth);
  opt_int("num_heads", m.num_heads);
  if (r.get("mlp_ratio") && !r.get("mlp_ratio").IsNull()) {
    double v = 4;
    r.num("mlp_ratio", v, 0.01, 64);
    m.mlp_ratio = v;
  }
  opt_list("depths", m.depths);
  opt_list("dims", m.dims);
  r.boolean("conv_mlp", m.conv_mlp);
  bool known = false;
  for (const auto& n : nn::model_names()) known |= n == m.name;
  if (!known) {
    std::string list;
    for (const auto& n : nn::model_names()) list += (list.empty() ? "" : ", ") + n;
    r.fail(r.key("name"), "unknown model '" + m.name + "' (known: " + list + ")");
  }
  r.finish();
}

Config from_node(const YAML::Node& root, const std::string& source) {
  Config c;
  c.source = source;
  Reader r(root, "", source);
  int64_t seed = 0, threads = 0;
  r.integer("seed", seed, 0, INT64_MAX);
  c.seed = uint64_t(seed);
  r.choice("device", c.device, {"cpu", "cuda"});
  r.integer("threads", threads, 0, 1024);
  c.threads = int(threads);
  r.str("output_dir", c.output_dir);
  if (c.output_dir.empty()) r.fail("output_dir", "empty (name the folder for the run's outputs)");
  read_model(r.sub("model"), c.model);
  {
    Reader i = r.sub("init");
    i.choice("type", c.init.type,
             {"trunc_normal", "xavier_uniform", "xavier_normal", "kaiming_uniform",
              "kaiming_normal", "weight_selection", "net2net", "checkpoint"});
    i.str("teacher", c.init.teacher);
    i.str("teacher_model", c.init.teacher_model);
    i.choice("layers", c.init.layers, {"first", "uniform", "last"});
    i.choice("elements", c.init.elements,
             {"uniform", "consecutive", "random", "random-inconsistent"});
    i.str("checkpoint", c.init.checkpoint);
    i.num("noise", c.init.noise, 0.0, 10.0);
    i.choice("mode", c.init.mode, {"fan_in", "fan_out"});
    i.num("gain", c.init.gain, 0.0, 100.0);
    i.boolean("head", c.init.head);
    i.boolean("head_norm", c.init.head_norm);
    i.finish();
  }
  {
    Reader d = r.sub("data");
    d.choice("dataset", c.data.dataset,
             {"cifar10", "cifar100", "image_folder", "tiny_imagenet", "fashion_mnist", "mnist"});
    d.str("root", c.data.root);
    d.choice("train_split", c.data.train_split, {"train", "val", "test"});
    d.choice("val_split", c.data.val_split, {"train", "val", "test"});
    d.integer("train_subset", c.data.train_subset, 0, INT64_MAX);
    d.integer("val_subset", c.data.val_subset, 0, INT64_MAX);
    d.integer("max_image_pixels", c.data.max_image_pixels, 1, int64_t(1) << 40);
    int64_t workers = c.data.workers;
    d.integer("workers", workers, 0, 64);
    c.data.workers = int(workers);
    for (const char* k : {"mean", "std"}) {
      YAML::Node n = d.get(k);
      if (!n || n.IsNull()) continue;
      std::vector<float> v;
      try {
        v = n.as<std::vector<float>>();
      } catch (const YAML::Exception&) {
      }
      if (v.size() != 3) d.fail(d.key(k), "expected a list of 3 numbers");
      for (float x : v)
        if (!std::isfinite(x) || (std::string(k) == "std" && !(x > 0)))
          d.fail(d.key(k), std::string("expected 3 finite numbers") +
                               (std::string(k) == "std" ? ", each > 0" : ""));
      auto& dst = std::string(k) == "mean" ? c.data.mean : c.data.std;
      std::copy(v.begin(), v.end(), dst.begin());
    }
    Reader a = d.sub("augment");
    AugmentConfig& g = c.data.augment;
    a.str("randaugment", g.randaugment);
    a.num("mixup", g.mixup, 0, 100);
    a.num("cutmix", g.cutmix, 0, 100);
    a.num("mixup_prob", g.mixup_prob, 0, 1);
    a.num("switch_prob", g.switch_prob, 0, 1);
    a.num("label_smoothing", g.label_smoothing, 0, 1);
    a.num("reprob", g.reprob, 0, 1);
    a.num("color_jitter", g.color_jitter, 0, 1);
    a.choice("interpolation", g.interpolation, {"bicubic", "bilinear", "nearest"});
    a.choice("crop", g.crop, {"rrc", "random_crop", "resize"});
    a.num("scale_min", g.scale_min, 0.0, 1.0);
    a.num("crop_pct", g.crop_pct, 0.05, 1.0);
    a.num("hflip", g.hflip, 0, 1);
    int64_t pad = g.padding;
    a.integer("padding", pad, 0, 512);
    g.padding = int(pad);
    a.finish();
    d.finish();
    if (c.data.root.empty()) d.fail("data.root", "missing: the folder of the data set");
  }
  {
    Reader t = r.sub("train");
    TrainConfig& tc = c.train;
    t.integer("epochs", tc.epochs, 1, 100000);
    t.integer("batch_size", tc.batch_size, 1, 1 << 20);
    t.integer("accum_steps", tc.accum_steps, 1, 4096);
    t.choice("precision", tc.precision, {"f32", "bf16"});
    t.num("clip_grad", tc.clip_grad, 0, 1e9);
    t.integer("log_interval", tc.log_interval, 1, 1 << 30);
    t.num("progress_seconds", tc.progress_seconds, 0.0, 86400.0);
    Reader o = t.sub("optimizer");
    o.choice("type", tc.optimizer.type, {"adamw", "sgd"});
    o.num("lr", tc.optimizer.lr, 0, 1e30);
    o.num("weight_decay", tc.optimizer.weight_decay, 0, 10);
    o.num("eps", tc.optimizer.eps, 0, 1);
    o.num("momentum", tc.optimizer.momentum, 0, 1);
    o.boolean("nesterov", tc.optimizer.nesterov);
    YAML::Node betas = o.get("betas");
    if (betas && !betas.IsNull()) {
      std::vector<double> b;
      try {
        b = betas.as<std::vector<double>>();
      } catch (const YAML::Exception&) {
      }
      if (b.size() != 2 || !(b[0] >= 0 && b[0] < 1) || !(b[1] >= 0 && b[1] < 1))
        o.fail(o.key("betas"), "expected two numbers in [0, 1), like [0.9, 0.999]");
      tc.optimizer.betas = {b[0], b[1]};
    }
    o.finish();
    Reader s = t.sub("schedule");
    s.choice("type", tc.schedule.type, {"cosine", "step", "constant"});
    s.num("warmup_epochs", tc.schedule.warmup_epochs, 0, 1e6);
    s.num("min_lr", tc.schedule.min_lr, 0, 100);
    s.num("warmup_lr", tc.schedule.warmup_lr, 0, 100);
    s.num("decay_epochs", tc.schedule.decay_epochs, 1e-9, 1e6);
    s.num("decay_rate", tc.schedule.decay_rate, 0, 1);
    s.finish();
    Reader e = t.sub("ema");
    e.num("decay", tc.ema_decay, 0, 1);
    e.finish();
    Reader k = t.sub("distill");
    YAML::Node teacher = k.get("teacher");
    if (teacher && !teacher.IsNull()) k.str("teacher", tc.distill.teacher);
    k.str("model", tc.distill.model);
    k.num("alpha", tc.distill.alpha, 0, 1);
    k.num("temperature", tc.distill.temperature, 1e-3, 1e3);
    k.finish();
    t.finish();
  }
  r.finish();
  if (c.data.augment.mixup > 0 || c.data.augment.cutmix > 0)
    if (c.train.batch_size % 2 != 0)
      throw InputError(source + ": train.batch_size: Mixup/CutMix need an even batch size");
  return c;
}

}  // namespace

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
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw InputError(path + ": not a regular file (a YAML config was expected)");
  std::ifstream in(path);
  if (!in.good()) throw InputError(path + ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, overrides);
}

std::string to_yaml(const Config& c) {
  YAML::Emitter e;
  auto list = [&](const auto& v) {
    e << YAML::Flow << YAML::BeginSeq;
    for (auto x : v) e << x;
    e << YAML::EndSeq;
  };
  e << YAML::BeginMap;
  e << YAML::Key << "seed" << YAML::Value << c.seed;
  e << YAML::Key << "device" << YAML::Value << c.device;
  e << YAML::Key << "threads" << YAML::Value << c.threads;
  e << YAML::Key << "output_dir" << YAML::Value << c.output_dir;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  const nn::ModelConfig& m = c.model;
  e << YAML::Key << "name" << YAML::Value << m.name << YAML::Key << "img_size" << YAML::Value
    << m.img_size;
  e << YAML::Key << "patch_size" << YAML::Value << m.patch_size << YAML::Key << "in_chans"
    << YAML::Value << m.in_chans;
  e << YAML::Key << "num_classes" << YAML::Value << m.num_classes << YAML::Key << "drop_path"
    << YAML::Value << m.drop_path;
  if (m.layer_scale) e << YAML::Key << "layer_scale" << YAML::Value << *m.layer_scale;
  if (m.embed_dim) e << YAML::Key << "embed_dim" << YAML::Value << *m.embed_dim;
  if (m.depth) e << YAML::Key << "depth" << YAML::Value << *m.depth;
  if (m.num_heads) e << YAML::Key << "num_heads" << YAML::Value << *m.num_heads;
  if (m.mlp_ratio) e << YAML::Key << "mlp_ratio" << YAML::Value << *m.mlp_ratio;
  if (m.depths) {
    e << YAML::Key << "depths" << YAML::Value;
    list(*m.depths);
  }
  if (m.dims) {
    e << YAML::Key << "dims" << YAML::Value;
    list(*m.dims);
  }
  if (m.conv_mlp) e << YAML::Key << "conv_mlp" << YAML::Value << true;
  e << YAML::EndMap;
  e << YAML::Key << "init" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << c.init.type << YAML::Key << "teacher" << YAML::Value
    << c.init.teacher;
  e << YAML::Key << "teacher_model" << YAML::Value << c.init.teacher_model;
  e << YAML::Key << "layers" << YAML::Value << c.init.layers << YAML::Key << "elements"
    << YAML::Value << c.init.elements;
  e << YAML::Key << "checkpoint" << YAML::Value << c.init.checkpoint << YAML::Key << "noise"
    << YAML::Value << c.init.noise;
  e << YAML::Key << "mode" << YAML::Value << c.init.mode << YAML::Key << "gain" << YAML::Value
    << c.init.gain;
  e << YAML::Key << "head" << YAML::Value << c.init.head << YAML::Key << "head_norm" << YAML::Value
    << c.init.head_norm << YAML::EndMap;
  const DataConfig& d = c.data;
  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "dataset" << YAML::Value << d.dataset << YAML::Key << "root" << YAML::Value
    << d.root;
  e << YAML::Key << "train_split" << YAML::Value << d.train_split << YAML::Key << "val_split"
    << YAML::Value << d.val_split;
  e << YAML::Key << "train_subset" << YAML::Value << d.train_subset << YAML::Key << "val_subset"
    << YAML::Value << d.val_subset;
  e << YAML::Key << "workers" << YAML::Value << d.workers;
  if (d.max_image_pixels != data::kDefaultMaxImagePixels)
    e << YAML::Key << "max_image_pixels" << YAML::Value << d.max_image_pixels;
  e << YAML::Key << "mean" << YAML::Value;
  list(d.mean);
  e << YAML::Key << "std" << YAML::Value;
  list(d.std);
  const AugmentConfig& a = d.augment;
  e << YAML::Key << "augment" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "randaugment" << YAML::Value << a.randaugment << YAML::Key << "mixup"
    << YAML::Value << a.mixup;
  e << YAML::Key << "cutmix" << YAML::Value << a.cutmix << YAML::Key << "mixup_prob" << YAML::Value
    << a.mixup_prob;
  e << YAML::Key << "switch_prob" << YAML::Value << a.switch_prob;
  e << YAML::Key << "label_smoothing" << YAML::Value << a.label_smoothing << YAML::Key << "reprob"
    << YAML::Value << a.reprob;
  e << YAML::Key << "color_jitter" << YAML::Value << a.color_jitter << YAML::Key << "interpolation"
    << YAML::Value << a.interpolation;
  e << YAML::Key << "crop" << YAML::Value << a.crop << YAML::Key << "scale_min" << YAML::Value
    << a.scale_min;
  e << YAML::Key << "crop_pct" << YAML::Value << a.crop_pct << YAML::Key << "hflip" << YAML::Value
    << a.hflip;
  e << YAML::Key << "padding" << YAML::Value << a.padding << YAML::EndMap << YAML::EndMap;
  const TrainConfig& t = c.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "epochs" << YAML::Value << t.epochs << YAML::Key << "batch_size" << YAML::Value
    << t.batch_size;
  e << YAML::Key << "accum_steps" << YAML::Value << t.accum_steps;
  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << t.optimizer.type << YAML::Key << "lr" << YAML::Value
    << t.optimizer.lr;
  e << YAML::Key << "weight_decay" << YAML::Value << t.optimizer.weight_decay;
  e << YAML::Key << "betas" << YAML::Value;
  list(t.optimizer.betas);
  e << YAML::Key << "eps" << YAML::Value << t.optimizer.eps << YAML::Key << "momentum"
    << YAML::Value << t.optimizer.momentum;
  e << YAML::Key << "nesterov" << YAML::Value << t.optimizer.nesterov << YAML::EndMap;
  e << YAML::Key << "schedule" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << t.schedule.type << YAML::Key << "warmup_epochs"
    << YAML::Value << t.schedule.warmup_epochs;
  e << YAML::Key << "min_lr" << YAML::Value << t.schedule.min_lr << YAML::Key << "warmup_lr"
    << YAML::Value << t.schedule.warmup_lr;
  e << YAML::Key << "decay_epochs" << YAML::Value << t.schedule.decay_epochs << YAML::Key
    << "decay_rate" << YAML::Value << t.schedule.decay_rate;
  e << YAML::EndMap;
  e << YAML::Key << "precision" << YAML::Value << t.precision;
  e << YAML::Key << "ema" << YAML::Value << YAML::BeginMap << YAML::Key << "decay" << YAML::Value
    << t.ema_decay << YAML::EndMap;
  e << YAML::Key << "clip_grad" << YAML::Value << t.clip_grad;
  e << YAML::Key << "distill" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "teacher" << YAML::Value;
  if (t.distill.teacher.empty())
    e << YAML::Null;
  else
    e << t.distill.teacher;
  e << YAML::Key << "model" << YAML::Value << t.distill.model << YAML::Key << "alpha" << YAML::Value
    << t.distill.alpha;
  e << YAML::Key << "temperature" << YAML::Value << t.distill.temperature << YAML::EndMap;
  e << YAML::Key << "log_interval" << YAML::Value << t.log_interval;
  e << YAML::Key << "progress_seconds" << YAML::Value << t.progress_seconds;
  e << YAML::EndMap << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace scion::train

// The `scion` program: tools around models and weight files (DESIGN.md "Programs").
//   scion info                    the CPU, its features, the ISA caps, the path each kernel family
//                                 takes here, and CUDA devices
//   scion models                  registered models with parameter counts (1000 classes, 224 px)
//   scion inspect FILE.safetensors  per tensor: name, dtype, shape, count, mean, std
//   scion select --teacher T.safetensors --model NAME [--set model.key=value ...]
//              [--layers first|uniform|last] [--elements
//              uniform|consecutive|random|random-inconsistent]
//              [--seed N] [--head] [--head-norm] --out S.safetensors
//              (--teacher: a weights file or a timm hub folder with config.json)
//   scion grow --from S.safetensors --from-model NAME --model NAME [--set model.key=value ...]
//              [--noise STD] [--seed N] --out L.safetensors   (--set applies to both models)
//   scion init --model NAME [--set model.key=value ...] [--init TYPE] [--seed N] --out W.safetensors
//              a freshly initialized, untrained model (e.g. a control teacher)
//   scion eval --weights W.safetensors [--config C.yaml] [--model NAME] [--set model.key=value ...]
//              [--data DATASET --root DIR] [--split train|val|test] [--limit N]
//              [--precision f32|bf16] [--crop-pct P] [--interpolation I] [--batch N]
//              settings from the weights' metadata (model, preprocessing, precision), then
//              --config, then flags; prints them, then a JSON line last:
//              {"loss":..,"acc1":..,"acc5":..,"images":..}
//   scion --version               the source revision of this build (train/version.h)
// select, grow and init: --out is replaced atomically when it is a regular file, never when it is
// a folder, device or FIFO or one of the inputs (exit 2); a non-finite result is refused (exit 2)
// and nothing is written; --check validates the flags and model options, reading and writing
// nothing (the reproduction harness checks its prerequisites so before anything runs).
// Exit status: 0 success, 2 usage or input error (the message names the file or flag), 1 failure.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/cpu/info.h"
#include "core/cpu/isa.h"
#include "core/cpu/parallel.h"
#include "core/device.h"
#include "core/files.h"
#include "core/scion.h"
#include "init/initializers.h"
#include "init/net2net.h"
#include "init/pretrained.h"
#include "init/weight_selection.h"
#include "nn/model.h"
#include "train/trainer.h"
#include "train/version.h"

using namespace scion;

namespace {

int cmd_models() {
  std::printf("%-16s %14s\n", "model", "parameters");
  for (const std::string& name : nn::model_names()) {
    nn::ModelConfig c;
    c.name = name;
    std::printf("%-16s %14lld\n", name.c_str(), (long long)nn::create_model(c)->num_parameters());
  }
  return 0;
}

int cmd_inspect(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  std::printf("%s: %zu tensors\n", path.c_str(), f.names().size());
  for (const auto& [k, v] : f.metadata()) std::printf("  metadata %s = %s\n", k.c_str(), v.c_str());
  std::printf("%-48s %-5s %-20s %12s %13s %13s\n", "name", "dtype", "shape", "count", "mean",
              "std");
  int64_t total = 0;
  for (const std::string& name : f.names()) {
    Tensor t = f.get(name);
    double m = 0, sd = 0;
    int64_t n = t.numel();
    if (n > 0) {
      std::vector<double> v = t.to_vector();
      double s = 0, s2 = 0;
      for (double x : v) s += x;
      m = s / double(n);
      for (double x : v) s2 += (x - m) * (x - m);
      sd = n > 1 ? std::sqrt(s2 / double(n - 1)) : 0.0;  // torch.std's unbiased estimate
    }
    total += n;
    std::printf("%-48s %-5s %-20s %12lld %13.6g %13.6g\n", name.c_str(), dtype_name(t.dtype()),
                shape_str(t.shape()).c_str(), (long long)n, m, sd);
  }
  std::printf("total elements: %lld\n", (long long)total);
  return 0;
}

// Applies --set model.key=value options.
void apply_model_sets(nn::ModelConfig& c, const std::vector<std::string>& sets) {
  for (const std::string& s : sets) {
    auto eq = s.find('=');
    std::string key = s.substr(0, eq);
    SCION_CHECK(eq != std::string::npos && key.rfind("model.", 0) == 0, "--set ", s,
                ": expected model.key=value");
    nn::set_model_option(c, key.substr(6), s.substr(eq + 1));
  }
}

nn::ModelConfig model_config(const std::string& name, const std::vector<std::string>& sets) {
  nn::ModelConfig c;
  c.name = name;
  apply_model_sets(c, sets);
  return c;
}

// An output weights path (checked before any work): a file name, not a folder, device or FIFO, and
// not one of the inputs (flag, path; a hub folder's model.safetensors counts). An existing regular
// file is replaced, atomically, as torch.save and cp replace theirs.
void check_out(const std::string& out, std::vector<std::pair<std::string, std::string>> inputs) {
  for (size_t i = 0, n = inputs.size(); i < n; ++i)
    if (init::is_directory(inputs[i].second))
      inputs.emplace_back(inputs[i].first, init::weights_file(inputs[i].second));
  check_output_file("--out", out, inputs);
}

// A weights file's "scion_model" metadata as a model config; errors name the file.
nn::ModelConfig model_from_metadata(const std::string& path, const std::string& text) {
  try {
    return nn::parse_model_config(text);
  } catch (const std::exception& e) {
    throw InputError(path + ": metadata scion_model: " + e.what());
  }
}

// --check: the flags and model options are valid (the model builds); no file was read or written.
int checked(const char* command) {
  std::printf("scion %s: flags checked; nothing read or written (--check)\n", command);
  return 0;
}

struct SelectArgs {
  std::string teacher, model, out, layers = "first", elements = "uniform", qkv = "per_block",
                                   components = "all";
  std::vector<std::string> sets;
  uint64_t seed = 0;
  bool head = false, head_norm = false, check = false;
};

int cmd_select(const SelectArgs& a) {
  check_out(a.out, {{"--teacher", a.teacher}});
  nn::ModelPtr student = nn::create_model(model_config(a.model, a.sets));
  init::parse_components(a.components, "--components");
  if (a.check) return checked("select");
  init::InitConfig ic;
  ic.type = "weight_selection";
  ic.teacher = a.teacher;
  ic.layers = a.layers;
  ic.elements = a.elements;
  ic.qkv = a.qkv;
  ic.components = a.components;
  ic.head = a.head;
  ic.head_norm = a.head_norm;
  Generator gen(a.seed, 0x494E4954);
  init::initialize(*student, ic, gen, "scion select");
  student->save(a.out, {{"scion_select_teacher", a.teacher},
                        {"layers", a.layers},
                        {"elements", a.elements},
                        {"qkv", a.qkv},
                        {"components", a.components},
                        {"seed", std::to_string(a.seed)}});
  std::printf("wrote %s: %s (%lld parameters) selected from %s (layers %s, elements %s)\n",
              a.out.c_str(), a.model.c_str(), (long long)student->num_parameters(),
              a.teacher.c_str(), a.layers.c_str(), a.elements.c_str());
  return 0;
}

struct InitArgs {
  std::string model, init = "trunc_normal", out;
  std::vector<std::string> sets;
  uint64_t seed = 0;
  bool check = false;
};

// A freshly initialized model, untrained: e.g. the control teacher of weight selection (selection
// from it separates what a trained teacher knows from the scale of its initialization).
int cmd_init(const InitArgs& a) {
  check_out(a.out, {});
  nn::ModelPtr model = nn::create_model(model_config(a.model, a.sets));
  if (a.check) return checked("init");
  init::InitConfig ic;
  ic.type = a.init;
  Generator gen(a.seed, 0x494E4954);
  init::initialize(*model, ic, gen, "scion init");
  model->save(a.out, {{"scion_init", a.init}, {"seed", std::to_string(a.seed)}});
  std::printf("wrote %s: %s (%lld parameters), %s initialization, seed %llu\n", a.out.c_str(),
              a.model.c_str(), (long long)model->num_parameters(), a.init.c_str(),
              (unsigned long long)a.seed);
  return 0;
}

struct GrowArgs {
  std::string from, from_model, model, out;
  std::vector<std::string> sets;
  double noise = 0.0;
  uint64_t seed = 0;
  bool check = false;
};

int cmd_grow(const GrowArgs& a) {
  check_out(a.out, {{"--from", a.from}});
  // The source architecture comes from its file; --set options (image size, classes) apply to both.
  nn::ModelPtr big = nn::create_model(model_config(a.model, a.sets));
  const auto& names = nn::model_names();
  SCION_CHECK(std::find(names.begin(), names.end(), a.from_model) != names.end(), "--from-model ",
              a.from_model, ": not a registered model (scion models lists them)");
  if (a.check) return checked("grow");
  Generator gen(a.seed, 0x494E4954);
  init::trunc_normal_init(*big, gen);  // what growth leaves alone (new blocks' inner weights)
  init::GrowOptions o;
  o.noise = a.noise;
  o.seed = a.seed;
  init::grow_from_file(*big, a.from, a.from_model, o);
  init::require_finite(*big, "scion grow --from " + a.from);
  big->save(a.out, {{"scion_grow_from", a.from},
                    {"noise", std::to_string(a.noise)},
                    {"seed", std::to_string(a.seed)}});
  std::printf("wrote %s: %s (%lld parameters) grown from %s\n", a.out.c_str(), a.model.c_str(),
              (long long)big->num_parameters(), a.from.c_str());
  return 0;
}

struct EvalArgs {
  std::string config, model, weights, dataset, root, split, precision, interpolation, device;
  std::vector<std::string> sets;
  int64_t limit = 0, batch = 0;
  double crop_pct = 0;
  int workers = 2, threads = 0;
};

std::string triple_str(const std::array<float, 3>& v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%.4g, %.4g, %.4g]", double(v[0]), double(v[1]), double(v[2]));
  return buf;
}

// The evaluation settings, weakest first: built-in defaults, the weights' own metadata (model
// config, preprocessing, precision, batch), --config, then explicit flags. `origin` says which.
train::Config eval_config(const EvalArgs& a, std::string& origin) {
  train::Config cfg;
  cfg.source = "scion eval";
  cfg.data.val_split = "val";
  cfg.train.batch_size = 100;
  origin = "defaults";
  SafetensorsFile w = SafetensorsFile::open(a.weights);
  const auto& meta = w.metadata();
  if (meta.count("scion_model")) cfg.model = model_from_metadata(a.weights, meta.at("scion_model"));
  if (meta.count("scion_data")) {
    train::apply_eval_metadata(cfg, meta.at("scion_data"), a.weights);
    origin = "the weights' metadata";
  }
  if (!a.config.empty()) {
    cfg = train::load_config(a.config);
    origin = a.config;
  }
  if (!a.model.empty()) cfg.model.name = a.model;
  apply_model_sets(cfg.model, a.sets);
  if (a.model.empty() && a.config.empty() && !meta.count("scion_model"))
    throw InputError(a.weights +
                     ": no scion_model metadata (not written by scion); name the "
                     "architecture with --model or --config");
  if (!a.dataset.empty()) cfg.data.dataset = a.dataset;
  if (!a.root.empty()) cfg.data.root = a.root;
  if (!a.split.empty()) cfg.data.val_split = a.split;
  if (!a.precision.empty()) cfg.train.precision = a.precision;
  if (!a.interpolation.empty()) cfg.data.augment.interpolation = a.interpolation;
  if (a.crop_pct > 0) cfg.data.augment.crop_pct = a.crop_pct;
  if (a.batch > 0) cfg.train.batch_size = a.batch;
  if (!a.device.empty()) cfg.device = a.device;
  if (cfg.train.precision == "auto")
    std::tie(cfg.train.precision, cfg.train.precision_choice) = train::auto_precision(cfg.device);
  if (a.config.empty() && (a.dataset.empty() || a.root.empty()))
    throw InputError("scion eval: --data and --root are required without --config");
  return cfg;
}

int cmd_eval(const EvalArgs& a) {
  set_num_threads(a.threads);
  std::string origin;
  train::Config cfg = eval_config(a, origin);
  const Device device = parse_device(cfg.device, "scion eval: --device");
  check_device_available(device, "scion eval: --device");
  nn::ModelPtr model = nn::create_model(cfg.model);
  model->load(a.weights, /*strict=*/true);
  model->to(device);
  const std::string& split = cfg.data.val_split;
  data::DatasetPtr ds = data::open_dataset(cfg.data.dataset, cfg.data.root, split);
  if (cfg.data.val_subset > 0)  // a config's validation subset, drawn as train draws it
    ds = data::balanced_subset(ds, cfg.data.val_subset, cfg.seed + 1);
  SCION_CHECK(ds->num_classes() == cfg.model.num_classes, cfg.data.root, ": the data set has ",
              ds->num_classes(), " classes but the model has ", cfg.model.num_classes,
              " (set model.num_classes)");
  const data::PipelineConfig pipe = train::eval_pipeline(cfg);
  std::fprintf(stderr,
               "scion eval: %s on %s %s split; resize %s to %lld px / crop_pct %.4g then center "
               "crop, mean %s, std %s, %s, batch %lld, %s (settings from %s; flags override)\n",
               cfg.model.name.c_str(), cfg.data.root.c_str(), split.c_str(),
               cfg.data.augment.interpolation.c_str(), (long long)cfg.model.img_size,
               cfg.data.augment.crop_pct, triple_str(cfg.data.mean).c_str(),
               triple_str(cfg.data.std).c_str(), cfg.train.precision.c_str(),
               (long long)cfg.train.batch_size, device.str().c_str(), origin.c_str());
  data::LoaderOptions o;
  o.batch_size = cfg.train.batch_size;
  o.shuffle = false;
  o.drop_last = false;
  o.workers = a.workers;
  o.pin_memory = device.type == DeviceType::cuda;
  data::DataLoader loader(ds, data::Pipeline(pipe), o);
  train::EvalResult r = train::evaluate(*model, loader, cfg.train.precision == "bf16", a.limit);
  if (!std::isfinite(r.loss)) {
    std::fprintf(stderr,
                 "scion eval: %s: the loss is not finite (%g): the weights or their "
                 "preprocessing are broken; no accuracy is reported\n",
                 a.weights.c_str(), r.loss);
    return 1;
  }
  std::printf(
      "%s\n",
      nlohmann::json{{"loss", r.loss}, {"acc1", r.acc1}, {"acc5", r.acc5}, {"images", r.images}}
          .dump()
          .c_str());
  return 0;
}

// `scion info`: what this machine offers and which kernels scion runs on it (DESIGN.md "CPUs and
// portability"); the caps tests read it to check that SCION_MAX_ISA / ONEDNN_MAX_CPU_ISA took.
int cmd_info() {
  using namespace scion::cpu;
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(name) + "=" + v : std::string("none");
  };
  std::string features;
  for (const auto& f : cpu_features()) features += (features.empty() ? "" : " ") + f;
#if defined(__x86_64__)
  const char* portable = "portable (baseline x86-64, kernels per ISA)";
#elif defined(__aarch64__)
  const char* portable = "portable (baseline arm64 with NEON, one kernel level)";
#else
  const char* portable = "portable (this architecture's baseline, one kernel level)";
#endif
  std::printf("scion %s, %s build\n", scion::build_revision(),
              portable_build() ? portable : "native (-march=native: this CPU's kind only)");
  std::printf("CPU: %s, %d threads\n", cpu_model().c_str(), scion::cpu::num_threads());
  std::printf("features: %s\n", features.c_str());
  std::string cap = env("SCION_MAX_ISA");
  if (cap != "none" && !isa_cap_changes_kernels()) cap += " (changes no kernel on this CPU)";
  std::printf("CPU ISA level: %s; cap: %s; scion kernels: %s\n", isa_name(cpu_isa()), cap.c_str(),
              isa_name(std::min(active_isa(), Isa::avx512)));
  std::printf("oneDNN %s ISA: %s (cap: %s); bf16 primitives: %s\n", onednn_version().c_str(),
              onednn_isa_name().c_str(),
              env("ONEDNN_MAX_CPU_ISA") != "none" ? env("ONEDNN_MAX_CPU_ISA").c_str()
              : env("SCION_MAX_ISA") != "none"    ? "from SCION_MAX_ISA"
                                                  : "none",
              onednn_has_bf16() ? "yes" : "no (bf16 runs through f32 kernels)");
  auto [prec, why] = train::auto_precision("cpu");
  std::printf("precision auto: %s (%s)\n", prec.c_str(), why.c_str());
  std::printf("kernel paths:\n");
  for (const auto& [family, path] : kernel_paths())
    std::printf("  %-31s %s\n", family.c_str(), path.c_str());
  std::vector<std::string> gpus = cuda_devices();
  if (!cuda_built())
    std::printf("CUDA: not in this build\n");
  else if (gpus.empty())
    std::printf("CUDA: built, no device found\n");
  for (const auto& g : gpus) std::printf("CUDA: %s\n", g.c_str());
  return 0;
}

constexpr const char* kOutHelp =
    "output weights (.safetensors); an existing file is replaced atomically, but never a folder, "
    "device, FIFO or one of the inputs";

constexpr const char* kCheckHelp =
    "check the flags and model options only (the model is built), read and write nothing";

// `scion select`: its flags, into `sa`.
CLI::App* add_select(CLI::App& app, SelectArgs& sa) {
  CLI::App* select = app.add_subcommand(
      "select", "initialize a student by weight selection from a larger teacher");
  select
      ->add_option("--teacher", sa.teacher,
                   "teacher weights: timm keys, a scion checkpoint, or a timm hub folder "
                   "(config.json + model.safetensors)")
      ->required();
  select->add_option("--model", sa.model, "student model name")->required();
  select->add_option("--set", sa.sets, "student option model.key=value (repeatable)");
  select->add_option("--layers", sa.layers, "first|uniform|last|mid")
      ->check(CLI::IsMember({"first", "uniform", "last", "mid"}));
  select->add_option("--qkv", sa.qkv, "per_block|official (the official code's fused-row linspace)")
      ->check(CLI::IsMember({"per_block", "official"}));
  select->add_option("--components", sa.components,
                     "all, or a list such as attn,mlp, or removals such as -attn,-norm");
  select
      ->add_option("--elements", sa.elements,
                   "uniform|consecutive|random|random-inconsistent|l1|magnitude (pruning-style)")
      ->check(CLI::IsMember(
          {"uniform", "consecutive", "random", "random-inconsistent", "l1", "magnitude"}));
  select->add_option("--seed", sa.seed, "seed for random selection and the student's own init");
  select->add_flag("--head", sa.head,
                   "also select the classifier head when the class counts match");
  select->add_flag("--head-norm", sa.head_norm,
                   "also select ConvNeXt's head.norm (the official code keeps the student's own)");
  select->add_option("--out", sa.out, kOutHelp)->required();
  select->add_flag("--check", sa.check, kCheckHelp);
  return select;
}

// `scion init`: its flags, into `ia`.
CLI::App* add_init(CLI::App& app, InitArgs& ia) {
  CLI::App* initc = app.add_subcommand("init", "write a freshly initialized (untrained) model");
  initc->add_option("--model", ia.model, "registered model name")->required();
  initc->add_option("--set", ia.sets, "model option model.key=value (repeatable)");
  initc
      ->add_option(
          "--init", ia.init,
          "trunc_normal|xavier_uniform|xavier_normal|kaiming_uniform|kaiming_normal|mimetic")
      ->check(CLI::IsMember({"trunc_normal", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                             "kaiming_normal", "mimetic"}));
  initc->add_option("--seed", ia.seed, "initialization seed");
  initc->add_option("--out", ia.out, kOutHelp)->required();
  initc->add_flag("--check", ia.check, kCheckHelp);
  return initc;
}

// `scion grow`: its flags, into `ga`.
CLI::App* add_grow(CLI::App& app, GrowArgs& ga) {
  CLI::App* grow = app.add_subcommand("grow", "grow a trained model wider and/or deeper (Net2Net)");
  grow->add_option("--from", ga.from, "source weights")->required();
  grow->add_option("--from-model", ga.from_model, "source model name")->required();
  grow->add_option("--model", ga.model, "target model name")->required();
  grow->add_option("--set", ga.sets, "model option model.key=value for both models (repeatable)");
  grow->add_option("--noise", ga.noise, "symmetry-breaking noise, relative to each weight's std")
      ->check(CLI::NonNegativeNumber);
  grow->add_option("--seed", ga.seed, "seed of the unit mapping, noise and new weights");
  grow->add_option("--out", ga.out, kOutHelp)->required();
  grow->add_flag("--check", ga.check, kCheckHelp);
  return grow;
}

// `scion eval`: its flags, into `ea`.
CLI::App* add_eval(CLI::App& app, EvalArgs& ea) {
  CLI::App* eval = app.add_subcommand(
      "eval",
      "evaluate weights on a data split (settings: the weights' metadata, --config, flags)");
  eval->add_option("--weights", ea.weights, "weights (.safetensors, timm keys)")->required();
  eval->add_option("--config", ea.config, "a train config: model, data and preprocessing");
  eval->add_option("--model", ea.model, "registered model name (default: the weights' own)");
  eval->add_option("--set", ea.sets, "model option model.key=value (repeatable)");
  eval->add_option("--data", ea.dataset,
                   "cifar10|cifar100|image_folder|tiny_imagenet|fashion_mnist|mnist|stl10|svhn|"
                   "flowers102|pets|food101|dtd|eurosat")
      ->check(CLI::IsMember({"cifar10", "cifar100", "image_folder", "tiny_imagenet",
                             "fashion_mnist", "mnist", "stl10", "svhn", "flowers102", "pets",
                             "food101", "dtd", "eurosat"}));
  eval->add_option("--root", ea.root, "data folder");
  eval->add_option("--split", ea.split, "train|val|test (default val, or the config's val_split)")
      ->check(CLI::IsMember({"train", "val", "test"}));
  eval->add_option("--limit", ea.limit, "evaluate the first N images only")
      ->check(CLI::NonNegativeNumber);
  eval->add_option("--precision", ea.precision, "f32|bf16|auto (bf16 where native)")
      ->check(CLI::IsMember({"f32", "bf16", "auto"}));
  eval->add_option("--interpolation", ea.interpolation, "bicubic|bilinear|nearest")
      ->check(CLI::IsMember({"bicubic", "bilinear", "nearest"}));
  eval->add_option("--crop-pct", ea.crop_pct, "eval resize: img_size / crop_pct, then center crop")
      ->check(CLI::Range(0.05, 1.0));
  eval->add_option("--batch", ea.batch, "batch size")->check(CLI::PositiveNumber);
  eval->add_option("--threads", ea.threads, "threads (0 = all cores)")->check(CLI::Range(0, 1024));
  eval->add_option("--device", ea.device,
                   "cpu (default, or the config's device), reference (plain f64 kernels), cuda:N");
  return eval;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scion: models and weight files"};
  app.set_version_flag("--version",
                       std::string("scion, source revision ") + scion::build_revision());
  app.require_subcommand(1);
  auto* info = app.add_subcommand(
      "info", "the CPU, its features, the ISA caps, each kernel family's path here, CUDA devices");
  auto* models = app.add_subcommand("models", "list registered models with parameter counts");
  std::string path;
  auto* inspect = app.add_subcommand("inspect", "summarize the tensors of a safetensors file");
  inspect->add_option("file", path, "FILE.safetensors")->required();
  SelectArgs sa;
  InitArgs ia;
  GrowArgs ga;
  EvalArgs ea;
  CLI::App* select = add_select(app, sa);
  CLI::App* initc = add_init(app, ia);
  CLI::App* grow = add_grow(app, ga);
  CLI::App* eval = add_eval(app, ea);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (*info) return cmd_info();
    if (*models) return cmd_models();
    if (*inspect) return cmd_inspect(path);
    if (*eval) return cmd_eval(ea);
    if (*select) return cmd_select(sa);
    if (*grow) return cmd_grow(ga);
    if (*initc) return cmd_init(ia);
  } catch (const InputError& e) {
    std::fprintf(stderr, "scion: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scion: error: %s\n", e.what());
    return 1;
  }
  return 0;
}

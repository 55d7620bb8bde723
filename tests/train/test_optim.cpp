// Optimizer steps against torch.optim (tests/golden/make_golden_train.py), schedules, and config
// errors naming the file and key path.
#include <cstdlib>
#include <fstream>
#include <regex>

#include "core/cpu/isa.h"
#include "tests/process.h"
#include "tests/support.h"
#include "train/config.h"
#include "train/optim.h"
#include "train/trainer.h"

using namespace scion;
using namespace scion::train;

namespace {

class TwoParams : public nn::Module {
 public:
  TwoParams(const Shape& bias_shape) {
    register_parameter("weight", zeros({4, 3}));
    register_parameter("bias", zeros(bias_shape));
  }
};

void check_optimizer(const std::string& name, const OptimizerConfig& oc,
                     const std::vector<double>& lrs, const Shape& bias_shape = {3}) {
  INFO(name);
  const SafetensorsFile& f =
      SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/train.safetensors");
  TwoParams m(bias_shape);
  Tensor w = m.find("weight"), b = m.find("bias");
  {
    NoGradGuard ng;
    w.copy_(f.get("w0"));
    b.copy_(f.get("b0").reshape(bias_shape));
  }
  Optimizer opt(m, oc, {});
  for (size_t k = 0; k < lrs.size(); ++k) {
    w.set_grad(f.get("grad" + std::to_string(k) + ".w").clone());
    b.set_grad(f.get("grad" + std::to_string(k) + ".b").clone().reshape(bias_shape));
    opt.step(lrs[k]);
  }
  CHECK_CLOSE(w, f.get(name + ".w"), 1e-6, 1e-5);
  CHECK_CLOSE(b.reshape({3}), f.get(name + ".b"), 1e-6, 1e-5);
}

std::string write_config(const std::string& name, const std::string& text) {
  std::string path = test::tmp() + "/scion_cfg_" + name + ".yaml";
  std::ofstream(path) << text;
  return path;
}

const char* kMinimal = "data: {dataset: cifar10, root: /tmp}\n";

}  // namespace

TEST_CASE("AdamW and SGD steps match torch.optim", "[train]") {
  OptimizerConfig adamw;
  adamw.type = "adamw";
  adamw.weight_decay = 0.05;
  check_optimizer("adamw_groups", adamw, {1e-3, 2e-3, 3e-3, 2e-3, 1e-3});  // bias (1-d): no decay
  adamw.weight_decay = 0.1;
  adamw.betas = {0.8, 0.99};
  adamw.eps = 1e-6;
  check_optimizer("adamw_all", adamw, {1e-3, 2e-3, 3e-3, 2e-3, 1e-3}, {1, 3});  // 2-d bias: decays
  OptimizerConfig sgd;
  sgd.type = "sgd";
  sgd.momentum = 0.9;
  sgd.nesterov = true;
  sgd.weight_decay = 1e-4;
  check_optimizer("sgd_nesterov", sgd, {0.1, 0.2, 0.1, 0.05, 0.1});
  sgd.momentum = 0.0;
  sgd.nesterov = false;
  sgd.weight_decay = 0.0;
  check_optimizer("sgd_plain", sgd, {0.1, 0.2, 0.1, 0.05, 0.1});
}

TEST_CASE("no weight decay for 1-d parameters and ViT's pos_embed/cls_token", "[train]") {
  nn::ModelConfig c;
  c.name = "vit_tiny";
  c.depth = 1;
  nn::ModelPtr vit = nn::create_model(c);
  OptimizerConfig oc;
  Optimizer opt(*vit, oc, no_weight_decay_names(*vit));
  for (const ParamState& p : opt.params()) {
    INFO(p.name);
    bool decays = p.weight_decay > 0;
    bool expected = p.param.dim() > 1 && p.name != "pos_embed" && p.name != "cls_token";
    CHECK(decays == expected);
  }
}

TEST_CASE("learning-rate schedules", "[train]") {
  TrainConfig t;
  t.epochs = 10;
  t.optimizer.lr = 1e-3;
  t.schedule.type = "cosine";
  t.schedule.warmup_epochs = 2;
  t.schedule.min_lr = 1e-5;
  const int64_t spe = 100;
  CHECK(learning_rate(t, 0, spe) == 0.0);
  CHECK(learning_rate(t, 100, spe) == Approx(0.5e-3));
  CHECK(learning_rate(t, 200, spe) == Approx(1e-3));                        // end of warmup
  CHECK(learning_rate(t, 600, spe) == Approx(1e-5 + 0.5 * (1e-3 - 1e-5)));  // half-way down
  CHECK(learning_rate(t, 999, spe) == Approx(1e-5).margin(1e-7));
  // Warmup longer than the run (100 epochs of warmup, 1 of training): timm's slope, not squeezed
  // into the run (the old schedule reached lr 1e-3 at the last step); config_warnings says so.
  TrainConfig w = t;
  w.epochs = 1;
  w.schedule.warmup_epochs = 100;
  CHECK(learning_rate(w, 99, spe) == Approx(1e-3 * 99.0 / 10000.0));
  Config c;
  c.source = "c.yaml";
  c.train = w;
  REQUIRE(config_warnings(c).size() == 1);
  CHECK(config_warnings(c)[0].find("c.yaml: train.schedule.warmup_epochs 100 exceeds "
                                   "train.epochs 1") != std::string::npos);
  c.train = t;
  CHECK(config_warnings(c).empty());
  t.schedule.type = "step";
  t.schedule.decay_epochs = 3;
  t.schedule.decay_rate = 0.1;
  CHECK(learning_rate(t, 299, spe) == Approx(1e-3));
  CHECK(learning_rate(t, 300, spe) == Approx(1e-4));
  CHECK(learning_rate(t, 650, spe) == Approx(1e-5));
  t.schedule.type = "constant";
  CHECK(learning_rate(t, 777, spe) == 1e-3);
}

TEST_CASE("config: defaults, overrides and round trip", "[train][config]") {
  Config c = load_config(
      write_config("ok", std::string(kMinimal) + "train: {epochs: 3}\n"),
      {"train.optimizer.lr=0.004", "model.dims=[8, 16, 32, 64]", "model.name=convnext_femto"});
  CHECK(c.train.epochs == 3);
  CHECK(c.train.optimizer.lr == 0.004);
  CHECK(c.model.name == "convnext_femto");
  REQUIRE(c.model.dims);
  CHECK((*c.model.dims)[3] == 64);
  Config again = parse_config(to_yaml(c), "roundtrip");
  CHECK(to_yaml(again) == to_yaml(c));
  // Exponents carry a decimal point, so YAML 1.1 readers (PyYAML) read numbers, not strings.
  const std::string text = to_yaml(c);
  CHECK(text.find("eps: 1.0e-08") != std::string::npos);
  CHECK_FALSE(std::regex_search(text, std::regex(R"(: -?[0-9]+[eE][-+]?[0-9])")));
}

TEST_CASE(
    "precision auto: bf16 on CUDA and where bf16 outpaces f32, else f32, and bf16 as set notes "
    "when f32 is faster",
    "[train][config]") {
  CHECK(auto_precision("cuda").first == "bf16");
  CHECK(auto_precision("cuda:1").first == "bf16");
  CHECK(auto_precision("reference").first == "f32");
  const auto [prec, why] = auto_precision("cpu");
  INFO(why);
  CHECK(prec == (cpu::bf16_outpaces_f32() ? "bf16" : "f32"));
  if (cpu::native_bf16() && !cpu::bf16_outpaces_f32())  // an Intel CPU without AMX
    CHECK_THAT(why, Catch::Contains("no more work per cycle") &&
                        Catch::Contains("precision: bf16 still runs them"));
  if (!cpu::native_bf16()) CHECK_THAT(why, Catch::Contains("no native bf16 dot products"));
  const Config c = parse_config(std::string(kMinimal) + "train: {precision: auto}\n", "auto.yaml");
  CHECK(c.train.precision == prec);
  CHECK(c.train.precision_choice == why);
  // bf16 as set: kept, with a note where f32 would be faster.
  const Config b = parse_config(std::string(kMinimal) + "train: {precision: bf16}\n", "b.yaml");
  CHECK(b.train.precision == "bf16");
  INFO(b.train.precision_choice);
  CHECK(b.train.precision_choice.empty() == cpu::bf16_outpaces_f32());
  if (!cpu::native_bf16())
    CHECK_THAT(b.train.precision_choice, Catch::Contains("bf16 runs through f32 kernels"));
  CHECK(slower_bf16_note("cuda").empty());
}

TEST_CASE("config errors name the file and the key path", "[train][config]") {
  auto bad = [](const std::string& name, const std::string& text, const std::string& fragment,
                std::vector<std::string> sets = {}) {
    std::string path = write_config(name, text);
    INFO(text);
    CHECK_THROWS_AS(load_config(path, sets), InputError);
    CHECK_THROWS_WITH(load_config(path, sets), Catch::Contains(path) && Catch::Contains(fragment));
  };
  bad("unknown", std::string(kMinimal) + "train: {epochz: 3}\n", "train.epochz: unknown key");
  // NaN passes no range check; std must be positive; an empty --set value is no default.
  for (const char* key : {"train.optimizer.lr", "train.ema.decay", "train.clip_grad",
                          "data.augment.label_smoothing", "train.optimizer.eps"})
    bad("nan", kMinimal, key, {std::string(key) + "=.nan"});
  bad("betas_nan", kMinimal, "train.optimizer.betas", {"train.optimizer.betas=[.nan, 0.9]"});
  bad("mean_nan", kMinimal, "data.mean", {"data.mean=[.nan, 0, 0]"});
  bad("std_zero", kMinimal, "data.std", {"data.std=[0.2, 0, 0.2]"});
  bad("empty_set", kMinimal, "model.name=: empty value", {"model.name="});
  bad("duplicate", std::string(kMinimal) + "train: {epochs: 3}\ntrain: {epochs: 5}\n",
      "train: duplicate key");
  bad("duplicate_inner", std::string(kMinimal) + "model: {name: vit_tiny, name: convnext_femto}\n",
      "model.name: duplicate key");
  bad("type", std::string(kMinimal) + "train: {epochs: many}\n",
      "train.epochs: expected an integer");
  bad("range", std::string(kMinimal) + "train: {optimizer: {lr: -1}}\n",
      "train.optimizer.lr: value -1 out of range");
  bad("choice", std::string(kMinimal) + "train: {precision: f16}\n",
      "train.precision: expected one of f32, bf16");
  bad("model", std::string(kMinimal) + "model: {name: resnet50}\n",
      "model.name: unknown model 'resnet50'");
  bad("root", "data: {dataset: cifar10}\n", "data.root: missing");
  bad("yaml", "train: [1, 2\n", "invalid YAML");
  bad("betas", std::string(kMinimal) + "train: {optimizer: {betas: [0.9]}}\n",
      "train.optimizer.betas");
  bad("set", kMinimal, "train.optimizer.learning_rate: unknown key",
      {"train.optimizer.learning_rate=1"});
  bad("mixup",
      "data: {dataset: cifar10, root: /tmp, augment: {mixup: 0.8}}\ntrain: {batch_size: 7}\n",
      "even batch size");
  CHECK_THROWS_WITH(load_config("/nonexistent/x.yaml"), Catch::Contains("/nonexistent/x.yaml"));
}

TEST_CASE("every shipped config parses", "[train][config]") {
  for (const char* name :
       {"vit_t_cifar100_random", "convnext_f_cifar100_random", "vit_t_imagenet_random",
        "convnext_f_imagenet_random", "vit_t_cifar100_wsel", "convnext_f_cifar100_wsel",
        "vit_t_imagenet_wsel", "convnext_f_imagenet_wsel", "mini/convnext_femto_cifar10",
        "mini/vit_tiny_cifar10", "mini/convnext_femto_cifar10_wsel", "mini/vit_tiny_cifar10_wsel",
        "mini/convnext_tiny_cifar10_teacher", "mini/vit_small_cifar10_teacher"}) {
    INFO(name);
    Config c = load_config(std::string(SCION_SOURCE_DIR) + "/configs/" + name + ".yaml");
    CHECK(c.train.epochs >= 1);
    CHECK_NOTHROW(nn::create_model(c.model));
    if (std::string(name).find("wsel") != std::string::npos)
      CHECK(c.init.type == "weight_selection");
    if (std::string(name).find("mini/") == std::string::npos) {
      // The official recipe, key for key.
      CHECK(c.train.epochs == 300);
      CHECK(c.train.schedule.warmup_epochs == 50);
      CHECK(c.train.optimizer.type == "adamw");
      CHECK(c.train.optimizer.weight_decay == 0.05);
      CHECK(c.data.augment.randaugment == "rand-m9-mstd0.5-inc1");
      CHECK(c.data.augment.mixup == 0.8);
      CHECK(c.data.augment.cutmix == 1.0);
      CHECK(c.data.augment.label_smoothing == 0.1);
      CHECK(c.data.augment.reprob == 0.25);
      CHECK(c.data.augment.interpolation == "bicubic");
      CHECK(c.model.img_size == 224);
      // The official README commands on 8 GPUs: ViT-T CIFAR-100 64 x 8 at 2e-3, ConvNeXt-F
      // CIFAR-100 128 x 8 at 4e-3 with drop path 0.1; ImageNet 128 x 8 x 4 at 4e-3.
      bool imagenet = std::string(name).find("imagenet") != std::string::npos;
      bool vit = c.model.name == "vit_tiny";
      CHECK(c.train.batch_size == (vit && !imagenet ? 64 : 128));
      CHECK(c.train.batch_size * c.train.accum_steps == (imagenet ? 4096 : vit ? 512 : 1024));
      CHECK(c.train.optimizer.lr == (!imagenet && vit ? 2e-3 : 4e-3));
      CHECK(c.model.drop_path == (!imagenet && !vit ? 0.1 : 0.0));
      CHECK(c.train.schedule.min_lr == 1e-6);
      CHECK(c.train.ema_decay == 0);
      CHECK(c.data.augment.crop_pct == 0.875);
      CHECK(c.data.augment.mixup_prob == 1.0);
      CHECK(c.data.augment.switch_prob == 0.5);
      if (!vit) CHECK(*c.model.layer_scale == 1e-6);
    }
  }
  // A missing timm teacher is an error that says where to download it (exit status 2).
  std::string cmd = test::program_command("train") + " --config " + SCION_SOURCE_DIR +
                    "/configs/vit_t_cifar100_wsel.yaml --output-dir " + test::tmp() +
                    "/scion_wsel_missing > " + test::tmp() + "/scion_wsel.log 2>&1";
  CHECK(WEXITSTATUS(std::system(cmd.c_str())) == 2);
  std::ifstream in(test::tmp() + "/scion_wsel.log");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("huggingface.co/timm/vit_small_patch16_224.augreg_in21k") != std::string::npos);
}

TEST_CASE("clip_grad_norm scales gradients to the maximum norm, as torch", "[train]") {
  Tensor a = zeros({3}).requires_grad_(), b = zeros({2, 2}).requires_grad_();
  a.set_grad(from_vector({3, 0, 0}, {3}));
  b.set_grad(from_vector({0, 4, 0, 0}, {2, 2}));
  CHECK(clip_grad_norm({a, b}, 10.0).item() == Approx(5.0));  // below the maximum: unchanged
  CHECK(a.grad().to_vector()[0] == 3.0);
  CHECK(b.grad().to_vector()[1] == 4.0);
  CHECK(clip_grad_norm({a, b}, 1.0).item() == Approx(5.0));
  CHECK(a.grad().to_vector()[0] == Approx(3.0 / (5.0 + 1e-6)));
  CHECK(b.grad().to_vector()[1] == Approx(4.0 / (5.0 + 1e-6)));
}

TEST_CASE("top-1/top-5 ranks follow torch.topk: ties go to the lower index, NaN ranks first",
          "[train]") {
  const float tied[4] = {1.f, 1.f, 1.f, 1.f};
  CHECK(train::topk_rank(tied, 4, 0) == 0);  // class 0 wins a four-way tie
  CHECK(train::topk_rank(tied, 4, 3) == 3);  // class 3 is fourth: a top-1 miss
  const float nan = std::nanf("");
  const float with_nan[3] = {0.5f, nan, 2.f};
  CHECK(train::topk_rank(with_nan, 3, 2) == 1);  // NaN outranks the largest number
  const float all_nan[3] = {nan, nan, nan};
  CHECK(train::topk_rank(all_nan, 3, 0) == 0);
  CHECK(train::topk_rank(all_nan, 3, 2) == 2);
  const float plain[3] = {0.1f, 3.f, 2.f};
  CHECK(train::topk_rank(plain, 3, 1) == 0);
  CHECK(train::topk_rank(plain, 3, 0) == 2);
}

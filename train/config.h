// The run configuration (DESIGN.md "Config"): YAML parsed into typed structs. Every unknown key,
// wrong type and out-of-range value is an InputError naming the file and the key path
// ("configs/x.yaml: train.optimizer.lr: expected a number, got 'fast'"). `--set a.b=c` overrides
// are applied to the YAML tree before it is checked, so they get the same checks.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "init/initializers.h"
#include "nn/model.h"

namespace scion::train {

using InitConfig = init::InitConfig;

struct AugmentConfig {
  std::string randaugment;  // timm spec or "" (off)
  double mixup = 0.0, cutmix = 0.0, mixup_prob = 1.0, switch_prob = 0.5;
  double label_smoothing = 0.0, reprob = 0.0, color_jitter = 0.0;
  std::string interpolation = "bicubic";
  std::string crop = "rrc";  // rrc | random_crop | resize
  double scale_min = 0.08, crop_pct = 0.875, hflip = 0.5;
  int padding = 4;
};

struct DataConfig {
  std::string dataset = "cifar100", root;
  std::string train_split = "train", val_split = "val";
  int64_t train_subset = 0, val_subset = 0;
  int workers = 2;
  AugmentConfig augment;
  std::array<float, 3> mean = data::kImagenetMean, std = data::kImagenetStd;
  int64_t max_image_pixels = data::kDefaultMaxImagePixels;  // decompression-bomb guard
};

struct OptimizerConfig {
  std::string type = "adamw";  // adamw | sgd
  double lr = 1e-3, weight_decay = 0.05, eps = 1e-8, momentum = 0.9;
  std::array<double, 2> betas{0.9, 0.999};
  bool nesterov = false;
};

struct ScheduleConfig {
  std::string type = "cosine";  // cosine | step | constant
  double warmup_epochs = 0, min_lr = 1e-6, warmup_lr = 0.0;
  double decay_epochs = 30, decay_rate = 0.1;  // step
};

// Knowledge distillation from a trained teacher (weights `teacher` of model `model`, built with the
// student's image size and class count): (1 - alpha) task loss + alpha T^2 KL(teacher || student).
struct DistillConfig {
  std::string teacher;  // weights file; empty = off
  std::string model = "vit_small";
  double alpha = 0.5, temperature = 1.0;
};

struct TrainConfig {
  int64_t epochs = 1, batch_size = 64, accum_steps = 1;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  // f32 | bf16 | auto. parse_config resolves auto (bf16 on CUDA, and on CPUs whose native bf16
  // dot products outpace their f32 FMAs: cpu::bf16_outpaces_f32; else f32) and keeps why in
  // precision_choice, which for bf16 as set on a CPU where f32 is faster says so
  // (slower_bf16_note), and is "" otherwise; train prints it; it is not written back.
  std::string precision = "f32";
  std::string precision_choice;
  double ema_decay = 0.0, clip_grad = 0.0;
  DistillConfig distill;
  int64_t log_interval = 50;
  double progress_seconds = 15;  // off a terminal: a progress line at least this often
  // none | backbone: linear probing, only the classifier (ViT head, ConvNeXt head.fc) trains; the
  // frozen backbone runs as in evaluation (no drop path), its weights never change.
  std::string freeze = "none";
};

// Data-parallel training (mpirun -np N train; train/dist.h): gradient buckets of about bucket_mb
// (torch DDP's bucket_cap_mb), reduced in f32 or compressed to bf16, and a deadline for every
// collective so a dead rank ends the job instead of hanging it.
struct DistConfig {
  double bucket_mb = 4.0;
  std::string compress = "none";  // none | bf16
  double timeout_seconds = 600;
};

struct Config {
  std::string source = "<defaults>";  // the file it came from, for messages
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;
  std::string output_dir = "runs/default";
  nn::ModelConfig model;
  InitConfig init;
  DataConfig data;
  TrainConfig train;
  DistConfig dist;
};

// Loads `path` and applies overrides ("train.epochs=3"); throws InputError on any problem.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses YAML text (the resolved config stored in checkpoints); `source` names it in errors.
Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});
// What `precision: auto` resolves to on `device` (cpu, reference, cuda[:N]), and a line saying why.
std::pair<std::string, std::string> auto_precision(const std::string& device);
// Why bf16, set explicitly, is not the faster choice on `device` ("" where it is, or off the CPU).
std::string slower_bf16_note(const std::string& device);

// Warnings about a valid but probably unintended config, one line each (train prints them to
// stderr at start-up): a cosine warmup longer than training (the run ends while the learning rate
// still rises, as timm's schedulers do it; it never decays to min_lr).
std::vector<std::string> config_warnings(const Config& c);

// The resolved config as YAML (every key, defaults included); parse_config(to_yaml(c)) == c.
std::string to_yaml(const Config& c);

}  // namespace scion::train

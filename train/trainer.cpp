// The training loop (see trainer.h).
#include "train/trainer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "init/initializers.h"
#include "train/distill.h"
#include "train/optim.h"

namespace scion::train {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal = sig;
}

// "1h02m", "3m05s", "42s".
std::string duration_str(double seconds) {
  long s = long(std::max(0.0, seconds) + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && !file_exists(cur) && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
        throw InputError(path + ": cannot create output folder");
    }
    if (i < path.size()) cur.push_back(path[i]);
  }
}

data::PipelineConfig base_pipeline(const Config& cfg) {
  data::PipelineConfig p;
  p.img_size = int(cfg.model.img_size);
  p.channels = int(cfg.model.in_chans);
  p.interpolation = data::parse_interp(cfg.data.augment.interpolation);
  p.crop_pct = cfg.data.augment.crop_pct;
  p.mean = cfg.data.mean;
  p.std = cfg.data.std;
  p.max_image_pixels = cfg.data.max_image_pixels;
  return p;
}

data::DatasetPtr open_split(const Config& cfg, const std::string& split, int64_t subset,
                            uint64_t seed) {
  data::DatasetPtr ds = data::open_dataset(cfg.data.dataset, cfg.data.root, split);
  SCION_CHECK(ds->num_classes() == cfg.model.num_classes, cfg.source, ": model.num_classes is ",
              cfg.model.num_classes, " but ", cfg.data.dataset, " at ", cfg.data.root, " has ",
              ds->num_classes(), " classes");
  return subset > 0 ? data::balanced_subset(ds, subset, seed) : ds;
}

// Hard labels with label smoothing, or soft targets (Mixup/CutMix) when given.
Tensor classification_loss(const Tensor& logits, const data::Batch& b, double smoothing) {
  if (b.targets.defined()) return cross_entropy(logits, b.targets);
  return cross_entropy(logits, b.labels, smoothing);
}

}  // namespace

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::FILE* f) {
    return std::fwrite(text.data(), 1, text.size(), f) == text.size();
  });
}

data::PipelineConfig eval_pipeline(const Config& cfg) {
  data::PipelineConfig p = base_pipeline(cfg);
  p.train = false;
  return p;
}

int64_t topk_rank(const float* row, int64_t k, int64_t y) {
  const float target = row[y];
  int64_t higher = 0;
  for (int64_t j = 0; j < k; ++j) {
    const bool before = j < y;
    if (std::isnan(row[j]))
      higher += !std::isnan(target) || before;
    else if (!std::isnan(target))
      higher += row[j] > target || (row[j] == target && before);
  }
  return higher;
}

EvalResult evaluate(nn::Module& model, data::DataLoader& loader, bool bf16, int64_t limit) {
  NoGradGuard ng;
  bool was_training = model.is_training();
  model.eval();
  EvalResult r;
  double loss_sum = 0, top1 = 0, top5 = 0;
  loader.start_epoch(0);
  data::Batch b;
  while ((limit <= 0 || r.images < limit) && loader.next(b)) {
    Tensor x = b.images, y = b.labels;
    if (limit > 0 && r.images + x.size(0) > limit) {
      int64_t keep = limit - r.images;
      x = x.narrow(0, 0, keep).contiguous();
      y = y.narrow(0, 0, keep).contiguous();
    }
    Tensor logits;
    {
      AutocastGuard ac(bf16);
      logits = model.forward(x);
    }
    logits = logits.to(DType::f32).contiguous();
    int64_t n = x.size(0), k = logits.size(1);
    loss_sum += cross_entropy(logits, y).item() * double(n);
    const float* lp = logits.data<float>();
    const int64_t* yp = y.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const float* row = lp + i * k;
      const int64_t higher = topk_rank(row, k, yp[i]);
      top1 += higher < 1;
      top5 += higher < 5;
    }
    r.images += n;
  }
  model.train(was_training);
  SCION_CHECK(r.images > 0, "evaluation: no images");
  r.loss = loss_sum / double(r.images);
  r.acc1 = 100.0 * top1 / double(r.images);
  r.acc5 = 100.0 * top5 / double(r.images);
  return r;
}

int interrupted() {
  return g_signal;
}

int run_training(const Config& cfg, bool resume) {
  SCION_CHECK(
      cfg.device == "cpu", cfg.source, ": device: '", cfg.device,
      "' is not available in this build (the CUDA backend is not implemented yet); use cpu");
  set_num_threads(cfg.threads);
  make_dirs(cfg.output_dir);
  const std::string last_path = cfg.output_dir + "/last.safetensors";
  const std::string best_path = cfg.output_dir + "/best.safetensors";
  const std::string metrics_path = cfg.output_dir + "/metrics.jsonl";
  resume = resume || file_exists(last_path);
  if (resume && file_exists(last_path)) check_resumable(cfg, last_path);  // before touching files
  // A kill during an atomic write leaves only its temporary file behind; remove such leftovers.
  for (const char* stem :
       {"last.safetensors", "best.safetensors", "metrics.jsonl", "summary.json", "config.yaml"}) {
    std::string prefix = std::string(stem) + ".tmp.";
    if (DIR* d = opendir(cfg.output_dir.c_str())) {
      while (dirent* e = readdir(d))
        if (std::string(e->d_name).rfind(prefix, 0) == 0)
          std::remove((cfg.output_dir + "/" + e->d_name).c_str());
      closedir(d);
    }
  }
  write_text_atomic(cfg.output_dir + "/config.yaml", to_yaml(cfg));

  // Model, optimizer, EMA.
  nn::ModelPtr model = nn::create_model(cfg.model);
  Generator init_gen(cfg.seed, 0x494E4954);
  init::initialize(*model, cfg.init, init_gen, cfg.source);
  manual_seed(cfg.seed);  // dropout and drop path
  // Data.
  data::DatasetPtr train_ds =
      open_split(cfg, cfg.data.train_split, cfg.data.train_subset, cfg.seed);
  data::DatasetPtr val_ds = open_split(cfg, cfg.data.val_split, cfg.data.val_subset, cfg.seed + 1);
  data::PipelineConfig tp = base_pipeline(cfg);
  const AugmentConfig& a = cfg.data.augment;
  tp.train_crop = a.crop;
  tp.scale_min = a.scale_min;
  tp.padding = a.padding;
  tp.hflip = a.hflip;
  tp.randaugment = a.randaugment;
  tp.color_jitter = a.color_jitter;
  tp.reprob = a.reprob;
  data::MixupConfig mc;
  mc.mixup_alpha = a.mixup;
  mc.cutmix_alpha = a.cutmix;
  mc.prob = a.mixup_prob;
  mc.switch_prob = a.switch_prob;
  mc.label_smoothing = a.label_smoothing;
  data::LoaderOptions to;
  to.batch_size = cfg.train.batch_size;
  to.workers = cfg.data.workers;
  to.seed = cfg.seed;
  data::DataLoader train_loader(train_ds, data::Pipeline(tp), to, mc);
  data::LoaderOptions vo = to;
  vo.shuffle = false;
  vo.drop_last = false;
  data::DataLoader val_loader(val_ds, data::Pipeline(eval_pipeline(cfg)), vo);

  Optimizer opt(*model, cfg.train.optimizer, no_weight_decay_names(*model));
  std::unique_ptr<Ema> ema =
      cfg.train.ema_decay > 0 ? std::make_unique<Ema>(*model, cfg.train.ema_decay) : nullptr;
  nn::ModelPtr ema_model = ema ? nn::create_model(cfg.model) : nullptr;
  nn::ModelPtr distill_teacher;
  if (!cfg.train.distill.teacher.empty()) {
    // A teacher saved by scion carries its config; a timm file is the named model at the student's
    // image size, channels and class count.
    SafetensorsFile tf = SafetensorsFile::open(cfg.train.distill.teacher);
    nn::ModelConfig tc = cfg.model;
    if (tf.metadata().count("scion_model")) {
      try {
        tc = nn::parse_model_config(tf.metadata().at("scion_model"));
      } catch (const std::exception& e) {
        throw InputError(cfg.train.distill.teacher + ": metadata scion_model: " + e.what());
      }
      SCION_CHECK(tc.name == cfg.train.distill.model, cfg.source, ": train.distill.model is '",
                  cfg.train.distill.model, "' but ", cfg.train.distill.teacher, " holds a ",
                  tc.name);
    } else {
      tc.name = cfg.train.distill.model;
      tc.embed_dim.reset();
      tc.depth.reset();
      tc.num_heads.reset();
      tc.mlp_ratio.reset();
      tc.depths.reset();
      tc.dims.reset();
    }
    tc.drop_path = 0.0;
    distill_teacher = nn::create_model(tc);
    distill_teacher->load(cfg.train.distill.teacher, /*strict=*/true);
    distill_teacher->eval();
  }

  const int64_t accum = cfg.train.accum_steps;
  const int64_t batches = train_loader.num_batches();
  SCION_CHECK(batches >= accum, cfg.source, ": train.accum_steps ", accum, " exceeds the ", batches,
              " batches of an epoch");
  const int64_t steps_per_epoch = batches / accum;
  int64_t start_epoch = 0, skip_batches = 0;
  double best_acc1 = -1, wall_before = 0;
  json history = json::array();
  // Running sums of an epoch interrupted by a signal, so the resumed epoch reports the same mean.
  double resume_loss_sum = 0;
  int64_t resume_loss_count = 0, resume_images = 0;
  double resume_seconds = 0;
  if (resume) {
    SCION_CHECK(file_exists(last_path), last_path, ": --resume given but there is no checkpoint");
    SafetensorsFile ck = SafetensorsFile::open(last_path);
    NamedTensors ms;
    for (const auto& n : ck.names())
      if (n.rfind("model.", 0) == 0) ms.emplace_back(n.substr(6), ck.get(n));
    model->load_state_dict(ms, true, last_path);
    CheckpointState st = read_checkpoint_state(ck, last_path, batches, steps_per_epoch);
    opt.load_state(ck, st.step);
    if (ema) {
      NamedTensors es;
      for (const auto& n : ck.names())
        if (n.rfind("ema.", 0) == 0) es.emplace_back(n.substr(4), ck.get(n));
      NoGradGuard ng;
      for (auto& entry : ema->state()) {
        const std::string& name = entry.first;
        auto it =
            std::find_if(es.begin(), es.end(), [&](const auto& e) { return e.first == name; });
        SCION_CHECK(it != es.end(), last_path, ": checkpoint has no EMA tensor ema.", name);
        entry.second.copy_(it->second);
      }
    }
    start_epoch = st.epoch;
    skip_batches = st.batch_in_epoch;
    default_generator().set_offset(st.rng_offset);
    best_acc1 = st.best_val_acc1;
    wall_before = st.wall_seconds;
    history = json::parse(st.metrics);
    resume_loss_sum = st.partial_loss_sum;
    resume_loss_count = st.partial_loss_count;
    resume_images = st.partial_images;
    resume_seconds = st.partial_seconds;
    std::string text;
    for (const auto& line : history) text += line.dump() + "\n";
    write_text_atomic(metrics_path, text);
    std::printf("resuming %s at epoch %lld, batch %lld (optimizer step %lld)\n", last_path.c_str(),
                (long long)start_epoch + 1, (long long)skip_batches, (long long)opt.steps());
  }

  auto save_checkpoint = [&](int64_t epoch, int64_t batch_in_epoch, double wall,
                             double part_loss_sum, int64_t part_loss_count, int64_t part_images,
                             double part_seconds) {
    NamedTensors ts;
    for (auto& [n, t] : model->state_dict()) ts.emplace_back("model." + n, t);
    for (auto& nt : opt.state()) ts.push_back(nt);
    if (ema)
      for (auto& [n, t] : ema->state()) ts.emplace_back("ema." + n, t);
    std::map<std::string, std::string> meta{
        {"format", "pt"},
        {"epoch", std::to_string(epoch)},
        {"batch_in_epoch", std::to_string(batch_in_epoch)},
        {"step", std::to_string(opt.steps())},
        {"rng_seed", std::to_string(cfg.seed)},
        {"rng_offset", std::to_string(default_generator().offset())},
        {"best_val_acc1", std::to_string(best_acc1)},
        {"wall_seconds", std::to_string(wall)},
        {"metrics", history.dump()},
        {"partial_epoch", json{{"loss_sum", part_loss_sum},
                               {"loss_count", part_loss_count},
                               {"images", part_images},
                               {"seconds", part_seconds}}
                              .dump()},
        {"config", to_yaml(cfg)}};
    save_safetensors(last_path, ts, meta);
  };

  // Where the last good state is, when there is one.
  auto last_good_note = [&]() -> std::string {
    return file_exists(last_path) ? " The last good checkpoint is kept at " + last_path
                                  : " No checkpoint was written (the first epoch did not finish).";
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const bool tty = isatty(fileno(stdout));
  const bool bf16 = cfg.train.precision == "bf16";
  const auto run_start = Clock::now();
  std::printf(
      "training %s (%lld parameters) on %s: %lld images/epoch, %lld steps/epoch, %lld epochs\n",
      cfg.model.name.c_str(), (long long)model->num_parameters(), cfg.data.dataset.c_str(),
      (long long)train_ds->size(), (long long)steps_per_epoch, (long long)cfg.train.epochs);
  std::fflush(stdout);
  double final_acc1 = history.empty() ? 0.0 : history.back().value("val_acc1", 0.0);
  double total_images = 0, total_train_seconds = 0;
  auto last_progress = Clock::now();
  for (int64_t epoch = start_epoch; epoch < cfg.train.epochs; ++epoch) {
    model->train();
    train_loader.start_epoch(epoch, epoch == start_epoch ? skip_batches : 0);
    const bool resumed_epoch = epoch == start_epoch && skip_batches > 0;
    const auto t0 = Clock::now();
    const double seconds_before = resumed_epoch ? resume_seconds : 0.0;
    double loss_sum = resumed_epoch ? resume_loss_sum : 0.0, lr = 0;
    int64_t loss_count = resumed_epoch ? resume_loss_count : 0,
            images = resumed_epoch ? resume_images : 0;
    data::Batch b;
    int64_t bi = epoch == start_epoch ? skip_batches : 0;
    for (auto& p : model->parameters()) p.zero_grad();
    while (train_loader.next(b)) {
      Tensor loss;
      {
        AutocastGuard ac(bf16);
        Tensor logits = model->forward(b.images);
        loss = classification_loss(logits, b, a.label_smoothing);
        if (distill_teacher) {
          Tensor teacher_logits;
          {
            NoGradGuard ng;
            teacher_logits = distill_teacher->forward(b.images);
          }
          loss = distillation_loss(loss, logits, teacher_logits, cfg.train.distill);
        }
      }
      double lv = loss.item();
      if (!std::isfinite(lv)) {
        std::fprintf(stderr,
                     "\ntrain: non-finite loss (%g) at epoch %lld, batch %lld; stopping.%s\n", lv,
                     (long long)epoch + 1, (long long)bi, last_good_note().c_str());
        return 1;
      }
      (accum > 1 ? loss * (1.0 / double(accum)) : loss).backward();
      loss_sum += lv;
      ++loss_count;
      images += b.images.size(0);
      ++bi;
      if (bi % accum != 0) continue;
      if (cfg.train.clip_grad > 0) clip_grad_norm(model->parameters(), cfg.train.clip_grad);
      lr = learning_rate(cfg.train, opt.steps(), steps_per_epoch);
      opt.step(lr);
      for (auto& p : model->parameters()) p.zero_grad();
      if (ema) ema->update(*model);
      const auto now = Clock::now();
      double secs = seconds_before + std::chrono::duration<double>(now - t0).count();
      int64_t step_in_epoch = bi / accum;
      // Progress: on a terminal one line rewritten after every step; otherwise a plain line every
      // train.progress_seconds and every train.log_interval steps. The ETA assumes this epoch's
      // pace for the rest of the run (evaluation not counted).
      const bool periodic = std::chrono::duration<double>(now - last_progress).count() >=
                            cfg.train.progress_seconds;
      if (tty || periodic || step_in_epoch % cfg.train.log_interval == 0) {
        int64_t left = (steps_per_epoch - step_in_epoch) +
                       (cfg.train.epochs - epoch - 1) * steps_per_epoch;
        std::printf("%sepoch %lld/%lld step %lld/%lld loss %.4f lr %.3g %.0f img/s ETA %s%s",
                    tty ? "\r" : "", (long long)epoch + 1, (long long)cfg.train.epochs,
                    (long long)step_in_epoch, (long long)steps_per_epoch,
                    loss_sum / double(loss_count), lr, double(images) / secs,
                    duration_str(secs / double(step_in_epoch) * double(left)).c_str(),
                    tty ? "   " : "\n");
        std::fflush(stdout);
        last_progress = now;
      }
      if (g_signal != 0) {
        double wall = wall_before + std::chrono::duration<double>(Clock::now() - run_start).count();
        save_checkpoint(epoch, bi, wall, loss_sum, loss_count, images, secs);
        std::printf(
            "\ntrain: signal %d received; saved %s at epoch %lld, batch %lld; rerun to resume\n",
            int(g_signal), last_path.c_str(), (long long)epoch + 1, (long long)bi);
        std::fflush(stdout);
        return 128 + g_signal;  // as a shell reports a process ended by that signal
      }
    }
    double epoch_seconds =
        seconds_before + std::chrono::duration<double>(Clock::now() - t0).count();
    total_images += double(images);
    total_train_seconds += epoch_seconds;
    EvalResult ev = evaluate(*model, val_loader, bf16);
    if (!std::isfinite(ev.loss)) {  // a failed evaluation: never a best checkpoint or a summary
      std::fprintf(stderr,
                   "\ntrain: non-finite validation loss (%g) after epoch %lld; stopping.%s\n",
                   ev.loss, (long long)epoch + 1, last_good_note().c_str());
      return 1;
    }
    json line{{"epoch", epoch + 1},
              {"step", opt.steps()},
              {"lr", lr},
              {"train_loss", loss_count ? loss_sum / double(loss_count) : 0.0},
              {"val_loss", ev.loss},
              {"val_acc1", ev.acc1},
              {"val_acc5", ev.acc5},
              {"epoch_seconds", epoch_seconds},
              {"images_per_second", double(images) / epoch_seconds}};
    if (ema) {
      ema_model->load_state_dict(ema->state(), true, "EMA state");
      EvalResult ee = evaluate(*ema_model, val_loader, bf16);
      line["ema_val_loss"] = ee.loss;
      line["ema_val_acc1"] = ee.acc1;
      line["ema_val_acc5"] = ee.acc5;
    }
    history.push_back(line);
    final_acc1 = ev.acc1;
    if (ev.acc1 > best_acc1) {
      best_acc1 = ev.acc1;
      model->save(best_path, {{"epoch", std::to_string(epoch + 1)},
                              {"val_acc1", std::to_string(ev.acc1)},
                              {"scion_data", eval_metadata(cfg)}});
    }
    double wall = wall_before + std::chrono::duration<double>(Clock::now() - run_start).count();
    save_checkpoint(epoch + 1, 0, wall, 0, 0, 0, 0);
    std::string text;
    for (const auto& l : history) text += l.dump() + "\n";
    write_text_atomic(metrics_path, text);
    std::printf(
        "%sepoch %lld/%lld  train loss %.4f  val loss %.4f  acc1 %.2f  acc5 %.2f  (%.1f s, %.0f "
        "img/s)\n",
        tty ? "\r" : "", (long long)epoch + 1, (long long)cfg.train.epochs,
        line["train_loss"].get<double>(), ev.loss, ev.acc1, ev.acc5, epoch_seconds,
        double(images) / epoch_seconds);
    std::fflush(stdout);
  }
  double wall = wall_before + std::chrono::duration<double>(Clock::now() - run_start).count();
  json summary{
      {"best_val_acc1", best_acc1},
      {"final_val_acc1", final_acc1},
      {"epochs", cfg.train.epochs},
      {"wall_seconds", wall},
      {"images_per_second", total_train_seconds > 0 ? total_images / total_train_seconds : 0.0}};
  write_text_atomic(cfg.output_dir + "/summary.json", summary.dump(2) + "\n");
  std::printf("done: best val acc1 %.2f, final %.2f; outputs in %s\n", best_acc1, final_acc1,
              cfg.output_dir.c_str());
  return 0;
}

}  // namespace scion::train

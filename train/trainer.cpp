// The training loop (see trainer.h).
#include "train/trainer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/files.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "init/initializers.h"
#include "init/weight_selection.h"
#include "train/distill.h"
#include "train/optim.h"

namespace scion::train {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

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

EvalResult evaluate(nn::Module& model, data::DataLoader& loader, bool bf16, int64_t limit,
                    dist::Communicator* comm) {
  NoGradGuard ng;
  bool was_training = model.is_training();
  model.eval();
  const Device device = model.device();
  EvalResult r;
  double loss_sum = 0, top1 = 0, top5 = 0;
  loader.start_epoch(0);
  data::Batch b;
  while ((limit <= 0 || r.images < limit) && loader.next(b)) {
    adapt_threads();  // between batches: use the cores other jobs leave free
    Tensor x = b.images, y = b.labels;
    if (x.size(0) == 0) continue;  // a shard of a final batch smaller than the rank count
    if (limit > 0 && r.images + x.size(0) > limit) {
      int64_t keep = limit - r.images;
      x = x.narrow(0, 0, keep).contiguous();
      y = y.narrow(0, 0, keep).contiguous();
    }
    Tensor logits;
    {
      AutocastGuard ac(bf16);
      logits = model.forward(x.to(device));
    }
    logits = logits.to(DType::f32);
    int64_t n = x.size(0), k = logits.size(1);
    // The class indices as the loader made them, on the host (checked there; see step_loss).
    loss_sum += cross_entropy(logits, y).item() * double(n);
    logits = logits.cpu().contiguous();
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
  if (comm && comm->size() > 1) {  // each rank evaluated its shard of every batch
    std::vector<double> sums{loss_sum, top1, top5, double(r.images)};
    dist::allreduce_sum(*comm, sums, "evaluation sums");
    loss_sum = sums[0];
    top1 = sums[1];
    top5 = sums[2];
    r.images = int64_t(sums[3]);
  }
  SCION_CHECK(r.images > 0, "evaluation: no images");
  r.loss = loss_sum / double(r.images);
  r.acc1 = 100.0 * top1 / double(r.images);
  r.acc5 = 100.0 * top5 / double(r.images);
  return r;
}

namespace {

// ---- building a run: output folder, model, data, teacher ----------------------------------------

struct Paths {
  std::string last, best, metrics, summary;
  explicit Paths(const std::string& dir)
      : last(dir + "/last.safetensors"),
        best(dir + "/best.safetensors"),
        metrics(dir + "/metrics.jsonl"),
        summary(dir + "/summary.json") {}
};

// Removes temporary files a kill during an atomic write left behind (the folder is locked: no
// other process is writing them) and writes config.yaml.
void prepare_output(const Config& cfg) {
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
}

// Runs the configured initializer on `model` (on the CPU: init/ reads teacher files there).
void initialize_model(nn::Model& model, const Config& cfg) {
  Generator init_gen(cfg.seed, 0x494E4954);
  init::initialize(model, cfg.init, init_gen, cfg.source);
}

// The model (built and, where it starts afresh, initialized by run_training) moved to `device`;
// seeds the default generator.
nn::ModelPtr on_device(nn::ModelPtr model, const Config& cfg, Device device) {
  model->to(device);
  manual_seed(cfg.seed);  // the default generator: dropout and drop path
  return model;
}

struct Data {
  data::DatasetPtr train_ds, val_ds;
  std::unique_ptr<data::DataLoader> train, val;
};

// The training and validation splits (subsets drawn) and their loaders, built before the run
// writes anything: a missing or malformed data folder, or a split smaller than a batch, stops it
// with nothing written. Each rank's loaders return its shard of every global batch
// (train.batch_size is global).
Data build_data(const Config& cfg, const dist::Communicator& comm, Device device) {
  Data d;
  d.train_ds = open_split(cfg, cfg.data.train_split, cfg.data.train_subset, cfg.seed);
  d.val_ds = open_split(cfg, cfg.data.val_split, cfg.data.val_subset, cfg.seed + 1);
  SCION_CHECK(d.train_ds->size() >= cfg.train.batch_size, cfg.source, ": the training split ",
              cfg.data.train_split, " has ", d.train_ds->size(), " images",
              cfg.data.train_subset > 0 ? " (data.train_subset)" : "",
              ", fewer than one batch (train.batch_size ", cfg.train.batch_size, ")");
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
  to.shard = comm.rank();
  to.shards = comm.size();
  to.pin_memory = device.type == DeviceType::cuda;  // batches copied to a GPU without waiting
  d.train = std::make_unique<data::DataLoader>(d.train_ds, data::Pipeline(tp), to, mc);
  data::LoaderOptions vo = to;
  vo.shuffle = false;
  vo.drop_last = false;
  d.val = std::make_unique<data::DataLoader>(d.val_ds, data::Pipeline(eval_pipeline(cfg)), vo);
  return d;
}

// The distillation teacher, in eval mode on `device`. A teacher saved by scion carries its config;
// a timm file is the named model at the student's image size, channels and class count. Loaded
// before anything is written: a teacher that cannot teach this student (another class count,
// image size or channel count, a file that does not load) is an InputError naming
// train.distill.teacher and both files.
nn::ModelPtr load_teacher(const Config& cfg, Device device) {
  const DistillConfig& k = cfg.train.distill;
  const std::string key = cfg.source + ": train.distill.teacher " + k.teacher;
  try {
    SafetensorsFile tf = SafetensorsFile::open(k.teacher);
    nn::ModelConfig tc = cfg.model;
    if (tf.metadata().count("scion_model")) {
      try {
        tc = nn::parse_model_config(tf.metadata().at("scion_model"));
      } catch (const std::exception& e) {
        throw InputError(k.teacher + ": metadata scion_model: " + e.what());
      }
      SCION_CHECK(tc.name == k.model, "train.distill.model is '", k.model,
                  "' but the file holds a ", tc.name);
      SCION_CHECK(tc.num_classes == cfg.model.num_classes, "the teacher predicts ", tc.num_classes,
                  " classes but the student (model.num_classes) ", cfg.model.num_classes,
                  "; distillation needs the same classes");
      SCION_CHECK(tc.in_chans == cfg.model.in_chans, "the teacher takes ", tc.in_chans,
                  " input channels but the student (model.in_chans) ", cfg.model.in_chans);
      SCION_CHECK(tc.name.rfind("vit_", 0) != 0 || tc.img_size == cfg.model.img_size,
                  "the teacher is a ViT for ", tc.img_size,
                  " px images but the student's (model.img_size) are ", cfg.model.img_size, " px");
    } else {
      tc.name = k.model;
      tc.embed_dim.reset();
      tc.depth.reset();
      tc.num_heads.reset();
      tc.mlp_ratio.reset();
      tc.depths.reset();
      tc.dims.reset();
    }
    tc.drop_path = 0.0;
    nn::ModelPtr teacher = nn::create_model(tc);
    teacher->load(k.teacher, /*strict=*/true);
    teacher->to(device);
    teacher->eval();
    return teacher;
  } catch (const InputError& e) {
    throw InputError(key + ": " + e.what());
  }
}

// Every rank must run the same config (a different file or --set on one rank is an error
// naming the keys), apart from what may differ per machine (data.root, threads, workers, ...).
void check_same_config(dist::Communicator& comm, const Config& cfg) {
  if (comm.size() == 1) return;
  std::vector<std::string> all = comm.allgather(to_yaml(cfg), "comparing configs");
  for (int r = 1; r < comm.size(); ++r) {
    if (all[size_t(r)] == all[0]) continue;
    const std::string diffs = config_differences(parse_config(all[0], "rank 0's config"),
                                                 parse_config(all[size_t(r)], "rank config"));
    if (diffs.empty()) continue;
    const std::string msg = "the ranks were given different configs; rank " + std::to_string(r) +
                            " differs from rank 0 in:" + diffs;
    if (comm.is_root()) throw InputError(msg);
    throw dist::PeerFailed(0, 2, msg);
  }
}

// ---- the run ------------------------------------------------------------------------------------

// Where the loop is: the epoch and batch, the running sums of the current epoch, the history.
struct Progress {
  int64_t epoch = 0, batch = 0;  // the next batch to run
  double loss_sum = 0, seconds = 0;
  int64_t loss_count = 0, images = 0;
  double best_acc1 = -1, wall_before = 0;
  json history = json::array();
};

class Trainer {
 public:
  Trainer(const Config& cfg, Device device, dist::Communicator& comm, nn::ModelPtr model,
          nn::ModelPtr teacher, Data data)
      : cfg_(cfg),
        paths_(cfg.output_dir),
        device_(device),
        comm_(comm),
        root_(comm.is_root()),
        model_(on_device(std::move(model), cfg, device)),
        data_(std::move(data)),
        opt_(*model_, cfg.train.optimizer, no_weight_decay_names(*model_)),
        bf16_(cfg.train.precision == "bf16"),
        accum_(cfg.train.accum_steps),
        batches_(data_.train->num_batches()),
        teacher_(std::move(teacher)) {
    steps_per_epoch_ = batches_ / accum_;
    if (cfg.train.ema_decay > 0) {
      ema_ = std::make_unique<Ema>(*model_, cfg.train.ema_decay);
      ema_model_ = nn::create_model(cfg.model);
      ema_model_->to(device);
    }
    if (cfg.train.freeze == "backbone")  // linear probing: no gradient reaches the backbone
      for (auto& [name, p] : model_->named_parameters())
        if (init::component_of(name) != "head") p.requires_grad_(false);
    if (comm.size() > 1)
      reducer_ = std::make_unique<dist::GradReducer>(
          comm, model_->named_parameters(), cfg.dist.bucket_mb, cfg.dist.compress == "bf16");
  }

  void restore();
  // Data-parallel ranks start from rank 0's state: weights, optimizer and EMA state, position.
  void sync_from_root();
  int run();

 private:
  Tensor step_loss(const data::Batch& b);
  void optimizer_step();
  int train_epoch(int64_t epoch);
  int nonfinite_loss(double loss, int64_t epoch) const;
  // The signal any rank received (the same on every rank), or 0.
  int agreed_signal();
  int finish_epoch(int64_t epoch);
  void save_checkpoint(int64_t epoch, int64_t batch, double epoch_seconds);
  // Everything that must be identical on every rank: weights, buffers, optimizer and EMA state.
  NamedTensors replicated_state() const;
  void print_progress(int64_t epoch, int64_t step_in_epoch, double secs, double lr);
  double wall() const {
    return progress_.wall_before + std::chrono::duration<double>(Clock::now() - start_).count();
  }
  // Where the last good state is, when there is one.
  std::string last_good_note() const {
    return path_exists(paths_.last)
               ? " The last good checkpoint is kept at " + paths_.last
               : " No checkpoint was written (the first epoch did not finish).";
  }

  const Config& cfg_;
  const Paths paths_;
  const Device device_;
  dist::Communicator& comm_;
  const bool root_;  // rank 0 prints and writes every output
  nn::ModelPtr model_;
  Data data_;
  Optimizer opt_;
  std::unique_ptr<Ema> ema_;
  nn::ModelPtr ema_model_;
  std::unique_ptr<dist::GradReducer> reducer_;
  const bool bf16_;
  // Progress as one line rewritten in place on a terminal (not under mpirun, whose ranks write
  // to a pseudo-terminal even when the job's output goes to a file).
  const bool tty_ = isatty(fileno(stdout)) && !dist::launched_by_mpi();
  const int64_t accum_, batches_;
  nn::ModelPtr teacher_;
  int64_t steps_per_epoch_ = 0;
  Progress progress_;
  int stop_signal_ = 0;  // a signal some rank received: stop at this optimizer step
  Clock::time_point start_ = Clock::now(), last_progress_ = Clock::now();
  double total_images_ = 0, total_train_seconds_ = 0, lr_ = 0, wait_before_ = 0;
};

// Loads last.safetensors: weights, optimizer and EMA state, position, RNG offset, history.
void Trainer::restore() {
  SCION_CHECK(path_exists(paths_.last), paths_.last, ": --resume given but there is no checkpoint");
  SafetensorsFile ck = SafetensorsFile::open(paths_.last);
  NamedTensors ms, es;
  for (const auto& n : ck.names()) {
    if (n.rfind("model.", 0) == 0) ms.emplace_back(n.substr(6), ck.get(n));
    if (n.rfind("ema.", 0) == 0) es.emplace_back(n.substr(4), ck.get(n));
  }
  model_->load_state_dict(ms, true, paths_.last);
  CheckpointState st = read_checkpoint_state(ck, paths_.last, batches_, steps_per_epoch_);
  opt_.load_state(ck, st.step);
  if (ema_) {
    NoGradGuard ng;
    for (auto& entry : ema_->state()) {
      const std::string& name = entry.first;  // (a lambda capturing a structured binding is C++20)
      auto it = std::find_if(es.begin(), es.end(), [&](const auto& e) { return e.first == name; });
      SCION_CHECK(it != es.end(), paths_.last, ": checkpoint has no EMA tensor ema.", name);
      entry.second.copy_(it->second);
    }
  }
  default_generator().set_offset(st.rng_offset);
  // The learning rate of the last step taken (an epoch's metrics line records it).
  if (opt_.steps() > 0) lr_ = learning_rate(cfg_.train, opt_.steps() - 1, steps_per_epoch_);
  Progress& p = progress_;
  p.epoch = st.epoch;
  p.batch = st.batch_in_epoch;
  p.best_acc1 = st.best_val_acc1;
  p.wall_before = st.wall_seconds;
  p.history = json::parse(st.metrics);
  p.loss_sum = st.partial_loss_sum;
  p.loss_count = st.partial_loss_count;
  p.images = st.partial_images;
  p.seconds = st.partial_seconds;
  std::string text;
  for (const auto& line : p.history) text += line.dump() + "\n";
  write_text_atomic(paths_.metrics, text);
  std::printf("resuming %s at epoch %lld, batch %lld (optimizer step %lld)\n", paths_.last.c_str(),
              (long long)p.epoch + 1, (long long)p.batch, (long long)opt_.steps());
}

NamedTensors Trainer::replicated_state() const {
  NamedTensors ts;
  for (auto& [n, t] : model_->state_dict()) ts.emplace_back("model." + n, t);
  for (auto& nt : opt_.state()) ts.push_back(nt);
  if (ema_)
    for (auto& [n, t] : ema_->state()) ts.emplace_back("ema." + n, t);
  return ts;
}

void Trainer::sync_from_root() {
  if (comm_.size() == 1) return;
  Progress& p = progress_;
  std::string state;
  if (root_)
    state = json{{"epoch", p.epoch},           {"batch", p.batch},
                 {"step", opt_.steps()},       {"rng_offset", default_generator().offset()},
                 {"best_acc1", p.best_acc1},   {"wall_before", p.wall_before},
                 {"history", p.history},       {"loss_sum", p.loss_sum},
                 {"loss_count", p.loss_count}, {"images", p.images},
                 {"seconds", p.seconds}}
                .dump();
  dist::broadcast_string(comm_, state, 0, "training position");
  if (!root_) {
    json j = json::parse(state);
    p.epoch = j["epoch"];
    p.batch = j["batch"];
    opt_.set_steps(j["step"]);
    default_generator().set_offset(j["rng_offset"]);
    p.best_acc1 = j["best_acc1"];
    p.wall_before = j["wall_before"];
    p.history = j["history"];
    p.loss_sum = j["loss_sum"];
    p.loss_count = j["loss_count"];
    p.images = j["images"];
    p.seconds = j["seconds"];
  }
  for (auto& [name, t] : replicated_state()) comm_.broadcast(t, 0, name);
}

// The loss of one batch: classification, plus distillation from the teacher when on.
Tensor Trainer::step_loss(const data::Batch& b) {
  AutocastGuard ac(bf16_);
  const int64_t rows = b.images.size(0), global = rows * comm_.size();
  BatchShardGuard shard({global, rows * comm_.rank(), rows});  // dropout/drop-path masks
  Tensor images = b.images.to(device_);
  Tensor logits = model_->forward(images);
  // The targets go in as the loader made them, on the host: cross_entropy checks the class
  // indices there and copies them to the device without waiting for the forward.
  Tensor loss = b.targets.defined()
                    ? cross_entropy(logits, b.targets)  // Mixup/CutMix soft targets
                    : cross_entropy(logits, b.labels, cfg_.data.augment.label_smoothing);
  if (teacher_) {
    Tensor teacher_logits;
    {
      NoGradGuard ng;
      teacher_logits = teacher_->forward(images);
    }
    loss = distillation_loss(loss, logits, teacher_logits, cfg_.train.distill);
  }
  return loss;
}

// Clip, schedule, step, zero the gradients, update the EMA.
void Trainer::optimizer_step() {
  if (cfg_.train.clip_grad > 0) clip_grad_norm(model_->parameters(), cfg_.train.clip_grad);
  lr_ = learning_rate(cfg_.train, opt_.steps(), steps_per_epoch_);
  opt_.step(lr_);
  for (auto& p : model_->parameters()) p.zero_grad();
  if (ema_) ema_->update(*model_);
}

// On a terminal one line rewritten after every step; otherwise a plain line every
// train.progress_seconds and every train.log_interval steps. The ETA assumes this epoch's pace
// for the rest of the run (evaluation not counted).
void Trainer::print_progress(int64_t epoch, int64_t step_in_epoch, double secs, double lr) {
  const auto now = Clock::now();
  const bool periodic =
      std::chrono::duration<double>(now - last_progress_).count() >= cfg_.train.progress_seconds;
  if (!root_ || (!tty_ && !periodic && step_in_epoch % cfg_.train.log_interval != 0)) return;
  const Progress& p = progress_;
  int64_t left =
      (steps_per_epoch_ - step_in_epoch) + (cfg_.train.epochs - epoch - 1) * steps_per_epoch_;
  std::printf(
      "%sepoch %lld/%lld step %lld/%lld loss %.4f lr %.3g %.0f img/s ETA %s%s", tty_ ? "\r" : "",
      (long long)epoch + 1, (long long)cfg_.train.epochs, (long long)step_in_epoch,
      (long long)steps_per_epoch_, p.loss_sum / double(p.loss_count), lr, double(p.images) / secs,
      duration_str(secs / double(step_in_epoch) * double(left)).c_str(), tty_ ? "   " : "\n");
  std::fflush(stdout);
  last_progress_ = now;
}

int Trainer::agreed_signal() {
  const int sig = interrupted();  // read once: the signal thread may set it at any moment
  std::vector<double> shared{sig != 0 ? 1.0 : 0.0, double(sig)};
  dist::allreduce_sum(comm_, shared, "stop check");
  return shared[0] > 0 ? int(std::lround(shared[1] / shared[0])) : 0;
}

// Reports a non-finite training loss (rank 0); the exit status 1.
int Trainer::nonfinite_loss(double loss, int64_t epoch) const {
  if (root_)
    std::fprintf(stderr, "\ntrain: non-finite loss (%g) at epoch %lld, batch %lld; stopping.%s\n",
                 loss, (long long)epoch + 1, (long long)progress_.batch, last_good_note().c_str());
  return 1;
}

// One epoch of optimizer steps from progress_.batch on. Returns 0, or an exit status: 1 for a
// non-finite loss, 128 + signal after saving when SIGINT/SIGTERM arrived.
int Trainer::train_epoch(int64_t epoch) {
  Progress& p = progress_;
  // A frozen backbone runs as in evaluation (no drop path); the classifier has no train mode.
  model_->train(cfg_.train.freeze != "backbone");
  data_.train->start_epoch(epoch, p.batch);
  const auto t0 = Clock::now();
  const double seconds_before = p.seconds;
  for (auto& t : model_->parameters()) t.zero_grad();
  data::Batch b;
  while (data_.train->next(b)) {
    adapt_threads();  // between batches: use the cores other jobs leave free
    const bool step_now = (p.batch + 1) % accum_ == 0;
    if (reducer_) reducer_->prepare(step_now);  // gradients are averaged before a step only
    Tensor loss = step_loss(b);
    (accum_ > 1 ? loss * (1.0 / double(accum_)) : loss).backward();
    // Read after backward is queued, so that a GPU runs forward and backward without waiting for
    // the host in between; a non-finite loss still stops the run before the optimizer step.
    double lv = loss.item();
    if (reducer_) reducer_->finish();
    // The global batch's mean loss, and whether any rank was asked to stop (so all stop at the
    // same optimizer step).
    const double share = 1.0 / double(comm_.size());  // equal shards
    const int sig = interrupted();
    std::vector<double> shared{lv * share, sig != 0 ? 1.0 : 0.0, double(sig)};
    dist::allreduce_sum(comm_, shared, "step loss");
    lv = shared[0];
    if (shared[1] > 0) stop_signal_ = int(std::lround(shared[2] / shared[1]));
    // A stop in the epoch's last step records batch == batches_: an end-of-epoch position whose
    // evaluation the resumed run does first.
    if (!std::isfinite(lv)) return nonfinite_loss(lv, epoch);
    p.loss_sum += lv;
    ++p.loss_count;
    p.images += b.images.size(0) * comm_.size();
    ++p.batch;
    if (!step_now) continue;
    optimizer_step();
    p.seconds = seconds_before + std::chrono::duration<double>(Clock::now() - t0).count();
    print_progress(epoch, p.batch / accum_, p.seconds, lr_);
    if (stop_signal_ != 0) {
      if (root_) {
        save_checkpoint(epoch, p.batch, p.seconds);
        std::printf(
            "\ntrain: signal %d received; saved %s at epoch %lld, batch %lld; rerun to resume\n",
            stop_signal_, paths_.last.c_str(), (long long)epoch + 1, (long long)p.batch);
        std::fflush(stdout);
      }
      return 128 + stop_signal_;  // as a shell reports a process ended by that signal
    }
  }
  p.seconds = seconds_before + std::chrono::duration<double>(Clock::now() - t0).count();
  return 0;
}

// Evaluate (and the EMA weights), append the metrics line, save best and last; resets the epoch's
// running sums. Returns 1 when validation failed, else 0.
int Trainer::finish_epoch(int64_t epoch) {
  Progress& p = progress_;
  total_images_ += double(p.images);
  total_train_seconds_ += p.seconds;
  const auto eval_start = Clock::now();
  EvalResult ev = evaluate(*model_, *data_.val, bf16_, 0, &comm_);
  const double val_seconds = std::chrono::duration<double>(Clock::now() - eval_start).count();
  if (!std::isfinite(ev.loss)) {  // a failed evaluation: never a best checkpoint or a summary
    if (root_)
      std::fprintf(stderr,
                   "\ntrain: non-finite validation loss (%g) after epoch %lld; stopping.%s\n",
                   ev.loss, (long long)epoch + 1, last_good_note().c_str());
    return 1;
  }
  json line{{"epoch", epoch + 1},
            {"step", opt_.steps()},
            {"lr", lr_},
            {"train_loss", p.loss_count ? p.loss_sum / double(p.loss_count) : 0.0},
            {"val_loss", ev.loss},
            {"val_acc1", ev.acc1},
            {"val_acc5", ev.acc5},
            {"epoch_seconds", p.seconds},
            {"images_per_second", double(p.images) / p.seconds},
            {"val_seconds", val_seconds}};
  if (ema_) {
    ema_model_->load_state_dict(ema_->state(), true, "EMA state");
    EvalResult ee = evaluate(*ema_model_, *data_.val, bf16_, 0, &comm_);
    line["ema_val_loss"] = ee.loss;
    line["ema_val_acc1"] = ee.acc1;
    line["ema_val_acc5"] = ee.acc5;
  }
  if (reducer_) line["allreduce_wait_seconds"] = reducer_->seconds_waiting() - wait_before_;
  wait_before_ = reducer_ ? reducer_->seconds_waiting() : 0.0;
  dist::check_identical(comm_, replicated_state(),
                        "end of epoch " + std::to_string(epoch + 1) + " state check");
  p.history.push_back(line);
  if (ev.acc1 > p.best_acc1) {
    p.best_acc1 = ev.acc1;
    if (root_)
      model_->save(paths_.best, {{"epoch", std::to_string(epoch + 1)},
                                 {"val_acc1", std::to_string(ev.acc1)},
                                 {"scion_data", eval_metadata(cfg_)}});
  }
  const double images = double(p.images), seconds = p.seconds;
  p.loss_sum = p.seconds = 0;
  p.loss_count = p.images = p.batch = 0;
  if (!root_) return 0;
  save_checkpoint(epoch + 1, 0, 0);
  std::string text;
  for (const auto& l : p.history) text += l.dump() + "\n";
  write_text_atomic(paths_.metrics, text);
  std::printf(
      "%sepoch %lld/%lld  train loss %.4f  val loss %.4f  acc1 %.2f  acc5 %.2f  (%.1f s, %.0f "
      "img/s)\n",
      tty_ ? "\r" : "", (long long)epoch + 1, (long long)cfg_.train.epochs,
      line["train_loss"].get<double>(), ev.loss, ev.acc1, ev.acc5, seconds, images / seconds);
  std::fflush(stdout);
  return 0;
}

// last.safetensors: model, optimizer and EMA state, and in its metadata the position (epoch,
// batch), RNG offset, best top-1, wall time, history and the running sums of a partial epoch.
void Trainer::save_checkpoint(int64_t epoch, int64_t batch, double epoch_seconds) {
  const Progress& p = progress_;
  NamedTensors ts = replicated_state();
  std::map<std::string, std::string> meta{
      {"format", "pt"},
      {"epoch", std::to_string(epoch)},
      {"batch_in_epoch", std::to_string(batch)},
      {"step", std::to_string(opt_.steps())},
      {"rng_seed", std::to_string(cfg_.seed)},
      {"rng_offset", std::to_string(default_generator().offset())},
      {"best_val_acc1", std::to_string(p.best_acc1)},
      {"wall_seconds", std::to_string(wall())},
      {"metrics", p.history.dump()},
      {"partial_epoch", json{{"loss_sum", batch ? p.loss_sum : 0.0},
                             {"loss_count", batch ? p.loss_count : 0},
                             {"images", batch ? p.images : 0},
                             {"seconds", batch ? epoch_seconds : 0.0}}
                            .dump()},
      {"config", to_yaml(cfg_)}};
  save_safetensors(paths_.last, ts, meta);
}

int Trainer::run() {
  defer_stop_signals();  // from here a signal stops the run at a step (train/signals.h)
  start_ = Clock::now();
  if (root_) {
    std::printf(
        "training %s (%lld parameters) on %s: %lld images/epoch, %lld steps/epoch, %lld epochs\n",
        cfg_.model.name.c_str(), (long long)model_->num_parameters(), cfg_.data.dataset.c_str(),
        (long long)data_.train_ds->size(), (long long)steps_per_epoch_,
        (long long)cfg_.train.epochs);
    if (comm_.size() > 1)
      std::printf(
          "data-parallel over %d %s processes (%d thread%s each): %lld images per process "
          "per step, gradients in %zu buckets%s\n",
          comm_.size(), comm_.backend().c_str(), num_threads(), num_threads() > 1 ? "s" : "",
          (long long)(cfg_.train.batch_size / comm_.size()), reducer_->num_buckets(),
          cfg_.dist.compress == "bf16" ? " (bf16)" : "");
    std::fflush(stdout);
  }
  for (int64_t epoch = progress_.epoch; epoch < cfg_.train.epochs; ++epoch) {
    if (int status = train_epoch(epoch)) return status;
    if (int status = finish_epoch(epoch)) return status;
    if (epoch + 1 < cfg_.train.epochs && (stop_signal_ = agreed_signal()) != 0) {
      // A signal during evaluation: stop at the end-of-epoch checkpoint just written.
      if (root_) {
        std::printf(
            "\ntrain: signal %d received; saved %s at the end of epoch %lld; rerun to "
            "resume\n",
            stop_signal_, paths_.last.c_str(), (long long)epoch + 1);
        std::fflush(stdout);
      }
      return 128 + stop_signal_;
    }
  }
  const json& h = progress_.history;
  const double final_acc1 = h.empty() ? 0.0 : h.back().value("val_acc1", 0.0);
  json summary{
      {"best_val_acc1", progress_.best_acc1},
      {"final_val_acc1", final_acc1},
      {"epochs", cfg_.train.epochs},
      {"wall_seconds", wall()},
      {"images_per_second", total_train_seconds_ > 0 ? total_images_ / total_train_seconds_ : 0.0}};
  if (!root_) return 0;
  write_text_atomic(paths_.summary, summary.dump(2) + "\n");
  std::printf("done: best val acc1 %.2f, final %.2f; outputs in %s\n", progress_.best_acc1,
              final_acc1, cfg_.output_dir.c_str());
  return 0;
}

}  // namespace

namespace {

// The device this rank trains on, after the checks every rank must pass before any other step.
// Data-parallel ranks on GPUs: the ranks of a machine take one GPU each, from the one named
// (`cuda` = cuda:0) on: cuda:<first + local rank>.
Device choose_device(const Config& cfg, const RunOptions& options, dist::Communicator& c0) {
  Device device = parse_device(cfg.device, cfg.source + ": device");
  dist::agree(c0, "checking the config", [&] {
    if (device.type == DeviceType::cuda && c0.size() > 1) {
      const int first = device.index, count = cuda_device_count();
      device.index = first + c0.local_rank();
      SCION_CHECK(device.index < count || count == 0, cfg.source, ": device ", cfg.device, ": ",
                  c0.local_size(), " ranks on this machine take one GPU each from cuda:", first,
                  ", but it has ", count, " GPU", count == 1 ? "" : "s");
    }
    check_device_available(device, cfg.source + ": device");
    SCION_CHECK(cfg.train.batch_size % c0.size() == 0, cfg.source, ": train.batch_size ",
                cfg.train.batch_size, " does not split evenly over ", c0.size(),
                " processes (it is the global batch; use a multiple of ", c0.size(), ")");
    SCION_CHECK(!(options.resume && options.restart),
                "--restart and --resume contradict each other");
  });
  return device;
}

// CUDA tensors are reduced through NCCL (host values still through MPI); null elsewhere.
std::unique_ptr<dist::Communicator> nccl_communicator(const Config& cfg, Device device,
                                                      dist::Communicator& c0) {
  std::unique_ptr<dist::Communicator> nccl;
  if (device.type == DeviceType::cuda && c0.size() > 1)
    dist::agree(c0, "connecting NCCL", [&] {
      nccl = dist::connect_nccl(c0, device.index, cfg.dist.timeout_seconds);
      SCION_CHECK(nccl, cfg.source, ": data-parallel training on CUDA needs NCCL, and this build ",
                  "of scion has none (install NCCL with the CUDA toolkit and rebuild)");
    });
  return nccl;
}

// threads: 0 means all cores, following the load (core/cpu/parallel.h). Data-parallel ranks keep a
// fixed count instead, the cores shared among the ranks on this machine: a rank that adapted to
// its machine's load would add its per-thread partial sums (the clipping norm) in another order
// than the others, and the replicas would drift apart. Rank 0 prints the precision note and the
// config's warnings.
void set_up_process(const Config& cfg, Device device, const dist::Communicator& c) {
  int threads = cfg.threads;
  if (threads == 0 && c.size() > 1)
    threads = std::max(1, int(std::thread::hardware_concurrency()) / c.local_size());
  set_num_threads(threads);
  if (!c.is_root()) return;
  if (!cfg.train.precision_choice.empty()) {
    std::printf("train: precision %s (%s)\n", cfg.train.precision.c_str(),
                cfg.train.precision_choice.c_str());
    std::fflush(stdout);  // before any error on stderr
  }
  for (const std::string& w : config_warnings(cfg))
    std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (device.type == DeviceType::cuda && !cuda_verified_on_hardware())
    std::fprintf(stderr,
                 "warning: the CUDA backend is unverified on hardware: it is built and its host "
                 "side tested, but experiments/gpu/verify.sh has not yet passed on a GPU with "
                 "this code (README, \"CUDA\")\n");
}

// What a run is made of, built before anything is written, so that whatever the config cannot
// build (a teacher that cannot teach, a bad model option, a missing data folder, a missing or
// unreadable initializer source) stops it with nothing written.
struct Parts {
  nn::ModelPtr teacher, model;
  Data data;
};

// `initialize`: run the initializer (rank 0, starting afresh). The other ranks receive rank 0's
// weights (sync_from_root), and a resumed run reads every weight from its checkpoint, so neither
// reads the initializer's source file (which may be gone by then, or on rank 0's machine only).
Parts build_parts(const Config& cfg, Device device, dist::Communicator& c, bool initialize) {
  Parts p;
  dist::agree(c, "loading the distillation teacher", [&] {
    if (!cfg.train.distill.teacher.empty()) p.teacher = load_teacher(cfg, device);
  });
  dist::agree(c, "building the model and the data", [&] {
    p.model = nn::create_model(cfg.model);
    if (initialize) initialize_model(*p.model, cfg);
    p.data = build_data(cfg, c, device);
    const int64_t batches = p.data.train->num_batches();
    SCION_CHECK(batches >= cfg.train.accum_steps, cfg.source, ": train.accum_steps ",
                cfg.train.accum_steps, " exceeds the ", batches, " batches of an epoch");
  });
  return p;
}

// Rank 0's answer, for every rank.
bool broadcast_flag(dist::Communicator& c, bool flag, const char* what) {
  if (c.size() == 1) return flag;
  std::string text = flag ? "1" : "0";
  dist::broadcast_string(c, text, 0, what);
  return text == "1";
}

// A finished run is recognized before anything is built, so rerunning one needs neither its data
// nor its teachers, and loads neither. Rank 0 holds the folder's lock while it looks (a run still
// writing it is named), and every rank learns the answer. prepare_folder looks again, locked.
bool finished_already(const Config& cfg, const RunOptions& options, dist::Communicator& c) {
  bool finished = false;
  dist::agree(c, "checking the output folder", [&] {
    if (!c.is_root() || options.restart || !path_exists(cfg.output_dir + "/summary.json")) return;
    const FolderLock lock = FolderLock::acquire(cfg.output_dir, "run folder");
    finished = inspect_output(cfg) == FolderState::finished;
  });
  return broadcast_flag(c, finished, "finished run check");
}

int nothing_to_do(const Config& cfg, const dist::Communicator& c) {
  if (c.is_root())
    std::printf(
        "train: %s holds this run, finished (%lld epochs, summary.json); nothing to do "
        "(--restart trains it again; a larger train.epochs continues it)\n",
        cfg.output_dir.c_str(), (long long)cfg.train.epochs);
  return 0;
}

struct FolderOutcome {
  bool resume = false, finished = false;
};

// Rank 0 owns the output folder: locked (into `lock`) for the life of the run, then checked (a
// different run is never touched), a --restart's old files moved aside, temporary files cleaned.
// Every rank learns whether the run was finished already.
FolderOutcome prepare_folder(const Config& cfg, const RunOptions& options, dist::Communicator& c,
                             FolderLock& lock) {
  FolderOutcome out;
  out.resume = options.resume;
  dist::agree(c, "preparing the output folder", [&] {
    if (!c.is_root()) return;
    make_dirs(cfg.output_dir, "output folder");
    lock = FolderLock::acquire(cfg.output_dir, "run folder");
    if (options.restart) {
      const std::string moved = move_run_aside(cfg.output_dir);
      if (!moved.empty())
        std::printf("train: the earlier run's files are now in %s\n", moved.c_str());
    }
    const FolderState state = inspect_output(cfg);
    out.finished = state == FolderState::finished;
    out.resume = out.resume || state == FolderState::resumable;
    if (!out.finished) prepare_output(cfg);
  });
  out.finished = broadcast_flag(c, out.finished, "finished run check");
  return out;
}

// Trains, ending the whole job at once when one rank fails alone or a collective times out.
int train_guarded(Trainer& trainer, dist::Communicator& c, const Paths& paths) {
  try {
    trainer.sync_from_root();
    return trainer.run();
  } catch (const dist::TimeoutError& e) {
    const std::string note =
        path_exists(paths.last) ? " The last good checkpoint is " + paths.last + "." : "";
    std::fprintf(stderr, "\ntrain: %s; ending the job.%s\n", e.what(), note.c_str());
    c.abort(1);
  } catch (const dist::PeerFailed&) {
    throw;  // every rank knows (an agreed failure); each ends normally
  } catch (const std::exception& e) {
    if (c.size() == 1) throw;
    // One rank failed alone: the others would wait for it in their next collective, so end
    // the whole job now (the outputs are written atomically: nothing is left half-written).
    std::fprintf(stderr, "\ntrain: rank %d: error: %s; ending the job\n", c.rank(), e.what());
    c.abort(dynamic_cast<const InputError*>(&e) ? 2 : 1);
  }
  return 1;
}

}  // namespace

// The run as a PyTorch user writes it: device, teacher, model (built and initialized), data,
// then the output folder, optimizer/EMA and resume, then per epoch train and evaluate +
// checkpoint. Under mpirun every rank runs this; rank 0 owns the output folder, the others take
// its state.
int run_training(const Config& cfg, const RunOptions& options) {
  std::unique_ptr<dist::Communicator> mpi = dist::connect(cfg.dist.timeout_seconds);
  const Device device = choose_device(cfg, options, *mpi);
  std::unique_ptr<dist::Communicator> nccl = nccl_communicator(cfg, device, *mpi);
  dist::Communicator& c = nccl ? *nccl : *mpi;
  check_same_config(c, cfg);
  set_up_process(cfg, device, c);
  if (finished_already(cfg, options, c)) return nothing_to_do(cfg, c);
  const Paths paths(cfg.output_dir);
  const bool fresh = c.is_root() && (options.restart || !path_exists(paths.last));
  Parts parts = build_parts(cfg, device, c, /*initialize=*/fresh);
  FolderLock lock;
  const FolderOutcome folder = prepare_folder(cfg, options, c, lock);
  if (folder.finished) return nothing_to_do(cfg, c);  // finished since finished_already looked
  std::unique_ptr<Trainer> trainer;
  dist::agree(c, "building the run", [&] {
    // A checkpoint seen above but gone by the time the folder was locked: start afresh.
    if (c.is_root() && !folder.resume && !fresh) initialize_model(*parts.model, cfg);
    trainer = std::make_unique<Trainer>(cfg, device, c, std::move(parts.model),
                                        std::move(parts.teacher), std::move(parts.data));
    if (folder.resume && c.is_root()) trainer->restore();
  });
  return train_guarded(*trainer, c, paths);
}

}  // namespace scion::train

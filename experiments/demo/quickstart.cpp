// `make demo`: the quickstart on an embedded default that needs no download (Fashion-MNIST from
// Debian's dataset-fashion-mnist). It trains a small ViT teacher, initializes a smaller ViT student
// from it by weight selection, trains that student and a randomly initialized twin with the same
// recipe on a small class-balanced subset, and prints both students' test accuracy per epoch.
// Ctrl-C (or SIGTERM) stops it after the running stage saved its checkpoint (exit 130 / 143);
// the same command then continues where it stopped: finished stages are kept, the interrupted one
// resumes, and the table is the one an uninterrupted run prints.
//   quickstart [--data DIR] [--out DIR] [--teacher-epochs 5] [--student-epochs 6] [--subset 6000]
//              [--teacher-subset 20000] [--val-subset 0] [--precision auto]
// precision auto: bf16 on CPUs whose native bf16 dot products outpace f32 (AMX, AMD's
// AVX512-BF16), f32 elsewhere; the demo prints what it chose.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "core/files.h"
#include "train/trainer.h"

using namespace scion;

namespace {

// The demo's flags.
struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist", out = "runs/quickstart";
  int64_t teacher_epochs = 5, student_epochs = 6, subset = 6000, teacher_subset = 20000,
          val_subset = 0;
  int threads = 0;
  std::string precision = "auto";
};

void add_options(CLI::App& app, Options& o) {
  app.add_option("--data", o.data, "Fashion-MNIST IDX folder");
  app.add_option("--out", o.out, "output folder");
  app.add_option("--teacher-epochs", o.teacher_epochs)->check(CLI::PositiveNumber);
  app.add_option("--student-epochs", o.student_epochs)->check(CLI::PositiveNumber);
  app.add_option("--subset", o.subset, "training images for the students")
      ->check(CLI::PositiveNumber);
  app.add_option("--teacher-subset", o.teacher_subset, "training images for the teacher")
      ->check(CLI::PositiveNumber);
  app.add_option("--val-subset", o.val_subset, "test images to evaluate on (0: all 10,000)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", o.threads, "threads (0: the cores other jobs leave free)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--precision", o.precision, "f32|bf16|auto (bf16 where this CPU has it natively)")
      ->check(CLI::IsMember({"f32", "bf16", "auto"}));
}

// The recipe all three stages share, in `precision` (resolved: f32 or bf16).
train::Config base_config(const Options& o, const std::string& precision) {
  train::Config c;
  c.source = "quickstart";
  c.seed = 0;
  c.threads = o.threads;
  c.model.name = "vit_tiny";
  c.model.img_size = 28;
  c.model.patch_size = 4;
  c.model.in_chans = 1;
  c.model.num_classes = 10;
  c.data.dataset = "fashion_mnist";
  c.data.val_subset = o.val_subset;
  c.data.root = o.data;
  c.data.mean = {0.2860f, 0.2860f, 0.2860f};
  c.data.std = {0.3530f, 0.3530f, 0.3530f};
  c.data.augment.crop = "random_crop";
  c.data.augment.padding = 2;
  c.data.augment.crop_pct = 1.0;
  c.data.augment.label_smoothing = 0.1;
  c.train.batch_size = 128;
  c.train.optimizer.lr = 1e-3;
  c.train.optimizer.weight_decay = 0.05;
  c.train.schedule.warmup_epochs = 1;
  c.train.schedule.min_lr = 1e-5;
  c.train.precision = precision;  // resolved once by main (choose_precision), which says why
  c.train.clip_grad = 1.0;
  return c;
}

// The precision the stages train in and why ("" when nothing needs saying): auto is bf16 where
// this CPU's bf16 dot products outpace f32, else f32; bf16 as given notes where f32 is faster.
std::pair<std::string, std::string> choose_precision(const std::string& precision) {
  if (precision == "auto") return train::auto_precision("cpu");
  if (precision == "bf16") return {"bf16", train::slower_bf16_note("cpu")};
  return {precision, ""};
}

std::vector<nlohmann::json> read_metrics(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

bool exists(const std::string& path) {
  return std::ifstream(path).good();
}

// One stage of the demo: a training run in its own folder. A finished stage is kept (its
// summary.json is written last); an interrupted one resumes from its last.safetensors; a stage
// whose settings changed, or that depends on a stage trained again in this invocation, starts over
// with the old outputs moved aside. Returns the stage's exit status (128 + signal when stopped).
struct Stages {
  bool upstream_changed = false;  // an earlier stage trained in this invocation

  int run(const train::Config& c, const char* title, bool depends_on_upstream) {
    std::printf("== %s\n", title);
    std::fflush(stdout);
    const std::string last = c.output_dir + "/last.safetensors";
    bool start_over = depends_on_upstream && upstream_changed;
    if (!start_over && exists(last)) {
      try {
        train::check_resumable(c, last);
      } catch (const InputError& e) {
        std::printf("(settings differ from the earlier run in %s; starting this stage over)\n",
                    c.output_dir.c_str());
        start_over = true;
      }
    }
    if (start_over) {
      // run_training moves the old outputs aside (--restart)
    } else if (exists(c.output_dir + "/summary.json")) {
      std::printf("(done earlier: kept %s)\n", c.output_dir.c_str());
      return 0;
    } else if (exists(last)) {
      std::printf("(continuing the interrupted run in %s)\n", c.output_dir.c_str());
    }
    upstream_changed = true;
    std::fflush(stdout);
    // Resumes when last.safetensors is there.
    int status = train::run_training(c, {/*resume=*/false, /*restart=*/start_over});
    if (status == 0 && train::interrupted() != 0) status = 128 + train::interrupted();
    return status;
  }
};

// Teacher: ViT with embed 192, depth 6 (3 heads), patch 4 on 28 px (49 tokens).
train::Config teacher_config(const Options& o, const std::string& precision) {
  train::Config t = base_config(o, precision);
  t.output_dir = o.out + "/teacher";
  t.model.embed_dim = 192;
  t.model.depth = 6;
  t.model.num_heads = 3;
  t.data.train_subset = o.teacher_subset;
  t.train.epochs = o.teacher_epochs;
  return t;
}

// Students: embed 96, depth 3 (3 heads of 32), same recipe, on a small subset; initialized by
// weight selection from the teacher's best weights, or randomly (timm's trunc-normal).
train::Config student_config(const Options& o, const std::string& precision, bool selected) {
  train::Config s = base_config(o, precision);
  s.model.embed_dim = 96;
  s.model.depth = 3;
  s.model.num_heads = 3;
  s.data.train_subset = o.subset;
  s.train.epochs = o.student_epochs;
  if (selected) {
    s.output_dir = o.out + "/student_wsel";
    s.init.type = "weight_selection";
    s.init.teacher = o.out + "/teacher/best.safetensors";
  } else {
    s.output_dir = o.out + "/student_random";
  }
  return s;
}

// Stops the demo after a failed or interrupted stage, saying how to go on.
int stop(int status, const char* stage) {
  if (status > 128)
    std::printf(
        "\nquickstart: interrupted during %s; its progress is saved. Run the same command "
        "(make demo) again to continue where it stopped.\n",
        stage);
  else
    std::fprintf(stderr, "quickstart: %s failed (exit status %d)\n", stage, status);
  return status;
}

// The students' test top-1 per epoch side by side, and the teacher's.
void print_table(const Options& o, const train::Config& teacher, const train::Config& random,
                 const train::Config& wsel) {
  auto a = read_metrics(random.output_dir), b = read_metrics(wsel.output_dir);
  std::printf(
      "\nFashion-MNIST test top-1 of a ViT student (embed 96, 3 blocks) trained on %lld "
      "images:\n\n",
      (long long)o.subset);
  std::printf("| epoch | random init | weight selection |\n|---|---|---|\n");
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    std::printf("| %zu | %.2f%% | %.2f%% |\n", i + 1, a[i]["val_acc1"].get<double>(),
                b[i]["val_acc1"].get<double>());
  nlohmann::json t = read_metrics(teacher.output_dir).back();
  std::printf("\n(teacher: %.2f%% after %lld epochs)\n", t["val_acc1"].get<double>(),
              (long long)t["epoch"].get<int64_t>());
}

// The demo: its folder locked for its life (each stage's run folder is locked too), the
// precision stated, the three stages in order, then the table.
int run_demo(const Options& o) {
  make_dirs(o.out, "--out");
  FolderLock lock = FolderLock::acquire(o.out, "quickstart folder");
  const auto [prec, why] = choose_precision(o.precision);
  std::printf("quickstart: precision %s%s%s%s\n", prec.c_str(), why.empty() ? "" : " (",
              why.c_str(), why.empty() ? "" : ")");
  const train::Config teacher = teacher_config(o, prec), wsel = student_config(o, prec, true),
                      random = student_config(o, prec, false);
  Stages stages;
  char title[160];
  std::snprintf(title, sizeof title, "1/3 teacher: ViT 192 x 6 blocks, %lld epochs on %lld images",
                (long long)o.teacher_epochs, (long long)o.teacher_subset);
  if (int st = stages.run(teacher, title, false)) return stop(st, "stage 1/3 (teacher)");
  if (int st = stages.run(
          wsel, "2/3 student (96 x 3 blocks) initialized by weight selection from the teacher",
          true))
    return stop(st, "stage 2/3 (weight-selection student)");
  if (int st = stages.run(
          random, "3/3 the same student from random (timm trunc-normal) initialization", true))
    return stop(st, "stage 3/3 (random-init student)");
  print_table(o, teacher, random, wsel);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  train::take_stop_signals();  // before any thread exists (train/signals.h)
  CLI::App app{"scion quickstart: weight selection vs random init on Fashion-MNIST"};
  Options o;
  add_options(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return run_demo(o);
  } catch (const InputError& e) {
    std::fprintf(stderr, "quickstart: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quickstart: error: %s\n", e.what());
    return 1;
  }
}

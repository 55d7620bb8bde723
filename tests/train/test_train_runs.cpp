// The train program on real data (a CIFAR-10 JPEG subset from ../shared/data, a 2-block ViT):
// the loss falls; a run killed with SIGKILL after epoch 1 and resumed writes the same metrics as an
// uninterrupted run (timing fields aside); SIGTERM mid-epoch saves, exits 143 and resumes exactly;
// a non-finite loss stops with status 1 and keeps the last good checkpoint; a checkpoint read
// after a kill is always complete.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/data/support_data.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;
using json = nlohmann::json;

namespace {

const std::string kConfig = R"(seed: 3
threads: 2
model: {name: vit_tiny, img_size: 32, patch_size: 8, num_classes: 10, depth: 2, embed_dim: 64, num_heads: 2, drop_path: 0.1}
data:
  dataset: image_folder
  root: ROOT
  val_split: test
  train_subset: 1280
  val_subset: 200
  workers: 2
  augment: {crop: random_crop, padding: 4, label_smoothing: 0.1, randaugment: rand-m9-mstd0.5-inc1, mixup: 0.8, cutmix: 1.0, reprob: 0.25}
train:
  epochs: 3
  batch_size: 64
  optimizer: {type: adamw, lr: 2.0e-3, weight_decay: 0.05}
  schedule: {type: cosine, warmup_epochs: 1, min_lr: 1.0e-5}
  ema: {decay: 0.9}
  log_interval: 5
)";

std::string config_file() {
  std::string text = kConfig;
  text.replace(text.find("ROOT"), 4, test::shared_data("cifar10-jpg"));
  std::string path = test::tmp() + "/scion_train_test.yaml";
  std::ofstream(path) << text;
  return path;
}

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  return test::spawn_program("train", args, log);
}

using test::wait_status;

int run(const std::vector<std::string>& args,
        const std::string& log = test::tmp() + "/scion_train_test.log") {
  return wait_status(spawn(args, log));
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

void strip_timing(std::vector<json>& ms) {
  for (auto& m : ms) {
    m.erase("epoch_seconds");
    m.erase("images_per_second");
    m.erase("val_seconds");
  }
}

// A resumed run's metrics equal the uninterrupted run's, epoch by epoch, timing fields aside.
void check_same_metrics(std::vector<json> a, std::vector<json> b) {
  strip_timing(a);
  strip_timing(b);
  REQUIRE(b.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("epoch " << i + 1 << ": " << a[i].dump() << " vs " << b[i].dump());
    CHECK(a[i] == b[i]);
  }
}

bool have_data() {
  SCION_REQUIRE_DATA(test::shared_data("cifar10-jpg"));
  return true;
}

}  // namespace

TEST_CASE("train: a short real run learns, and a SIGKILLed run resumes to the same metrics",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string cfg = config_file();
  REQUIRE(run({"--config", cfg, "--output-dir", test::tmp() + "/scion_run_a"}) == 0);
  std::vector<json> a = test::read_metrics(test::tmp() + "/scion_run_a");
  REQUIRE(a.size() == 3);
  CHECK(a[2]["train_loss"].get<double>() < a[0]["train_loss"].get<double>());
  CHECK(a[2]["val_loss"].get<double>() < a[0]["val_loss"].get<double>());
  CHECK(a[0].contains("ema_val_acc1"));
  for (const char* f : {"config.yaml", "last.safetensors", "best.safetensors", "summary.json"})
    CHECK(test::exists(std::string(test::tmp() + "/scion_run_a/") + f));
  json summary = json::parse(std::ifstream(test::tmp() + "/scion_run_a/summary.json"));
  CHECK(summary["epochs"] == 3);
  // best.safetensors holds model weights only, with timm keys.
  SafetensorsFile best = SafetensorsFile::open(test::tmp() + "/scion_run_a/best.safetensors");
  CHECK(best.contains("blocks.1.attn.qkv.weight"));
  CHECK_FALSE(best.contains("optim.head.weight.exp_avg"));

  // Run B: killed (SIGKILL) as soon as epoch 1 is recorded, then restarted (auto-resume).
  pid_t pid = spawn({"--config", cfg, "--output-dir", test::tmp() + "/scion_run_b"},
                    test::tmp() + "/scion_train_b.log");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (count_lines(test::tmp() + "/scion_run_b/metrics.jsonl") < 1 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGKILL);
  wait_status(pid);
  SafetensorsFile ck =
      SafetensorsFile::open(test::tmp() + "/scion_run_b/last.safetensors");  // complete
  CHECK(ck.metadata().at("epoch") == "1");
  REQUIRE(run({"--config", cfg, "--output-dir", test::tmp() + "/scion_run_b"},
              test::tmp() + "/scion_train_b2.log") == 0);
  check_same_metrics(a, test::read_metrics(test::tmp() + "/scion_run_b"));
}

namespace {

// A run small enough for `make test-arm64` to afford under emulation: 3 epochs of 6 batches.
std::string tiny_config(const std::string& dir, const std::string& init = "") {
  const std::string path = dir + "/tiny.yaml";
  std::ofstream(path) << R"(seed: 5
threads: 2
model: {name: vit_tiny, img_size: 32, patch_size: 8, num_classes: 10, depth: 1, embed_dim: 32, num_heads: 2}
data: {dataset: image_folder, root: )"
                      << test::shared_data("cifar10-jpg")
                      << R"(, val_split: test, train_subset: 384, val_subset: 128}
train:
  epochs: 3
  batch_size: 64
  optimizer: {type: adamw, lr: 2.0e-3}
  schedule: {type: cosine, warmup_epochs: 1}
)" << init;
  return path;
}

// Starts `args`, kills it (SIGKILL) as soon as its first epoch is recorded in `out`, and checks
// that the checkpoint left behind is epoch 1's.
void kill_after_first_epoch(const std::vector<std::string>& args, const std::string& out,
                            const std::string& log) {
  pid_t pid = spawn(args, log);
  while (count_lines(out + "/metrics.jsonl") < 1 && waitpid(pid, nullptr, WNOHANG) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGKILL);
  wait_status(pid);
  CHECK(SafetensorsFile::open(out + "/last.safetensors").metadata().at("epoch") == "1");
}

}  // namespace

TEST_CASE("train: a tiny run killed after its first epoch resumes to the same metrics",
          "[train][runs]") {
  REQUIRE(have_data());
  const std::string dir = test::temp_dir(), cfg = tiny_config(dir);
  REQUIRE(run({"--config", cfg, "--output-dir", dir + "/a"}, dir + "/a.log") == 0);
  std::vector<json> a = test::read_metrics(dir + "/a");
  REQUIRE(a.size() == 3);
  kill_after_first_epoch({"--config", cfg, "--output-dir", dir + "/b"}, dir + "/b", dir + "/b.log");
  REQUIRE(run({"--config", cfg, "--output-dir", dir + "/b"}, dir + "/b2.log") == 0);
  check_same_metrics(a, test::read_metrics(dir + "/b"));
}

// The teacher file is needed to start a weight-selection run, never to resume one (the checkpoint
// holds every weight): a run resumed after its teacher was moved away matches the uninterrupted
// run, and a run started without it, with an unreadable one or without its data exits 2 naming
// what is wrong, with nothing written or moved aside.
TEST_CASE("train: a run from a teacher resumes without its file, and cannot start without it",
          "[train][runs]") {
  REQUIRE(have_data());
  const std::string dir = test::temp_dir(), teacher = dir + "/teacher.safetensors";
  REQUIRE(
      test::wait_status(test::spawn_program(
          "scion",
          {"init", "--model", "vit_tiny", "--set", "model.img_size=32", "--set",
           "model.patch_size=8", "--set", "model.num_classes=10", "--set", "model.depth=2", "--set",
           "model.embed_dim=64", "--set", "model.num_heads=2", "--seed", "7", "--out", teacher},
          dir + "/init.log")) == 0);
  const std::string cfg = tiny_config(
      dir, "init: {type: weight_selection, teacher: " + teacher + ", layers: uniform}\n");
  REQUIRE(run({"--config", cfg, "--output-dir", dir + "/a"}, dir + "/a.log") == 0);
  std::vector<json> a = test::read_metrics(dir + "/a");
  REQUIRE(a.size() == 3);
  kill_after_first_epoch({"--config", cfg, "--output-dir", dir + "/b"}, dir + "/b", dir + "/b.log");
  REQUIRE(std::rename(teacher.c_str(), (teacher + ".away").c_str()) == 0);
  CHECK(run({"--config", cfg, "--output-dir", dir + "/b"}, dir + "/b2.log") == 0);
  INFO(test::read_text(dir + "/b2.log"));
  check_same_metrics(a, test::read_metrics(dir + "/b"));
  // Finished, it is recognized before anything is built: rerunning it needs neither the teacher
  // nor the data, and touches nothing.
  const std::string summary = test::read_text(dir + "/b/summary.json");
  CHECK(run({"--config", cfg, "--output-dir", dir + "/b", "--set", "data.root=" + dir + "/gone"},
            dir + "/b3.log") == 0);
  CHECK(test::read_text(dir + "/b3.log").find("nothing to do") != std::string::npos);
  CHECK(test::read_text(dir + "/b/summary.json") == summary);
  // A fresh run needs it: exit 2 before anything is written.
  CHECK(run({"--config", cfg, "--output-dir", dir + "/c"}, dir + "/c.log") == 2);
  const std::string log = test::read_text(dir + "/c.log");
  INFO(log);
  CHECK(log.find("init.teacher: weight file " + teacher + " not found") != std::string::npos);
  CHECK_FALSE(test::exists(dir + "/c"));
  // As does --restart of a finished run, which would start afresh: exit 2, nothing moved aside;
  // and so does one with a missing data folder, with the teacher back.
  CHECK(run({"--config", cfg, "--output-dir", dir + "/b", "--restart"}, dir + "/d.log") == 2);
  CHECK(test::read_text(dir + "/d.log").find("init.teacher") != std::string::npos);
  REQUIRE(std::rename((teacher + ".away").c_str(), teacher.c_str()) == 0);
  CHECK(run({"--config", cfg, "--output-dir", dir + "/b", "--restart", "--set",
             "data.root=" + dir + "/no_data"},
            dir + "/e.log") == 2);
  CHECK(test::read_text(dir + "/e.log").find(dir + "/no_data") != std::string::npos);
  // And one whose teacher is there but unreadable: the selection fails before the folder is
  // touched.
  const std::string bad = dir + "/bad.safetensors";
  std::ofstream(bad) << "not a safetensors file";
  CHECK(run({"--config", cfg, "--output-dir", dir + "/b", "--restart", "--set",
             "init.teacher=" + bad},
            dir + "/g.log") == 2);
  CHECK(test::read_text(dir + "/g.log").find(bad) != std::string::npos);
  CHECK(test::exists(dir + "/b/last.safetensors"));
  CHECK(test::exists(dir + "/b/summary.json"));
}

// What the model and the loaders reject stops a run before it writes anything, naming the key.
TEST_CASE("train: a model or batch the config cannot build exits 2 naming the key, nothing written",
          "[train][runs]") {
  REQUIRE(have_data());
  const std::string dir = test::temp_dir(), cfg = tiny_config(dir);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.num_heads=3", "model.num_heads: embed_dim 32 is not divisible by num_heads 3"},
      {"train.accum_steps=7", "train.accum_steps 7 exceeds the 6 batches of an epoch"},
      {"data.train_subset=50", "has 50 images (data.train_subset), fewer than one batch"}};
  for (const auto& [set, message] : cases) {
    INFO(set);
    const std::string out = dir + "/run", log = dir + "/" + set + ".log";
    CHECK(run({"--config", cfg, "--output-dir", out, "--set", set}, log) == 2);
    CHECK(test::read_text(log).find(message) != std::string::npos);
    CHECK_FALSE(test::exists(out));
  }
  // --print-config checks the model too.
  CHECK(run({"--config", cfg, "--print-config", "--set", cases[0].first}, dir + "/p.log") == 2);
  CHECK(test::read_text(dir + "/p.log").find(cases[0].second) != std::string::npos);
}

TEST_CASE("train: SIGTERM mid-epoch saves a checkpoint and the resumed run matches",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string cfg = config_file();
  std::vector<std::string> two = {"--config",       cfg,     "--set",
                                  "train.epochs=2", "--set", "train.ema.decay=0"};
  auto with_dir = [&](const std::string& d) {
    auto v = two;
    v.push_back("--output-dir");
    v.push_back(d);
    return v;
  };
  REQUIRE(run(with_dir(test::tmp() + "/scion_run_c")) == 0);
  pid_t pid = spawn(with_dir(test::tmp() + "/scion_run_d"), test::tmp() + "/scion_train_d.log");
  // Wait for the first progress line of epoch 2 (non-terminal output), then ask it to stop.
  REQUIRE(test::wait_for_text(test::tmp() + "/scion_train_d.log", "epoch 2/2 step 5/", 120));
  kill(pid, SIGTERM);
  CHECK(wait_status(pid) == 128 + SIGTERM);
  SafetensorsFile ck = SafetensorsFile::open(test::tmp() + "/scion_run_d/last.safetensors");
  CHECK(ck.metadata().at("epoch") == "1");
  CHECK(std::stoi(ck.metadata().at("batch_in_epoch")) > 0);
  REQUIRE(run(with_dir(test::tmp() + "/scion_run_d")) == 0);
  std::vector<json> c = test::read_metrics(test::tmp() + "/scion_run_c"),
                    d = test::read_metrics(test::tmp() + "/scion_run_d");
  strip_timing(c);
  strip_timing(d);
  REQUIRE(d.size() == 2);
  CHECK(c == d);
}

TEST_CASE("train: off a terminal, progress lines with an ETA come every train.progress_seconds",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string dir = test::temp_dir();
  // log_interval out of reach: every line below comes from the time-based progress.
  REQUIRE(run({"--config", config_file(), "--set", "train.epochs=1", "--set",
               "train.log_interval=1000000", "--set", "train.progress_seconds=0", "--output-dir",
               dir + "/run"},
              dir + "/log.txt") == 0);
  std::string text = test::read_text(dir + "/log.txt");
  INFO(text);
  // 1280 images in batches of 64: a line after each of the 20 steps, none rewritten in place.
  for (int step = 1; step <= 20; ++step)
    CHECK(text.find("epoch 1/1 step " + std::to_string(step) + "/20 ") != std::string::npos);
  CHECK(text.find(" ETA ") != std::string::npos);
  CHECK(text.find('\r') == std::string::npos);
}

TEST_CASE("train: a non-finite loss stops with status 1 and names no checkpoint it did not write",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string dir = test::temp_dir();
  // An absurd learning rate from the first step: the loss turns non-finite in epoch 1.
  int status =
      run({"--config", config_file(), "--set", "train.epochs=2", "--set", "train.optimizer.lr=1e30",
           "--set", "train.schedule.type=constant", "--output-dir", dir + "/run"},
          dir + "/log.txt");
  CHECK(status == 1);
  std::ifstream in(dir + "/log.txt");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(text);
  CHECK(text.find("non-finite loss") != std::string::npos);
  CHECK(text.find("No checkpoint was written") != std::string::npos);
  CHECK_FALSE(test::exists(dir + "/run/last.safetensors"));
}

TEST_CASE("train: bad config and missing data exit 2 with the file or key named", "[train][runs]") {
  std::string path = test::tmp() + "/scion_bad_train.yaml";
  std::ofstream(path) << "data: {dataset: cifar100, root: /nonexistent/cifar100}\n";
  CHECK(run({"--config", path, "--output-dir", test::tmp() + "/scion_run_f"},
            test::tmp() + "/scion_train_f.log") == 2);
  std::ifstream in(test::tmp() + "/scion_train_f.log");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("/nonexistent/cifar100") != std::string::npos);
  CHECK(text.find("download.sh") != std::string::npos);
  CHECK_FALSE(test::exists(test::tmp() + "/scion_run_f"));  // nothing written
  CHECK(run({"--config", path, "--set", "train.epochz=1"}, test::tmp() + "/scion_train_g.log") ==
        2);
  CHECK(run({"--config", "/nonexistent.yaml"}, test::tmp() + "/scion_train_h.log") == 2);
}

TEST_CASE("train: knowledge distillation from a trained teacher", "[train][runs]") {
  REQUIRE(have_data());
  std::string cfg = config_file();
  // Teacher: the test model trained for 2 epochs; then a student distilled from it and one not.
  REQUIRE(run({"--config", cfg, "--set", "train.epochs=2", "--output-dir",
               test::tmp() + "/scion_run_t"}) == 0);
  std::vector<std::string> student = {
      "--config",         cfg, "--set", "train.epochs=1", "--set", "model.depth=1", "--set",
      "train.ema.decay=0"};
  auto with = [&](std::vector<std::string> extra, const std::string& dir) {
    auto v = student;
    v.insert(v.end(), extra.begin(), extra.end());
    v.push_back("--output-dir");
    v.push_back(dir);
    return v;
  };
  REQUIRE(
      run(with({"--set", "train.distill.teacher=" + test::tmp() + "/scion_run_t/best.safetensors",
                "--set", "train.distill.model=vit_tiny", "--set", "train.distill.alpha=0.7",
                "--set", "train.distill.temperature=2"},
               test::tmp() + "/scion_run_s"),
          test::tmp() + "/scion_train_s.log") == 0);
  REQUIRE(run(with({}, test::tmp() + "/scion_run_n"), test::tmp() + "/scion_train_n.log") == 0);
  std::vector<json> s = test::read_metrics(test::tmp() + "/scion_run_s"),
                    n = test::read_metrics(test::tmp() + "/scion_run_n");
  REQUIRE(s.size() == 1);
  REQUIRE(n.size() == 1);
  CHECK(std::isfinite(s[0]["train_loss"].get<double>()));
  CHECK(s[0]["train_loss"] != n[0]["train_loss"]);  // the distillation term changes the objective
  // A teacher of the wrong architecture is named in a clear error (exit status 2).
  CHECK(run(with({"--set", "train.distill.teacher=" + test::tmp() + "/scion_run_t/best.safetensors",
                  "--set", "train.distill.model=vit_small"},
                 test::tmp() + "/scion_run_x"),
            test::tmp() + "/scion_train_x.log") == 2);
}

TEST_CASE("scion eval on a run's best.safetensors reproduces the run's logged validation numbers",
          "[train][runs][programs]") {
  REQUIRE(have_data());
  // CIFAR statistics, native 32 px (crop_pct 1.0), bf16: none of them scion eval's defaults.
  std::string dir = test::temp_dir();
  std::string root = test::shared_data("cifar10-jpg");
  std::ofstream(dir + "/c.yaml") << R"(seed: 1
threads: 2
model: {name: vit_tiny, img_size: 32, patch_size: 8, num_classes: 10, depth: 1, embed_dim: 32, num_heads: 2}
data:
  dataset: image_folder
  root: )" << root << R"(
  val_split: test
  train_subset: 640
  mean: [0.4914, 0.4822, 0.4465]
  std: [0.2470, 0.2435, 0.2616]
  augment: {crop: random_crop, padding: 4, crop_pct: 1.0, interpolation: bilinear}
train:
  epochs: 1
  batch_size: 64
  precision: bf16
  optimizer: {type: adamw, lr: 2.0e-3}
)";
  REQUIRE(run({"--config", dir + "/c.yaml", "--output-dir", dir + "/run"}, dir + "/train.log") ==
          0);
  json logged = test::read_metrics(dir + "/run")[0];
  // The run's thread count: with "all cores" the count follows the machine's load, and per-thread
  // partial sums are added in thread order.
  std::string cmd = test::program_command("scion") + " eval --weights " + dir +
                    "/run/best.safetensors --data image_folder --root " + root +
                    " --split test --threads 2 > " + dir + "/eval.log 2>&1";
  REQUIRE(WEXITSTATUS(std::system(cmd.c_str())) == 0);
  std::ifstream in(dir + "/eval.log");
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(out);
  json ev = json::parse(out.substr(out.rfind('{')));
  CHECK(ev["images"] == 10000);
  CHECK(ev["acc1"].get<double>() == logged["val_acc1"].get<double>());
  CHECK(ev["acc5"].get<double>() == logged["val_acc5"].get<double>());
  CHECK(std::fabs(ev["loss"].get<double>() - logged["val_loss"].get<double>()) <=
        1e-9 * logged["val_loss"].get<double>());
  // It says what it used.
  CHECK(out.find("crop_pct 1") != std::string::npos);
  CHECK(out.find("0.4914") != std::string::npos);
  CHECK(out.find("bilinear") != std::string::npos);
  CHECK(out.find("bf16") != std::string::npos);
  // A flag overrides the metadata: f32 evaluation of the same weights is (slightly) different.
  std::string f32 = test::program_command("scion") + " eval --weights " + dir +
                    "/run/best.safetensors --data image_folder --root " + root +
                    " --split test --precision f32 --limit 500 2>&1 | grep -c ', f32, batch 64'";
  CHECK(WEXITSTATUS(std::system((f32 + " > /dev/null").c_str())) == 0);
}

TEST_CASE("train: a diverged run (NaN logits) is a failed evaluation, never a 100% best",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string dir = test::temp_dir();
  int st =
      run({"--config", config_file(), "--set", "train.epochs=1", "--set", "train.optimizer.lr=1e30",
           "--set", "train.ema.decay=0", "--output-dir", dir + "/run"},
          dir + "/log.txt");
  std::ifstream in(dir + "/log.txt");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(log);
  CHECK(st == 1);
  CHECK(log.find("non-finite") != std::string::npos);
  CHECK_FALSE(test::exists(dir + "/run/best.safetensors"));
  CHECK_FALSE(test::exists(dir + "/run/summary.json"));
  CHECK(log.find("acc1 100") == std::string::npos);
}

TEST_CASE("train: a different config never resumes silently, and --restart moves the old run aside",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string dir = test::temp_dir(), out = dir + "/run";
  std::vector<std::string> base = {
      "--config", config_file(),           "--set",        "train.epochs=1",
      "--set",    "data.train_subset=320", "--output-dir", out};
  REQUIRE(run(base, dir + "/a.log") == 0);
  std::ifstream c0(out + "/config.yaml");
  std::string config_before((std::istreambuf_iterator<char>(c0)), std::istreambuf_iterator<char>());
  auto with = [&](std::vector<std::string> extra) {
    auto v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  // Another learning rate and batch size: exit 2, the keys named, nothing touched.
  CHECK(run(with({"--set", "train.optimizer.lr=0.01", "--set", "train.batch_size=32"}),
            dir + "/b.log") == 2);
  std::ifstream in(dir + "/b.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(log.find("train.optimizer.lr") != std::string::npos);
  CHECK(log.find("train.batch_size") != std::string::npos);
  CHECK(log.find("--restart") != std::string::npos);
  std::ifstream c1(out + "/config.yaml");
  std::string config_after((std::istreambuf_iterator<char>(c1)), std::istreambuf_iterator<char>());
  CHECK(config_after == config_before);
  CHECK(test::read_metrics(out).size() == 1);
  // Keys that may change on resume: more epochs, threads, workers.
  CHECK(run(with({"--set", "train.epochs=2", "--set", "threads=1", "--set", "data.workers=1"}),
            dir + "/c.log") == 0);
  CHECK(test::read_metrics(out).size() == 2);
  // --restart: the old run is kept in replaced-<time>/, the new one starts at epoch 1.
  CHECK(run(with({"--set", "train.optimizer.lr=0.01", "--restart"}), dir + "/d.log") == 0);
  CHECK(test::read_metrics(out).size() == 1);
  CHECK(std::system(("ls -d " + out + "/replaced-*/metrics.jsonl > /dev/null").c_str()) == 0);
}

TEST_CASE("train: tampered checkpoint metadata is an input error naming the file and field",
          "[train][runs]") {
  REQUIRE(have_data());
  std::string dir = test::temp_dir(), out = dir + "/run";
  std::vector<std::string> args = {"--config",     config_file(),
                                   "--set",        "train.epochs=2",
                                   "--set",        "train.ema.decay=0",
                                   "--set",        "data.train_subset=320",
                                   "--output-dir", out};
  REQUIRE(run({"--config", config_file(), "--set", "train.epochs=1", "--set", "train.ema.decay=0",
               "--set", "data.train_subset=320", "--output-dir", out},
              dir + "/a.log") == 0);
  const std::string last = out + "/last.safetensors";
  std::map<std::string, std::string> good;
  NamedTensors tensors;
  {
    SafetensorsFile f = SafetensorsFile::open(last);
    good = f.metadata();
    for (const auto& n : f.names()) tensors.emplace_back(n, f.get(n).clone());
  }
  struct Case {
    const char* field;
    const char* value;  // nullptr: remove the field
    const char* expect;
  };
  for (const Case& c :
       {Case{"epoch", "-5", "out of range"}, Case{"epoch", "one", "integer"},
        Case{"batch_in_epoch", "1000000", "out of range"},
        Case{"best_val_acc1", nullptr, "missing"}, Case{"metrics", "{not json", "not valid JSON"},
        Case{"metrics", "[]", "epoch records"}, Case{"wall_seconds", "nan", "expected a number"}}) {
    INFO(c.field << " = " << (c.value ? c.value : "(removed)"));
    auto meta = good;
    if (c.value)
      meta[c.field] = c.value;
    else
      meta.erase(c.field);
    save_safetensors(last, tensors, meta);
    CHECK(run(args, dir + "/b.log") == 2);
    std::ifstream in(dir + "/b.log");
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(log.find(last) != std::string::npos);
    CHECK(log.find(std::string("'") + c.field + "'") != std::string::npos);
    CHECK(log.find(c.expect) != std::string::npos);
  }
  save_safetensors(last, tensors, good);  // intact again: it resumes
  CHECK(run(args, dir + "/c.log") == 0);
  CHECK(test::read_metrics(out).size() == 2);
}

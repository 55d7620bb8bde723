// Data-parallel training end to end, as a user launches it: `mpirun -np 2 train --config C.yaml`
// on real data (a CIFAR-10 JPEG subset, a 2-block ViT with RandAugment, Mixup/CutMix, drop path,
// EMA and gradient accumulation) writes the metrics of the one-process run; a killed rank ends
// the job with the last checkpoint intact, and one process resumes it; a rank that stops
// responding ends the job after dist.timeout_seconds; ranks with different configs and a batch
// that does not split evenly are input errors.
#include <dirent.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/files.h"
#include "core/safetensors.h"
#include "tests/data/support_data.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;
using json = nlohmann::json;

namespace {

const std::string kConfig = R"(seed: 5
threads: 0
model: {name: vit_tiny, img_size: 32, patch_size: 8, num_classes: 10, depth: 2, embed_dim: 64, num_heads: 2, drop_path: 0.1}
data:
  dataset: image_folder
  root: ROOT
  val_split: test
  train_subset: 1280
  val_subset: 250
  workers: 1
  augment: {crop: random_crop, padding: 4, label_smoothing: 0.1, randaugment: rand-m9-mstd0.5-inc1, mixup: 0.8, cutmix: 1.0, reprob: 0.25}
train:
  epochs: 3
  batch_size: 32
  accum_steps: 2
  optimizer: {type: adamw, lr: 2.0e-3, weight_decay: 0.05}
  schedule: {type: cosine, warmup_epochs: 1, min_lr: 1.0e-5}
  ema: {decay: 0.9}
  clip_grad: 1.0
  progress_seconds: 0
)";

std::string config_file() {
  static const std::string path = [] {
    std::string text = kConfig;
    text.replace(text.find("ROOT"), 4, test::shared_data("cifar10-jpg"));
    std::string p = test::tmp() + "/scion_dist_test.yaml";
    std::ofstream(p) << text;
    return p;
  }();
  return path;
}

// mpirun with the flags CI needs (root, more ranks than cores; no core binding and no
// cross-process single copy, which containers often forbid), and no leak checking in the ranks
// under `make sanitize` (Open MPI's components leave allocations LeakSanitizer cannot attribute;
// ASan and UBSan stay on).
std::vector<std::string> mpirun_args(int np) {
  return {"--oversubscribe",
          "--allow-run-as-root",
          "--bind-to",
          "none",
          "--mca",
          "btl_vader_single_copy_mechanism",
          "none",
          "-x",
          "LSAN_OPTIONS=detect_leaks=0",
          "-np",
          std::to_string(np)};
}

pid_t spawn_job(int np, const std::vector<std::string>& train_args, const std::string& log) {
  std::vector<std::string> args = mpirun_args(np);
  args.push_back(std::string(SCION_BINARY_DIR) + "/train");
  args.insert(args.end(), train_args.begin(), train_args.end());
  return test::spawn_executable(SCION_MPIEXEC, args, log);
}

int run_job(int np, const std::vector<std::string>& train_args, const std::string& log) {
  return test::wait_status(spawn_job(np, train_args, log));
}

int run_single(const std::vector<std::string>& args, const std::string& log) {
  return test::wait_status(test::spawn_program("train", args, log));
}

// The pid of rank `rank` of the job writing to `output_dir` (its environment names the rank).
pid_t rank_pid(int rank, const std::string& output_dir) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  DIR* d = opendir("/proc");
  pid_t found = -1;
  while (dirent* e = readdir(d)) {
    const pid_t pid = pid_t(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::string base = std::string("/proc/") + e->d_name;
    std::string cmd = test::read_text(base + "/cmdline"), env = test::read_text(base + "/environ");
    if (cmd.find(output_dir) == std::string::npos || cmd.find("mpirun") != std::string::npos)
      continue;
    for (size_t at = 0; at < env.size(); at = env.find('\0', at) + 1) {
      if (env.compare(at, want.size() + 1, want + '\0') == 0) found = pid;
      if (env.find('\0', at) == std::string::npos) break;
    }
  }
  closedir(d);
  return found;
}

// Losses within 1e-4 relative, accuracies identical: the ranks sum the same numbers as one
// process, only in another order (float rounding, ~1e-7 per step), which can move a loss in its
// 6th digit over a few hundred steps but flips no prediction here.
void check_same_training(const std::vector<json>& a, const std::vector<json>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t e = 0; e < a.size(); ++e) {
    INFO("epoch " << e + 1);
    CHECK(a[e]["step"] == b[e]["step"]);
    CHECK(a[e]["lr"].get<double>() == Approx(b[e]["lr"].get<double>()).epsilon(1e-12));
    for (const char* k : {"train_loss", "val_loss", "ema_val_loss"}) {
      INFO(k);
      CHECK(b[e][k].get<double>() == Approx(a[e][k].get<double>()).epsilon(1e-4));
    }
    for (const char* k : {"val_acc1", "val_acc5", "ema_val_acc1", "ema_val_acc5"}) {
      INFO(k);
      CHECK(b[e][k].get<double>() == a[e][k].get<double>());
    }
  }
}

// The one-process run every case compares with (trained once).
const std::vector<json>& reference_metrics() {
  static const std::vector<json> m = [] {
    const std::string out = test::tmp() + "/scion_dist_ref";
    REQUIRE(run_single({"--config", config_file(), "--output-dir", out, "--restart"},
                       out + ".log") == 0);
    return test::read_metrics(out);
  }();
  return m;
}

}  // namespace

TEST_CASE("dist: mpirun -np 2 train writes the one-process run's metrics", "[dist][runs]") {
  const std::string out = test::tmp() + "/scion_dist_np2", log = out + ".log";
  REQUIRE(run_job(2, {"--config", config_file(), "--output-dir", out, "--restart"}, log) == 0);
  const std::string text = test::read_text(log);
  INFO(text);
  CHECK(text.find("data-parallel over 2 mpi processes (1 thread each): 16 images per process") !=
        std::string::npos);
  // Only rank 0 prints: one line per epoch.
  size_t lines = 0;
  for (size_t at = text.find("epoch 3/3  train loss"); at != std::string::npos;
       at = text.find("epoch 3/3  train loss", at + 1))
    ++lines;
  CHECK(lines == 1);
  std::vector<json> m = test::read_metrics(out);
  check_same_training(reference_metrics(), m);
  for (const json& line : m) CHECK(line["allreduce_wait_seconds"].get<double>() >= 0);
  SafetensorsFile best = SafetensorsFile::open(out + "/best.safetensors");
  CHECK(best.metadata().count("scion_data") == 1);
  // Rerun, finished: every rank learns it from rank 0 and ends at once; rank 0 says so, once.
  const std::string summary = test::read_text(out + "/summary.json");
  REQUIRE(run_job(2, {"--config", config_file(), "--output-dir", out}, out + ".again.log") == 0);
  const std::string again = test::read_text(out + ".again.log");
  INFO(again);
  const size_t said = again.find("nothing to do");
  CHECK(said != std::string::npos);
  CHECK(again.find("nothing to do", said + 1) == std::string::npos);
  CHECK(test::read_text(out + "/summary.json") == summary);
}

TEST_CASE(
    "dist: a killed rank ends the job, the checkpoint stays intact and resumes on one process",
    "[dist][runs]") {
  const std::string out = test::tmp() + "/scion_dist_kill", log = out + ".log";
  pid_t job = spawn_job(2, {"--config", config_file(), "--output-dir", out, "--restart"}, log);
  REQUIRE(test::wait_for_text(log, "epoch 1/3  train loss", 300));
  pid_t victim = rank_pid(1, out);
  REQUIRE(victim > 0);
  kill(victim, SIGKILL);
  const int status = test::wait_status(job);
  const std::string text = test::read_text(log);
  INFO(text);
  CHECK(status != 0);
  CHECK(text.find("rank 1") != std::string::npos);
  CHECK(text.find("exited on signal 9") != std::string::npos);
  CHECK(text.find("done:") == std::string::npos);
  // The last checkpoint is whole (it loads) and one process finishes the run from it.
  SafetensorsFile last = SafetensorsFile::open(out + "/last.safetensors");
  const int64_t epoch = std::stoll(last.metadata().at("epoch"));
  CHECK(epoch >= 1);
  CHECK(epoch < 3);
  // mpirun can return while rank 0 is still exiting with the run folder's lock held (seen under
  // ASan, whose exit is slow): a resume then exits 2 naming it, as it should; wait, as that
  // message tells a user to.
  bool released = false;
  for (int i = 0; i < 1200 && !released; ++i) {
    try {
      FolderLock::acquire(out, "run folder");
      released = true;
    } catch (const InputError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  REQUIRE(released);
  REQUIRE(run_single({"--config", config_file(), "--output-dir", out}, out + ".resume.log") == 0);
  CHECK(test::read_text(out + ".resume.log").find("resuming") != std::string::npos);
  check_same_training(reference_metrics(), test::read_metrics(out));
}

TEST_CASE("dist: a rank that stops responding ends the job after dist.timeout_seconds",
          "[dist][runs]") {
  const std::string out = test::tmp() + "/scion_dist_stop", log = out + ".log";
  pid_t job = spawn_job(2,
                        {"--config", config_file(), "--output-dir", out, "--restart", "--set",
                         "dist.timeout_seconds=3"},
                        log);
  REQUIRE(test::wait_for_text(log, "epoch 1/3  train loss", 300));
  pid_t victim = rank_pid(1, out);
  REQUIRE(victim > 0);
  kill(victim, SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  const int status = test::wait_status(job);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  kill(victim, SIGKILL);  // in case the launcher left it behind
  const std::string text = test::read_text(log);
  INFO(text);
  CHECK(status != 0);
  CHECK(waited < 60);
  CHECK(text.find("rank 0: allreduce") != std::string::npos);
  CHECK(text.find("did not complete within 3 s") != std::string::npos);
  CHECK(text.find("The last good checkpoint is " + out + "/last.safetensors") != std::string::npos);
  CHECK_NOTHROW(SafetensorsFile::open(out + "/last.safetensors"));
}

TEST_CASE("dist: ranks given different configs, or a batch that does not split, exit 2",
          "[dist][runs]") {
  const std::string out = test::tmp() + "/scion_dist_bad", log = out + ".log";
  // mpirun's MPMD form: rank 0 and rank 1 run different command lines.
  std::vector<std::string> args = mpirun_args(1);
  const std::string train = std::string(SCION_BINARY_DIR) + "/train";
  for (const std::string& a : {train, std::string("--config"), config_file(),
                               std::string("--output-dir"), out, std::string(":")})
    args.push_back(a);
  for (const std::string& a : {std::string("-np"), std::string("1"), train, std::string("--config"),
                               config_file(), std::string("--output-dir"), out,
                               std::string("--set"), std::string("train.optimizer.lr=0.001")})
    args.push_back(a);
  const int status = test::wait_status(test::spawn_executable(SCION_MPIEXEC, args, log));
  std::string text = test::read_text(log);
  INFO(text);
  CHECK(status == 2);
  CHECK(text.find("rank 1 differs from rank 0 in:\n  train.optimizer.lr: 0.002 -> 0.001") !=
        std::string::npos);
  CHECK(text.find("epoch 1/3") == std::string::npos);

  CHECK(run_job(3, {"--config", config_file(), "--output-dir", out}, log) == 2);
  const std::string split = test::read_text(log);
  INFO("the -np 3 job's log:\n" << split);  // (INFO above holds the first job's text)
  CHECK(split.find("train.batch_size 32 does not split evenly over 3 processes") !=
        std::string::npos);
  // Reported once, by rank 0, not by every rank.
  CHECK(split.find("does not split") == split.rfind("does not split"));

  // A missing data folder, with precision auto: rank 0 says which precision it took and why,
  // once, then the error.
  CHECK(run_job(2,
                {"--config", config_file(), "--output-dir", out, "--set", "train.precision=auto",
                 "--set", "data.root=" + out + "/no_data"},
                log) == 2);
  const std::string missing = test::read_text(log);
  INFO("the missing-data job's log:\n" << missing);
  const size_t said = missing.find("train: precision ");
  CHECK(said != std::string::npos);
  CHECK(missing.find("train: precision ", said + 1) == std::string::npos);
  const size_t named = missing.find(out + "/no_data");
  CHECK(named != std::string::npos);
  CHECK(named > said);
}

// Devices end to end: the same short training run on `device: reference` (every kernel the plain
// f64 loops of core/reference/, parameters and batches moved there) as on cpu gives the same
// losses to f32 rounding; scion eval --device reference agrees with cpu; `device: cuda` in a build
// without the CUDA backend is a clear input error (exit 2).
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/data/support_data.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;
using json = nlohmann::json;

namespace {

std::string write_config(const std::string& dir) {
  std::ofstream(dir + "/c.yaml") << R"(seed: 5
threads: 2
model: {name: vit_tiny, img_size: 32, patch_size: 8, num_classes: 10, depth: 1, embed_dim: 32, num_heads: 2, drop_path: 0.1}
data:
  dataset: image_folder
  root: )" << test::shared_data("cifar10-jpg")
                                 << R"(
  val_split: test
  train_subset: 96
  val_subset: 50
  augment: {crop: random_crop, padding: 4, label_smoothing: 0.1}
train:
  epochs: 1
  batch_size: 32
  clip_grad: 1.0
  optimizer: {type: adamw, lr: 2.0e-3}
  ema: {decay: 0.9}
)";
  return dir + "/c.yaml";
}

int train(const std::string& dir, const std::string& device) {
  return test::wait_status(
      test::spawn_program("train",
                          {"--config", dir + "/c.yaml", "--set", "device=" + device, "--output-dir",
                           dir + "/" + device},
                          dir + "/" + device + ".log"));
}

json last_metrics(const std::string& run) {
  std::vector<json> m = test::read_metrics(run);
  REQUIRE(!m.empty());
  return m.back();
}

}  // namespace

TEST_CASE("devices: a run on the reference backend matches the cpu run", "[train][runs]") {
  SCION_REQUIRE_DATA(test::shared_data("cifar10-jpg"));
  std::string dir = test::temp_dir();
  write_config(dir);
  REQUIRE(train(dir, "cpu") == 0);
  REQUIRE(train(dir, "reference") == 0);
  json a = last_metrics(dir + "/cpu"), b = last_metrics(dir + "/reference");
  INFO(a.dump() << "\n" << b.dump());
  for (const char* k : {"train_loss", "val_loss", "ema_val_loss"})
    CHECK(std::fabs(a[k].get<double>() - b[k].get<double>()) <= 1e-4 * a[k].get<double>());
  // The reference run's checkpoint is an ordinary file: scion eval reads it on either device.
  for (const char* device : {"cpu", "reference"}) {
    std::string cmd = test::program_command("scion") + " eval --weights " + dir +
                      "/reference/best.safetensors --data image_folder --root " +
                      test::shared_data("cifar10-jpg") + " --split test --limit 100 --device " +
                      device + " > " + dir + "/eval-" + device + ".log 2>/dev/null";
    REQUIRE(WEXITSTATUS(std::system(cmd.c_str())) == 0);
  }
  auto eval = [&](const char* device) {
    std::string out = test::read_text(dir + "/eval-" + device + ".log");
    return json::parse(out.substr(out.rfind('{')));
  };
  json ec = eval("cpu"), er = eval("reference");
  CHECK(std::fabs(ec["loss"].get<double>() - er["loss"].get<double>()) <=
        1e-4 * ec["loss"].get<double>());
  CHECK(std::fabs(ec["acc1"].get<double>() - er["acc1"].get<double>()) <= 1.0);  // 1 image of 100
}

TEST_CASE("devices: cuda without its backend, or an unknown device, exits 2 naming the key",
          "[train][runs]") {
  std::string dir = test::temp_dir();
  write_config(dir);
  CHECK(train(dir, "cuda") == 2);
  CHECK(test::read_text(dir + "/cuda.log").find("c.yaml: device: 'cuda:0' is not available") !=
        std::string::npos);
  CHECK(train(dir, "tpu") == 2);
  CHECK(test::read_text(dir + "/tpu.log").find("c.yaml: device: unknown device 'tpu'") !=
        std::string::npos);
}

// train.freeze: backbone (linear probing): after a real run every backbone tensor is bit for bit
// the initial one and the classifier has trained; init.layers mid and init.qkv/components reach
// the config (unknown component: exit 2 naming the key).
#include <fstream>

#include "core/safetensors.h"
#include "tests/data/support_data.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;

TEST_CASE("train.freeze backbone: only the classifier changes (linear probing)", "[train][runs]") {
  SCION_REQUIRE_DATA(test::shared_data("cifar10-jpg"));
  const std::string dir = test::temp_dir();
  const std::string init = dir + "/init.safetensors";
  REQUIRE(test::wait_status(test::spawn_program(
              "scion",
              {"init", "--model", "convnext_atto", "--set", "model.img_size=32", "--set",
               "model.num_classes=10", "--set", "model.dims=[16,32,64,128]", "--set",
               "model.depths=[1,1,1,1]", "--out", init},
              dir + "/init.log")) == 0);
  std::ofstream(dir + "/probe.yaml") << "seed: 1\nthreads: 2\n"
                                        "model: {name: convnext_atto, img_size: 32, num_classes: "
                                        "10, dims: [16, 32, 64, 128], depths: [1, 1, 1, 1], "
                                        "drop_path: 0.2}\n"
                                        "init: {type: checkpoint, checkpoint: "
                                     << init
                                     << "}\n"
                                        "data: {dataset: image_folder, root: "
                                     << test::shared_data("cifar10-jpg")
                                     << ", val_split: test, train_subset: 200, val_subset: 100, "
                                        "workers: 1}\n"
                                        "train: {epochs: 2, batch_size: 50, freeze: backbone, "
                                        "optimizer: {type: adamw, lr: 0.01, weight_decay: 0.05}}\n";
  const std::string run = dir + "/run";
  REQUIRE(test::wait_status(test::spawn_program(
              "train", {"--config", dir + "/probe.yaml", "--output-dir", run}, dir + "/t.log")) ==
          0);
  SafetensorsFile before = SafetensorsFile::open(init);
  SafetensorsFile last = SafetensorsFile::open(run + "/last.safetensors");
  int changed_head = 0, backbone = 0;
  for (const std::string& name : before.names()) {
    INFO(name);
    const std::vector<double> a = before.get(name).to_vector(),
                              b = last.get("model." + name).to_vector();
    if (name.rfind("head.fc.", 0) == 0) {
      changed_head += a != b;
    } else {
      CHECK(a == b);  // weight decay, drop path and gradients all left the backbone alone
      ++backbone;
    }
  }
  CHECK(changed_head == 2);
  CHECK(backbone > 20);
  // An unknown component is a config error naming the key, before anything runs.
  CHECK(test::wait_status(test::spawn_program("train",
                                              {"--config", dir + "/probe.yaml", "--output-dir",
                                               dir + "/bad", "--set", "init.components=attn,mlpp"},
                                              dir + "/bad.log")) == 2);
  CHECK(test::read_text(dir + "/bad.log").find("init.components: unknown component 'mlpp'") !=
        std::string::npos);
  CHECK_FALSE(test::exists(dir + "/bad"));
}

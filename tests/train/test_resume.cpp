// read_checkpoint_state, field by field: what a resumed run reads back from last.safetensors's
// metadata, and the input error, naming the file and the field, for each field out of form. (The
// tampered-checkpoint test in test_train_runs.cpp drives some of these through `train`.)
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "tests/support.h"
#include "train/trainer.h"

using namespace scion;

namespace {

const std::string kRecord =
    R"({"epoch": 1, "step": 4, "lr": 0.001, "train_loss": 2.5, "val_loss": 2.25, )"
    R"("val_acc1": 12.5, "val_acc5": 50})";

// A checkpoint after epoch 1 of 4 steps, stopped in epoch 2's third batch.
std::map<std::string, std::string> good_metadata() {
  return {{"epoch", "1"},
          {"batch_in_epoch", "3"},
          {"step", "7"},
          {"rng_offset", "123456789"},
          {"best_val_acc1", "12.5"},
          {"wall_seconds", "3.75"},
          {"metrics", "[" + kRecord + "]"},
          {"partial_epoch", R"({"loss_sum": 6.5, "loss_count": 3, "images": 96, "seconds": 1.5})"}};
}

train::CheckpointState read(const std::string& path,
                            const std::map<std::string, std::string>& meta) {
  save_safetensors(path, {{"w", zeros({2}, DType::f32)}}, meta);
  return train::read_checkpoint_state(SafetensorsFile::open(path), path, 4, 4);
}

}  // namespace

TEST_CASE("checkpoint metadata: every field read back, and each out of form named in the error",
          "[train][files]") {
  const std::string path = test::temp_dir() + "/last.safetensors";
  const train::CheckpointState s = read(path, good_metadata());
  CHECK(s.epoch == 1);
  CHECK(s.batch_in_epoch == 3);
  CHECK(s.step == 7);
  CHECK(s.rng_offset == 123456789u);
  CHECK(s.best_val_acc1 == 12.5);
  CHECK(s.wall_seconds == 3.75);
  CHECK(nlohmann::json::parse(s.metrics) == nlohmann::json::parse("[" + kRecord + "]"));
  CHECK(s.partial_loss_sum == 6.5);
  CHECK(s.partial_loss_count == 3);
  CHECK(s.partial_images == 96);
  CHECK(s.partial_seconds == 1.5);

  // No partial epoch is read at an epoch's start: the field may be absent.
  auto at_start = good_metadata();
  at_start["batch_in_epoch"] = "0";
  at_start.erase("partial_epoch");
  CHECK(read(path, at_start).partial_images == 0);

  struct Case {
    const char* field;
    std::string value;  // "-": remove the field
    const char* expect;
  };
  for (const Case& c : {
           Case{"epoch", "12abc", "expected an integer, got '12abc'"},
           Case{"step", "9", "value 9 out of range [0, 8]"},
           Case{"rng_offset", "-", "missing"},
           Case{"best_val_acc1", "101", "expected a number in [-1.000000, 100.000000]"},
           Case{"metrics", "[1", "not valid JSON"},
           Case{"metrics", "[]", "expected a list of 1 epoch records"},
           Case{"metrics", "[1]", "every epoch record needs a number 'epoch'"},
           Case{"metrics", R"([{"epoch": 1}])", "every epoch record needs a number 'step'"},
           Case{"metrics", "[" + kRecord.substr(0, kRecord.size() - 3) + "\"50\"}]",
                "every epoch record needs a number 'val_acc5'"},
           Case{"partial_epoch", "-", "missing"},
           Case{"partial_epoch", "[]", "needs a non-negative number 'loss_sum'"},
           Case{"partial_epoch", R"({"loss_sum": 1, "loss_count": -1, "images": 1, "seconds": 0})",
                "needs a non-negative number 'loss_count'"},
       }) {
    INFO(c.field << " = " << c.value);
    auto meta = good_metadata();
    if (c.value == "-")
      meta.erase(c.field);
    else
      meta[c.field] = c.value;
    const std::string expected =
        path + ": checkpoint metadata '" + c.field + "': " + std::string(c.expect);
    CHECK_THROWS_WITH(read(path, meta), Catch::Matchers::StartsWith(expected));
  }
}

// Loader throughput: images/s of scion's DataLoader (2 worker threads by default) for
//   cifar     CIFAR-10 JPEG at 32 px: RandomResizedCrop + flip + RandAugment rand-m9-mstd0.5-inc1
//             + RandomErasing 0.25 + Mixup 0.8 / CutMix 1.0 (timm's recipe at 32 px)
//   imagenet  full-size ImageNet JPEGs: RandomResizedCrop to 224 + flip (decoded with DCT scaling)
// Prints one JSON line. experiments/bench/run_loader.py runs the same with torchvision/timm.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "data/loader.h"

using namespace scion;
using namespace scion::data;

namespace {

// A dataset that repeats another one `times` times (the 20 ImageNet samples are too few to time).
class Repeat : public Dataset {
 public:
  Repeat(DatasetPtr base, int64_t times) : base_(std::move(base)), times_(times) {}
  int64_t size() const override { return base_->size() * times_; }
  int64_t num_classes() const override { return base_->num_classes(); }
  int64_t label(int64_t i) const override { return base_->label(i % base_->size()); }
  Sample get(int64_t i) const override { return base_->get(i % base_->size()); }

 private:
  DatasetPtr base_;
  int64_t times_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scion loader throughput"};
  std::string which = "cifar", shared = "../shared/data";
  int workers = 2, batches = 30;
  int64_t batch = 64;
  app.add_option("--case", which, "cifar | imagenet")->check(CLI::IsMember({"cifar", "imagenet"}));
  app.add_option("--data", shared, "the shared data folder");
  app.add_option("--workers", workers, "worker threads");
  app.add_option("--batches", batches, "batches to time");
  app.add_option("--batch", batch, "batch size");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    set_num_threads(1);
    PipelineConfig pc;
    MixupConfig mc;
    DatasetPtr ds;
    if (which == "cifar") {
      ds = open_dataset("image_folder", shared + "/cifar10-jpg", "train");
      pc.img_size = 32;
      pc.randaugment = "rand-m9-mstd0.5-inc1";
      pc.reprob = 0.25;
      mc.mixup_alpha = 0.8;
      mc.cutmix_alpha = 1.0;
    } else {
      // imagenet-sample/<wnid>/*.JPEG: open it as the "train" split of a folder that contains it.
      ds = std::make_shared<Repeat>(
          open_dataset("image_folder", shared + "/imagenet-sample-split", "train"), 50);
      pc.img_size = 224;
      pc.color_jitter = 0.0;  // as the torch side (create_transform(..., color_jitter=0))
    }
    LoaderOptions o;
    o.batch_size = batch;
    o.workers = workers;
    o.prefetch = 2 * workers + 2;
    DataLoader dl(ds, Pipeline(pc), o, mc);
    dl.start_epoch(0);
    Batch b;
    for (int i = 0; i < 2; ++i) dl.next(b);  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    int n = 0;
    while (n < batches && dl.next(b)) ++n;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << nlohmann::json{{"case", which},
                                {"workers", workers},
                                {"batch", batch},
                                {"images_per_second", double(n * batch) / s}}
                     .dump()
              << std::endl;
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

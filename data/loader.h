// The training/evaluation input pipeline: per-sample transforms (pipeline) and a threaded loader
// that assembles batches, applies batch-level Mixup/CutMix and hands them over in order.
//
// Determinism: the shuffle of epoch e comes from (seed, e); the augmentation of the sample at
// position p of epoch e from the stream (seed, e, p); Mixup/CutMix of batch b from (seed, e, b).
// Workers only decide when a batch is built, never what it contains, so batches are identical for
// any number of workers, and a run resumed at epoch e sees the same data as an uninterrupted one.
#pragma once

#include <array>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"
#include "data/transforms.h"

namespace scion::data {

struct PipelineConfig {
  int img_size = 224;
  int channels = 3;  // model input channels (grayscale <-> RGB converted to match)
  bool train = true;
  std::string train_crop = "rrc";  // rrc (RandomResizedCrop) | random_crop (pad + crop) | resize
  double scale_min = 0.08, scale_max = 1.0, ratio_min = 3.0 / 4, ratio_max = 4.0 / 3;
  int padding = 4;  // random_crop
  double hflip = 0.5;
  std::string randaugment;    // timm spec, "" = off
  double color_jitter = 0.4;  // applied only without RandAugment, as timm
  double reprob = 0.0;        // RandomErasing probability
  Interp interpolation = Interp::bicubic;
  double crop_pct = 0.875;  // eval: resize to img_size / crop_pct, center crop
  std::array<float, 3> mean = kImagenetMean, std = kImagenetStd;
  int64_t max_image_pixels = kDefaultMaxImagePixels;  // larger images are input errors
};

// One sample -> normalized (C, H, W) floats. Thread-safe (const).
class Pipeline {
 public:
  explicit Pipeline(PipelineConfig cfg);
  const PipelineConfig& config() const { return cfg_; }
  void operator()(const Sample& sample, Generator& gen, float* out) const;
  Image augment(const Sample& sample, Generator& gen) const;  // everything before to_chw

 private:
  PipelineConfig cfg_;
  std::unique_ptr<RandAugment> randaugment_;
};

// timm's Mixup/CutMix in batch mode with label smoothing.
struct MixupConfig {
  double mixup_alpha = 0.0, cutmix_alpha = 0.0;
  double prob = 1.0, switch_prob = 0.5;
  double label_smoothing = 0.1;
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};

// Mixes images (N, C, H, W) in place with their batch-reversed order and returns soft targets
// (N, classes): lam * smooth(y) + (1 - lam) * smooth(flip(y)). lam ~ Beta(alpha, alpha); CutMix
// pastes a box and corrects lam to the box's area.
Tensor mixup_batch(Tensor& images, const Tensor& labels, int64_t classes, const MixupConfig& cfg,
                   Generator& gen);
// The same with explicit partners: image i is mixed with partner_images[i] (a copy: images is
// modified in place). A shard of a data-parallel batch mixes its slice with the mirrored slice.
Tensor mixup_pairs(Tensor& images, const Tensor& labels, const Tensor& partner_images,
                   const Tensor& partner_labels, int64_t classes, const MixupConfig& cfg,
                   Generator& gen);
// Gamma(alpha, 1) and Beta(a, a) draws (Marsaglia-Tsang).
double sample_gamma(double alpha, Generator& gen);
double sample_beta(double a, double b, Generator& gen);

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = true;
  int workers = 2;
  int prefetch = 4;  // batches built ahead of the consumer
  uint64_t seed = 0;
  // Data-parallel sharding: batch_size is the global batch; this loader returns its shard's
  // contiguous slice of each (shard k of `shards` gets positions [n k / shards, n (k+1) / shards)),
  // built with the same per-position randomness, so the shards together hold the one-process batch.
  int shard = 0, shards = 1;
  // Batches in page-locked memory (empty_pinned), so that their copies to a GPU are queued
  // without the training thread waiting; set when the run's device is CUDA (as torch's
  // DataLoader(pin_memory=True)). Plain memory without a CUDA device.
  bool pin_memory = false;
};

struct Batch {
  int64_t index = 0;
  Tensor images;   // (N, C, H, W) f32
  Tensor labels;   // (N) i64
  Tensor targets;  // (N, classes) f32 soft targets with Mixup/CutMix, else undefined
};

class DataLoader {
 public:
  DataLoader(DatasetPtr dataset, Pipeline pipeline, LoaderOptions options, MixupConfig mixup = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const;  // per epoch (the length for progress display)
  const Dataset& dataset() const { return *dataset_; }
  // Starts epoch `epoch` (stopping a previous one), optionally skipping its first `skip` batches.
  void start_epoch(int64_t epoch, int64_t skip = 0);
  // The next batch of the epoch in order; false at the end of the epoch.
  bool next(Batch& batch);
  // Builds batch b of the current epoch directly (what the workers run).
  Batch build(int64_t b) const;

 private:
  void stop();
  void worker();
  // Samples at epoch positions [lo, hi), augmented, into new (hi - lo, C, H, W) / (hi - lo) tensors.
  void load(int64_t lo, int64_t hi, Tensor& images, Tensor& labels) const;
  DatasetPtr dataset_;
  Pipeline pipeline_;
  LoaderOptions opt_;
  MixupConfig mixup_;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  std::string error_;
  bool input_error_ = false;
  int64_t next_to_build_ = 0, next_to_return_ = 0;
  bool stopping_ = false;
};

}  // namespace scion::data

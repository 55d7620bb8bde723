// Pipeline, Mixup/CutMix and the threaded DataLoader (see loader.h).
#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/ops.h"

namespace scion::data {

namespace {

constexpr uint64_t kShuffleStream = 0x5348554646ull, kSampleStream = 0x53414D50ull,
                   kMixStream = 0x4D495855ull;

Image match_channels(Image img, int channels) {
  if (img.channels == channels) return img;
  Image out(img.height, img.width, channels);
  size_t n = size_t(img.height) * img.width;
  for (size_t i = 0; i < n; ++i) {
    if (channels == 3) {
      for (int c = 0; c < 3; ++c) out.pixels[3 * i + c] = img.pixels[i];
    } else {
      const uint8_t* p = &img.pixels[3 * i];
      out.pixels[i] = uint8_t((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
    }
  }
  return out;
}

}  // namespace

Pipeline::Pipeline(PipelineConfig cfg) : cfg_(std::move(cfg)) {
  SCION_CHECK(cfg_.img_size > 0, "data.img_size must be positive");
  SCION_CHECK(
      cfg_.train_crop == "rrc" || cfg_.train_crop == "random_crop" || cfg_.train_crop == "resize",
      "data.augment.crop: expected rrc, random_crop or resize, got '", cfg_.train_crop, "'");
  if (!cfg_.randaugment.empty()) {
    std::array<uint8_t, 3> fill;
    for (int c = 0; c < 3; ++c)
      fill[size_t(c)] = uint8_t(std::min(255L, std::lround(255 * cfg_.mean[size_t(c)])));
    randaugment_ = std::make_unique<RandAugment>(cfg_.randaugment, fill, cfg_.interpolation);
  }
}

Image Pipeline::augment(const Sample& s, Generator& gen) const {
  const int size = cfg_.img_size;
  Image img;
  bool encoded = !s.encoded.empty();
  if (cfg_.train && cfg_.train_crop == "rrc") {
    // Crop box on the full-size image, then decode at the smallest JPEG DCT scale that still
    // gives the crop at least the output size, and scale the box to the decoded size.
    int w = s.image.width, h = s.image.height;
    if (encoded) image_size(s.encoded, s.name, w, h);
    CropBox box = random_resized_crop_box(h, w, cfg_.scale_min, cfg_.scale_max, cfg_.ratio_min,
                                          cfg_.ratio_max, gen);
    if (encoded) {
      int min_w = int(std::ceil(double(w) * size / box.width)),
          min_h = int(std::ceil(double(h) * size / box.height));
      img = decode_image(s.encoded, s.name, min_w, min_h, cfg_.max_image_pixels);
      if (img.width != w || img.height != h) {
        double sx = double(img.width) / w, sy = double(img.height) / h;
        box = {int(box.top * sy), int(box.left * sx),
               std::max(1, int(std::lround(box.height * sy))),
               std::max(1, int(std::lround(box.width * sx)))};
        box.height = std::min(box.height, img.height - box.top);
        box.width = std::min(box.width, img.width - box.left);
      }
    } else {
      img = s.image;
    }
    img =
        resize(crop(img, box.top, box.left, box.height, box.width), size, size, cfg_.interpolation);
  } else if (cfg_.train) {
    img = encoded ? decode_image(s.encoded, s.name, 0, 0, cfg_.max_image_pixels) : s.image;
    if (img.height != size || img.width != size) img = resize(img, size, size, cfg_.interpolation);
    if (cfg_.train_crop == "random_crop" && cfg_.padding > 0) {
      int top = int(gen.next_uniform() * (2 * cfg_.padding + 1)),
          left = int(gen.next_uniform() * (2 * cfg_.padding + 1));
      img = crop(img, top - cfg_.padding, left - cfg_.padding, size, size, 0);
    }
  } else {
    // Eval: resize the short side to size / crop_pct, then take the center size x size crop.
    int scaled = int(std::floor(size / cfg_.crop_pct));
    int w = s.image.width, h = s.image.height;
    if (encoded) image_size(s.encoded, s.name, w, h);
    int rw = w <= h ? scaled : int(double(scaled) * w / h),
        rh = w <= h ? int(double(scaled) * h / w) : scaled;
    img = encoded ? decode_image(s.encoded, s.name, rw, rh, cfg_.max_image_pixels) : s.image;
    img = resize(img, rh, rw, cfg_.interpolation);
    img = crop(img, int(std::lround((rh - size) / 2.0)), int(std::lround((rw - size) / 2.0)), size,
               size);
  }
  if (cfg_.train) {
    if (cfg_.hflip > 0 && gen.next_uniform() < cfg_.hflip) img = hflip(img);
    if (randaugment_) {
      img = (*randaugment_)(match_channels(img, 3), gen);
    } else if (cfg_.color_jitter > 0) {
      img = color_jitter(img, cfg_.color_jitter, cfg_.color_jitter, cfg_.color_jitter, gen);
    }
  }
  return match_channels(std::move(img), cfg_.channels);
}

void Pipeline::operator()(const Sample& s, Generator& gen, float* out) const {
  Image img = augment(s, gen);
  to_chw(img, cfg_.mean, cfg_.std, out);
  if (cfg_.train && cfg_.reprob > 0)
    random_erasing(out, img.channels, img.height, img.width, cfg_.reprob, gen);
}

double sample_gamma(double alpha, Generator& gen) {
  if (alpha < 1.0)
    return sample_gamma(alpha + 1.0, gen) * std::pow(gen.next_uniform() + 1e-300, 1.0 / alpha);
  double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x = gen.next_normal(), v = 1.0 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    double u = gen.next_uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x || std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v)))
      return d * v;
  }
}

double sample_beta(double a, double b, Generator& gen) {
  double x = sample_gamma(a, gen), y = sample_gamma(b, gen);
  return x / (x + y);
}

namespace {
// A copy of t with its rows (dim 0) in reverse order: the Mixup partners of a batch.
Tensor reversed_rows(const Tensor& t) {
  return index_select(t, 0, arange(double(t.size(0) - 1), -1.0, -1.0)).contiguous();
}
}  // namespace

Tensor mixup_pairs(Tensor& images, const Tensor& labels, const Tensor& partner_images,
                   const Tensor& partner_labels, int64_t classes, const MixupConfig& cfg,
                   Generator& gen) {
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  double lam = 1.0;
  bool cutmix = false;
  if (gen.next_uniform() < cfg.prob) {
    if (cfg.mixup_alpha > 0 && cfg.cutmix_alpha > 0) {
      cutmix = gen.next_uniform() < cfg.switch_prob;
      lam = cutmix ? sample_beta(cfg.cutmix_alpha, cfg.cutmix_alpha, gen)
                   : sample_beta(cfg.mixup_alpha, cfg.mixup_alpha, gen);
    } else if (cfg.mixup_alpha > 0) {
      lam = sample_beta(cfg.mixup_alpha, cfg.mixup_alpha, gen);
    } else {
      cutmix = true;
      lam = sample_beta(cfg.cutmix_alpha, cfg.cutmix_alpha, gen);
    }
  }
  float* x = images.data<float>();
  const float* px = partner_images.data<float>();
  const int64_t plane = h * w, img = c * plane;
  if (lam < 1.0) {
    if (cutmix) {
      // timm's rand_bbox + correct_lam: a box of area (1 - lam) centred uniformly, clipped.
      double ratio = std::sqrt(1.0 - lam);
      int64_t cut_h = int64_t(h * ratio), cut_w = int64_t(w * ratio);
      int64_t cy = int64_t(gen.next_uniform() * h), cx = int64_t(gen.next_uniform() * w);
      int64_t yl = std::clamp(cy - cut_h / 2, int64_t(0), h),
              yh = std::clamp(cy + cut_h / 2, int64_t(0), h);
      int64_t xl = std::clamp(cx - cut_w / 2, int64_t(0), w),
              xh = std::clamp(cx + cut_w / 2, int64_t(0), w);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < c; ++k)
          for (int64_t y = yl; y < yh; ++y)
            std::memcpy(x + i * img + k * plane + y * w + xl, px + i * img + k * plane + y * w + xl,
                        size_t(xh - xl) * sizeof(float));
      lam = 1.0 - double((yh - yl) * (xh - xl)) / double(h * w);
    } else {
      for (int64_t i = 0; i < n * img; ++i) x[i] = float(lam * x[i] + (1.0 - lam) * px[i]);
    }
  }
  double off = cfg.label_smoothing / double(classes), on = 1.0 - cfg.label_smoothing + off;
  Tensor targets = full({n, classes}, 0.0, DType::f32);
  float* t = targets.data<float>();
  const int64_t* y = labels.data<int64_t>();
  const int64_t* py = partner_labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < classes; ++k) {
      double a = k == y[i] ? on : off, b = k == py[i] ? on : off;
      t[i * classes + k] = float(lam * a + (1.0 - lam) * b);
    }
  return targets;
}

Tensor mixup_batch(Tensor& images, const Tensor& labels, int64_t classes, const MixupConfig& cfg,
                   Generator& gen) {
  const int64_t n = images.size(0);
  SCION_CHECK(n % 2 == 0, "Mixup/CutMix needs an even batch size, got ", n);
  return mixup_pairs(images, labels, reversed_rows(images), reversed_rows(labels), classes, cfg,
                     gen);
}

DataLoader::DataLoader(DatasetPtr dataset, Pipeline pipeline, LoaderOptions options,
                       MixupConfig mixup)
    : dataset_(std::move(dataset)), pipeline_(std::move(pipeline)), opt_(options), mixup_(mixup) {
  SCION_CHECK(opt_.batch_size > 0, "batch_size must be positive, got ", opt_.batch_size);
  SCION_CHECK(opt_.workers >= 0 && opt_.prefetch > 0,
              "loader: workers >= 0 and prefetch > 0 required");
  SCION_CHECK(dataset_->size() > 0, "loader: empty dataset");
  SCION_CHECK(opt_.shards >= 1 && opt_.shard >= 0 && opt_.shard < opt_.shards, "loader: shard ",
              opt_.shard, " of ", opt_.shards, " is not a valid shard");
  SCION_CHECK(!opt_.drop_last || dataset_->size() >= opt_.batch_size, "loader: dataset of ",
              dataset_->size(), " images is smaller than one batch of ", opt_.batch_size);
}

DataLoader::~DataLoader() {
  stop();
}

int64_t DataLoader::num_batches() const {
  int64_t n = dataset_->size();
  return opt_.drop_last ? n / opt_.batch_size : (n + opt_.batch_size - 1) / opt_.batch_size;
}

void DataLoader::load(int64_t lo, int64_t hi, Tensor& images, Tensor& labels) const {
  const PipelineConfig& pc = pipeline_.config();
  const Shape shape{hi - lo, pc.channels, pc.img_size, pc.img_size};
  images = opt_.pin_memory ? empty_pinned(shape) : empty(shape);
  labels = opt_.pin_memory ? empty_pinned({hi - lo}, DType::i64) : empty({hi - lo}, DType::i64);
  float* x = images.data<float>();
  int64_t* y = labels.data<int64_t>();
  const int64_t per = int64_t(pc.channels) * pc.img_size * pc.img_size;
  Generator epoch_gen(opt_.seed, kSampleStream + uint64_t(epoch_));
  for (int64_t pos = lo; pos < hi; ++pos) {
    Sample s = dataset_->get(order_[size_t(pos)]);
    Generator gen = epoch_gen.fork(uint64_t(pos));
    pipeline_(s, gen, x + (pos - lo) * per);
    y[pos - lo] = s.label;
  }
}

Batch DataLoader::build(int64_t b) const {
  const int64_t start = b * opt_.batch_size,
                n = std::min(opt_.batch_size, int64_t(order_.size()) - start);
  // This shard's slice of the global batch: positions [lo, hi) of the epoch order.
  const int64_t lo = start + n * opt_.shard / opt_.shards,
                hi = start + n * (opt_.shard + 1) / opt_.shards;
  Batch batch;
  batch.index = b;
  load(lo, hi, batch.images, batch.labels);
  if (mixup_.enabled() && pipeline_.config().train) {
    SCION_CHECK(n % 2 == 0, "Mixup/CutMix needs an even batch size, got ", n);
    Generator gen = Generator(opt_.seed, kMixStream + uint64_t(epoch_)).fork(uint64_t(b));
    // Sample p is mixed with its mirror in the global batch, 2 start + n - 1 - p; with several
    // shards the mirrors of this slice sit in another one and are built here too.
    const int64_t mlo = 2 * start + n - hi, mhi = 2 * start + n - lo;
    Tensor mirror_images = batch.images, mirror_labels = batch.labels;
    if (mlo != lo) load(mlo, mhi, mirror_images, mirror_labels);
    batch.targets = mixup_pairs(batch.images, batch.labels, reversed_rows(mirror_images),
                                reversed_rows(mirror_labels), dataset_->num_classes(), mixup_, gen);
    if (opt_.pin_memory) {
      Tensor pinned = empty_pinned(batch.targets.shape(), batch.targets.dtype());
      pinned.copy_(batch.targets);
      batch.targets = pinned;
    }
  }
  return batch;
}

void DataLoader::start_epoch(int64_t epoch, int64_t skip) {
  stop();
  epoch_ = epoch;
  int64_t n = dataset_->size();
  order_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) order_[size_t(i)] = i;
  if (opt_.shuffle) {
    Generator gen(opt_.seed, kShuffleStream + uint64_t(epoch));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(order_[size_t(i)], order_[size_t(gen.next_uniform() * double(i + 1))]);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ready_.clear();
  error_.clear();
  next_to_build_ = next_to_return_ = std::min(skip, num_batches());
  stopping_ = false;
  for (int i = 0; i < opt_.workers; ++i) threads_.emplace_back([this] { worker(); });
}

void DataLoader::worker() {
  while (true) {
    int64_t b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || next_to_build_ >= num_batches() ||
               next_to_build_ < next_to_return_ + opt_.prefetch;
      });
      if (stopping_ || next_to_build_ >= num_batches()) return;
      b = next_to_build_++;
    }
    Batch batch;
    try {
      batch = build(b);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      if (error_.empty())
        error_ = e.what(), input_error_ = dynamic_cast<const InputError*>(&e) != nullptr;
      cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ready_.emplace(b, std::move(batch));
    cv_.notify_all();
  }
}

bool DataLoader::next(Batch& batch) {
  if (next_to_return_ >= num_batches()) return false;
  if (opt_.workers == 0) {
    batch = build(next_to_return_++);
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return ready_.count(next_to_return_) || !error_.empty(); });
  if (!ready_.count(next_to_return_)) {
    std::string msg = error_;
    bool input = input_error_;
    lock.unlock();
    stop();
    if (input) throw InputError(msg);
    throw Error(msg);
  }
  batch = std::move(ready_[next_to_return_]);
  ready_.erase(next_to_return_++);
  cv_.notify_all();
  return true;
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace scion::data

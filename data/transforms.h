// Image transforms with the semantics of PIL/torchvision/timm, so a recipe written for timm means
// the same here. All randomness comes from the Generator passed in (per-sample streams keyed by
// seed, epoch and sample index, see loader.h), never from global state.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/rng.h"
#include "data/image.h"

namespace scion::data {

enum class Interp { nearest, bilinear, bicubic };
Interp parse_interp(const std::string& name);  // "bilinear" | "bicubic" | "nearest"

// PIL's Image.resize: separable resampling whose filter support widens by the downscale factor
// (antialiasing); bicubic uses a = -0.5; the intermediate pass is rounded to 8 bits, as PIL.
Image resize(const Image& img, int out_h, int out_w, Interp interp);
// Crop of (h, w) at (top, left); regions outside the image are filled with `fill`.
Image crop(const Image& img, int top, int left, int h, int w, uint8_t fill = 0);
Image hflip(const Image& img);

struct CropBox {
  int top, left, height, width;
};
// timm's RandomResizedCropAndInterpolation.get_params (10 attempts, then a central crop).
CropBox random_resized_crop_box(int height, int width, double scale_lo, double scale_hi,
                                double ratio_lo, double ratio_hi, Generator& gen);

// torchvision's ColorJitter(brightness, contrast, saturation) on PIL images (random order).
Image color_jitter(const Image& img, double brightness, double contrast, double saturation,
                   Generator& gen);

// timm's RandAugment from its spec string, e.g. "rand-m9-mstd0.5-inc1" (ops, magnitudes, noise).
class RandAugment {
 public:
  // `fill` colours pixels that affine ops move in from outside (timm: the mean colour).
  RandAugment(const std::string& spec, std::array<uint8_t, 3> fill, Interp interp);
  Image operator()(const Image& img, Generator& gen) const;
  const std::vector<std::string>& ops() const { return ops_; }
  int num_layers() const { return num_layers_; }
  double magnitude() const { return magnitude_; }
  double magnitude_std() const { return magnitude_std_; }
  double prob() const { return prob_; }

 private:
  Image apply(const std::string& op, const Image& img, double level, Generator& gen) const;
  std::vector<std::string> ops_;
  int num_layers_ = 2;
  double magnitude_ = 10, magnitude_std_ = 0, magnitude_max_ = 10, prob_ = 0.5;
  bool increasing_ = false;
  std::array<uint8_t, 3> fill_;
  Interp interp_;
};

// The PIL image ops RandAugment uses (exposed for tests).
Image affine(const Image& img, const std::array<double, 6>& m, Interp interp,
             std::array<uint8_t, 3> fill);
Image rotate(const Image& img, double degrees, Interp interp, std::array<uint8_t, 3> fill);
Image auto_contrast(const Image& img);
Image equalize(const Image& img);
Image posterize(const Image& img, int bits);
Image solarize(const Image& img, int threshold);
Image solarize_add(const Image& img, int add, int threshold = 128);
Image invert(const Image& img);
Image enhance_color(const Image& img, double factor);
Image enhance_contrast(const Image& img, double factor);
Image enhance_brightness(const Image& img, double factor);
Image enhance_sharpness(const Image& img, double factor);

constexpr std::array<float, 3> kImagenetMean{0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> kImagenetStd{0.229f, 0.224f, 0.225f};

// ToTensor + Normalize: writes (C, H, W) floats (x / 255 - mean) / std. Grayscale images use the
// first mean/std entry.
void to_chw(const Image& img, const std::array<float, 3>& mean, const std::array<float, 3>& std,
            float* out);
// timm's RandomErasing(probability, mode="pixel", max_count=1) on normalized (C, H, W) data:
// a box of 2%-33% of the area, aspect in [0.3, 3.3], filled with N(0, 1) noise per pixel.
void random_erasing(float* chw, int channels, int height, int width, double probability,
                    Generator& gen);

}  // namespace scion::data

// timm's RandAugment (timm/data/auto_augment.py): `num_layers` ops drawn with replacement from 15,
// each applied with probability `prob` at magnitude ~ N(m, mstd) clipped to [0, mmax]; "inc1"
// selects the variants whose strength increases with magnitude. Level -> argument mappings, the
// random sign of signed ops and PIL's op semantics follow timm exactly.
#include <cmath>
#include <regex>

#include "core/error.h"
#include "data/transforms.h"

namespace scion::data {

namespace {

const std::vector<std::string> kRandTransforms = {
    "AutoContrast", "Equalize",    "Invert", "Rotate",        "Posterize",
    "Solarize",     "SolarizeAdd", "Color",  "Contrast",      "Brightness",
    "Sharpness",    "ShearX",      "ShearY", "TranslateXRel", "TranslateYRel"};
const std::vector<std::string> kRandIncreasingTransforms = {"AutoContrast",
                                                            "Equalize",
                                                            "Invert",
                                                            "Rotate",
                                                            "PosterizeIncreasing",
                                                            "SolarizeIncreasing",
                                                            "SolarizeAdd",
                                                            "ColorIncreasing",
                                                            "ContrastIncreasing",
                                                            "BrightnessIncreasing",
                                                            "SharpnessIncreasing",
                                                            "ShearX",
                                                            "ShearY",
                                                            "TranslateXRel",
                                                            "TranslateYRel"};

constexpr double kLevelDenom = 10.0;

}  // namespace

RandAugment::RandAugment(const std::string& spec, std::array<uint8_t, 3> fill, Interp interp)
    : fill_(fill), interp_(interp) {
  // "rand-m9-mstd0.5-inc1": sections after "rand" are key + number.
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dash = spec.find('-', start);
    parts.push_back(spec.substr(start, dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  SCION_CHECK(
      !parts.empty() && parts[0] == "rand", "randaugment '", spec,
      "': expected a timm RandAugment spec starting with 'rand-' (e.g. rand-m9-mstd0.5-inc1)");
  static const std::regex section(R"(^([a-z]+)([0-9.]+)$)");
  for (size_t i = 1; i < parts.size(); ++i) {
    std::smatch m;
    SCION_CHECK(std::regex_match(parts[i], m, section), "randaugment '", spec,
                "': cannot parse section '", parts[i],
                "' (known: m<int>, n<int>, mstd<float>, mmax<int>, inc<0|1>, p<float>)");
    std::string key = m[1];
    double v = std::stod(m[2]);
    if (key == "m")
      magnitude_ = v;
    else if (key == "n")
      num_layers_ = int(v);
    else if (key == "mstd")
      magnitude_std_ = v > 100 ? INFINITY : v;
    else if (key == "mmax")
      magnitude_max_ = v;
    else if (key == "inc")
      increasing_ = v != 0;
    else if (key == "p")
      prob_ = v;
    else
      throw InputError("randaugment '" + spec + "': unknown section '" + parts[i] +
                       "' (known: m, n, mstd, mmax, inc, p)");
  }
  ops_ = increasing_ ? kRandIncreasingTransforms : kRandTransforms;
}

Image RandAugment::operator()(const Image& img, Generator& gen) const {
  Image out = img;
  for (int layer = 0; layer < num_layers_; ++layer) {
    const std::string& op = ops_[size_t(gen.next_uniform() * double(ops_.size()))];
    if (prob_ < 1.0 && gen.next_uniform() > prob_) continue;
    double level = magnitude_;
    if (std::isinf(magnitude_std_))
      level = gen.next_uniform() * magnitude_;
    else if (magnitude_std_ > 0)
      level = magnitude_ + magnitude_std_ * gen.next_normal();
    level = std::max(0.0, std::min(level, magnitude_max_));
    out = apply(op, out, level, gen);
  }
  return out;
}

Image RandAugment::apply(const std::string& op, const Image& img, double level,
                         Generator& gen) const {
  auto negate = [&](double v) { return gen.next_uniform() > 0.5 ? -v : v; };
  auto enhance = [&](double l) {
    return increasing_ ? std::max(0.1, 1.0 + negate(l / kLevelDenom * 0.9))
                       : l / kLevelDenom * 1.8 + 0.1;
  };
  if (op == "AutoContrast") return auto_contrast(img);
  if (op == "Equalize") return equalize(img);
  if (op == "Invert") return invert(img);
  if (op == "Rotate") return rotate(img, negate(level / kLevelDenom * 30.0), interp_, fill_);
  if (op == "Posterize") return posterize(img, int(level / kLevelDenom * 4));
  if (op == "PosterizeIncreasing") return posterize(img, 4 - int(level / kLevelDenom * 4));
  if (op == "Solarize") return solarize(img, std::min(256, int(level / kLevelDenom * 256)));
  if (op == "SolarizeIncreasing")
    return solarize(img, 256 - std::min(256, int(level / kLevelDenom * 256)));
  if (op == "SolarizeAdd") return solarize_add(img, std::min(128, int(level / kLevelDenom * 110)));
  if (op == "Color" || op == "ColorIncreasing") return enhance_color(img, enhance(level));
  if (op == "Contrast" || op == "ContrastIncreasing") return enhance_contrast(img, enhance(level));
  if (op == "Brightness" || op == "BrightnessIncreasing")
    return enhance_brightness(img, enhance(level));
  if (op == "Sharpness" || op == "SharpnessIncreasing")
    return enhance_sharpness(img, enhance(level));
  if (op == "ShearX")
    return affine(img, {1, negate(level / kLevelDenom * 0.3), 0, 0, 1, 0}, interp_, fill_);
  if (op == "ShearY")
    return affine(img, {1, 0, 0, negate(level / kLevelDenom * 0.3), 1, 0}, interp_, fill_);
  if (op == "TranslateXRel")
    return affine(img, {1, 0, negate(level / kLevelDenom * 0.45) * img.width, 0, 1, 0}, interp_,
                  fill_);
  if (op == "TranslateYRel")
    return affine(img, {1, 0, 0, 0, 1, negate(level / kLevelDenom * 0.45) * img.height}, interp_,
                  fill_);
  throw Error("RandAugment: unknown op " + op);
}

}  // namespace scion::data

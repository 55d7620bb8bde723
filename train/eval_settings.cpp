// The validation settings a run's weights carry ("scion_data" metadata of best.safetensors, JSON):
// the preprocessing (mean, std, interpolation, crop_pct) and the precision and batch size the run
// validated with, so `scion eval` on those weights reproduces the run's logged numbers.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "train/trainer.h"

namespace scion::train {

std::string eval_metadata(const Config& cfg) {
  const DataConfig& d = cfg.data;
  nlohmann::json j{{"mean", d.mean},
                   {"std", d.std},
                   {"interpolation", d.augment.interpolation},
                   {"crop_pct", d.augment.crop_pct},
                   {"precision", cfg.train.precision},
                   {"batch_size", cfg.train.batch_size}};
  return j.dump();
}

void apply_eval_metadata(Config& cfg, const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw InputError(source + ": metadata scion_data: not valid JSON");
  }
  auto field = [&](const char* k) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(k))
      throw InputError(source + ": metadata scion_data: missing field '" + k + "'");
    return j[k];
  };
  auto triple = [&](const char* k, std::array<float, 3>& out) {
    const nlohmann::json& v = field(k);
    if (!v.is_array() || v.size() != 3)
      throw InputError(source + ": metadata scion_data." + k + ": expected 3 numbers");
    for (size_t i = 0; i < 3; ++i) {
      if (!v[i].is_number())
        throw InputError(source + ": metadata scion_data." + k + ": expected 3 numbers");
      out[i] = v[i].get<float>();
    }
  };
  auto string = [&](const char* k, std::vector<std::string> allowed) {
    const nlohmann::json& v = field(k);
    for (const auto& a : allowed)
      if (v.is_string() && v.get<std::string>() == a) return a;
    throw InputError(source + ": metadata scion_data." + k + ": unexpected value " + v.dump());
  };
  auto number = [&](const char* k, double lo, double hi) {
    const nlohmann::json& v = field(k);
    if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi))
      throw InputError(source + ": metadata scion_data." + k + ": expected a number in [" +
                       std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump());
    return v.get<double>();
  };
  triple("mean", cfg.data.mean);
  triple("std", cfg.data.std);
  cfg.data.augment.interpolation = string("interpolation", {"bicubic", "bilinear", "nearest"});
  cfg.data.augment.crop_pct = number("crop_pct", 0.05, 1.0);
  cfg.train.precision = string("precision", {"f32", "bf16"});
  cfg.train.batch_size = int64_t(number("batch_size", 1, 1 << 20));
}

}  // namespace scion::train

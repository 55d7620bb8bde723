// Resume safety: a run continues from output_dir/last.safetensors only when the new resolved
// config equals the checkpoint's, except keys that may change on resume (where the data lives,
// how many threads and loader workers run, the output folder, the log interval, how data-parallel
// ranks communicate (the process count is not in the config at all), and train.epochs
// extended past the checkpoint). Otherwise the user is told which keys differ and how to start
// fresh; nothing in the folder is touched before this decision.
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/safetensors.h"
#include "train/trainer.h"

namespace scion::train {

namespace {

// "a.b.c" -> scalar text (lists as their flow text) of a YAML mapping.
std::map<std::string, std::string> flatten(const std::string& yaml_text) {
  std::map<std::string, std::string> out;
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n,
                                                                        const std::string& p) {
    if (n.IsMap()) {
      for (auto it = n.begin(); it != n.end(); ++it)
        walk(it->second,
             p.empty() ? it->first.as<std::string>() : p + "." + it->first.as<std::string>());
    } else {
      YAML::Emitter e;
      e << YAML::Flow << n;
      out[p] = e.c_str();
    }
  };
  walk(YAML::Load(yaml_text), "");
  return out;
}

// How to get past a folder that holds another run.
std::string restart_hint(const std::string& dir) {
  return "\nTo start a new run, give another --output-dir, or pass --restart to move the old "
         "run's files aside (into " +
         dir + "/replaced-<time>/) and start afresh.";
}

bool may_change(const std::string& key) {
  return key == "output_dir" || key == "threads" || key == "data.workers" || key == "data.root" ||
         key == "train.log_interval" || key == "train.progress_seconds" ||
         key.rfind("dist.", 0) == 0;
}

}  // namespace

std::string config_differences(const Config& a, const Config& b,
                               const std::function<bool(const std::string&)>& allowed) {
  auto fa = flatten(to_yaml(a)), fb = flatten(to_yaml(b));
  std::string diffs;
  for (const auto& [k, v] : fb) {
    auto it = fa.find(k);
    std::string was = it == fa.end() ? "(absent)" : it->second;
    if (was == v || may_change(k) || (allowed && allowed(k))) continue;
    diffs += "\n  " + k + ": " + was + " -> " + v;
  }
  for (const auto& [k, v] : fa)
    if (!fb.count(k) && !may_change(k)) diffs += "\n  " + k + ": " + v + " -> (absent)";
  return diffs;
}

std::map<std::string, std::string> check_resumable(const Config& cfg,
                                                   const std::string& last_path) {
  SafetensorsFile ck = SafetensorsFile::open(last_path);
  const std::map<std::string, std::string> meta = ck.metadata();
  if (!meta.count("config"))
    throw InputError(last_path +
                     ": checkpoint metadata lacks 'config'; cannot check that it is "
                     "the same run");
  Config old = parse_config(meta.at("config"), last_path + " (metadata config)");
  // train.epochs may be extended (or shortened to no less than what was run).
  auto epochs_ok = [&](const std::string& k) {
    if (k != "train.epochs") return false;
    int64_t done = 0;
    try {
      done = std::stoll(meta.count("epoch") ? meta.at("epoch") : "0");
    } catch (const std::exception&) {
      throw InputError(last_path + ": checkpoint metadata 'epoch': not an integer");
    }
    return cfg.train.epochs >= done;
  };
  const std::string diffs = config_differences(old, cfg, epochs_ok);
  if (!diffs.empty())
    throw InputError(cfg.output_dir + " holds a different run (" + last_path +
                     "); its config differs in:" + diffs + restart_hint(cfg.output_dir));
  return meta;
}

namespace {

// A checkpoint's metadata fields, each read with its expected form; a field missing or out of form
// is an input error naming the file and the field.
class MetadataFields {
 public:
  MetadataFields(const std::map<std::string, std::string>& meta, const std::string& path)
      : meta_(meta), path_(path) {}

  InputError bad(const std::string& field, const std::string& msg) const {
    return InputError(path_ + ": checkpoint metadata '" + field + "': " + msg);
  }

  const std::string& text(const char* k) const {
    auto it = meta_.find(k);
    if (it == meta_.end()) throw bad(k, "missing");
    return it->second;
  }

  int64_t integer(const char* k, int64_t lo, int64_t hi) const {
    const std::string& t = text(k);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != t.size()) throw bad(k, "expected an integer, got '" + t + "'");
    if (v < lo || v > hi)
      throw bad(k, "value " + t + " out of range [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
    return int64_t(v);
  }

  double number(const char* k, double lo, double hi) const {
    const std::string& t = text(k);
    size_t used = 0;
    double v = NAN;
    try {
      v = std::stod(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != t.size() || !(v >= lo && v <= hi))
      throw bad(k, "expected a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                       "], got '" + t + "'");
    return v;
  }

  nlohmann::json json(const char* k) const {
    try {
      return nlohmann::json::parse(text(k));
    } catch (const nlohmann::json::exception&) {
      throw bad(k, "not valid JSON");
    }
  }

  // Checks that `record`, read from field k, is an object with a number of at least `min` under
  // each of `names`; else an error saying `need` and the name.
  void require_numbers(const char* k, const nlohmann::json& record,
                       std::initializer_list<const char*> names, double min,
                       const std::string& need) const {
    for (const char* f : names)
      if (!record.is_object() || !record.contains(f) || !record[f].is_number() ||
          !(record[f].get<double>() >= min))
        throw bad(k, need + " '" + f + "'");
  }

 private:
  const std::map<std::string, std::string>& meta_;
  const std::string& path_;
};

}  // namespace

CheckpointState read_checkpoint_state(const SafetensorsFile& ck, const std::string& path,
                                      int64_t batches_per_epoch, int64_t steps_per_epoch) {
  const MetadataFields fields(ck.metadata(), path);
  CheckpointState s;
  s.epoch = fields.integer("epoch", 0, 1000000);
  // batches_per_epoch: a stop in an epoch's last step; the resumed run evaluates that epoch.
  s.batch_in_epoch = fields.integer("batch_in_epoch", 0, batches_per_epoch);
  s.step = fields.integer("step", 0, (s.epoch + 1) * steps_per_epoch);
  s.rng_offset = uint64_t(fields.integer("rng_offset", 0, INT64_MAX));
  s.best_val_acc1 = fields.number("best_val_acc1", -1.0, 100.0);
  s.wall_seconds = fields.number("wall_seconds", 0.0, 1e12);
  const nlohmann::json history = fields.json("metrics");
  if (!history.is_array() || int64_t(history.size()) != s.epoch)
    throw fields.bad("metrics", "expected a list of " + std::to_string(s.epoch) + " epoch records");
  for (const auto& line : history)  // any number: a JSON number is never NaN, so -inf admits all
    fields.require_numbers(
        "metrics", line, {"epoch", "step", "lr", "train_loss", "val_loss", "val_acc1", "val_acc5"},
        -INFINITY, "every epoch record needs a number");
  s.metrics = history.dump();
  if (s.batch_in_epoch > 0) {
    const nlohmann::json part = fields.json("partial_epoch");
    fields.require_numbers("partial_epoch", part, {"loss_sum", "loss_count", "images", "seconds"},
                           0.0, "needs a non-negative number");
    s.partial_loss_sum = part["loss_sum"].get<double>();
    s.partial_loss_count = part["loss_count"].get<int64_t>();
    s.partial_images = part["images"].get<int64_t>();
    s.partial_seconds = part["seconds"].get<double>();
  }
  return s;
}

std::string move_run_aside(const std::string& output_dir) {
  static const char* const kOutputs[] = {"last.safetensors", "best.safetensors", "metrics.jsonl",
                                         "summary.json", "config.yaml"};
  bool any = false;
  for (const char* f : kOutputs) any = any || path_exists(output_dir + "/" + f);
  if (!any) return "";
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  // mkdir is the test and the claim at once: a folder that exists is never reused.
  std::string dest;
  for (int n = 1;; ++n) {
    dest = output_dir + "/replaced-" + stamp + (n > 1 ? "-" + std::to_string(n) : "");
    if (mkdir(dest.c_str(), 0755) == 0) break;
    if (errno != EEXIST || n > 10000)
      throw InputError(dest + ": cannot create the folder for the replaced run (" +
                       std::strerror(errno) + ")");
  }
  for (const char* f : kOutputs) {
    const std::string from = output_dir + "/" + f;
    if (!path_exists(from)) continue;
    if (std::rename(from.c_str(), (dest + "/" + f).c_str()) != 0)
      throw InputError(from + ": cannot move it to " + dest + " (" + std::strerror(errno) + ")");
  }
  return dest;
}

FolderState inspect_output(const Config& cfg) {
  const std::string dir = cfg.output_dir, last = dir + "/last.safetensors",
                    summary = dir + "/summary.json", metrics = dir + "/metrics.jsonl";
  if (path_exists(last)) {
    const std::map<std::string, std::string> meta = check_resumable(cfg, last);
    const bool at_end = meta.count("epoch") &&
                        meta.at("epoch") == std::to_string(cfg.train.epochs) &&
                        (!meta.count("batch_in_epoch") || meta.at("batch_in_epoch") == "0");
    return at_end && path_exists(summary) ? FolderState::finished : FolderState::resumable;
  }
  if (!path_exists(summary) && !path_exists(metrics)) return FolderState::empty;
  // Results without a checkpoint (e.g. a finished run the harness reused): finished when its
  // config.yaml is this config and summary.json covers train.epochs; otherwise never overwritten.
  const std::string config_path = dir + "/config.yaml";
  std::string diffs = "\n  (its config.yaml is missing)";
  if (path_exists(config_path)) {
    try {
      diffs = config_differences(load_config(config_path), cfg);
    } catch (const InputError& e) {
      diffs = std::string("\n  (its config.yaml is not valid: ") + e.what() + ")";
    }
  }
  if (!diffs.empty())
    throw InputError(dir + " holds the results of a different run (metrics.jsonl/summary.json, " +
                     "no last.safetensors); its config differs in:" + diffs + restart_hint(dir));
  int64_t epochs = -1;
  try {
    nlohmann::json j = nlohmann::json::parse(read_text_file(summary, "a run's summary.json"));
    if (j.is_object() && j.contains("epochs") && j["epochs"].is_number_integer())
      epochs = j["epochs"].get<int64_t>();
  } catch (const std::exception&) {
  }
  if (epochs == cfg.train.epochs) return FolderState::finished;
  throw InputError(dir + " holds results of this run without last.safetensors, so it cannot " +
                   "continue (" +
                   (epochs < 0 ? "no valid summary.json"
                               : "summary.json says " + std::to_string(epochs) + " epochs") +
                   ")." + restart_hint(dir));
}

}  // namespace scion::train

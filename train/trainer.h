// The training loop behind `train --config` (DESIGN.md "Run outputs"): per epoch train, evaluate
// (and the EMA weights when on), append to metrics.jsonl, write last.safetensors (model, optimizer,
// EMA, and in its metadata epoch/step/RNG/config/metrics history) and best.safetensors (model
// weights, timm keys); summary.json at the end.
//
// Exact resume: every random draw is keyed by (seed, epoch, sample) or restored from the
// checkpoint (the default generator's offset, used by dropout and drop path), and a checkpoint also
// records how far into an epoch it was taken (SIGINT/SIGTERM stop at an optimizer-step boundary),
// so a resumed CPU run with the same thread count computes what an uninterrupted one would.
// metrics.jsonl is rewritten from the checkpoint's history, so it always matches last.safetensors.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "core/safetensors.h"
#include "data/loader.h"
#include "nn/model.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/signals.h"

namespace scion::train {

struct EvalResult {
  double loss = 0, acc1 = 0, acc5 = 0;
  int64_t images = 0;
};

// The position of class y in torch.topk's order of a row of k scores (0 = top-1): higher scores
// first, NaN above every number, equal scores by lower index first, so ties and NaN never count
// as hits they are not.
int64_t topk_rank(const float* row, int64_t k, int64_t y);

// Mean cross-entropy, top-1 and top-5 accuracy (in %) of `model` over the loader's epoch 0,
// stopping after `limit` images when limit > 0. With a communicator of several ranks, each rank's
// loader holds its shard of every batch and the sums are reduced over the ranks (no limit then).
EvalResult evaluate(nn::Module& model, data::DataLoader& loader, bool bf16, int64_t limit = 0,
                    dist::Communicator* comm = nullptr);

// Builds the evaluation pipeline of a config (resize + center crop, normalization).
data::PipelineConfig eval_pipeline(const Config& cfg);

// The validation settings saved with a run's weights ("scion_data" metadata, JSON): mean, std,
// interpolation, crop_pct, precision, batch_size; and applied back onto a config (an InputError
// names `source` and the field when the metadata is malformed).
std::string eval_metadata(const Config& cfg);
void apply_eval_metadata(Config& cfg, const std::string& json_text, const std::string& source);

// Throws an InputError listing the differing keys when `cfg` may not resume `last_path` (a
// different run: see train/resume.cpp for the keys that may change on resume).
// Returns the checkpoint's metadata.
std::map<std::string, std::string> check_resumable(const Config& cfg, const std::string& last_path);
// The keys in which two resolved configs differ, one "\n  key: a -> b" line each, leaving out the
// keys that may change on resume (data.root, threads, ...) and those `allowed` accepts.
std::string config_differences(const Config& a, const Config& b,
                               const std::function<bool(const std::string&)>& allowed = {});
// The training state a checkpoint's metadata records, every field checked (an InputError names
// the file and the field): epoch, batch_in_epoch (<= batches_per_epoch: a stop in an epoch's last
// step records the epoch's end, and the resumed run evaluates it first), optimizer step, RNG
// offset, best top-1, wall time, the metrics history (one record per finished epoch) and the
// running sums of an interrupted epoch.
struct CheckpointState {
  int64_t epoch = 0, batch_in_epoch = 0, step = 0;
  uint64_t rng_offset = 0;
  double best_val_acc1 = -1, wall_seconds = 0;
  std::string metrics;  // JSON array of the epoch records
  double partial_loss_sum = 0, partial_seconds = 0;
  int64_t partial_loss_count = 0, partial_images = 0;
};
CheckpointState read_checkpoint_state(const SafetensorsFile& checkpoint, const std::string& path,
                                      int64_t batches_per_epoch, int64_t steps_per_epoch);
// Moves a run's outputs in `output_dir` into a new folder output_dir/replaced-<time>[-N]/ (never
// one that exists: two restarts in one second get two folders); returns it ("" when there was
// nothing to move).
std::string move_run_aside(const std::string& output_dir);

// What an output folder holds for `cfg`: no run (config.yaml alone is no run), an unfinished run
// of this config (resume from last.safetensors), or this run finished (summary.json for
// train.epochs epochs: left untouched). Files of a different run, or of a run without a
// checkpoint, are an InputError naming the keys that differ and the way out (--restart).
enum class FolderState { empty, resumable, finished };
FolderState inspect_output(const Config& cfg);

struct RunOptions {
  bool resume = false;   // continue from last.safetensors (automatic when it exists)
  bool restart = false;  // move an existing run's files aside and start afresh
};

// Runs (or resumes) a training run; returns the process exit status: 0 done (or finished earlier:
// nothing is touched), 1 failure, 128 + the signal number when SIGINT/SIGTERM stopped it (after
// saving last.safetensors, so a rerun resumes). The output folder is locked (core/files.h
// FolderLock) for the life of the run: a second process on it gets an InputError naming this
// one's pid. InputError escapes for the caller to report with status 2.
int run_training(const Config& cfg, const RunOptions& options = {});

// Writes `text` to `path` atomically (temporary file, fsync, rename).
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace scion::train

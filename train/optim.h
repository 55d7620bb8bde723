// Optimizers with torch.optim's update rules, on f32 master parameters, and learning-rate
// schedules.
//   AdamW: p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//          p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)          (torch.optim.AdamW)
//   SGD:   d = g + wd p; buf = mu buf + d (buf = d at the first step);
//          p -= lr * (nesterov ? d + mu buf : buf)                          (torch.optim.SGD)
// Weight decay follows timm's param_groups_weight_decay: none for 1-d parameters (biases, norms,
// layer scales) and for the model's no-decay names (ViT: pos_embed, cls_token).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "nn/model.h"
#include "train/config.h"

namespace scion::train {

struct ParamState {
  std::string name;
  Tensor param;
  double weight_decay;
  Tensor buf1, buf2;  // AdamW: exp_avg, exp_avg_sq; SGD: momentum buffer
};

class Optimizer {
 public:
  Optimizer(const nn::Module& model, const OptimizerConfig& cfg,
            const std::vector<std::string>& no_decay);
  // One update with learning rate lr from the parameters' current .grad (missing grads skip).
  void step(double lr);
  int64_t steps() const { return step_; }
  // State for checkpoints: "optim.<param>.exp_avg", ... and the step count in `meta`.
  NamedTensors state() const;
  void load_state(const SafetensorsFile& f, int64_t steps);
  void set_steps(int64_t steps) { step_ = steps; }  // a data-parallel rank taking rank 0's state
  const std::vector<ParamState>& params() const { return params_; }

 private:
  OptimizerConfig cfg_;
  std::vector<ParamState> params_;
  int64_t step_ = 0;
};

// Names that never get weight decay for this model (timm's no_weight_decay()).
std::vector<std::string> no_weight_decay_names(const nn::Model& model);

// Scales gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Per-step learning rate. cosine: linear warmup from warmup_lr to lr over warmup_epochs, then
// min_lr + (lr - min_lr) (1 + cos(pi i / n)) / 2 over the remaining steps (the official ConvNeXt /
// weight-selection cosine_scheduler); step: lr * decay_rate^floor(epoch / decay_epochs); constant.
double learning_rate(const TrainConfig& t, int64_t step, int64_t steps_per_epoch);

// Exponential moving average of the model's state: ema = decay ema + (1 - decay) value.
class Ema {
 public:
  Ema(const nn::Module& model, double decay);
  void update(const nn::Module& model);
  const NamedTensors& state() const { return state_; }
  NamedTensors& state() { return state_; }

 private:
  double decay_;
  NamedTensors state_;
};

}  // namespace scion::train

// Optimizer updates (fused backend kernels: AdamW one call for all parameters, SGD one per
// parameter), gradient clipping, schedules, EMA.
#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion::train {

std::vector<std::string> no_weight_decay_names(const nn::Model& model) {
  if (model.family() == "vit") return {"pos_embed", "cls_token"};
  return {};
}

Optimizer::Optimizer(const nn::Module& model, const OptimizerConfig& cfg,
                     const std::vector<std::string>& no_decay)
    : cfg_(cfg) {
  for (auto& [name, p] : model.named_parameters()) {
    SCION_CHECK(p.dtype() == DType::f32 && p.is_contiguous(), "optimizer: parameter ", name,
                " must be contiguous f32 (master weights)");
    bool decay = p.dim() > 1 && std::find(no_decay.begin(), no_decay.end(), name) == no_decay.end();
    ParamState s{name, p, decay ? cfg.weight_decay : 0.0, zeros(p.shape(), DType::f32, p.device()),
                 Tensor()};
    if (cfg.type == "adamw") s.buf2 = zeros(p.shape(), DType::f32, p.device());
    params_.push_back(std::move(s));
  }
}

void Optimizer::step(double lr) {
  ++step_;
  OptimStep os;
  os.lr = lr;
  os.beta1 = cfg_.betas[0];
  os.beta2 = cfg_.betas[1];
  os.eps = cfg_.eps;
  os.step = step_;
  os.momentum = cfg_.momentum;
  os.nesterov = cfg_.nesterov;
  // AdamW steps every parameter in one backend call (one kernel on a GPU), SGD one at a time.
  std::vector<AdamWParam> adamw;
  Backend* be = nullptr;
  for (ParamState& s : params_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    Tensor gc = g.dtype() == DType::f32 ? g.contiguous() : g.to(DType::f32).contiguous();
    os.weight_decay = s.weight_decay;
    Backend& b = backend_for("optimizer step", {&s.param, &gc, &s.buf1});
    SCION_CHECK(be == nullptr || be == &b, "optimizer: parameters on different devices (", s.name,
                " on ", s.param.device().str(), ")");
    be = &b;
    if (cfg_.type == "adamw")
      adamw.push_back({s.param, gc, s.buf1, s.buf2, s.weight_decay});
    else
      b.sgd_step(s.param, gc, s.buf1, os);
  }
  if (!adamw.empty()) be->adamw_steps(adamw, os);
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const ParamState& s : params_) {
    out.emplace_back("optim." + s.name + (cfg_.type == "adamw" ? ".exp_avg" : ".momentum"), s.buf1);
    if (s.buf2.defined()) out.emplace_back("optim." + s.name + ".exp_avg_sq", s.buf2);
  }
  return out;
}

void Optimizer::load_state(const SafetensorsFile& f, int64_t steps) {
  NoGradGuard ng;
  for (ParamState& s : params_) {
    std::string k1 = "optim." + s.name + (cfg_.type == "adamw" ? ".exp_avg" : ".momentum");
    SCION_CHECK(f.contains(k1), f.path(), ": checkpoint has no optimizer state '", k1,
                "' (saved with a different optimizer or model?)");
    s.buf1.copy_(f.get(k1));
    if (s.buf2.defined()) {
      std::string k2 = "optim." + s.name + ".exp_avg_sq";
      SCION_CHECK(f.contains(k2), f.path(), ": checkpoint has no optimizer state '", k2, "'");
      s.buf2.copy_(f.get(k2));
    }
  }
  step_ = steps;
}

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  const Device device = grads.empty() ? cpu_device() : grads[0].device();
  Backend& be = backend(device);
  // Sum of squares over every gradient in f64 (in a fixed order), the norm and the factor computed
  // where the gradients are, so a GPU step never waits for the host here:
  // torch.nn.utils.clip_grad_norm_'s clamp(max_norm / (norm + 1e-6), max=1), applied always.
  // Both over every gradient at once (one kernel each on a GPU).
  Tensor total = zeros({}, DType::f64, device);
  std::vector<Tensor> squares;
  for (const Tensor& g : grads) {
    SCION_CHECK(g.device() == device, "clip_grad_norm: gradients on ", device.str(), " and ",
                g.device().str());
    squares.push_back(g.dtype() == DType::f32 && g.is_contiguous() ? g
                                                                   : g.to(DType::f32).contiguous());
  }
  be.add_sums_of_squares(squares, total);
  Tensor norm = scion::sqrt(total);
  if (max_norm > 0) {
    Tensor factor = minimum(max_norm / (norm + 1e-6), full({}, 1.0, DType::f64, device));
    be.scale_all_by(grads, factor);
  }
  return norm;
}

double learning_rate(const TrainConfig& t, int64_t step, int64_t steps_per_epoch) {
  const ScheduleConfig& s = t.schedule;
  const double base = t.optimizer.lr;
  if (s.type == "constant") return base;
  if (s.type == "step")
    return base *
           std::pow(s.decay_rate, std::floor(double(step) / steps_per_epoch / s.decay_epochs));
  int64_t total = t.epochs * steps_per_epoch;
  // A warmup longer than the run keeps its slope (as timm's schedulers do), never squeezed into
  // the run; config_warnings says so at start-up.
  const int64_t warmup = int64_t(std::llround(s.warmup_epochs * double(steps_per_epoch)));
  if (step < warmup) return s.warmup_lr + (base - s.warmup_lr) * double(step) / double(warmup);
  int64_t n = total - warmup, i = step - warmup;
  if (n <= 0) return base;
  return s.min_lr + 0.5 * (base - s.min_lr) * (1.0 + std::cos(M_PI * double(i) / double(n)));
}

Ema::Ema(const nn::Module& model, double decay) : decay_(decay) {
  for (auto& [name, t] : model.state_dict()) state_.emplace_back(name, t.detach().clone());
}

void Ema::update(const nn::Module& model) {
  NoGradGuard ng;
  NamedTensors current = model.state_dict();
  for (size_t i = 0; i < state_.size(); ++i) {
    Tensor e = state_[i].second;
    e.mul_(decay_);
    e.add_(current[i].second, 1.0 - decay_);
  }
}

}  // namespace scion::train

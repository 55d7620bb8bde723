// Optimizer updates (fused loops over f32 parameters), gradient clipping, schedules and EMA.
#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/cpu/parallel.h"

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
    ParamState s{name, p, decay ? cfg.weight_decay : 0.0, zeros(p.shape()), Tensor()};
    if (cfg.type == "adamw") s.buf2 = zeros(p.shape());
    params_.push_back(std::move(s));
  }
}

void Optimizer::step(double lr) {
  ++step_;
  const double b1 = cfg_.betas[0], b2 = cfg_.betas[1];
  const double bc1 = 1.0 - std::pow(b1, double(step_)), bc2 = 1.0 - std::pow(b2, double(step_));
  for (ParamState& s : params_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    Tensor gc = g.dtype() == DType::f32 ? g.contiguous() : g.to(DType::f32).contiguous();
    float* p = s.param.data<float>();
    const float* gp = gc.data<float>();
    float* m = s.buf1.data<float>();
    const int64_t n = s.param.numel();
    if (cfg_.type == "adamw") {
      float* v = s.buf2.data<float>();
      const float decay = float(1.0 - lr * s.weight_decay), fb1 = float(b1), fb2 = float(b2);
      const float step_size = float(lr / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2)),
                  eps = float(cfg_.eps);
      cpu::parallel_for(0, n, 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          float gi = gp[i];
          m[i] = fb1 * m[i] + (1.0f - fb1) * gi;
          v[i] = fb2 * v[i] + (1.0f - fb2) * gi * gi;
          p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
        }
      });
    } else {
      const float wd = float(s.weight_decay), mu = float(cfg_.momentum), flr = float(lr);
      const bool first = step_ == 1, nesterov = cfg_.nesterov;
      cpu::parallel_for(0, n, 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          float d = gp[i] + wd * p[i];
          if (mu != 0.0f) {
            m[i] = first ? d : mu * m[i] + d;
            d = nesterov ? d + mu * m[i] : m[i];
          }
          p[i] -= flr * d;
        }
      });
    }
  }
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

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  // Sum of squares over every gradient, accumulated in f64 per thread chunk (fixed order).
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor gc = g.dtype() == DType::f32 && g.is_contiguous() ? g : g.to(DType::f32).contiguous();
    const float* gp = gc.data<float>();
    const int64_t n = gc.numel();
    int nt = cpu::num_threads();
    std::vector<double> part(static_cast<size_t>(nt), 0.0);
    cpu::parallel_for(0, n, 1 << 15, [&](int64_t lo, int64_t hi) {
      double s = 0;
      for (int64_t i = lo; i < hi; ++i) s += double(gp[i]) * double(gp[i]);
      part[size_t(omp_in_parallel() ? omp_get_thread_num() : 0)] = s;
    });
    for (double v : part) total += v;
  }
  double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);  // torch.nn.utils.clip_grad_norm_
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) g.mul_(scale);
    }
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
  int64_t warmup =
      std::min<int64_t>(total, int64_t(std::llround(s.warmup_epochs * double(steps_per_epoch))));
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

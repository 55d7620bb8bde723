// Fused optimizer updates over contiguous f32 parameters (one pass per tensor, split across
// threads in fixed chunks), and the f64-accumulated squared norm used by gradient clipping.
#include <cmath>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

// clang-format off
#include "core/cpu/isa_begin.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const OptimStep& s) {
  float* pp = p.data<float>();
  const float* gp = g.data<float>();
  float* mp = m.data<float>();
  float* vp = v.data<float>();
  const double bc1 = 1.0 - std::pow(s.beta1, double(s.step)),
               bc2 = 1.0 - std::pow(s.beta2, double(s.step));
  // 1 - beta in f64 as torch does (in f32, 1 - 0.999f loses 1e-5 of its value).
  const float decay = float(1.0 - s.lr * s.weight_decay), b1 = float(s.beta1), b2 = float(s.beta2),
              one_b1 = float(1.0 - s.beta1), one_b2 = float(1.0 - s.beta2);
  const float step_size = float(s.lr / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2)),
              eps = float(s.eps);
  parallel_for(0, p.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float gi = gp[i];
      mp[i] = b1 * mp[i] + one_b1 * gi;
      vp[i] = b2 * vp[i] + one_b2 * gi * gi;
      pp[i] = pp[i] * decay - step_size * mp[i] / (std::sqrt(vp[i]) * inv_sqrt_bc2 + eps);
    }
  });
}

void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) {
  float* pp = p.data<float>();
  const float* gp = g.data<float>();
  float* mp = m.data<float>();
  const float wd = float(s.weight_decay), mu = float(s.momentum), lr = float(s.lr);
  const bool first = s.step == 1, nesterov = s.nesterov;
  parallel_for(0, p.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float d = gp[i] + wd * pp[i];
      if (mu != 0.0f) {
        mp[i] = first ? d : mu * mp[i] + d;
        d = nesterov ? d + mu * mp[i] : mp[i];
      }
      pp[i] -= lr * d;
    }
  });
}

double sum_squares(const Tensor& x) {
  const float* xp = x.data<float>();
  std::vector<double> part(size_t(num_threads()), 0.0);
  parallel_for(0, x.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += double(xp[i]) * double(xp[i]);
    part[size_t(omp_in_parallel() ? omp_get_thread_num() : 0)] = s;
  });
  double total = 0;
  for (double v : part) total += v;
  return total;
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

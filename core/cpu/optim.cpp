// Fused optimizer updates over contiguous f32 parameters (one pass per tensor, split across
// threads in fixed chunks; the per-element math is core/kernel_math.h's, shared with the CUDA
// kernels), and the f64-accumulated squared norm used by gradient clipping.
#include <cmath>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
#include "core/kernel_math.h"

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
  const kmath::AdamWConsts c =
      kmath::adamw_consts(s.lr, s.weight_decay, s.beta1, s.beta2, s.eps, s.step);
  parallel_for(0, p.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) pp[i] = kmath::adamw_update(pp[i], gp[i], mp[i], vp[i], c);
  });
}

void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) {
  float* pp = p.data<float>();
  const float* gp = g.data<float>();
  float* mp = m.data<float>();
  const kmath::SgdConsts c{float(s.weight_decay), float(s.momentum), float(s.lr), s.step == 1,
                           s.nesterov};
  parallel_for(0, p.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) pp[i] = kmath::sgd_update(pp[i], gp[i], mp[i], c);
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

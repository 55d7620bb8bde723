// Per-element math shared by the CPU kernels and the CUDA kernels (core/cuda/), compiled by g++
// and by nvcc from this one header so both devices give the same bits: Philox-4x32-10 and the
// random distributions on it, bf16 rounding, and the AdamW / SGD updates of one parameter.
// Functions here use only arithmetic and <cmath> functions that CUDA provides for double; the
// tests compare them on the host against the CPU backend bit for bit
// (tests/core/test_cuda_host.cpp), and on a GPU the CUDA kernels against the CPU backend.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SCION_HD __host__ __device__ __forceinline__
#else
#define SCION_HD inline
#endif

namespace scion::kmath {

// f32 products and sums that are never fused into an FMA: nvcc fuses a * b + c by default and g++
// does in FMA-capable code, which would change the last bit between devices and ISA builds. On the
// device these are the round-to-nearest intrinsics; the host files that use them are compiled with
// -ffp-contract=off (CMakeLists.txt).
SCION_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SCION_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
SCION_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
SCION_HD float sqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// Philox-4x32-10 block: 4 random 32-bit words for (key, counter).
struct Words4 {
  uint32_t w[4];
};
SCION_HD Words4 philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = uint32_t(counter_lo), c1 = uint32_t(counter_lo >> 32);
  uint32_t c2 = uint32_t(counter_hi), c3 = uint32_t(counter_hi >> 32);
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * c0, p1 = uint64_t(kM1) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return Words4{{c0, c1, c2, c3}};
}

// 53 random bits of two words -> [0, 1).
SCION_HD double u32_to_unit(uint32_t a, uint32_t b) {
  uint64_t v = (uint64_t(a) << 21) ^ uint64_t(b >> 11);
  return double(v & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

constexpr double kPi = 3.14159265358979323846;

// Inverse error function: Giles' single-precision-style initial guess refined by two Newton steps
// in double, accurate to ~1e-15 on (-1, 1).
SCION_HD double erfinv(double y) {
  if (y <= -1) return -HUGE_VAL;
  if (y >= 1) return HUGE_VAL;
  double w = -::log((1.0 - y) * (1.0 + y)), x;
  if (w < 5.0) {
    w -= 2.5;
    double p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
    x = p * y;
  } else {
    w = ::sqrt(w) - 3.0;
    double p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
    x = p * y;
  }
  for (int i = 0; i < 2; ++i) {
    double err = ::erf(x) - y;
    x -= err / (2.0 / ::sqrt(kPi) * ::exp(-x * x));
  }
  return x;
}

// One random draw from a counter's 4 words (RandomFill in core/rng.h; kind as RandomKind).
// uniform: p0 + (p1 - p0) u; normal: Box-Muller; trunc_normal: inverse CDF between cdf_lo and
// cdf_hi, clamped to [p2, p3]; bernoulli: 1 with probability p0.
SCION_HD double random_sample(int kind, double p0, double p1, double p2, double p3, double cdf_lo,
                              double cdf_hi, const Words4& w) {
  switch (kind) {
    case 0:
      return p0 + (p1 - p0) * u32_to_unit(w.w[0], w.w[1]);
    case 1: {
      double u1 = 1.0 - u32_to_unit(w.w[0], w.w[1]), u2 = u32_to_unit(w.w[2], w.w[3]);
      return p0 + p1 * ::sqrt(-2.0 * ::log(u1)) * ::cos(2.0 * kPi * u2);
    }
    case 2: {
      double u = cdf_lo + (cdf_hi - cdf_lo) * u32_to_unit(w.w[0], w.w[1]);
      double x = p0 + p1 * ::sqrt(2.0) * erfinv(u);
      return x < p2 ? p2 : (x > p3 ? p3 : x);
    }
    default:
      return u32_to_unit(w.w[0], w.w[1]) < p0 ? 1.0 : 0.0;
  }
}

// bf16 is the upper half of an f32: widening is exact, narrowing rounds to nearest even and keeps
// NaNs quiet.
SCION_HD float bf16_to_float(uint16_t bits) {
  uint32_t u = uint32_t(bits) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
SCION_HD uint16_t float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Per-step constants of torch.optim.AdamW, computed once on the host (1 - beta in f64 as torch
// does: in f32, 1 - 0.999f loses 1e-5 of its value).
struct AdamWConsts {
  float decay, b1, b2, one_b1, one_b2, step_size, inv_sqrt_bc2, eps;
};
inline AdamWConsts adamw_consts(double lr, double weight_decay, double beta1, double beta2,
                                double eps, int64_t step) {
  const double bc1 = 1.0 - std::pow(beta1, double(step)), bc2 = 1.0 - std::pow(beta2, double(step));
  return AdamWConsts{float(1.0 - lr * weight_decay),
                     float(beta1),
                     float(beta2),
                     float(1.0 - beta1),
                     float(1.0 - beta2),
                     float(lr / bc1),
                     float(1.0 / std::sqrt(bc2)),
                     float(eps)};
}
// One parameter: m, v updated in place, the new parameter returned.
SCION_HD float adamw_update(float p, float g, float& m, float& v, const AdamWConsts& c) {
  m = add_rn(mul_rn(c.b1, m), mul_rn(c.one_b1, g));
  v = add_rn(mul_rn(c.b2, v), mul_rn(mul_rn(c.one_b2, g), g));
  const float denom = add_rn(mul_rn(sqrt_rn(v), c.inv_sqrt_bc2), c.eps);
  return add_rn(mul_rn(p, c.decay), -div_rn(mul_rn(c.step_size, m), denom));
}

// torch.optim.SGD (coupled weight decay, dampening 0); `first` starts the momentum buffer.
struct SgdConsts {
  float wd, mu, lr;
  bool first, nesterov;
};
SCION_HD float sgd_update(float p, float g, float& m, const SgdConsts& c) {
  float d = add_rn(g, mul_rn(c.wd, p));
  if (c.mu != 0.0f) {
    m = c.first ? d : add_rn(mul_rn(c.mu, m), d);
    d = c.nesterov ? add_rn(d, mul_rn(c.mu, m)) : m;
  }
  return add_rn(p, -mul_rn(c.lr, d));
}

}  // namespace scion::kmath

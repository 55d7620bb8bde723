// Per-element math shared by the CPU kernels and the CUDA kernels (core/cuda/), compiled by g++
// and by nvcc from this one header so both devices give the same bits: Philox-4x32-10 and the
// random distributions on it, bf16 rounding, exact GELU and its derivative, and the AdamW / SGD
// updates of one parameter.
// Functions here use only arithmetic and <cmath> functions that CUDA provides for double; the
// tests compare them on the host against the CPU backend bit for bit
// (tests/core/test_cuda_host.cpp), and on a GPU the CUDA kernels against the CPU backend.
#pragma once
#define SCION_KERNEL_MATH_H 1  // core/cpu/vec.h checks that it comes first

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
// a * b + c rounded once (the CPU kernels' vector FMA).
SCION_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
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

// Exact GELU (erf form), x Phi(x), and its derivative Phi(x) + x phi(x), f32, computed as the
// CPU's fast kernels compute them (core/cpu/vec.h, core/cpu/activation.cpp), step for step: exp as
// 2^k e^r with a degree-6 polynomial on |r| <= ln2/2, erf as the odd/even rational approximation
// of XLA and Eigen on x clamped to [-4, 4] (4.2e-7 absolute), each product, sum, quotient and FMA
// rounded once. The CUDA kernels run these functions for f32 and bf16, the AVX2 and AVX-512 builds
// the same steps on vectors, and the plain build these functions where it has an FMA instruction
// (arm64; core/cpu/activation.cpp): tests/core/test_isa.cpp compares them bit for bit.
// min and max as the vector instructions give them: the second operand when the first is NaN.
SCION_HD float min_as_simd(float a, float b) {
  return a < b ? a : b;
}
SCION_HD float max_as_simd(float a, float b) {
  return a > b ? a : b;
}
// 2^e, integral e in [-126, 127].
SCION_HD float pow2_int(int e) {
  const uint32_t u = uint32_t(e + 127) << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
SCION_HD float exp_f32(float x) {
  x = max_as_simd(min_as_simd(x, 88.72f), -103.9f);
  const float k = rintf(mul_rn(x, 1.44269504088896341f));  // to nearest, ties to even
  float r = fma_rn(-k, 0.693359375f, x);
  r = fma_rn(-k, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_rn(p, r, 1.3981999507e-3f);
  p = fma_rn(p, r, 8.3334519073e-3f);
  p = fma_rn(p, r, 4.1665795894e-2f);
  p = fma_rn(p, r, 1.6666665459e-1f);
  p = fma_rn(p, r, 5.0000001201e-1f);
  p = fma_rn(p, mul_rn(r, r), add_rn(r, 1.0f));
  // p 2^k for k in [-150, 128] in two normal factors, so results down to the denormals round once.
  const int ki = int(k), h = ki >> 1;
  return mul_rn(mul_rn(p, pow2_int(h)), pow2_int(ki - h));
}
// The rational erf's coefficients, highest power first: the numerator's in x^2 (kErfPTerms of
// them, times x) and the denominator's (kErfQTerms).
constexpr int kErfPTerms = 7, kErfQTerms = 5;
SCION_HD constexpr float erf_p(int i) {
  constexpr float c[kErfPTerms] = {-2.72614225801306e-10f, 2.77068142495902e-08f,
                                   -2.10102402082508e-06f, -5.69250639462346e-05f,
                                   -7.34990630326855e-04f, -2.95459980854025e-03f,
                                   -1.60960333262415e-02f};
  return c[i];
}
SCION_HD constexpr float erf_q(int i) {
  constexpr float c[kErfQTerms] = {-1.45660718464996e-05f, -2.13374055278905e-04f,
                                   -1.68282697438203e-03f, -7.37332916720468e-03f,
                                   -1.42647390514189e-02f};
  return c[i];
}
SCION_HD float erf_f32(float a) {
  const float x = max_as_simd(min_as_simd(a, 4.f), -4.f), x2 = mul_rn(x, x);
  float p = 0.f, q = 0.f;  // fma(0, x2, c) is c: the first step of the vector code's loops
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < kErfPTerms; ++i) p = fma_rn(p, x2, erf_p(i));
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < kErfQTerms; ++i) q = fma_rn(q, x2, erf_q(i));
  return mul_rn(mul_rn(x, p), div_rn(1.0f, q));
}
// Phi(x) = 0.5 erf(x / sqrt 2) + 0.5.
SCION_HD float normal_cdf_f32(float x) {
  return fma_rn(0.5f, erf_f32(mul_rn(x, 0.70710678118654752f)), 0.5f);
}
SCION_HD float gelu_erf_f32(float x) {
  return mul_rn(x, normal_cdf_f32(x));
}
// g times the derivative at x.
SCION_HD float gelu_erf_backward_f32(float g, float x) {
  const float pdf = mul_rn(exp_f32(mul_rn(mul_rn(-0.5f, x), x)), 0.39894228040143267794f);
  return mul_rn(g, fma_rn(x, pdf, normal_cdf_f32(x)));
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

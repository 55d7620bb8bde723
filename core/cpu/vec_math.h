// AVX-512 float math for the elementwise kernels oneDNN does not cover fast enough:
// exp: range reduction to 2^n * e^r with |r| <= ln2/2 and a degree-6 polynomial (~1 ulp);
// erf: the odd/even rational approximation used by XLA and Eigen for float, on x clamped to
//   [-4, 4] (max abs error 4.2e-7 over the line, measured against std::erf), so
//   Phi(x) = 0.5 (1 + erf(x / sqrt 2)) is computed like torch does, with the same cancellation
//   for very negative x (absolute error of gelu stays below 0.5 |x| 4.2e-7).
// Kernels handle row tails with masked vectors, so every element takes the same path; the scalar
// versions of the same formulas serve builds without AVX-512.
#pragma once

#include <cmath>

#include "core/dtype.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define SCION_AVX512 1
#endif

namespace scion::cpu::vec {

constexpr float kErfP[] = {-2.72614225801306e-10f, 2.77068142495902e-08f,  -2.10102402082508e-06f,
                           -5.69250639462346e-05f, -7.34990630326855e-04f, -2.95459980854025e-03f,
                           -1.60960333262415e-02f};
constexpr float kErfQ[] = {-1.45660718464996e-05f, -2.13374055278905e-04f, -1.68282697438203e-03f,
                           -7.37332916720468e-03f, -1.42647390514189e-02f};

inline float erf_fast(float a) {
  float x = std::fmax(std::fmin(a, 4.f), -4.f), x2 = x * x, p = 0, q = 0;
  for (float c : kErfP) p = p * x2 + c;
  for (float c : kErfQ) q = q * x2 + c;
  return x * p / q;
}

// Phi(x), the standard normal CDF.
inline float normal_cdf(float x) {
  return 0.5f * (1.0f + erf_fast(x * 0.70710678118654752f));
}

#ifdef SCION_AVX512
// Masked loads and stores of 16 floats from f32 or bf16 memory (bf16 rounded to nearest even).
inline __m512 load(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
inline __m512 load(const BFloat16* p, __mmask16 m) {
  __m256i v = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}
inline void store(float* p, __m512 v, __mmask16 m) {
  _mm512_mask_storeu_ps(p, m, v);
}
inline void store(BFloat16* p, __m512 v, __mmask16 m) {
#ifdef __AVX512BF16__
  _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(v));
#else
  alignas(64) float tmp[16];
  _mm512_storeu_ps(tmp, v);
  for (int i = 0; i < 16; ++i)
    if (m >> i & 1) p[i] = BFloat16(tmp[i]);
#endif
}
inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
}

inline __m512 exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72f)), _mm512_set1_ps(-103.9f));
  __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __m512 erf512(__m512 a) {
  __m512 x = _mm512_max_ps(_mm512_min_ps(a, _mm512_set1_ps(4.f)), _mm512_set1_ps(-4.f));
  __m512 x2 = _mm512_mul_ps(x, x), p = _mm512_setzero_ps(), q = _mm512_setzero_ps();
  for (float c : kErfP) p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(c));
  for (float c : kErfQ) q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(c));
  // p / q by rcp14 and one Newton step (rel. error ~1e-8), much cheaper than a divide.
  __m512 r = _mm512_rcp14_ps(q);
  r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0f)));
  return _mm512_mul_ps(_mm512_mul_ps(x, p), r);
}

inline __m512 normal_cdf512(__m512 x) {
  const __m512 half = _mm512_set1_ps(0.5f);
  __m512 e = erf512(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
  return _mm512_fmadd_ps(half, e, half);
}
#endif

}  // namespace scion::cpu::vec

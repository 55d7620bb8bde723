// One vector of floats for the per-ISA kernels (include after isa_begin.h): V holds kLanes floats,
// 16 on AVX-512, 8 on AVX2, 1 in the plain build, so each kernel is written once and compiled per
// ISA (the way PyTorch's Vectorized<float> serves its CPU_CAPABILITY builds).
// Loads and stores take the count of valid elements n from p on: lanes at and past n read as 0 and
// are not written (masked on AVX-512 and AVX2, bounced through a small buffer for bf16 on AVX2), so
// a row's tail takes the same path as its body. bf16 is widened exactly and rounded to nearest even
// (quiet NaN kept), as BFloat16 does.
// Math (max error against the f64 functions over the float line):
//   exp: 2^k e^r with |r| <= ln2/2, degree-6 polynomial, ~1 ulp; 2^k applied in two halves on AVX2
//     so results down to the denormals are exact, as _mm512_scalef_ps gives on AVX-512;
//   erf: the odd/even rational approximation of XLA and Eigen on x clamped to [-4, 4]
//     (4.2e-7 absolute; its coefficients in core/kernel_math.h); Phi(x) = 0.5 (1 + erf(x / sqrt 2))
//     as torch computes gelu.
// The plain build uses std::exp and the same rational erf. Exact GELU in the AVX2 and AVX-512
// builds takes the steps of core/kernel_math.h's scalar functions, which the CUDA kernels run, and
// gives their bits (tests/core/test_isa.cpp; core/cpu/activation.cpp says where the plain build
// does).
#pragma once

#include <cmath>
#include <cstring>

#include "core/dtype.h"
// core/kernel_math.h (the erf coefficients) comes before isa_begin.h, with the other headers, so
// that its inline functions stay baseline code (see isa_begin.h): each kernel file includes it.
#ifndef SCION_KERNEL_MATH_H
#error "include core/kernel_math.h before core/cpu/isa_begin.h"
#endif

#if SCION_KERNEL_ISA > 0
#include <immintrin.h>
#endif

namespace scion::cpu::SCION_ISA_NS::vec {

#if SCION_KERNEL_ISA == 2  // ---- AVX-512 ------------------------------------------------------

constexpr int kLanes = 16;
struct V {
  __m512 v;
};
inline __mmask16 mask(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}
inline V set1(float x) {
  return {_mm512_set1_ps(x)};
}
inline V zero() {
  return {_mm512_setzero_ps()};
}
inline V load(const float* p, int64_t n = kLanes) {
  return {_mm512_maskz_loadu_ps(mask(n), p)};
}
inline V load(const BFloat16* p, int64_t n = kLanes) {
  __m256i h = _mm256_maskz_loadu_epi16(mask(n), p);
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
}
inline void store(float* p, V x, int64_t n = kLanes) {
  _mm512_mask_storeu_ps(p, mask(n), x.v);
}
inline void store(BFloat16* p, V x, int64_t n = kLanes) {
  __m512i u = _mm512_castps_si512(x.v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __mmask16 nan = _mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q);
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  _mm256_mask_storeu_epi16(p, mask(n), _mm512_cvtepi32_epi16(r));
}
inline V keep(V x, int64_t n) {
  return {_mm512_maskz_mov_ps(mask(n), x.v)};
}
// Lanes below n from a, the rest from b.
inline V select(int64_t n, V a, V b) {
  return {_mm512_mask_mov_ps(b.v, mask(n), a.v)};
}
inline V operator+(V a, V b) {
  return {_mm512_add_ps(a.v, b.v)};
}
inline V operator-(V a, V b) {
  return {_mm512_sub_ps(a.v, b.v)};
}
inline V operator*(V a, V b) {
  return {_mm512_mul_ps(a.v, b.v)};
}
inline V fmadd(V a, V b, V c) {
  return {_mm512_fmadd_ps(a.v, b.v, c.v)};
}  // a b + c
inline V fnmadd(V a, V b, V c) {
  return {_mm512_fnmadd_ps(a.v, b.v, c.v)};
}  // c - a b
inline V max(V a, V b) {
  return {_mm512_max_ps(a.v, b.v)};
}
inline V min(V a, V b) {
  return {_mm512_min_ps(a.v, b.v)};
}
inline float reduce_add(V a) {
  return _mm512_reduce_add_ps(a.v);
}
inline float reduce_max(V a) {
  return _mm512_reduce_max_ps(a.v);
}
inline V round_nearest(V a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline V scale_by_pow2(V p, V k) {
  return {_mm512_scalef_ps(p.v, k.v)};
}  // p 2^k
// 1/q rounded once, as the AVX2 build, the plain one and the GPU (core/kernel_math.h) compute it:
// rcp14's estimate refined by a Newton step was cheaper but gave other bits.
inline V reciprocal(V q) {
  return {_mm512_div_ps(_mm512_set1_ps(1.0f), q.v)};
}

#elif SCION_KERNEL_ISA == 1  // ---- AVX2 + FMA ---------------------------------------------------

constexpr int kLanes = 8;
struct V {
  __m256 v;
};
inline __m256i mask(int64_t n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 8 ? (n < 0 ? 0 : n) : 8)), iota);
}
inline V set1(float x) {
  return {_mm256_set1_ps(x)};
}
inline V zero() {
  return {_mm256_setzero_ps()};
}
inline V load(const float* p, int64_t n = kLanes) {
  return {n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n))};
}
inline V load(const BFloat16* p, int64_t n = kLanes) {
  __m128i h;
  if (n >= 8) {
    h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    alignas(16) uint16_t buf[8] = {};
    std::memcpy(buf, p, size_t(n > 0 ? n : 0) * 2);
    h = _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
  }
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
}
inline void store(float* p, V x, int64_t n = kLanes) {
  if (n >= 8)
    _mm256_storeu_ps(p, x.v);
  else
    _mm256_maskstore_ps(p, mask(n), x.v);
}
inline void store(BFloat16* p, V x, int64_t n = kLanes) {
  __m256i u = _mm256_castps_si256(x.v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
  __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  r = _mm256_blendv_epi8(r, qnan, nan);
  __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  if (n >= 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
  } else if (n > 0) {
    alignas(16) uint16_t buf[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(buf), h);
    std::memcpy(p, buf, size_t(n) * 2);
  }
}
inline V keep(V x, int64_t n) {
  return {_mm256_and_ps(x.v, _mm256_castsi256_ps(mask(n)))};
}
inline V select(int64_t n, V a, V b) {
  return {_mm256_blendv_ps(b.v, a.v, _mm256_castsi256_ps(mask(n)))};
}
inline V operator+(V a, V b) {
  return {_mm256_add_ps(a.v, b.v)};
}
inline V operator-(V a, V b) {
  return {_mm256_sub_ps(a.v, b.v)};
}
inline V operator*(V a, V b) {
  return {_mm256_mul_ps(a.v, b.v)};
}
inline V fmadd(V a, V b, V c) {
  return {_mm256_fmadd_ps(a.v, b.v, c.v)};
}
inline V fnmadd(V a, V b, V c) {
  return {_mm256_fnmadd_ps(a.v, b.v, c.v)};
}
inline V max(V a, V b) {
  return {_mm256_max_ps(a.v, b.v)};
}
inline V min(V a, V b) {
  return {_mm256_min_ps(a.v, b.v)};
}
inline float reduce_add(V a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float reduce_max(V a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline V round_nearest(V a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline __m256 pow2(__m256i e) {  // 2^e for integral e in [-126, 127]
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}
// p 2^k for integral k in [-150, 128]: two factors 2^(k/2), 2^(k - k/2), each a normal float.
inline V scale_by_pow2(V p, V k) {
  __m256i ki = _mm256_cvtps_epi32(k.v), h = _mm256_srai_epi32(ki, 1);
  return {_mm256_mul_ps(_mm256_mul_ps(p.v, pow2(h)), pow2(_mm256_sub_epi32(ki, h)))};
}
// A division, not _mm256_rcp_ps refined: rcp_ps's estimate differs between Intel and AMD, and on
// an Intel Xeon two Newton steps from it left gelu(-5.5) 1.1e-6 off (AMD's passed); 1/q rounded
// once gives every x86 CPU the same bits.
inline V reciprocal(V q) {
  return {_mm256_div_ps(_mm256_set1_ps(1.0f), q.v)};
}

#else  // ---- plain: one float ---------------------------------------------------------------

constexpr int kLanes = 1;
struct V {
  float v;
};
inline V set1(float x) {
  return {x};
}
inline V zero() {
  return {0.0f};
}
inline V load(const float* p, int64_t n = kLanes) {
  return {n > 0 ? *p : 0.0f};
}
inline V load(const BFloat16* p, int64_t n = kLanes) {
  return {n > 0 ? float(*p) : 0.0f};
}
inline void store(float* p, V x, int64_t n = kLanes) {
  if (n > 0) *p = x.v;
}
inline void store(BFloat16* p, V x, int64_t n = kLanes) {
  if (n > 0) *p = BFloat16(x.v);
}
inline V keep(V x, int64_t n) {
  return {n > 0 ? x.v : 0.0f};
}
inline V select(int64_t n, V a, V b) {
  return n > 0 ? a : b;
}
inline V operator+(V a, V b) {
  return {a.v + b.v};
}
inline V operator-(V a, V b) {
  return {a.v - b.v};
}
inline V operator*(V a, V b) {
  return {a.v * b.v};
}
// Where FMA is in the baseline (arm64, a native build) fused explicitly, as in the AVX2 and
// AVX-512 builds, not wherever the compiler chooses to contract.
inline V fmadd(V a, V b, V c) {
#ifdef __FP_FAST_FMAF
  return {std::fma(a.v, b.v, c.v)};
#else
  return {a.v * b.v + c.v};
#endif
}
inline V fnmadd(V a, V b, V c) {
#ifdef __FP_FAST_FMAF
  return {std::fma(-a.v, b.v, c.v)};
#else
  return {c.v - a.v * b.v};
#endif
}
inline V max(V a, V b) {
#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
  // fmax's result spelled out: GCC 12 crashes vectorizing an fmax reduction for aarch64 (internal
  // compiler error in vect_transform_reduction, softmax's row maximum). NaN loses, as in fmax.
  return {a.v < b.v || std::isnan(a.v) ? b.v : a.v};
#else
  return {std::fmax(a.v, b.v)};
#endif
}
inline V min(V a, V b) {
  return {std::fmin(a.v, b.v)};
}
inline float reduce_add(V a) {
  return a.v;
}
inline float reduce_max(V a) {
  return a.v;
}
inline V reciprocal(V q) {
  return {1.0f / q.v};
}

#endif

#if SCION_KERNEL_ISA > 0
inline V exp(V x) {
  x = max(min(x, set1(88.72f)), set1(-103.9f));
  V k = round_nearest(x * set1(1.44269504088896341f));
  V r = fnmadd(k, set1(0.693359375f), x);
  r = fnmadd(k, set1(-2.12194440e-4f), r);
  V p = set1(1.9875691500e-4f);
  p = fmadd(p, r, set1(1.3981999507e-3f));
  p = fmadd(p, r, set1(8.3334519073e-3f));
  p = fmadd(p, r, set1(4.1665795894e-2f));
  p = fmadd(p, r, set1(1.6666665459e-1f));
  p = fmadd(p, r, set1(5.0000001201e-1f));
  p = fmadd(p, r * r, r + set1(1.0f));
  return scale_by_pow2(p, k);
}
#else
inline V exp(V x) {
  return {std::exp(x.v)};
}
#endif

inline V erf(V a) {
  V x = max(min(a, set1(4.f)), set1(-4.f)), x2 = x * x, p = zero(), q = zero();
  for (int i = 0; i < kmath::kErfPTerms; ++i) p = fmadd(p, x2, set1(kmath::erf_p(i)));
  for (int i = 0; i < kmath::kErfQTerms; ++i) q = fmadd(q, x2, set1(kmath::erf_q(i)));
  return x * p * reciprocal(q);
}

// Phi(x), the standard normal CDF.
inline V normal_cdf(V x) {
  const V half = set1(0.5f);
  return fmadd(half, erf(x * set1(0.70710678118654752f)), half);
}

}  // namespace scion::cpu::SCION_ISA_NS::vec

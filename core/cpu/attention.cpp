// Fused multi-head attention on the packed qkv projection (timm's Attention core; torch's
// F.scaled_dot_product_attention without mask or dropout), flash-style: one task per (batch,
// head), its N x N scores only in a per-thread buffer; the backward recomputes the probabilities
// from the saved log-sum-exp of each row instead of keeping them between the passes.
//   S = scale Q K^T   P = softmax(S), lse = log sum exp S   O = P V
//   dV = P^T dO   dP = dO V^T   dS = P o (dP - rowsum(dO o O))   dQ = scale dS K   dK = scale dS^T Q
// Two engines for the tile products. bf16 inputs on a CPU with AVX512-BF16 (asked at run time, in
// the AVX-512 build of this file) use bf16 dot products with f32 accumulation (P and dS are
// rounded to bf16 for their products, as autocast's matmuls do): on AMX's tile unit where the CPU
// has it (Sapphire Rapids and later), else a vdpbf16ps micro-kernel; both take the same packed
// operands. Any other case converts the tiles to f32 and multiplies them with oneDNN's sgemm
// (single-threaded inside the parallel loop); the row softmax runs on vec.h's vectors in every
// build.
#include <dnnl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/kernel_math.h"

// clang-format off
#include "core/cpu/isa_begin.h"
#include "core/cpu/vec.h"
// clang-format on

#if SCION_KERNEL_ISA == 2
#define SCION_BF16_KERNEL 1
#define SCION_BF16_TARGET \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif
#if SCION_KERNEL_ISA == 2 && defined(__x86_64__)
#define SCION_AMX_KERNEL 1
#define SCION_AMX_TARGET                                                             \
  __attribute__((                                                                    \
      target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile," \
             "amx-bf16")))
#endif

namespace scion::cpu::SCION_ISA_NS {

namespace {

// Where one head's rows live: row i of q, k, v at qkv + i * row (+ h*d, + C + h*d, + 2C + h*d) of
// batch element b; out and dout rows at stride C.
struct Heads {
  int64_t batch, n, heads, d;
  int64_t c() const { return heads * d; }
  int64_t row() const { return 3 * heads * d; }
  int64_t qkv_offset(int64_t task, int which) const {  // task = b * heads + h
    return (task / heads) * n * row() + which * c() + (task % heads) * d;
  }
  int64_t out_offset(int64_t task) const { return (task / heads) * n * c() + (task % heads) * d; }
};

// Row softmax of s (n x n, row stride ld) in place, and lse[i] = log sum_j exp s[i][j].
void softmax_rows(float* s, int64_t n, int64_t ld, float* lse) {
  using namespace vec;
  const V minus_inf = set1(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; ++i) {
    float* r = s + i * ld;
    V m = minus_inf;
    for (int64_t j = 0; j < n; j += kLanes)
      m = max(m, select(n - j, load(r + j, n - j), minus_inf));
    const float mx = reduce_max(m);
    V acc = zero(), vm = set1(mx);
    for (int64_t j = 0; j < n; j += kLanes) {
      V e = keep(vec::exp(load(r + j, n - j) - vm), n - j);
      acc = acc + e;
      store(r + j, e, n - j);
    }
    const float sum = reduce_add(acc);
    const V inv = set1(1.0f / sum);
    for (int64_t j = 0; j < n; j += kLanes) store(r + j, load(r + j, n - j) * inv, n - j);
    lse[i] = mx + std::log(sum);
  }
}

// P = exp(S - lse) row by row, in place (the forward's probabilities, recomputed).
void probabilities(float* s, int64_t n, int64_t ld, const float* lse) {
  using namespace vec;
  for (int64_t i = 0; i < n; ++i) {
    float* r = s + i * ld;
    const V l = set1(lse[i]);
    for (int64_t j = 0; j < n; j += kLanes) store(r + j, vec::exp(load(r + j, n - j) - l), n - j);
  }
}

// dS = P o (dP - D), D_i = sum_c dO[i][c] O[i][c]; dp (n x n, ld) is overwritten with dS.
void score_gradient(const float* p, float* dp, int64_t n, int64_t ld, const float* d_row) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) dp[i * ld + j] = p[i * ld + j] * (dp[i * ld + j] - d_row[i]);
}

template <class T>
void row_dots(const T* a, const T* b, int64_t stride, int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float s = 0;
    for (int64_t c = 0; c < d; ++c) s += float(a[i * stride + c]) * float(b[i * stride + c]);
    out[i] = s;
  }
}

// ---- f32 engine: tiles converted to f32, products on oneDNN's sgemm ----------------------------

// c (m x n, ldc) = alpha op(a) op(b), row-major.
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  dnnl_status_t st =
      dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, 0.0f, c, ldc);
  SCION_CHECK(st == dnnl_success, "attention: oneDNN sgemm failed with status ", int(st));
}

template <class T>
void load_rows(const T* src, int64_t stride, int64_t n, int64_t d, float* dst) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) dst[i * d + c] = float(src[i * stride + c]);
}

template <class T>
void store_rows(const float* src, int64_t n, int64_t d, T* dst, int64_t stride) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) dst[i * stride + c] = T(src[i * d + c]);
}

template <class T>
void forward_f32(const T* qkv, T* out, float* lse, const Heads& g, double scale) {
  const int64_t n = g.n, d = g.d;
  parallel_for(0, g.batch * g.heads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> q(n * d), k(n * d), v(n * d), o(n * d), s(n * n);
    for (int64_t t = t0; t < t1; ++t) {
      load_rows(qkv + g.qkv_offset(t, 0), g.row(), n, d, q.data());
      load_rows(qkv + g.qkv_offset(t, 1), g.row(), n, d, k.data());
      load_rows(qkv + g.qkv_offset(t, 2), g.row(), n, d, v.data());
      sgemm(false, true, n, n, d, float(scale), q.data(), d, k.data(), d, s.data(), n);
      softmax_rows(s.data(), n, n, lse + t * n);
      sgemm(false, false, n, d, n, 1.0f, s.data(), n, v.data(), d, o.data(), d);
      store_rows(o.data(), n, d, out + g.out_offset(t), g.c());
    }
  });
}

template <class T>
void backward_f32(const T* qkv, const T* out, const T* dout, const float* lse, T* dqkv,
                  const Heads& g, double scale) {
  const int64_t n = g.n, d = g.d;
  const float sc = float(scale);
  parallel_for(0, g.batch * g.heads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> q(n * d), k(n * d), v(n * d), go(n * d), r(n * d), p(n * n), dp(n * n),
        dd(n);
    for (int64_t t = t0; t < t1; ++t) {
      load_rows(qkv + g.qkv_offset(t, 0), g.row(), n, d, q.data());
      load_rows(qkv + g.qkv_offset(t, 1), g.row(), n, d, k.data());
      load_rows(qkv + g.qkv_offset(t, 2), g.row(), n, d, v.data());
      load_rows(dout + g.out_offset(t), g.c(), n, d, go.data());
      row_dots(dout + g.out_offset(t), out + g.out_offset(t), g.c(), n, d, dd.data());
      sgemm(false, true, n, n, d, sc, q.data(), d, k.data(), d, p.data(), n);
      probabilities(p.data(), n, n, lse + t * n);
      sgemm(true, false, n, d, n, 1.0f, p.data(), n, go.data(), d, r.data(), d);  // dV
      store_rows(r.data(), n, d, dqkv + g.qkv_offset(t, 2), g.row());
      sgemm(false, true, n, n, d, 1.0f, go.data(), d, v.data(), d, dp.data(), n);  // dP
      score_gradient(p.data(), dp.data(), n, n, dd.data());
      sgemm(false, false, n, d, n, sc, dp.data(), n, k.data(), d, r.data(), d);  // dQ
      store_rows(r.data(), n, d, dqkv + g.qkv_offset(t, 0), g.row());
      sgemm(true, false, n, d, n, sc, dp.data(), n, q.data(), d, r.data(), d);  // dK
      store_rows(r.data(), n, d, dqkv + g.qkv_offset(t, 1), g.row());
    }
  });
}

// ---- bf16 engine: vdpbf16ps micro-kernel -------------------------------------------------------
// A product C (m x n) = alpha A B takes A as bf16 rows (the reduction dim k contiguous, padded to
// even with zeros) and B packed as 32-bit words holding pairs of consecutive reduction rows:
// Bw[kk][j] = (B[2kk][j], B[2kk+1][j]), zero past n up to a multiple of 16 columns.
#ifdef SCION_BF16_KERNEL

int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

using u16 = uint16_t;
using u32 = uint32_t;

// This engine's helpers carry the AVX512-BF16 target themselves (a CPU may have AVX-512 without
// it), so they have their own mask and load helpers rather than vec.h's.
inline __mmask16 mask16(int64_t n) {  // the first min(n, 16) lanes
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << std::max<int64_t>(n, 0)) - 1);
}

template <int MR, int NV>
SCION_BF16_TARGET void micro_kernel(const u16* a, int64_t lda, const u32* b, int64_t ldb,
                                    int64_t k2, float* c, int64_t ldc, float alpha,
                                    __mmask16 last) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k2; ++kk) {
    __m512bh bv[NV];
    for (int v = 0; v < NV; ++v)
      bv[v] = (__m512bh)_mm512_loadu_si512(static_cast<const void*>(b + kk * ldb + 16 * v));
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * kk, 4);
      __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      _mm512_mask_storeu_ps(c + r * ldc + 16 * v, v == NV - 1 ? last : __mmask16(0xffff),
                            _mm512_mul_ps(acc[r][v], al));
}

using MicroKernel = void (*)(const u16*, int64_t, const u32*, int64_t, int64_t, float*, int64_t,
                             float, __mmask16);

template <int MR>
constexpr MicroKernel kRow[4] = {micro_kernel<MR, 1>, micro_kernel<MR, 2>, micro_kernel<MR, 3>,
                                 micro_kernel<MR, 4>};
constexpr const MicroKernel* kKernels[4] = {kRow<1>, kRow<2>, kRow<3>, kRow<4>};

// c (m x n, ldc) = alpha a b: a bf16 rows (lda elements, 2*k2 of them used), b packed (ldb words).
SCION_BF16_TARGET void gemm_bf16(int64_t m, int64_t n, int64_t k2, float alpha, const u16* a,
                                 int64_t lda, const u32* b, int64_t ldb, float* c, int64_t ldc) {
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    const int64_t nv = std::min<int64_t>(4, (n - j0 + 15) / 16);
    const __mmask16 last = mask16(n - j0 - 16 * (nv - 1));
    for (int64_t i0 = 0; i0 < m; i0 += 4) {
      const int64_t mr = std::min<int64_t>(4, m - i0);
      kKernels[mr - 1][nv - 1](a + i0 * lda, lda, b + j0, ldb, k2, c + i0 * ldc + j0, ldc, alpha,
                               last);
    }
  }
}

// ---- the same products on AMX tiles -------------------------------------------------------------
// A tile holds 16 rows of 64 bytes: 16 rows of A by 16 reduction pairs (32 bf16), 16 pair rows of
// the packed B by 16 columns (the packed form above is AMX's layout for B), or a 16 x 16 f32 block
// of C. tdpbf16ps adds A B to C, with the products' pairs summed in f32 as vdpbf16ps does. The
// operands are taken as gemm_bf16 takes them: A is staged with its rows and reduction padded with
// zeros to whole tiles, and the last, partial chunk of B's pair rows likewise; each C tile goes
// through a 16 x 16 buffer to c, scaled, as many rows and columns as the product has.
#ifdef SCION_AMX_KERNEL

// The palette-1 configuration: eight tiles of 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// The compiler does not see the tiles' memory accesses (GCC's tile loads declare no memory
// operand): staged operands must be in memory before a load, and a stored tile read after it.
inline void memory_barrier() {
  __asm__ __volatile__("" ::: "memory");
}

struct AmxScratch {
  std::vector<u16> a;  // A staged: rows and reduction padded to whole tiles
  std::vector<u32> b;  // B's last partial chunk of pair rows, padded
  alignas(64) float c[16 * 16];
};

// c[i][j] (i < rows, j < cols) = alpha t[i][j], t the tile just stored (16 x 16).
SCION_BF16_TARGET void store_scaled(const float* t, int64_t rows, int64_t cols, float alpha,
                                    float* c, int64_t ldc) {
  const __m512 al = _mm512_set1_ps(alpha);
  for (int64_t i = 0; i < rows; ++i)
    _mm512_mask_storeu_ps(c + i * ldc, mask16(cols), _mm512_mul_ps(_mm512_load_ps(t + 16 * i), al));
}

// Where a block's operands and result live: its (up to) two row tiles of A, each with its own
// row stride in bytes (A in place, or the staged copy), its B columns (the last chunk from
// b_last), and its C.
struct AmxBlock {
  const u16 *a0, *a1;
  long sa0, sa1;
  const u32 *b, *b_last;
  long sb;
  int64_t kc, rows, cols;
  float alpha;
  float* c;
  int64_t ldc;
  float* t;  // a 16 x 16 buffer
};

// A C tile's rows x cols corner to c: stored in place when whole and unscaled, else through the
// buffer, scaled.
#define SCION_AMX_STORE(tile, r, cl, cp)                                                          \
  do {                                                                                            \
    if (k.alpha == 1.0f && (r) >= 16 && (cl) >= 16) {                                             \
      _tile_stored(tile, cp, long(k.ldc * 4));                                                    \
    } else {                                                                                      \
      _tile_stored(tile, k.t, 64);                                                                \
      store_scaled(k.t, std::min<int64_t>(r, 16), std::min<int64_t>(cl, 16), k.alpha, cp, k.ldc); \
    }                                                                                             \
  } while (0)

// An MT x NT block of C tiles (tiles 0-3) from MT tiles of A (4, 5) and NT of B (6, 7), over kc
// chunks of 16 pairs.
template <int MT, int NT>
SCION_AMX_TARGET void amx_block(const AmxBlock& k) {
  _tile_zero(0);
  if (NT == 2) _tile_zero(1);
  if (MT == 2) _tile_zero(2);
  if (MT == 2 && NT == 2) _tile_zero(3);
  for (int64_t q = 0; q < k.kc; ++q) {
    const u32* bq = q == k.kc - 1 ? k.b_last : k.b + q * 16 * (k.sb / 4);
    _tile_loadd(4, k.a0 + q * 32, k.sa0);
    _tile_loadd(6, bq, k.sb);
    _tile_dpbf16ps(0, 4, 6);
    if (NT == 2) {
      _tile_loadd(7, bq + 16, k.sb);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (MT == 2) {
      _tile_loadd(5, k.a1 + q * 32, k.sa1);
      _tile_dpbf16ps(2, 5, 6);
      if (NT == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  SCION_AMX_STORE(0, k.rows, k.cols, k.c);
  if (NT == 2) SCION_AMX_STORE(1, k.rows, k.cols - 16, k.c + 16);
  if (MT == 2) SCION_AMX_STORE(2, k.rows - 16, k.cols, k.c + 16 * k.ldc);
  if (MT == 2 && NT == 2) SCION_AMX_STORE(3, k.rows - 16, k.cols - 16, k.c + 16 * k.ldc + 16);
}
#undef SCION_AMX_STORE

// c (m x n, ldc) = alpha a b, as gemm_bf16 (b's columns zero up to round_up(n, 16) <= ldb). Where
// A's rows hold whole chunks (k2 a multiple of 16), its whole row tiles are read in place and only
// the last, partial one is staged; else all of A is staged, its reduction padded with zeros.
SCION_AMX_TARGET void gemm_amx(int64_t m, int64_t n, int64_t k2, float alpha, const u16* a,
                               int64_t lda, const u32* b, int64_t ldb, float* c, int64_t ldc,
                               AmxScratch& s) {
  const int64_t kc = (k2 + 15) / 16, ka = kc * 32, mp = round_up(m, 16);
  const int64_t m_in_place = k2 % 16 == 0 ? m / 16 * 16 : 0;
  s.a.resize(size_t((mp - m_in_place) * ka));
  for (int64_t i = m_in_place; i < mp; ++i) {
    u16* row = s.a.data() + (i - m_in_place) * ka;
    const int64_t copied = i < m ? 2 * k2 : 0;
    if (copied) std::memcpy(row, a + i * lda, size_t(2 * copied));
    std::fill(row + copied, row + ka, u16(0));
  }
  const u32* b_last = b + (kc - 1) * 16 * ldb;
  if (k2 % 16 != 0) {
    s.b.resize(size_t(16 * ldb));
    std::memcpy(s.b.data(), b_last, size_t((k2 % 16) * ldb * 4));
    std::fill(s.b.begin() + (k2 % 16) * ldb, s.b.end(), 0u);
    b_last = s.b.data();
  }
  // Row tile i of A: in place or staged.
  auto a_tile = [&](int64_t i, const u16*& p, long& stride) {
    if (i < m_in_place) {
      p = a + i * lda;
      stride = long(lda * 2);
    } else {
      p = s.a.data() + (i - m_in_place) * ka;
      stride = long(ka * 2);
    }
  };
  static const TileConfig config;
  memory_barrier();
  _tile_loadconfig(&config);
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    for (int64_t i0 = 0; i0 < m; i0 += 32) {
      AmxBlock k{};
      k.rows = std::min<int64_t>(32, m - i0);
      k.cols = std::min<int64_t>(32, n - j0);
      a_tile(i0, k.a0, k.sa0);
      if (k.rows > 16) a_tile(i0 + 16, k.a1, k.sa1);
      k.b = b + j0;
      k.b_last = b_last + j0;
      k.sb = long(ldb * 4);
      k.kc = kc;
      k.alpha = alpha;
      k.c = c + i0 * ldc + j0;
      k.ldc = ldc;
      k.t = s.c;
      if (k.rows > 16 && k.cols > 16)
        amx_block<2, 2>(k);
      else if (k.rows > 16)
        amx_block<2, 1>(k);
      else if (k.cols > 16)
        amx_block<1, 2>(k);
      else
        amx_block<1, 1>(k);
    }
  }
  _tile_release();
}

#endif  // SCION_AMX_KERNEL

const u16* bits(const BFloat16* p) {
  return reinterpret_cast<const u16*>(p);
}

SCION_BF16_TARGET inline __m512i bf16_bits(const float* p,
                                           __mmask16 m) {  // 16 values, 32-bit lanes
  return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, p)));
}
SCION_BF16_TARGET inline __m512i bf16_bits(const u16* p, __mmask16 m) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
}
SCION_BF16_TARGET inline __m512 widen(const BFloat16* p, __mmask16 m) {  // 16 bf16 as f32
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(bits(p), m), 16));
}

// Bw (ceil(rows/2) x round_up(cols, 16) words, ldw) from rows of src (f32 rounded, or bf16).
template <class S>
SCION_BF16_TARGET void pack_row_pairs(const S* src, int64_t ld, int64_t rows, int64_t cols, u32* w,
                                      int64_t ldw) {
  for (int64_t kk = 0; kk < (rows + 1) / 2; ++kk) {
    const S* r0 = src + 2 * kk * ld;
    const bool odd = 2 * kk + 1 == rows;
    for (int64_t j = 0; j < ldw; j += 16) {
      __mmask16 m = j < cols ? mask16(cols - j) : 0;
      __m512i lo = bf16_bits(r0 + j, m);
      __m512i hi = odd ? _mm512_setzero_si512() : bf16_bits(r0 + ld + j, m);
      _mm512_storeu_si512(static_cast<void*>(w + kk * ldw + j),
                          _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// r[i] = column i of the 16 x 16 block of 32-bit words whose row i was r[i]. Per 128-bit lane,
// two rounds of unpacks leave r[4g + e] holding column 4L + e of rows 4g..4g+3 in lane L; two
// rounds of lane shuffles then gather each column's four lanes.
SCION_BF16_TARGET inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512i b0 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0x44),
                  b1 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0xee),
                  b2 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0x44),
                  b3 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0xee);
    t[e] = _mm512_shuffle_i32x4(b0, b2, 0x88);
    t[4 + e] = _mm512_shuffle_i32x4(b0, b2, 0xdd);
    t[8 + e] = _mm512_shuffle_i32x4(b1, b3, 0x88);
    t[12 + e] = _mm512_shuffle_i32x4(b1, b3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// dst (cols x ldd words) = src^T for src (rows x cols 32-bit words, lds), in 16 x 16 blocks;
// dst's columns past rows are zero up to ldd.
SCION_BF16_TARGET void transpose_words(const void* src, int64_t lds, int64_t rows, int64_t cols,
                                       u32* dst, int64_t ldd) {
  const u32* sw = static_cast<const u32*>(src);
  for (int64_t i0 = 0; i0 < rows; i0 += 16)
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const __mmask16 cm = mask16(cols - j0), rm = mask16(ldd - i0);
      __m512i r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = i0 + i < rows ? _mm512_maskz_loadu_epi32(cm, sw + (i0 + i) * lds + j0)
                             : _mm512_setzero_si512();
      transpose16(r);
      for (int64_t j = 0; j < std::min<int64_t>(16, cols - j0); ++j)
        _mm512_mask_storeu_epi32(dst + (j0 + j) * ldd + i0, rm, r[j]);
    }
  for (int64_t j = 0; j < cols; ++j)
    std::fill(dst + j * ldd + std::min(round_up(rows, 16), ldd), dst + (j + 1) * ldd, 0u);
}

// Bw (d/2 x round_up(n, 16) words, ldw) = pairs along each row of src (n rows of d bf16, d even):
// the packed form of src^T.
SCION_BF16_TARGET void pack_transposed(const u16* src, int64_t ld, int64_t n, int64_t d, u32* w,
                                       int64_t ldw) {
  transpose_words(src, ld / 2, n, d / 2, w, ldw);
}

// dst (d x kp bf16, zero past n) = src^T for src n rows of d bf16 (d and ld even): the pairs
// along src's rows transposed as words into tw (d/2 x round_up(n, 16)), then each word row split
// into its low (even column) and high (odd column) halves.
SCION_BF16_TARGET void transpose_bf16(const u16* src, int64_t ld, int64_t n, int64_t d, u16* dst,
                                      int64_t kp, u32* tw) {
  const int64_t np = round_up(n, 16);
  transpose_words(src, ld / 2, n, d / 2, tw, np);
  for (int64_t c2 = 0; c2 < d / 2; ++c2)
    for (int64_t i = 0; i < kp; i += 16) {
      const __m512i v = _mm512_loadu_si512(static_cast<const void*>(tw + c2 * np + i));
      const __mmask16 m = mask16(kp - i);
      _mm256_mask_storeu_epi16(dst + 2 * c2 * kp + i, m, _mm512_cvtepi32_epi16(v));
      _mm256_mask_storeu_epi16(dst + (2 * c2 + 1) * kp + i, m,
                               _mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
    }
}

// dst (m x kp bf16, zero past k) = src (m x k f32, ld) rounded.
SCION_BF16_TARGET void round_rows(const float* src, int64_t ld, int64_t m, int64_t k, u16* dst,
                                  int64_t kp) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < kp; j += 16) {
      __mmask16 msk = j < k ? mask16(k - j) : 0;
      __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(msk, src + i * ld + j));
      _mm256_mask_storeu_epi16(dst + i * kp + j, mask16(kp - j), v);
    }
}

// dst rows (stride) = src rows (n x d, ld) rounded to bf16.
SCION_BF16_TARGET void store_bf16(const float* src, int64_t ld, int64_t n, int64_t d, BFloat16* dst,
                                  int64_t stride) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; c += 16) {
      __mmask16 m = mask16(d - c);
      __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i * ld + c));
      _mm256_mask_storeu_epi16(dst + i * stride + c, m, v);
    }
}

// dst rows i (stride) = column i of src (d x n, ld), rounded; tmp holds n x d floats.
SCION_BF16_TARGET void store_bf16_transposed(const float* src, int64_t ld, int64_t n, int64_t d,
                                             BFloat16* dst, int64_t stride, float* tmp) {
  transpose_words(src, ld, d, n, reinterpret_cast<u32*>(tmp), d);
  store_bf16(tmp, d, n, d, dst, stride);
}

// out[i] = sum_c a[i][c] b[i][c] over rows of bf16 (stride).
SCION_BF16_TARGET void row_dots_bf16(const BFloat16* a, const BFloat16* b, int64_t stride,
                                     int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; c += 16) {
      __mmask16 m = mask16(d - c);
      acc = _mm512_fmadd_ps(widen(a + i * stride + c, m), widen(b + i * stride + c, m), acc);
    }
    out[i] = _mm512_reduce_add_ps(acc);
  }
}

// Per-thread buffers of one (batch, head) tile; np: n rounded up to 16 (score columns), kp: n
// rounded up to 2 (reduction over tokens), dp: d rounded up to 16.
struct Bf16Tile {
  bool amx;  // products on AMX tiles, else on the vdpbf16ps micro-kernel
  int64_t n, d, np, kp, dp;
  std::vector<float> s, ds, r, t;  // scores/probabilities, dP/dS (n x np), products, transposes
  std::vector<u16> rows, tr;       // bf16 rows (n x kp), a transposed operand (d x kp)
  std::vector<u32> w, w2;          // packed B operands
  std::vector<u32> tw;             // transposed pairs (d/2 x np words)
#ifdef SCION_AMX_KERNEL
  AmxScratch scratch;
#endif
  Bf16Tile(int64_t n_, int64_t d_, bool amx_)
      : amx(amx_),
        n(n_),
        d(d_),
        np(round_up(n_, 16)),
        kp(round_up(n_, 2)),
        dp(round_up(d_, 16)),
        s(size_t(n * np)),
        ds(size_t(n * np)),
        r(size_t(std::max(n, d) * std::max(np, dp))),
        t(size_t(n * d)),
        rows(size_t(n * kp)),
        tr(size_t(d * kp)),
        w(size_t(std::max(d / 2 * np, kp / 2 * std::max(np, dp)))),
        w2(w.size()),
        tw(size_t(d / 2 * np)) {}

  // c (m x n, ldc) = alpha a b on this tile's engine (operands as gemm_bf16 takes them).
  void product(int64_t m, int64_t n_, int64_t k2, float alpha, const u16* a, int64_t lda,
               const u32* b, int64_t ldb, float* c, int64_t ldc) {
#ifdef SCION_AMX_KERNEL
    if (amx) return gemm_amx(m, n_, k2, alpha, a, lda, b, ldb, c, ldc, scratch);
#endif
    gemm_bf16(m, n_, k2, alpha, a, lda, b, ldb, c, ldc);
  }
};

SCION_BF16_TARGET void forward_bf16(const BFloat16* qkv, BFloat16* out, float* lse, const Heads& g,
                                    double scale, bool amx) {
  const int64_t n = g.n, d = g.d;
  parallel_for(0, g.batch * g.heads, 1, [&](int64_t t0, int64_t t1) {
    Bf16Tile b(n, d, amx);
    for (int64_t t = t0; t < t1; ++t) {
      const u16* q = bits(qkv + g.qkv_offset(t, 0));
      pack_transposed(bits(qkv + g.qkv_offset(t, 1)), g.row(), n, d, b.w.data(), b.np);
      b.product(n, n, d / 2, float(scale), q, g.row(), b.w.data(), b.np, b.s.data(), b.np);
      softmax_rows(b.s.data(), n, b.np, lse + t * n);
      round_rows(b.s.data(), b.np, n, n, b.rows.data(), b.kp);
      pack_row_pairs(bits(qkv + g.qkv_offset(t, 2)), g.row(), n, d, b.w.data(), b.dp);
      b.product(n, d, b.kp / 2, 1.0f, b.rows.data(), b.kp, b.w.data(), b.dp, b.r.data(), d);
      store_bf16(b.r.data(), d, n, d, out + g.out_offset(t), g.c());
    }
  });
}

SCION_BF16_TARGET void backward_bf16(const BFloat16* qkv, const BFloat16* out, const BFloat16* dout,
                                     const float* lse, BFloat16* dqkv, const Heads& g, double scale,
                                     bool amx) {
  const int64_t n = g.n, d = g.d;
  const float sc = float(scale);
  parallel_for(0, g.batch * g.heads, 1, [&](int64_t t0, int64_t t1) {
    Bf16Tile b(n, d, amx);
    std::vector<float> dd(static_cast<size_t>(n));
    for (int64_t t = t0; t < t1; ++t) {
      const u16 *q = bits(qkv + g.qkv_offset(t, 0)), *k = bits(qkv + g.qkv_offset(t, 1)),
                *v = bits(qkv + g.qkv_offset(t, 2)), *go = bits(dout + g.out_offset(t));
      row_dots_bf16(dout + g.out_offset(t), out + g.out_offset(t), g.c(), n, d, dd.data());
      // P, recomputed.
      pack_transposed(k, g.row(), n, d, b.w.data(), b.np);
      b.product(n, n, d / 2, sc, q, g.row(), b.w.data(), b.np, b.s.data(), b.np);
      probabilities(b.s.data(), n, b.np, lse + t * n);
      // dV^T = dO^T P (d x n), stored transposed.
      transpose_bf16(go, g.c(), n, d, b.tr.data(), b.kp, b.tw.data());
      pack_row_pairs(b.s.data(), b.np, n, n, b.w.data(), b.np);
      b.product(d, n, b.kp / 2, 1.0f, b.tr.data(), b.kp, b.w.data(), b.np, b.r.data(), b.np);
      store_bf16_transposed(b.r.data(), b.np, n, d, dqkv + g.qkv_offset(t, 2), g.row(), b.t.data());
      // dP = dO V^T, then dS.
      pack_transposed(v, g.row(), n, d, b.w.data(), b.np);
      b.product(n, n, d / 2, 1.0f, go, g.c(), b.w.data(), b.np, b.ds.data(), b.np);
      score_gradient(b.s.data(), b.ds.data(), n, b.np, dd.data());
      // dQ = scale dS K.
      round_rows(b.ds.data(), b.np, n, n, b.rows.data(), b.kp);
      pack_row_pairs(k, g.row(), n, d, b.w2.data(), b.dp);
      b.product(n, d, b.kp / 2, sc, b.rows.data(), b.kp, b.w2.data(), b.dp, b.r.data(), d);
      store_bf16(b.r.data(), d, n, d, dqkv + g.qkv_offset(t, 0), g.row());
      // dK^T = scale Q^T dS (d x n), stored transposed.
      transpose_bf16(q, g.row(), n, d, b.tr.data(), b.kp, b.tw.data());
      pack_row_pairs(b.ds.data(), b.np, n, n, b.w.data(), b.np);
      b.product(d, n, b.kp / 2, sc, b.tr.data(), b.kp, b.w.data(), b.np, b.r.data(), b.np);
      store_bf16_transposed(b.r.data(), b.np, n, d, dqkv + g.qkv_offset(t, 1), g.row(), b.t.data());
    }
  });
}

// The bf16 engine runs for bf16 inputs with an even head dim on CPUs with AVX512-BF16 (and
// SCION_MAX_ISA at avx512_bf16 or above), on AMX tiles where the CPU has them (and the cap is amx),
// unless SCION_ATTENTION_BF16_KERNEL asks for another: 0 the f32 engine, vdpbf16ps the
// micro-kernel (tests compare the three on one machine).
enum class Engine { f32, vdpbf16ps, amx };

Engine bf16_engine(DType dt, int64_t d) {
  static const bool cpu_has = attention_bf16_kernel_available();
  static const bool amx = attention_amx_kernel_available();
  const char* env = std::getenv("SCION_ATTENTION_BF16_KERNEL");
  const std::string want = env ? env : "";
  if (dt != DType::bf16 || d % 2 != 0 || !cpu_has || want == "0") return Engine::f32;
  return amx && want != "vdpbf16ps" ? Engine::amx : Engine::vdpbf16ps;
}

#endif  // SCION_BF16_KERNEL

Heads heads_of(const Tensor& qkv, int64_t heads) {
  return {qkv.size(0), qkv.size(1), heads, qkv.size(2) / (3 * heads)};
}

}  // namespace

void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                       const Tensor& lse) {
  const Heads g = heads_of(qkv, heads);
  float* l = lse.data<float>();
  if (qkv.dtype() == DType::f32) {
    forward_f32(qkv.data<float>(), out.data<float>(), l, g, scale);
    return;
  }
#ifdef SCION_BF16_KERNEL
  const Engine engine = bf16_engine(qkv.dtype(), g.d);
  if (engine != Engine::f32) {
    forward_bf16(qkv.data<BFloat16>(), out.data<BFloat16>(), l, g, scale, engine == Engine::amx);
    return;
  }
#endif
  forward_f32(qkv.data<BFloat16>(), out.data<BFloat16>(), l, g, scale);
}

void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout, const Tensor& lse,
                        int64_t heads, double scale, const Tensor& dqkv) {
  const Heads g = heads_of(qkv, heads);
  const float* l = lse.data<float>();
  if (qkv.dtype() == DType::f32) {
    backward_f32(qkv.data<float>(), out.data<float>(), dout.data<float>(), l, dqkv.data<float>(), g,
                 scale);
    return;
  }
#ifdef SCION_BF16_KERNEL
  const Engine engine = bf16_engine(qkv.dtype(), g.d);
  if (engine != Engine::f32) {
    backward_bf16(qkv.data<BFloat16>(), out.data<BFloat16>(), dout.data<BFloat16>(), l,
                  dqkv.data<BFloat16>(), g, scale, engine == Engine::amx);
    return;
  }
#endif
  backward_f32(qkv.data<BFloat16>(), out.data<BFloat16>(), dout.data<BFloat16>(), l,
               dqkv.data<BFloat16>(), g, scale);
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

// The bodies of the CUDA backend's register-blocked depthwise kernels (depthwise.cu): channels-last
// f32/bf16 activations, stride 1, dilation 1, square 3x3, 5x5 or 7x7 filters, channel counts
// divisible by 4 (all of ConvNeXt's). They are plain C++ that nvcc compiles for the device and g++
// for the host, where tests/core/test_depthwise_emulated.cpp runs them against the CPU backend's
// convolution: no body uses shared memory or a warp operation, so each GPU thread is one call.
//   forward        a unit (rows_unit) computes kRun outputs along a row for kVec channels, so each
//                  input vector it loads serves up to kRun outputs; the filter comes transposed to
//                  f32 (K*K, C) (transposed_tap).
//   data gradient  the same unit on dy with the filter flipped and the padding K - 1 - p
//                  (data_gradient_geo).
//   weight grad.   a thread (weights_rows) takes kWgVec channels, one row i of the filter and
//                  a share of one chunk of row runs (n, oy, kRun outputs along ox), keeping
//                  K x kWgVec partial sums; they go to part[row][c][tap], row = chunk *
//                  kWgThreadsY + its thread row, which the finishing kernel adds in a fixed order
//                  (finish_partial, finish_total).
// bf16 values are their 16 bits here (uint16_t).
#pragma once

#include <cstdint>

#include "core/cuda/packed.h"

#if defined(__CUDA_ARCH__)  // the device pass only: g++ compiles the host pass
#define SCION_DW_UNROLL _Pragma("unroll")
#else
#define SCION_DW_UNROLL
#endif

namespace scion::cuda::dw {

constexpr int kMaxTaps = 49;  // 7x7; larger filters go to cuDNN
constexpr int kRun = 4;       // outputs along a row per unit
constexpr int kVec = 4;       // channels per unit of the forward and data gradient
constexpr int kWgVec = 2;     // channels per thread of the weight gradient
// The weight gradient's block: kWgThreadsX threads across channels, kWgThreadsY across the rows
// of a chunk; the finishing block adds kFinishRows strided runs of rows per output.
constexpr int kWgThreadsX = 32, kWgThreadsY = 8, kFinishRows = 32;

// y (n, oh, ow, c) from x (n, h, w, c) and a (c, 1, kh, kw) filter.
struct Geo {
  int n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};

// The K of the register-blocked kernels for g, or 0 when they do not apply (the generic kernels
// run). The caller also checks that every pointer is aligned to a vector.
inline int rows_filter(const Geo& g) {
  if (g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1 || g.kh != g.kw || g.c % kVec != 0) return 0;
  return g.kh == 3 || g.kh == 5 || g.kh == 7 ? g.kh : 0;
}

// The data gradient as a forward unit's geometry: dx (n, h, w, c) = dy (n, oh, ow, c) convolved
// with the flipped filter at padding K - 1 - p.
inline Geo data_gradient_geo(const Geo& g) {
  Geo t = g;
  t.h = g.oh, t.w = g.ow, t.oh = g.h, t.ow = g.w;
  t.ph = g.kh - 1 - g.ph, t.pw = g.kw - 1 - g.pw;
  return t;
}

// Element e of the transposed filter wt (K*K, C), e = tap * c + channel: w[channel, tap], or the
// tap flipped in both spatial dimensions.
template <class T>
SCION_HD float transposed_tap(const T* w, int c, int k, bool flip, int e) {
  const int taps = k * k, ch = e % c, t = e / c, i = t / k, j = t % k;
  const int src = flip ? (k - 1 - i) * k + (k - 1 - j) : t;
  return packed::to_float(w[int64_t(ch) * taps + src]);
}

// Units of the forward (and data gradient) kernel: (image, output row, run along ox, vector).
SCION_HD int64_t rows_units(const Geo& g) {
  return int64_t(g.n) * g.oh * ((g.ow + kRun - 1) / kRun) * (g.c / kVec);
}

// Unit e: y[n, oy, ox, c] = b[c] + sum_ij x[n, oy - ph + i, ox - pw + j, c] wt[i K + j, c] (zero
// outside x) for the kRun outputs ox0 .. ox0 + kRun - 1 (those inside y) and kVec channels c0...
template <class T, int K>
SCION_HD void rows_unit(const Geo& g, const T* x, const float* wt, const T* b, T* y, int64_t e) {
  const int cv = g.c / kVec, groups = (g.ow + kRun - 1) / kRun;
  const int c0 = int(e % cv) * kVec;
  int64_t rest = e / cv;
  const int ox0 = int(rest % groups) * kRun;
  rest /= groups;
  const int oy = int(rest % g.oh);
  const int64_t img = rest / g.oh;
  float acc_v[kRun][kVec];
  float bias[kVec] = {0.f, 0.f, 0.f, 0.f};
  if (b) packed::load(b + c0, bias);
  SCION_DW_UNROLL
  for (int r = 0; r < kRun; ++r) SCION_DW_UNROLL
  for (int v = 0; v < kVec; ++v) acc_v[r][v] = bias[v];
  for (int i = 0; i < K; ++i) {
    const int iy = oy - g.ph + i;
    if (iy < 0 || iy >= g.h) continue;
    const T* row = x + (img * g.h + iy) * g.w * int64_t(g.c) + c0;
    float xs[kRun + K - 1][kVec];
    SCION_DW_UNROLL
    for (int jj = 0; jj < kRun + K - 1; ++jj) {
      const int ix = ox0 - g.pw + jj;
      if (ix >= 0 && ix < g.w) {
        packed::load(row + int64_t(ix) * g.c, xs[jj]);
      } else {
        SCION_DW_UNROLL
        for (int v = 0; v < kVec; ++v) xs[jj][v] = 0.f;
      }
    }
    SCION_DW_UNROLL
    for (int j = 0; j < K; ++j) {
      float wv[kVec];
      packed::load(wt + (i * K + j) * g.c + c0, wv);
      SCION_DW_UNROLL
      for (int r = 0; r < kRun; ++r) SCION_DW_UNROLL
      for (int v = 0; v < kVec; ++v) acc_v[r][v] += xs[j + r][v] * wv[v];
    }
  }
  T* out = y + ((img * g.oh + oy) * g.ow + ox0) * int64_t(g.c) + c0;
  SCION_DW_UNROLL
  for (int r = 0; r < kRun; ++r)
    if (ox0 + r < g.ow) packed::store(out + int64_t(r) * g.c, acc_v[r]);
}

// Reduced units of the weight gradient: (image, output row, run along ox).
SCION_HD int64_t weight_units(const Geo& g) {
  return int64_t(g.n) * g.oh * ((g.ow + kRun - 1) / kRun);
}

// One thread of the weight gradient's first pass: channels c0 = column * kWgVec .. + kWgVec
// (column = block.x * kWgThreadsX + thread.x), filter row i (block.z), units u0 + thread_row,
// u0 + thread_row + kWgThreadsY, ... of chunk `chunk` (block.y; units [chunk * chunk_len,
// + chunk_len)). Each partial sum takes the same terms in the same order as a thread that kept all
// K rows would.
template <class T, int K>
SCION_HD void weights_rows(const Geo& g, const T* x, const T* dy, int64_t chunk_len, float* part,
                           int column, int64_t chunk, int thread_row, int i) {
  const int c0 = column * kWgVec;
  const int groups = (g.ow + kRun - 1) / kRun;
  const int64_t units = weight_units(g);
  const int64_t u0 = chunk * chunk_len, u1 = u0 + chunk_len < units ? u0 + chunk_len : units;
  if (c0 >= g.c) return;
  float acc_t[K][kWgVec];
  SCION_DW_UNROLL
  for (int j = 0; j < K; ++j) acc_t[j][0] = acc_t[j][1] = 0.f;
  for (int64_t u = u0 + thread_row; u < u1; u += kWgThreadsY) {
    int ox0, oy;
    int64_t img;
    if (units < (int64_t(1) << 31)) {  // 32-bit division where it fits
      const uint32_t v = uint32_t(u), per_img = uint32_t(groups) * uint32_t(g.oh);
      ox0 = int(v % uint32_t(groups)) * kRun;
      oy = int((v / uint32_t(groups)) % uint32_t(g.oh));
      img = v / per_img;
    } else {
      ox0 = int(u % groups) * kRun;
      oy = int((u / groups) % g.oh);
      img = u / (int64_t(groups) * g.oh);
    }
    const int iy = oy - g.ph + i;
    if (iy < 0 || iy >= g.h) continue;
    float d[kRun][kWgVec];
    SCION_DW_UNROLL
    for (int r = 0; r < kRun; ++r) {
      if (ox0 + r < g.ow)
        packed::load(dy + ((img * g.oh + oy) * g.ow + ox0 + r) * int64_t(g.c) + c0, d[r]);
      else
        d[r][0] = d[r][1] = 0.f;
    }
    const T* row = x + (img * g.h + iy) * g.w * int64_t(g.c) + c0;
    float xs[kRun + K - 1][kWgVec];
    SCION_DW_UNROLL
    for (int jj = 0; jj < kRun + K - 1; ++jj) {
      const int ix = ox0 - g.pw + jj;
      if (ix >= 0 && ix < g.w)
        packed::load(row + int64_t(ix) * g.c, xs[jj]);
      else
        xs[jj][0] = xs[jj][1] = 0.f;
    }
    SCION_DW_UNROLL
    for (int j = 0; j < K; ++j) SCION_DW_UNROLL
    for (int r = 0; r < kRun; ++r) SCION_DW_UNROLL
    for (int v = 0; v < kWgVec; ++v) acc_t[j][v] += d[r][v] * xs[j + r][v];
  }
  float* out = part + (chunk * kWgThreadsY + thread_row) * int64_t(g.c) * (K * K) +
               int64_t(c0) * (K * K) + i * K;
  SCION_DW_UNROLL
  for (int v = 0; v < kWgVec; ++v) SCION_DW_UNROLL
  for (int j = 0; j < K; ++j) out[v * K * K + j] = acc_t[j][v];
}

// The finishing pass over part (rows x n_out): thread row t of output o sums rows t, t +
// kFinishRows, ... in order; then the kFinishRows sums (sums[k * stride], k = 0, 1, ...) are
// added in order.
SCION_HD float finish_partial(const float* part, int64_t rows, int64_t n_out, int64_t o,
                              int thread_row) {
  float s = 0.f;
  for (int64_t r = thread_row; r < rows; r += kFinishRows) s += part[r * n_out + o];
  return s;
}
SCION_HD float finish_total(const float* sums, int stride) {
  float total = 0.f;
  for (int k = 0; k < kFinishRows; ++k) total += sums[k * stride];
  return total;
}

}  // namespace scion::cuda::dw

// Direct depthwise convolutions on NHWC f32 tensors, vectorized over channels (contiguous in NHWC).
//
// Forward: oneDNN 2.6 has no JIT depthwise kernel when the image is smaller than the kernel reach
// (ConvNeXt's 7x7 on 2x2 and 1x1 maps at 32 px input) and falls back to im2col + gemm, which is
// ~50x slower there; this loop touches only the taps that land inside the image.
//   y[n, oy, ox, c] = b[c] + sum_{ky, kx} x[n, oy*s - p + ky*d, ox*s - p + kx*d, c] * w[c, 0, ky, kx]
//
// Backward weights: oneDNN 2.6 runs NHWC depthwise weight gradients on its generic convolution
// kernel (jit_avx512_common_conv_bwd_weights_kernel_f32), 16% of a ConvNeXt-F training step at
// both 32 and 224 px in the profile of experiments/bench/results/profile.md, at ~15 GFLOP/s.
//   dw[c, 0, ky, kx] = sum_{n, oy, ox} dy[n, oy, ox, c] * x[n, oy*s - p + ky*d, ox*s - p + kx*d, c]
// Here one task owns 16 channels of a fixed group of images: for each (image, output row, kernel
// row) and each native vector of those channels it keeps the KW taps' sums in vector registers
// across the output row, reading each dy pixel once and the input row from L1. The groups' partial
// sums are added in group order, so the result does not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

// clang-format off
#include "core/cpu/isa_begin.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

void depthwise_nhwc_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                            const ConvShape& cs) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t kh = w.size(2), kw = w.size(3), oh = y.size(2), ow = y.size(3);
  const float* xp = x.data<float>();  // (N, H, W, C) memory
  float* yp = y.data<float>();        // (N, OH, OW, C) memory
  // Weights as (KH, KW, C) so the channel loop reads them contiguously.
  std::vector<float> wt(static_cast<size_t>(kh * kw * c));
  const float* wp = w.data<float>();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t k = 0; k < kh * kw; ++k) wt[size_t(k * c + ch)] = wp[ch * kh * kw + k];
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  parallel_for(0, n * oh, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t img = r / oh, oy = r % oh;
      for (int64_t ox = 0; ox < ow; ++ox) {
        float* out = yp + ((img * oh + oy) * ow + ox) * c;
        for (int64_t ch = 0; ch < c; ++ch) out[ch] = bp ? bp[ch] : 0.0f;
        for (int64_t ky = 0; ky < kh; ++ky) {
          int64_t iy = oy * cs.stride_h - cs.pad_h + ky * cs.dil_h;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kx = 0; kx < kw; ++kx) {
            int64_t ix = ox * cs.stride_w - cs.pad_w + kx * cs.dil_w;
            if (ix < 0 || ix >= wd) continue;
            const float* in = xp + ((img * h + iy) * wd + ix) * c;
            const float* wk = wt.data() + (ky * kw + kx) * c;
#pragma omp simd
            for (int64_t ch = 0; ch < c; ++ch) out[ch] += in[ch] * wk[ch];
          }
        }
      }
    }
  });
}

namespace {

// One native vector of floats: 16 on AVX-512, 8 on AVX2, 4 in the plain build (SSE2 or NEON).
// A generic vector wider than the ISA's registers would not stay in them: GCC keeps a 64-byte one
// on the stack under AVX2, with several moves around every FMA.
#if SCION_KERNEL_ISA == 2
constexpr int kVecBytes = 64;
#elif SCION_KERNEL_ISA == 1
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
typedef float vf __attribute__((vector_size(kVecBytes)));
constexpr int64_t kVec = kVecBytes / int64_t(sizeof(float));
// Channels per task; the taps' sums of a task are acc[tap][kBlock].
constexpr int64_t kBlock = 16;
static_assert(kBlock % kVec == 0, "a task's channels are whole vectors");

inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void storev(float* p, vf v) {
  std::memcpy(p, &v, sizeof v);
}

struct DwGeom {
  int64_t c, w, ow, kw;
  const ConvShape& cs;
  // The interior of an output row: ox in [lo, hi) has 0 <= ox*s - p and
  // ox*s - p + (kw-1)*d <= w - 1, every tap inside the input row.
  int64_t lo, hi;
};

DwGeom row_geometry(int64_t c, int64_t w, int64_t ow, int64_t kw, const ConvShape& cs) {
  const int64_t s = cs.stride_w, p = cs.pad_w, last = w - 1 - (kw - 1) * cs.dil_w + p;
  const int64_t lo = std::min(ow, (p + s - 1) / s);
  const int64_t hi = last < 0 ? lo : std::max(lo, std::min(ow, last / s + 1));
  return {c, w, ow, kw, cs, lo, hi};
}

// acc[kx * kBlock + 0:kVec] += sum_ox dy_row[ox, 0:kVec] * x_row[ox*s - p + kx*d, 0:kVec] (rows
// start at the vector's first channel; pixels are `c` floats apart). The KW sums stay in registers
// across the row; the outputs whose taps all land inside the row (the interior) run without bounds
// checks, the few at either edge with them.
template <int KW>
void row_taps(const float* dy_row, const float* x_row, const DwGeom& g, float* acc) {
  const int64_t c = g.c, w = g.w, ow = g.ow, lo = g.lo, hi = g.hi;
  const int64_t s = g.cs.stride_w, p = g.cs.pad_w, dil = g.cs.dil_w;
  vf a[KW];
  for (int k = 0; k < KW; ++k) a[k] = loadv(acc + k * kBlock);
  for (int64_t ox = 0; ox < ow; ++ox) {
    const vf d = loadv(dy_row + ox * c);
    const int64_t ix0 = ox * s - p;
    if (ox >= lo && ox < hi) {
      const float* xr = x_row + ix0 * c;
#pragma GCC unroll 16
      for (int k = 0; k < KW; ++k) a[k] += d * loadv(xr + k * dil * c);
    } else {
#pragma GCC unroll 16
      for (int k = 0; k < KW; ++k) {
        const int64_t ix = ix0 + k * dil;
        if (ix >= 0 && ix < w) a[k] += d * loadv(x_row + ix * c);
      }
    }
  }
  for (int k = 0; k < KW; ++k) storev(acc + k * kBlock, a[k]);
}

// The same for any kernel width and `lanes` <= kBlock channels (the channel tail), sums in memory.
void row_taps_any(const float* dy_row, const float* x_row, const DwGeom& g, int64_t lanes,
                  float* acc) {
  for (int64_t ox = 0; ox < g.ow; ++ox) {
    const float* d = dy_row + ox * g.c;
    for (int64_t k = 0; k < g.kw; ++k) {
      const int64_t ix = ox * g.cs.stride_w - g.cs.pad_w + k * g.cs.dil_w;
      if (ix < 0 || ix >= g.w) continue;
      const float* xv = x_row + ix * g.c;
      float* a = acc + k * kBlock;
#pragma omp simd
      for (int64_t l = 0; l < lanes; ++l) a[l] += d[l] * xv[l];
    }
  }
}

// One row pair for a task's channels: a full block vector by vector, a tail channel by channel.
void row_block(const float* dy_row, const float* x_row, const DwGeom& g, int64_t lanes,
               float* acc) {
  if (lanes == kBlock && (g.kw == 7 || g.kw == 3)) {
    for (int64_t v = 0; v < kBlock; v += kVec) {
      if (g.kw == 7)
        row_taps<7>(dy_row + v, x_row + v, g, acc + v);
      else
        row_taps<3>(dy_row + v, x_row + v, g, acc + v);
    }
  } else {
    row_taps_any(dy_row, x_row, g, lanes, acc);
  }
}

}  // namespace

void depthwise_nhwc_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                     const ConvShape& cs) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t kh = dw.size(2), kw = dw.size(3), oh = dy.size(2), ow = dy.size(3);
  const float* xp = x.data<float>();   // (N, H, W, C) memory
  const float* gp = dy.data<float>();  // (N, OH, OW, C) memory
  const DwGeom g = row_geometry(c, wd, ow, kw, cs);
  const int64_t taps = kh * kw, blocks = (c + kBlock - 1) / kBlock;
  // Images per group: enough work per task to amortize it, a fixed split so sums are reproducible.
  const int64_t per_group = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, oh * ow)),
                groups = (n + per_group - 1) / per_group;
  // partial[group][tap][c]
  std::vector<float> partial(static_cast<size_t>(groups * taps * c), 0.0f);
  parallel_for(0, groups * blocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> acc(static_cast<size_t>(taps * kBlock));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t grp = t / blocks, c0 = (t % blocks) * kBlock, lanes = std::min(kBlock, c - c0);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t img = grp * per_group; img < std::min(n, (grp + 1) * per_group); ++img) {
        for (int64_t oy = 0; oy < oh; ++oy) {
          const float* dy_row = gp + ((img * oh + oy) * ow) * c + c0;
          for (int64_t ky = 0; ky < kh; ++ky) {
            const int64_t iy = oy * cs.stride_h - cs.pad_h + ky * cs.dil_h;
            if (iy < 0 || iy >= h) continue;
            const float* x_row = xp + ((img * h + iy) * wd) * c + c0;
            row_block(dy_row, x_row, g, lanes, acc.data() + ky * kw * kBlock);
          }
        }
      }
      float* out = partial.data() + grp * taps * c + c0;
      for (int64_t k = 0; k < taps; ++k)
        std::memcpy(out + k * c, acc.data() + k * kBlock, size_t(lanes) * sizeof(float));
    }
  });
  float* dwp = dw.data<float>();  // (C, 1, KH, KW)
  parallel_for(0, c, 64, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t ch = c_begin; ch < c_end; ++ch)
      for (int64_t k = 0; k < taps; ++k) {
        float s = 0.0f;
        for (int64_t grp = 0; grp < groups; ++grp) s += partial[size_t((grp * taps + k) * c + ch)];
        dwp[ch * taps + k] = s;
      }
  });
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

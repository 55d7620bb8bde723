// Direct depthwise convolution forward on NHWC f32 tensors, vectorized over channels (contiguous
// in NHWC). oneDNN 2.6 has no JIT depthwise kernel when the image is smaller than the kernel
// reach (ConvNeXt's 7x7 on 2x2 and 1x1 maps at 32 px input) and falls back to im2col + gemm,
// which is ~50x slower there; this loop touches only the taps that land inside the image.
//   y[n, oy, ox, c] = b[c] + sum_{ky, kx} x[n, oy*s - p + ky*d, ox*s - p + kx*d, c] * w[c, 0, ky,
//   kx]
#include <vector>

#include "core/cpu/onednn.h"
#include "core/cpu/parallel.h"

namespace scion::cpu {

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

}  // namespace scion::cpu

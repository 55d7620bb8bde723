// Depthwise convolutions (groups = channels, one filter per channel) on channels-last f32/bf16
// activations, ConvNeXt's 7x7: scion's own kernels, because cuDNN's convolution API was slow on
// them (experiments/gpu/results: its weight gradient alone took 90 ms of a 170 ms ConvNeXt-F
// step). Neighbouring threads take neighbouring channels, so every load is coalesced.
//   forward        y[n, oh, ow, c] = sum_ij x[n, oh*s - p + i*d, ow*s - p + j*d, c] w[c, i, j]
//   data gradient  dx[n, h, w, c]  = sum_ij dy[n, (h + p - i*d)/s, (w + p - j*d)/s, c] w[c, i, j]
//                                    (where the division is exact and in range)
//   weight grad.   dw[c, i, j]     = sum_{n, oh, ow} dy[n, oh, ow, c] x[n, oh*s - p + i*d, ...]
//                  in two passes: partial sums per chunk of output positions, then added in
//                  chunk order (deterministic).
#include "core/cuda/common.cuh"
#include "core/ops.h"

namespace scion::cuda {

namespace {

constexpr int kMaxTaps = 49;  // 7x7; larger filters go to cuDNN

struct DwGeo {
  int n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};

DwGeo dw_geo(const Tensor& x, const Tensor& w, const Tensor& y, const ConvShape& cs) {
  return DwGeo{int(x.size(0)), int(x.size(1)), int(x.size(2)), int(x.size(3)),   int(y.size(2)),
               int(y.size(3)), int(w.size(2)), int(w.size(3)), int(cs.stride_h), int(cs.stride_w),
               int(cs.pad_h),  int(cs.pad_w),  int(cs.dil_h),  int(cs.dil_w)};
}

template <class T>
__global__ void dw_forward(DwGeo g, const T* x, const T* w, const T* b, T* y) {
  const int64_t total = int64_t(g.n) * g.oh * g.ow * g.c;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(e % g.c);
    int64_t rest = e / g.c;
    const int ox = int(rest % g.ow);
    rest /= g.ow;
    const int oy = int(rest % g.oh);
    const int n = int(rest / g.oh);
    float s = b ? float(load(b + c)) : 0.f;
    for (int i = 0; i < g.kh; ++i) {
      const int iy = oy * g.sh - g.ph + i * g.dh;
      if (iy < 0 || iy >= g.h) continue;
      for (int j = 0; j < g.kw; ++j) {
        const int ix = ox * g.sw - g.pw + j * g.dw;
        if (ix < 0 || ix >= g.w) continue;
        s += float(load(x + ((int64_t(n) * g.h + iy) * g.w + ix) * g.c + c)) *
             float(load(w + (int64_t(c) * g.kh + i) * g.kw + j));
      }
    }
    store(y + e, s);
  }
}

template <class T>
__global__ void dw_backward_data(DwGeo g, const T* dy, const T* w, T* dx) {
  const int64_t total = int64_t(g.n) * g.h * g.w * g.c;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(e % g.c);
    int64_t rest = e / g.c;
    const int ix = int(rest % g.w);
    rest /= g.w;
    const int iy = int(rest % g.h);
    const int n = int(rest / g.h);
    float s = 0.f;
    for (int i = 0; i < g.kh; ++i) {
      const int ty = iy + g.ph - i * g.dh;
      if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
      for (int j = 0; j < g.kw; ++j) {
        const int tx = ix + g.pw - j * g.dw;
        if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
        s += float(load(dy + ((int64_t(n) * g.oh + ty / g.sh) * g.ow + tx / g.sw) * g.c + c)) *
             float(load(w + (int64_t(c) * g.kh + i) * g.kw + j));
      }
    }
    store(dx + e, s);
  }
}

// Pass 1: block (32, 8) takes 32 channels and one chunk of output positions; each thread keeps
// the partial sums of its channel's taps in registers and writes them to part[row][c][tap],
// row = chunk * 8 + threadIdx.y.
template <class T>
__global__ void dw_weights_partial(DwGeo g, const T* x, const T* dy, int64_t chunk_len,
                                   float* part) {
  const int c = int(blockIdx.x) * 32 + threadIdx.x;
  const int taps = g.kh * g.kw;
  float acc_t[kMaxTaps];
#pragma unroll
  for (int t = 0; t < kMaxTaps; ++t) acc_t[t] = 0.f;
  const int64_t positions = int64_t(g.n) * g.oh * g.ow;
  const int64_t p0 = int64_t(blockIdx.y) * chunk_len,
                p1 = p0 + chunk_len < positions ? p0 + chunk_len : positions;
  if (c < g.c) {
    for (int64_t p = p0 + threadIdx.y; p < p1; p += 8) {
      const int ox = int(p % g.ow);
      const int oy = int((p / g.ow) % g.oh);
      const int n = int(p / (int64_t(g.ow) * g.oh));
      const float d = float(load(dy + p * g.c + c));
#pragma unroll
      for (int t = 0; t < kMaxTaps; ++t) {
        if (t >= taps) break;
        const int i = t / g.kw, j = t % g.kw;
        const int iy = oy * g.sh - g.ph + i * g.dh, ix = ox * g.sw - g.pw + j * g.dw;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
          acc_t[t] += d * float(load(x + ((int64_t(n) * g.h + iy) * g.w + ix) * g.c + c));
      }
    }
    float* out =
        part + (int64_t(blockIdx.y) * 8 + threadIdx.y) * int64_t(g.c) * taps + int64_t(c) * taps;
#pragma unroll
    for (int t = 0; t < kMaxTaps; ++t)
      if (t < taps) out[t] = acc_t[t];
  }
}

template <class T>
__global__ void dw_weights_finish(const float* part, int64_t rows, int64_t n_out, T* dw) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out;
       o += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int64_t r = 0; r < rows; ++r) s += part[r * n_out + o];
    store(dw + o, s);
  }
}

}  // namespace

bool depthwise_own(const Tensor& x, const Tensor& w, const ConvShape& cs) {
  return cs.channels_last && cs.groups == x.size(1) && w.size(0) == x.size(1) && w.size(1) == 1 &&
         w.size(2) * w.size(3) <= kMaxTaps && (x.dtype() == DType::f32 || x.dtype() == DType::bf16);
}

void depthwise_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                       const ConvShape& cs) {
  const DwGeo g = dw_geo(x, w, y, cs);
  const Launch l = launch_1d(y.numel(), multiprocessors());
  SCION_DISPATCH_FLOATING(x.dtype(), "conv2d", T, {
    dw_forward<T><<<l.blocks, l.threads, 0, stream()>>>(
        g, static_cast<const T*>(x.raw_data()), static_cast<const T*>(w.raw_data()),
        b.defined() ? static_cast<const T*>(b.raw_data()) : nullptr, static_cast<T*>(y.raw_data()));
  });
  SCION_CUDA_LAUNCHED("depthwise conv2d");
}

void depthwise_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                             const ConvShape& cs) {
  const DwGeo g = dw_geo(dx, w, dy, cs);
  const Launch l = launch_1d(dx.numel(), multiprocessors());
  SCION_DISPATCH_FLOATING(dy.dtype(), "conv2d", T, {
    dw_backward_data<T><<<l.blocks, l.threads, 0, stream()>>>(
        g, static_cast<const T*>(dy.raw_data()), static_cast<const T*>(w.raw_data()),
        static_cast<T*>(dx.raw_data()));
  });
  SCION_CUDA_LAUNCHED("depthwise conv2d data gradient");
}

void depthwise_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                const ConvShape& cs) {
  const DwGeo g = dw_geo(x, dw, dy, cs);
  const int64_t positions = int64_t(g.n) * g.oh * g.ow, taps = int64_t(g.kh) * g.kw;
  const ColumnSplit split = column_split(g.c, positions, multiprocessors());
  const int64_t chunk_len = std::max<int64_t>(split.chunk_len, 8);
  const int64_t chunks = (positions + chunk_len - 1) / chunk_len;
  Tensor part = dev_empty({chunks * 8 * g.c * taps}, DType::f32);
  SCION_DISPATCH_FLOATING(x.dtype(), "conv2d", T, {
    dw_weights_partial<T>
        <<<dim3(unsigned(split.column_blocks), unsigned(chunks)), dim3(32, 8), 0, stream()>>>(
            g, static_cast<const T*>(x.raw_data()), static_cast<const T*>(dy.raw_data()), chunk_len,
            part.data<float>());
    const Launch l = launch_1d(g.c * taps, multiprocessors());
    dw_weights_finish<T><<<l.blocks, l.threads, 0, stream()>>>(
        part.data<float>(), chunks * 8, g.c * taps, static_cast<T*>(dw.raw_data()));
  });
  SCION_CUDA_LAUNCHED("depthwise conv2d weight gradient");
}

}  // namespace scion::cuda

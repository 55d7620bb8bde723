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
// Stride 1, dilation 1 and square 3x3, 5x5 or 7x7 filters on channel counts divisible by 4 (all
// of ConvNeXt's) take register-blocked kernels, whose bodies are depthwise_rows.h (run on the host
// by tests/core/test_depthwise_emulated.cpp); the generic kernels below load every input once per
// tap.
#include "core/cuda/common.cuh"
#include "core/cuda/depthwise_rows.h"
#include "core/ops.h"

namespace scion::cuda {

namespace {

using dw::kMaxTaps;
using DwGeo = dw::Geo;

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

// Pass 2: dw[o] = sum over the rows of part[row][o], in a fixed order: block (32, 32); thread x
// takes an output (coalesced loads), thread y the rows r = y (mod 32) in order; then thread y = 0
// adds the 32 partial sums in order (deterministic, and 32 loads in flight per output).
template <class T>
__global__ void dw_weights_finish(const float* part, int64_t rows, int64_t n_out, T* dw) {
  static_assert(dw::kFinishRows == 32, "a block of 32 x 32 threads");
  __shared__ float partial[32][33];
  const int64_t o = int64_t(blockIdx.x) * 32 + threadIdx.x;
  partial[threadIdx.y][threadIdx.x] =
      o < n_out ? dw::finish_partial(part, rows, n_out, o, int(threadIdx.y)) : 0.f;
  __syncthreads();
  if (threadIdx.y != 0 || o >= n_out) return;
  store(dw + o, dw::finish_total(&partial[0][threadIdx.x], 33));
}

// ---- register-blocked kernels (depthwise_rows.h; T: float or a bf16's bits) ---------------------

// The filter (C, 1, K, K) as f32 (K*K, C), optionally flipped in both spatial dimensions.
template <class T>
__global__ void dw_transpose_filter(const T* w, int c, int k, bool flip, float* wt) {
  for (int e = int(blockIdx.x) * blockDim.x + threadIdx.x; e < c * k * k;
       e += int(gridDim.x) * blockDim.x)
    wt[e] = dw::transposed_tap(w, c, k, flip, e);
}

template <class T, int K>
__global__ void __launch_bounds__(256)
    dw_rows(DwGeo g, const T* x, const float* wt, const T* b, T* y) {
  const int64_t total = dw::rows_units(g);
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x)
    dw::rows_unit<T, K>(g, x, wt, b, y, e);
}

// Block (kWgThreadsX, kWgThreadsY, filter row): until run 8 a thread kept all K rows, 98 sums
// and 173 registers for 7x7, one block per multiprocessor.
template <class T, int K>
__global__ void __launch_bounds__(dw::kWgThreadsX* dw::kWgThreadsY)
    dw_weights_rows(DwGeo g, const T* x, const T* dy, int64_t chunk_len, float* part) {
  dw::weights_rows<T, K>(g, x, dy, chunk_len, part,
                         int(blockIdx.x) * dw::kWgThreadsX + int(threadIdx.x), int64_t(blockIdx.y),
                         int(threadIdx.y), int(blockIdx.z));
}

// f32 or bf16 (depthwise_own takes no other dtype): T for the register-blocked kernels (bf16_t;
// their bodies take Bits<T>).
#define SCION_DW_DISPATCH(dt, name, T, ...) \
  if ((dt) == DType::f32) {                 \
    using T = float;                        \
    __VA_ARGS__                             \
  } else {                                  \
    using T = bf16_t;                       \
    __VA_ARGS__                             \
  }

// Which register-blocked kernel fits (K), or 0: the geometry fits and every pointer is aligned.
int rows_kernel(const DwGeo& g, std::initializer_list<const void*> pointers, size_t align) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % align != 0) return 0;
  return dw::rows_filter(g);
}

template <class T>
void launch_rows(int k, const DwGeo& g, const T* x, const float* wt, const T* b, T* y) {
  const Launch l = launch_1d(dw::rows_units(g), multiprocessors());
  if (k == 7) dw_rows<T, 7><<<l.blocks, l.threads, 0, stream()>>>(g, x, wt, b, y);
  if (k == 5) dw_rows<T, 5><<<l.blocks, l.threads, 0, stream()>>>(g, x, wt, b, y);
  if (k == 3) dw_rows<T, 3><<<l.blocks, l.threads, 0, stream()>>>(g, x, wt, b, y);
}

// The filter transposed (and flipped for the data gradient) into an f32 (K*K, C) buffer.
template <class T>
Tensor transposed_filter(const Tensor& w, int c, int k, bool flip) {
  Tensor wt = dev_empty({int64_t(k) * k * c}, DType::f32);
  const Launch l = launch_1d(int64_t(k) * k * c, multiprocessors());
  dw_transpose_filter<Bits<T>>
      <<<l.blocks, l.threads, 0, stream()>>>(bits<T>(w), c, k, flip, wt.data<float>());
  return wt;
}

}  // namespace

bool depthwise_own(const Tensor& x, const Tensor& w, const ConvShape& cs) {
  return cs.channels_last && cs.groups == x.size(1) && w.size(0) == x.size(1) && w.size(1) == 1 &&
         w.size(2) * w.size(3) <= kMaxTaps && (x.dtype() == DType::f32 || x.dtype() == DType::bf16);
}

void depthwise_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                       const ConvShape& cs) {
  const DwGeo g = dw_geo(x, w, y, cs);
  const size_t align = x.dtype() == DType::f32 ? 16 : 8;
  if (const int k = rows_kernel(
          g, {x.raw_data(), y.raw_data(), b.defined() ? b.raw_data() : nullptr}, align)) {
    SCION_DW_DISPATCH(x.dtype(), "conv2d", T, {
      Tensor wt = transposed_filter<T>(w, g.c, k, false);
      launch_rows<Bits<T>>(k, g, bits<T>(x), wt.data<float>(), bits<T>(b), bits<T>(y));
    });
    SCION_CUDA_LAUNCHED("depthwise conv2d");
    return;
  }
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
  const size_t align = dy.dtype() == DType::f32 ? 16 : 8;
  if (const int k = rows_kernel(g, {dy.raw_data(), dx.raw_data()}, align)) {
    SCION_DW_DISPATCH(dy.dtype(), "conv2d", T, {
      Tensor wt = transposed_filter<T>(w, g.c, k, true);
      launch_rows<Bits<T>>(k, dw::data_gradient_geo(g), bits<T>(dy), wt.data<float>(), nullptr,
                           bits<T>(dx));
    });
    SCION_CUDA_LAUNCHED("depthwise conv2d data gradient");
    return;
  }
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
  const int64_t taps = int64_t(g.kh) * g.kw;
  const size_t wg_align = dw::kWgVec * dtype_size(x.dtype());
  if (const int k = rows_kernel(g, {x.raw_data(), dy.raw_data()}, wg_align)) {
    const DepthwiseSplit split =
        depthwise_weights_split(g.c / dw::kWgVec, dw::weight_units(g), multiprocessors());
    const int64_t rows = split.chunks * dw::kWgThreadsY;
    Tensor part = dev_empty({rows * g.c * taps}, DType::f32);
    const dim3 grid(unsigned((g.c / dw::kWgVec + dw::kWgThreadsX - 1) / dw::kWgThreadsX),
                    unsigned(split.chunks), unsigned(k)),
        block(dw::kWgThreadsX, dw::kWgThreadsY);
    SCION_DW_DISPATCH(x.dtype(), "conv2d", T, {
      const Bits<T>* xp = bits<T>(x);
      const Bits<T>* dyp = bits<T>(dy);
      float* pp = part.data<float>();
      if (k == 7)
        dw_weights_rows<Bits<T>, 7><<<grid, block, 0, stream()>>>(g, xp, dyp, split.chunk_len, pp);
      if (k == 5)
        dw_weights_rows<Bits<T>, 5><<<grid, block, 0, stream()>>>(g, xp, dyp, split.chunk_len, pp);
      if (k == 3)
        dw_weights_rows<Bits<T>, 3><<<grid, block, 0, stream()>>>(g, xp, dyp, split.chunk_len, pp);
      dw_weights_finish<T><<<unsigned((g.c * taps + 31) / 32), dim3(32, 32), 0, stream()>>>(
          pp, rows, g.c * taps, static_cast<T*>(dw.raw_data()));
    });
    SCION_CUDA_LAUNCHED("depthwise conv2d weight gradient");
    return;
  }
  const int64_t positions = int64_t(g.n) * g.oh * g.ow;
  const DepthwiseSplit split = depthwise_weights_split(g.c, positions, multiprocessors());
  Tensor part = dev_empty({split.chunks * 8 * g.c * taps}, DType::f32);
  SCION_DISPATCH_FLOATING(x.dtype(), "conv2d", T, {
    dw_weights_partial<T>
        <<<dim3(unsigned((g.c + 31) / 32), unsigned(split.chunks)), dim3(32, 8), 0, stream()>>>(
            g, static_cast<const T*>(x.raw_data()), static_cast<const T*>(dy.raw_data()),
            split.chunk_len, part.data<float>());
    dw_weights_finish<T><<<unsigned((g.c * taps + 31) / 32), dim3(32, 32), 0, stream()>>>(
        part.data<float>(), split.chunks * 8, g.c * taps, static_cast<T*>(dw.raw_data()));
  });
  SCION_CUDA_LAUNCHED("depthwise conv2d weight gradient");
}

}  // namespace scion::cuda

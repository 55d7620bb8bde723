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
// of ConvNeXt's) take register-blocked kernels: a thread computes a run of kRun outputs along a
// row for 4 channels, so each input vector it loads serves up to kRun outputs (the generic
// kernels load every input once per tap). The data gradient is the same kernel on dy with the
// filter flipped and the padding K - 1 - p.
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

// Pass 2: dw[o] = sum over the rows of part[row][o], in a fixed order: block (32, 32); thread x
// takes an output (coalesced loads), thread y the rows r = y (mod 32) in order; then thread y = 0
// adds the 32 partial sums in order (deterministic, and 32 loads in flight per output).
template <class T>
__global__ void dw_weights_finish(const float* part, int64_t rows, int64_t n_out, T* dw) {
  __shared__ float partial[32][33];
  const int64_t o = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.f;
  if (o < n_out)
    for (int64_t r = threadIdx.y; r < rows; r += 32) s += part[r * n_out + o];
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || o >= n_out) return;
  float total = 0.f;
  for (int k = 0; k < 32; ++k) total += partial[k][threadIdx.x];
  store(dw + o, total);
}

// ---- register-blocked kernels (stride 1, dilation 1, K x K, channels % 4 == 0) -------------------

constexpr int kRun = 4;  // outputs along a row per thread
constexpr int kVec = 4;  // channels per thread

template <class T>
struct Vec4;  // kVec consecutive channels in one load
template <>
struct Vec4<float> {
  using type = float4;
};
template <>
struct Vec4<bf16_t> {
  using type = uint2;
};

__device__ __forceinline__ void unpack(const float4& v, float (&out)[kVec]) {
  out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}
__device__ __forceinline__ void unpack(const uint2& v, float (&out)[kVec]) {
  out[0] = kmath::bf16_to_float(uint16_t(v.x & 0xffffu));
  out[1] = kmath::bf16_to_float(uint16_t(v.x >> 16));
  out[2] = kmath::bf16_to_float(uint16_t(v.y & 0xffffu));
  out[3] = kmath::bf16_to_float(uint16_t(v.y >> 16));
}
template <class T>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[kVec]) {
  unpack(*reinterpret_cast<const typename Vec4<T>::type*>(p), out);
}
__device__ __forceinline__ void store_vec(float* p, const float (&v)[kVec]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store_vec(bf16_t* p, const float (&v)[kVec]) {
  uint2 u;
  u.x = uint32_t(kmath::float_to_bf16(v[0])) | (uint32_t(kmath::float_to_bf16(v[1])) << 16);
  u.y = uint32_t(kmath::float_to_bf16(v[2])) | (uint32_t(kmath::float_to_bf16(v[3])) << 16);
  *reinterpret_cast<uint2*>(p) = u;
}

// The filter (C, 1, K, K) as f32 (K*K, C), optionally flipped in both spatial dimensions.
template <class T>
__global__ void dw_transpose_filter(const T* w, int c, int k, bool flip, float* wt) {
  const int taps = k * k;
  for (int e = int(blockIdx.x) * blockDim.x + threadIdx.x; e < c * taps;
       e += int(gridDim.x) * blockDim.x) {
    const int ch = e % c, t = e / c, i = t / k, j = t % k;
    const int src = flip ? (k - 1 - i) * k + (k - 1 - j) : t;
    wt[e] = float(load(w + int64_t(ch) * taps + src));
  }
}

// y[n, oy, ox, c] = b[c] + sum_ij x[n, oy - ph + i, ox - pw + j, c] wt[i K + j, c] (zero outside
// x), for x (n, h, w, c) and y (n, oh, ow, c).
template <class T, int K>
__global__ void __launch_bounds__(256)
    dw_rows(DwGeo g, const T* x, const float* wt, const T* b, T* y) {
  const int cv = g.c / kVec, groups = (g.ow + kRun - 1) / kRun;
  const int64_t total = int64_t(g.n) * g.oh * groups * cv;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int c0 = int(e % cv) * kVec;
    int64_t rest = e / cv;
    const int ox0 = int(rest % groups) * kRun;
    rest /= groups;
    const int oy = int(rest % g.oh);
    const int64_t img = rest / g.oh;
    float acc_v[kRun][kVec];
    float bias[kVec] = {0.f, 0.f, 0.f, 0.f};
    if (b) load_vec(b + c0, bias);
#pragma unroll
    for (int r = 0; r < kRun; ++r)
#pragma unroll
      for (int v = 0; v < kVec; ++v) acc_v[r][v] = bias[v];
    for (int i = 0; i < K; ++i) {
      const int iy = oy - g.ph + i;
      if (iy < 0 || iy >= g.h) continue;
      const T* row = x + (img * g.h + iy) * g.w * int64_t(g.c) + c0;
      float xs[kRun + K - 1][kVec];
#pragma unroll
      for (int jj = 0; jj < kRun + K - 1; ++jj) {
        const int ix = ox0 - g.pw + jj;
        if (ix >= 0 && ix < g.w) {
          load_vec(row + int64_t(ix) * g.c, xs[jj]);
        } else {
#pragma unroll
          for (int v = 0; v < kVec; ++v) xs[jj][v] = 0.f;
        }
      }
#pragma unroll
      for (int j = 0; j < K; ++j) {
        float wv[kVec];
        unpack(*reinterpret_cast<const float4*>(wt + (i * K + j) * g.c + c0), wv);
#pragma unroll
        for (int r = 0; r < kRun; ++r)
#pragma unroll
          for (int v = 0; v < kVec; ++v) acc_v[r][v] += xs[j + r][v] * wv[v];
      }
    }
    T* out = y + ((img * g.oh + oy) * g.ow + ox0) * int64_t(g.c) + c0;
#pragma unroll
    for (int r = 0; r < kRun; ++r)
      if (ox0 + r < g.ow) store_vec(out + int64_t(r) * g.c, acc_v[r]);
  }
}

// Pass 1 of the weight gradient: block (32, 8, filter row i); thread x takes 2 channels (a block
// 64), thread y a share of one chunk of row runs (n, oy, kRun outputs along ox), and the block
// one row i of the filter, so a thread keeps K x 2 partial sums (until run 8 a thread kept all K
// rows, 98 sums and 173 registers for 7x7: one block per multiprocessor). They go to
// part[row][c][tap], row = chunk * 8 + threadIdx.y (dw_weights_finish adds the rows in order);
// each sum takes the same terms in the same order as with all rows in one thread.
constexpr int kWgVec = 2;  // channels per thread in the weight gradient
__device__ __forceinline__ void load2(const float* p, float (&out)[kWgVec]) {
  const float2 v = *reinterpret_cast<const float2*>(p);
  out[0] = v.x, out[1] = v.y;
}
__device__ __forceinline__ void load2(const bf16_t* p, float (&out)[kWgVec]) {
  const uint32_t v = *reinterpret_cast<const uint32_t*>(p);
  out[0] = kmath::bf16_to_float(uint16_t(v & 0xffffu));
  out[1] = kmath::bf16_to_float(uint16_t(v >> 16));
}
template <class T, int K>
__global__ void __launch_bounds__(256)
    dw_weights_rows(DwGeo g, const T* x, const T* dy, int64_t chunk_len, float* part) {
  const int c0 = (int(blockIdx.x) * 32 + int(threadIdx.x)) * kWgVec, i = int(blockIdx.z);
  const int groups = (g.ow + kRun - 1) / kRun;
  const int64_t units = int64_t(g.n) * g.oh * groups;
  const int64_t u0 = int64_t(blockIdx.y) * chunk_len,
                u1 = u0 + chunk_len < units ? u0 + chunk_len : units;
  if (c0 >= g.c) return;
  float acc_t[K][kWgVec];
#pragma unroll
  for (int j = 0; j < K; ++j) acc_t[j][0] = acc_t[j][1] = 0.f;
  for (int64_t u = u0 + threadIdx.y; u < u1; u += 8) {
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
#pragma unroll
    for (int r = 0; r < kRun; ++r) {
      if (ox0 + r < g.ow)
        load2(dy + ((img * g.oh + oy) * g.ow + ox0 + r) * int64_t(g.c) + c0, d[r]);
      else
        d[r][0] = d[r][1] = 0.f;
    }
    const T* row = x + (img * g.h + iy) * g.w * int64_t(g.c) + c0;
    float xs[kRun + K - 1][kWgVec];
#pragma unroll
    for (int jj = 0; jj < kRun + K - 1; ++jj) {
      const int ix = ox0 - g.pw + jj;
      if (ix >= 0 && ix < g.w)
        load2(row + int64_t(ix) * g.c, xs[jj]);
      else
        xs[jj][0] = xs[jj][1] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < K; ++j)
#pragma unroll
      for (int r = 0; r < kRun; ++r)
#pragma unroll
        for (int v = 0; v < kWgVec; ++v) acc_t[j][v] += d[r][v] * xs[j + r][v];
  }
  float* out = part + (int64_t(blockIdx.y) * 8 + threadIdx.y) * int64_t(g.c) * (K * K) +
               int64_t(c0) * (K * K) + i * K;
#pragma unroll
  for (int v = 0; v < kWgVec; ++v)
#pragma unroll
    for (int j = 0; j < K; ++j) out[v * K * K + j] = acc_t[j][v];
}

// f32 or bf16 (depthwise_own takes no other dtype): T for the register-blocked kernels.
#define SCION_DW_DISPATCH(dt, name, T, ...) \
  if ((dt) == DType::f32) {                 \
    using T = float;                        \
    __VA_ARGS__                             \
  } else {                                  \
    using T = bf16_t;                       \
    __VA_ARGS__                             \
  }

// Which register-blocked kernel fits (K), or 0.
int rows_kernel(const DwGeo& g, std::initializer_list<const void*> pointers, size_t align) {
  if (g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1 || g.kh != g.kw || g.c % kVec != 0) return 0;
  if (g.kh != 3 && g.kh != 5 && g.kh != 7) return 0;
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % align != 0) return 0;
  return g.kh;
}

template <class T>
void launch_rows(int k, const DwGeo& g, const T* x, const float* wt, const T* b, T* y) {
  const int64_t total = int64_t(g.n) * g.oh * ((g.ow + kRun - 1) / kRun) * (g.c / kVec);
  const Launch l = launch_1d(total, multiprocessors());
  if (k == 7) dw_rows<T, 7><<<l.blocks, l.threads, 0, stream()>>>(g, x, wt, b, y);
  if (k == 5) dw_rows<T, 5><<<l.blocks, l.threads, 0, stream()>>>(g, x, wt, b, y);
  if (k == 3) dw_rows<T, 3><<<l.blocks, l.threads, 0, stream()>>>(g, x, wt, b, y);
}

// The filter transposed (and flipped for the data gradient) into an f32 (K*K, C) buffer.
template <class T>
Tensor transposed_filter(const Tensor& w, int c, int k, bool flip) {
  Tensor wt = dev_empty({int64_t(k) * k * c}, DType::f32);
  const Launch l = launch_1d(int64_t(k) * k * c, multiprocessors());
  dw_transpose_filter<T><<<l.blocks, l.threads, 0, stream()>>>(static_cast<const T*>(w.raw_data()),
                                                               c, k, flip, wt.data<float>());
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
      launch_rows<T>(k, g, static_cast<const T*>(x.raw_data()), wt.data<float>(),
                     b.defined() ? static_cast<const T*>(b.raw_data()) : nullptr,
                     static_cast<T*>(y.raw_data()));
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
    // dx = dy convolved with the flipped filter, padding K - 1 - p, over dx's (h, w).
    DwGeo t = g;
    t.h = g.oh, t.w = g.ow, t.oh = g.h, t.ow = g.w, t.ph = k - 1 - g.ph, t.pw = k - 1 - g.pw;
    SCION_DW_DISPATCH(dy.dtype(), "conv2d", T, {
      Tensor wt = transposed_filter<T>(w, g.c, k, true);
      launch_rows<T>(k, t, static_cast<const T*>(dy.raw_data()), wt.data<float>(), nullptr,
                     static_cast<T*>(dx.raw_data()));
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
  if (const int k = rows_kernel(g, {x.raw_data(), dy.raw_data()}, kWgVec * dtype_size(x.dtype()))) {
    const int64_t units = int64_t(g.n) * g.oh * ((g.ow + kRun - 1) / kRun);
    const ColumnSplit split = column_split(g.c / kWgVec, units, multiprocessors());
    const int64_t chunk_len = std::max<int64_t>(split.chunk_len, 8);
    const int64_t chunks = (units + chunk_len - 1) / chunk_len;
    Tensor part = dev_empty({chunks * 8 * g.c * taps}, DType::f32);
    const dim3 grid(unsigned((g.c / kWgVec + 31) / 32), unsigned(chunks), unsigned(k)),
        block(32, 8);
    SCION_DW_DISPATCH(x.dtype(), "conv2d", T, {
      const T* xp = static_cast<const T*>(x.raw_data());
      const T* dyp = static_cast<const T*>(dy.raw_data());
      if (k == 7)
        dw_weights_rows<T, 7>
            <<<grid, block, 0, stream()>>>(g, xp, dyp, chunk_len, part.data<float>());
      if (k == 5)
        dw_weights_rows<T, 5>
            <<<grid, block, 0, stream()>>>(g, xp, dyp, chunk_len, part.data<float>());
      if (k == 3)
        dw_weights_rows<T, 3>
            <<<grid, block, 0, stream()>>>(g, xp, dyp, chunk_len, part.data<float>());
      dw_weights_finish<T><<<unsigned((g.c * taps + 31) / 32), dim3(32, 32), 0, stream()>>>(
          part.data<float>(), chunks * 8, g.c * taps, static_cast<T*>(dw.raw_data()));
    });
    SCION_CUDA_LAUNCHED("depthwise conv2d weight gradient");
    return;
  }
  const int64_t positions = int64_t(g.n) * g.oh * g.ow;
  const ColumnSplit split = column_split(g.c, positions, multiprocessors());
  const int64_t chunk_len = std::max<int64_t>(split.chunk_len, 8);
  const int64_t chunks = (positions + chunk_len - 1) / chunk_len;
  Tensor part = dev_empty({chunks * 8 * g.c * taps}, DType::f32);
  SCION_DISPATCH_FLOATING(x.dtype(), "conv2d", T, {
    dw_weights_partial<T>
        <<<dim3(unsigned(split.column_blocks), unsigned(chunks)), dim3(32, 8), 0, stream()>>>(
            g, static_cast<const T*>(x.raw_data()), static_cast<const T*>(dy.raw_data()), chunk_len,
            part.data<float>());
    dw_weights_finish<T><<<unsigned((g.c * taps + 31) / 32), dim3(32, 32), 0, stream()>>>(
        part.data<float>(), chunks * 8, g.c * taps, static_cast<T*>(dw.raw_data()));
  });
  SCION_CUDA_LAUNCHED("depthwise conv2d weight gradient");
}

}  // namespace scion::cuda

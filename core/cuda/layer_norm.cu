// The row kernels (norm_rows.h) on the GPU: the layer norm, and the residual add of a
// layer-scaled branch (out = x + t s). They take f32 and bf16 rows of up to 1,024 elements, a
// multiple of 4, whose tensors are aligned to 4 elements; their Env is the device's thread and
// block indices, shared memory and barrier, and the warp's shuffle. Every other case, and all of
// them under SCION_CUDA_NORM=warp, runs run 8's kernels: reduce.cu's warp per row for the layer
// norm, the mul, add and sum kernels for the layer scale.
#include <map>
#include <tuple>
#include <type_traits>

#include "core/cuda/common.cuh"
#include "core/cuda/norm_rows.h"
#include "core/cuda/plan.h"

namespace scion::cuda {

namespace {

struct DeviceEnv {
  float* shared;
  __device__ int thread() const { return int(threadIdx.x); }
  __device__ int64_t block() const { return int64_t(blockIdx.x); }
  __device__ int64_t blocks() const { return int64_t(gridDim.x); }
  __device__ float* smem() const { return shared; }
  __device__ void sync() const { __syncthreads(); }
  __device__ float shfl_xor(float v, int mask) const {
    return __shfl_xor_sync(0xffffffffu, v, mask);
  }
};

// A minimum of one block per multiprocessor: left to itself ptxas held the 8-slot bf16 kernel to
// 128 registers on sm_80 and spilled.
template <int K, class T, class Y>
__global__ void __launch_bounds__(rows::kThreads, 1) rows_forward(rows::ForwardArgs<T, T, Y> a) {
  DeviceEnv env{nullptr};
  rows::forward_rows<K>(env, a);
}

template <int K, class T, class G>
__global__ void __launch_bounds__(rows::kThreads) rows_backward(rows::BackwardArgs<T, T, G> a) {
  extern __shared__ float smem[];
  DeviceEnv env{smem};
  rows::backward_rows<K>(env, a);
}

template <class T>
__global__ void __launch_bounds__(rows::kThreads)
    rows_finish(const float* partials, int64_t blocks, int64_t d, int sums, T* out0, T* out1) {
  DeviceEnv env{nullptr};
  T* const out[2] = {out0, out1};
  rows::finish_columns(env, partials, blocks, d, sums, out);
}

template <int K, class T, class H>
__global__ void __launch_bounds__(rows::kThreads) scale_forward(rows::ScaleArgs<T, H> a) {
  DeviceEnv env{nullptr};
  rows::layer_scale_rows<K>(env, a);
}

template <int K, class T, class H>
__global__ void __launch_bounds__(rows::kThreads) scale_backward(rows::ScaleBackwardArgs<T, H> a) {
  extern __shared__ float smem[];
  DeviceEnv env{smem};
  rows::layer_scale_rows_backward<K>(env, a);
}

bool aligned(const Tensor& t) {
  return !t.defined() ||
         reinterpret_cast<uintptr_t>(t.raw_data()) % (rows::kVec * dtype_size(t.dtype())) == 0;
}

// f(tag) for f32 (float) and bf16 (bf16_t); nothing for any other dtype.
template <class F>
void with_float_or_bf16(DType dt, F&& f) {
  if (dt == DType::f32) f(float());
  if (dt == DType::bf16) f(bf16_t());
}

// f(std::integral_constant<int, K>) for the plan's slots.
template <class F>
void with_slots(int slots, F&& f) {
  if (slots == 2) return f(std::integral_constant<int, 2>());
  if (slots == 4) return f(std::integral_constant<int, 4>());
  f(std::integral_constant<int, 8>());
}

// f(K tag, T tag, P tag) for the plan's slots K, x's dtype T and its partner's P (y, dy or the
// branch t): T, or bf16 for an f32 x.
template <class F>
void with_row_types(const NormRowsPlan& p, DType x, DType partner, F&& f) {
  with_float_or_bf16(x, [&](auto xtag) {
    using T = decltype(xtag);
    with_float_or_bf16(partner, [&](auto ptag) {
      using P = decltype(ptag);
      if constexpr (std::is_same_v<T, P> || std::is_same_v<P, bf16_t>)  // as planned
        with_slots(p.slots, [&](auto k) { f(k, xtag, ptag); });
    });
  });
}

// dw and db (sums = 2) or ds (sums = 1, out1 null) from the blocks' partial column sums.
template <class T>
void launch_finish(const Tensor& partials, int64_t blocks, int64_t d, int sums, T* out0, T* out1) {
  const int64_t warps_per_block = rows::kThreads / 32;
  rows_finish<T><<<unsigned(std::min<int64_t>((d + warps_per_block - 1) / warps_per_block, 65535)),
                   rows::kThreads, 0, stream()>>>(static_cast<const float*>(partials.raw_data()),
                                                  blocks, d, sums, out0, out1);
}

// The row kernels apply: x and its partner (y, dy or t) f32 or bf16, the plan found, every tensor
// aligned.
NormRowsPlan rows_plan(const Tensor& x, DType partner, int64_t d,
                       std::initializer_list<const Tensor*> tensors) {
  if (norm_kernels() != NormKernels::rows) return {};
  if (x.dtype() != DType::f32 && x.dtype() != DType::bf16) return {};
  if (partner != x.dtype() && !(x.dtype() == DType::f32 && partner == DType::bf16)) return {};
  for (const Tensor* t : tensors)
    if (!aligned(*t)) return {};
  return plan_norm_rows(d);
}

// Blocks of `kernel` a multiprocessor of the current device holds with `smem` bytes of shared
// memory each, asked once per (kernel, smem, device) and thread.
template <class Kernel>
int resident_blocks(Kernel kernel, size_t smem) {
  static thread_local std::map<std::tuple<const void*, size_t, int>, int> known;
  const auto key = std::make_tuple(reinterpret_cast<const void*>(kernel), smem, state_index());
  auto it = known.find(key);
  if (it != known.end()) return it->second;
  int n = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, rows::kThreads, smem),
        "layer norm occupancy");
  return known[key] = n;
}

}  // namespace

bool layer_norm_rows_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                             int64_t d, const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const NormRowsPlan p = rows_plan(x, y.dtype(), d, {&x, &w, &b, &y});
  if (p.lanes == 0) return false;
  const int64_t rows = x.numel() / d;
  with_row_types(p, x.dtype(), y.dtype(), [&](auto k, auto xtag, auto ytag) {
    using T = decltype(xtag);
    using Y = decltype(ytag);
    rows::ForwardArgs<Bits<T>, Bits<T>, Bits<Y>> a;
    a.x = bits<T>(x), a.w = bits<T>(w), a.b = bits<T>(b), a.eps = float(eps);
    a.rows = rows, a.d = d, a.lanes = p.lanes, a.y = bits<Y>(y);
    a.mean = static_cast<float*>(mean.raw_data());
    a.rstd = static_cast<float*>(rstd.raw_data());
    const auto kernel = rows_forward<decltype(k)::value, Bits<T>, Bits<Y>>;
    const int64_t blocks =
        norm_rows_blocks(rows, p.lanes, multiprocessors(), resident_blocks(kernel, 0));
    kernel<<<unsigned(blocks), rows::kThreads, 0, stream()>>>(a);
  });
  SCION_CUDA_LAUNCHED("layer norm rows");
  return true;
}

bool layer_norm_rows_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& mean, const Tensor& rstd, int64_t d, const Tensor& dx,
                              const Tensor& dw, const Tensor& db) {
  const NormRowsPlan p = rows_plan(x, dy.dtype(), d, {&x, &w, &dy, &dx});
  if (p.lanes == 0) return false;
  const int64_t rows = x.numel() / d;
  const size_t smem = size_t(rows::backward_smem_bytes(d, p.lanes));
  with_row_types(p, x.dtype(), dy.dtype(), [&](auto k, auto xtag, auto gtag) {
    using T = decltype(xtag);
    using G = decltype(gtag);
    const auto kernel = rows_backward<decltype(k)::value, Bits<T>, Bits<G>>;
    const int64_t blocks =
        norm_rows_blocks(rows, p.lanes, multiprocessors(), resident_blocks(kernel, smem));
    Tensor partials = dev_empty({blocks * 2 * d}, DType::f32);
    rows::BackwardArgs<Bits<T>, Bits<T>, Bits<G>> a;
    a.dy = bits<G>(dy), a.x = bits<T>(x), a.w = bits<T>(w);
    a.mean = static_cast<const float*>(mean.raw_data());
    a.rstd = static_cast<const float*>(rstd.raw_data());
    a.rows = rows, a.d = d, a.lanes = p.lanes, a.dx = bits<T>(dx);
    a.partials = static_cast<float*>(partials.raw_data());
    kernel<<<unsigned(blocks), rows::kThreads, smem, stream()>>>(a);
    launch_finish(partials, blocks, d, 2, bits<T>(dw), bits<T>(db));
  });
  SCION_CUDA_LAUNCHED("layer norm rows backward");
  return true;
}

void layer_scale_rows_kernel(const Tensor& x, const Tensor& t, const Tensor& s, const Tensor& out) {
  const int64_t d = s.numel(), rows = d == 0 ? 0 : x.numel() / d;
  if (rows == 0) return;
  const NormRowsPlan p = rows_plan(x, t.dtype(), d, {&x, &t, &s, &out});
  if (p.lanes == 0) {  // the mul and add kernels, as add(x, mul(t, s))
    copy_kernel(out, binary_kernel(BinaryOp::add, x, binary_kernel(BinaryOp::mul, t, s)));
    return;
  }
  with_row_types(p, x.dtype(), t.dtype(), [&](auto k, auto xtag, auto ttag) {
    using T = decltype(xtag);
    using H = decltype(ttag);
    rows::ScaleArgs<Bits<T>, Bits<H>> a;
    a.x = bits<T>(x), a.t = bits<H>(t), a.s = bits<T>(s), a.out = bits<T>(out);
    a.rows = rows, a.d = d, a.lanes = p.lanes;
    const auto kernel = scale_forward<decltype(k)::value, Bits<T>, Bits<H>>;
    const int64_t blocks =
        norm_rows_blocks(rows, p.lanes, multiprocessors(), resident_blocks(kernel, 0));
    kernel<<<unsigned(blocks), rows::kThreads, 0, stream()>>>(a);
  });
  SCION_CUDA_LAUNCHED("layer scale rows");
}

void layer_scale_rows_backward_kernel(const Tensor& g, const Tensor& t, const Tensor& s,
                                      const Tensor& dt, const Tensor& ds) {
  const int64_t d = s.numel(), rows = d == 0 ? 0 : g.numel() / d;
  if (rows == 0) {
    if (ds.defined()) fill_kernel(ds, 0.0);
    return;
  }
  const DType partner = t.defined() ? t.dtype() : dt.dtype();
  const NormRowsPlan p = rows_plan(g, partner, d, {&g, &t, &s, &dt});
  if (p.lanes == 0) {  // the mul, cast and sum kernels, as mul's backward
    if (dt.defined()) copy_kernel(dt, binary_kernel(BinaryOp::mul, g, s));
    if (ds.defined())
      copy_kernel(ds, reduce_sum_kernel(binary_kernel(BinaryOp::mul, g, t), {0}, false));
    return;
  }
  const size_t smem = size_t(rows::backward_smem_bytes(d, p.lanes));
  with_row_types(p, g.dtype(), partner, [&](auto k, auto xtag, auto ttag) {
    using T = decltype(xtag);
    using H = decltype(ttag);
    const auto kernel = scale_backward<decltype(k)::value, Bits<T>, Bits<H>>;
    const int64_t blocks =
        norm_rows_blocks(rows, p.lanes, multiprocessors(), resident_blocks(kernel, smem));
    Tensor partials = ds.defined() ? dev_empty({blocks * d}, DType::f32) : Tensor();
    rows::ScaleBackwardArgs<Bits<T>, Bits<H>> a;
    a.g = bits<T>(g), a.t = bits<H>(t), a.s = bits<T>(s), a.dt = bits<H>(dt);
    a.rows = rows, a.d = d, a.lanes = p.lanes;
    a.partials = partials.defined() ? static_cast<float*>(partials.raw_data()) : nullptr;
    kernel<<<unsigned(blocks), rows::kThreads, smem, stream()>>>(a);
    if (ds.defined())
      launch_finish(partials, blocks, d, 1, bits<T>(ds), static_cast<Bits<T>*>(nullptr));
  });
  SCION_CUDA_LAUNCHED("layer scale rows backward");
}

}  // namespace scion::cuda

// Shared pieces of the CUDA backend's .cu files: error checks, the device element types and their
// conversions, strided indexing from a host plan (plan.h), dtype dispatch, and the per-device
// state (stream, cuBLASLt and cuDNN handles, workspace). Every kernel runs on the device's one
// stream in order, so no kernel needs an explicit synchronization with another.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/cuda/elements.h"
#include "core/cuda/maps.h"
#include "core/cuda/plan.h"
#include "core/error.h"
#include "core/kernel_math.h"

namespace scion::cuda {

[[noreturn]] void fail(const std::string& what, const std::string& why);
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(what, cudaGetErrorString(e));
}
#define SCION_CUDA_CHECK(x) ::scion::cuda::check((x), #x)
// Checks the launch of the kernel just queued.
#define SCION_CUDA_LAUNCHED(name) ::scion::cuda::check(cudaGetLastError(), name)

// The element types of the kernel bodies that g++ also compiles (norm_rows.h, depthwise_rows.h):
// float, or a bf16's 16 bits; bits<T>(t) is t's data as such (null for an undefined t).
template <class T>
using Bits = std::conditional_t<std::is_same_v<T, bf16_t>, uint16_t, T>;
template <class T>
Bits<T>* bits(const Tensor& t) {
  return t.defined() ? static_cast<Bits<T>*>(t.raw_data()) : nullptr;
}

// A StridedPlan as a kernel argument (plain arrays).
struct DevPlan {
  int ndim;
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxOperands][kMaxDims];
};
DevPlan dev_plan(const StridedPlan& p);
// The same in 32 bits, for plans that fit (StridedPlan::fits_int32).
struct DevPlan32 {
  int ndim;
  uint32_t sizes[kMaxDims];
  int32_t strides[kMaxOperands][kMaxDims];
};
DevPlan32 dev_plan32(const StridedPlan& p);

// Element offsets of logical index i for the first N operands.
template <int N>
__device__ __forceinline__ void offsets(const DevPlan& p, int64_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = p.ndim - 1; d > 0; --d) {
    const int64_t s = p.sizes[d], c = i % s;
    i /= s;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += c * p.strides[k][d];
  }
  // What is left of i indexes the outermost dimension (i < numel): no division there, so a
  // one-dimensional plan (a column sum's rows, say) costs no 64-bit division at all.
  if (p.ndim > 0) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += i * p.strides[k][0];
  }
}

// f(offsets) for every element of the plan: a grid-stride loop; a flat loop when every operand
// is contiguous.
template <int N, class F>
__global__ void strided_kernel(DevPlan p, int64_t n, F f) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[N];
    offsets<N>(p, i, off);
    f(off);
  }
}
template <int N, class F>
__global__ void strided_kernel32(DevPlan32 p, uint32_t n, F f) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int32_t o[N];
#pragma unroll
    for (int k = 0; k < N; ++k) o[k] = 0;
    uint32_t rest = i;
    for (int d = p.ndim - 1; d > 0; --d) {
      const uint32_t s = p.sizes[d], c = rest % s;
      rest /= s;
#pragma unroll
      for (int k = 0; k < N; ++k) o[k] += int32_t(c) * p.strides[k][d];
    }
    if (p.ndim > 0) {
#pragma unroll
      for (int k = 0; k < N; ++k) o[k] += int32_t(rest) * p.strides[k][0];
    }
    int64_t off[N];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = o[k];
    f(off);
  }
}
template <int N, class F>
__global__ void flat_kernel(int64_t n, F f) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[N];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i;
    f(off);
  }
}

int multiprocessors();
cudaStream_t stream();

template <int N, class F>
void for_each(const StridedPlan& p, F f) {
  if (p.numel == 0) return;
  const Launch l = launch_1d(p.numel, multiprocessors());
  if (p.contiguous())
    flat_kernel<N><<<l.blocks, l.threads, 0, stream()>>>(p.numel, f);
  else if (p.fits_int32())
    strided_kernel32<N><<<l.blocks, l.threads, 0, stream()>>>(dev_plan32(p), uint32_t(p.numel), f);
  else
    strided_kernel<N><<<l.blocks, l.threads, 0, stream()>>>(dev_plan(p), p.numel, f);
  SCION_CUDA_LAUNCHED("elementwise kernel");
}

// ---- contiguous maps: out[i] = f(in...[i]) (maps.h) ---------------------------------------------
template <int V, class F, class O, class... I>
__global__ void __launch_bounds__(256) map_kernel(int64_t n, F f, O* out, const I*... in) {
  map_thread<V>(int64_t(blockIdx.x) * blockDim.x + threadIdx.x, int64_t(gridDim.x) * blockDim.x, n,
                f, out, in...);
}

// out[i] = f(load(in[i])...) stored as O, for i in [0, n), every operand contiguous (f takes the
// inputs' accumulation types, as for_each's loads give them).
template <class F, class O, class... I>
void map_flat(int64_t n, F f, O* out, const I*... in) {
  if (n <= 0) return;
  constexpr int kWide = pack_width<O, I...>();
  const int v = map_width(n, out, in...);
  const Launch l = launch_1d(n / v, multiprocessors());
  if (v == kWide)
    map_kernel<kWide><<<l.blocks, l.threads, 0, stream()>>>(n, f, out, in...);
  else
    map_kernel<1><<<l.blocks, l.threads, 0, stream()>>>(n, f, out, in...);
  SCION_CUDA_LAUNCHED("elementwise map");
}

// out[i] = f(a[i], b[j]) with b broadcast along a dense a and out (map_broadcast_thread).
template <int V, StridedPlan::Broadcast M, class F, class O, class A, class B>
__global__ void __launch_bounds__(256)
    map_broadcast_kernel(int64_t n, int64_t period, F f, O* out, const A* a, const B* b) {
  map_broadcast_thread<V, M>(int64_t(blockIdx.x) * blockDim.x + threadIdx.x,
                             int64_t(gridDim.x) * blockDim.x, n, period, f, out, a, b);
}

template <StridedPlan::Broadcast M, class F, class O, class A, class B>
void map_broadcast(int64_t n, int64_t period, F f, O* out, const A* a, const B* b) {
  if (n <= 0) return;
  constexpr int kWide = pack_width<O, A, B>();
  const int v = map_broadcast_width<M>(n, period, out, a, b);
  const Launch l = launch_1d(n / v, multiprocessors());
  if (v == kWide)
    map_broadcast_kernel<kWide, M><<<l.blocks, l.threads, 0, stream()>>>(n, period, f, out, a, b);
  else
    map_broadcast_kernel<1, M><<<l.blocks, l.threads, 0, stream()>>>(n, period, f, out, a, b);
  SCION_CUDA_LAUNCHED("elementwise map with a broadcast operand");
}

// f(i) for i in [0, n).
template <class F>
__global__ void index_kernel(int64_t n, F f) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    f(i);
}
template <class F>
void for_index(int64_t n, F f) {
  if (n <= 0) return;
  const Launch l = launch_1d(n, multiprocessors());
  index_kernel<<<l.blocks, l.threads, 0, stream()>>>(n, f);
  SCION_CUDA_LAUNCHED("index kernel");
}

// Runs the block `...` with T the device element type of dt, as a non-generic lambda (nvcc
// does not allow device lambdas inside generic ones), in the style of PyTorch's AT_DISPATCH.
[[noreturn]] void bad_dtype(const char* op, DType dt);
#define SCION_DT_CASE(DT, CT, T, ...) \
  case DType::DT: {                   \
    using T = CT;                     \
    [&]() __VA_ARGS__();              \
    break;                            \
  }
#define SCION_DISPATCH_FLOATING(dt, op, T, ...)                  \
  do {                                                           \
    switch (dt) {                                                \
      SCION_DT_CASE(f32, float, T, __VA_ARGS__)                  \
      SCION_DT_CASE(bf16, ::scion::cuda::bf16_t, T, __VA_ARGS__) \
      SCION_DT_CASE(f64, double, T, __VA_ARGS__)                 \
      default:                                                   \
        ::scion::cuda::bad_dtype(op, dt);                        \
    }                                                            \
  } while (0)
#define SCION_DISPATCH_NUMERIC(dt, op, T, ...)                   \
  do {                                                           \
    switch (dt) {                                                \
      SCION_DT_CASE(f32, float, T, __VA_ARGS__)                  \
      SCION_DT_CASE(bf16, ::scion::cuda::bf16_t, T, __VA_ARGS__) \
      SCION_DT_CASE(f64, double, T, __VA_ARGS__)                 \
      SCION_DT_CASE(i32, int32_t, T, __VA_ARGS__)                \
      SCION_DT_CASE(i64, int64_t, T, __VA_ARGS__)                \
      SCION_DT_CASE(u8, uint8_t, T, __VA_ARGS__)                 \
      default:                                                   \
        ::scion::cuda::bad_dtype(op, dt);                        \
    }                                                            \
  } while (0)
#define SCION_DISPATCH_ALL(dt, T, ...)                           \
  do {                                                           \
    switch (dt) {                                                \
      SCION_DT_CASE(f32, float, T, __VA_ARGS__)                  \
      SCION_DT_CASE(bf16, ::scion::cuda::bf16_t, T, __VA_ARGS__) \
      SCION_DT_CASE(f64, double, T, __VA_ARGS__)                 \
      SCION_DT_CASE(i32, int32_t, T, __VA_ARGS__)                \
      SCION_DT_CASE(i64, int64_t, T, __VA_ARGS__)                \
      SCION_DT_CASE(u8, uint8_t, T, __VA_ARGS__)                 \
      SCION_DT_CASE(bool_, bool, T, __VA_ARGS__)                 \
    }                                                            \
  } while (0)

Operand operand(const Tensor& t);

// Block-wide sum of one value per thread (blockDim.x a multiple of 32, at most 1024); every thread
// gets the total. `shared` holds 32 values.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(0);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class A>
__device__ __forceinline__ A block_max(A v, A* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(-INFINITY);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Per-device library handles and the GEMMs' workspace, created on first use.
struct DeviceState;
DeviceState& state();    // of the current device
int state_index();       // the current device's index
void* blas_lt_handle();  // cublasLtHandle_t
void* dnn_handle();      // cudnnHandle_t
// The GEMMs' workspace: a block of the caching allocator, kept (as PyTorch keeps cuBLAS's), so
// it counts in the allocator's statistics; grown as needed, valid until the next call. A block it
// outgrows goes back to the pool at once: every kernel runs in stream order on one stream.
void* workspace(size_t bytes);

// A contiguous device tensor of `shape` (scratch outputs).
Tensor dev_empty(const Shape& shape, DType dt);

// The kernels in the other .cu files (called by backend.cu).
void copy_kernel(const Tensor& dst, const Tensor& src);  // both on the current device
void fill_kernel(const Tensor& dst, double value);
void add_scaled_kernel(const Tensor& dst, const Tensor& src, double alpha);
void scale_kernel(const Tensor& dst, double value);
void random_fill_kernel(const Tensor& t, const RandomFill& r);
Tensor binary_kernel(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor unary_kernel(UnaryOp op, const Tensor& x);
Tensor gelu_backward_kernel(const Tensor& g, const Tensor& x, bool tanh_form);
Tensor where_kernel(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor index_select_kernel(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                           const Shape& out_shape);
Tensor index_add_kernel(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                        const Shape& out_shape);
Tensor gather_kernel(const Tensor& src, int64_t dim, const Tensor& index);
Tensor scatter_add_kernel(const Tensor& src, int64_t dim, const Tensor& index,
                          const Shape& out_shape);
Tensor reduce_sum_kernel(const Tensor& x, const Shape& dims, bool keepdim);
void reduce_max_kernel(const Tensor& x, int64_t dim, bool keepdim, Tensor& values, Tensor& indices);
void matmul_kernel(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out);
// Batched row-major GEMM on raw device pointers: c[z] = alpha a[z] b[z] + beta c[z]; a, b of
// dtype `in`, c of dtype `out` (f32 output for bf16 inputs allowed).
struct Gemm {
  DType in = DType::f32, out = DType::f32;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  const void* a = nullptr;
  MatrixLayout la;
  const void* b = nullptr;
  MatrixLayout lb;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  const void* bias = nullptr;  // length n, dtype `out`
  double alpha = 1, beta = 0;
};
void gemm(const Gemm& g);
// Channels-last depthwise convolutions on scion's own kernels (depthwise.cu); depthwise_own says
// whether a convolution is one of them.
bool depthwise_own(const Tensor& x, const Tensor& w, const ConvShape& cs);
void depthwise_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                       const ConvShape& cs);
void depthwise_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                             const ConvShape& cs);
void depthwise_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                const ConvShape& cs);
void conv2d_forward_kernel(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const ConvShape& cs);
void conv2d_backward_data_kernel(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                 const ConvShape& cs);
void conv2d_backward_weights_kernel(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                    const ConvShape& cs);
void layer_norm_forward_kernel(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                               int64_t d, DType out, Tensor& y, Tensor& mean, Tensor& rstd);
void layer_norm_backward_kernel(const Tensor& dy, const Tensor& x, const Tensor& w,
                                const Tensor& mean, const Tensor& rstd, int64_t d, Tensor& dx,
                                Tensor& dw, Tensor& db);
// The row kernels (layer_norm.cu) where they apply (plan.h's NormKernels), on allocated outputs;
// false where they do not (nothing done).
bool layer_norm_rows_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                             int64_t d, const Tensor& y, const Tensor& mean, const Tensor& rstd);
bool layer_norm_rows_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                              const Tensor& mean, const Tensor& rstd, int64_t d, const Tensor& dx,
                              const Tensor& dw, const Tensor& db);
// Backend::layer_scale_rows and its backward: the row kernels (layer_norm.cu) where they apply,
// else the mul, add, cast and sum kernels.
void layer_scale_rows_kernel(const Tensor& x, const Tensor& t, const Tensor& s, const Tensor& out);
void layer_scale_rows_backward_kernel(const Tensor& g, const Tensor& t, const Tensor& s,
                                      const Tensor& dt, const Tensor& ds);
void softmax_forward_kernel(bool log, int64_t dim, const Tensor& x, const Tensor& y);
void softmax_backward_kernel(bool log, int64_t dim, const Tensor& y, const Tensor& dy,
                             const Tensor& dx);
void attention_forward_kernel(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                              const Tensor& lse);
void attention_backward_kernel(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                               const Tensor& lse, int64_t heads, double scale, const Tensor& dqkv);
Tensor cross_entropy_kernel(const Tensor& logits, const Tensor& q, const Tensor& lp);
void adamw_kernel(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const OptimStep& s);
void sgd_kernel(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s);
void adamw_multi_kernel(const std::vector<AdamWParam>& params, const OptimStep& s);
void add_sums_of_squares_kernel(const std::vector<Tensor>& xs, const Tensor& total);
void scale_all_by_kernel(const std::vector<Tensor>& dsts, const Tensor& s);
void copy_many_kernel(const std::vector<Tensor>& dsts, const std::vector<Tensor>& srcs);

// Tables for multi-tensor kernels (pointers, sizes, chunks): appended to a byte buffer at 16-byte
// aligned offsets (returned), then uploaded in one copy queued from pinned memory.
template <class T>
size_t append_table(std::vector<unsigned char>& bytes, const std::vector<T>& items) {
  const size_t at = (bytes.size() + 15) / 16 * 16;
  bytes.resize(at + items.size() * sizeof(T));
  if (!items.empty()) std::memcpy(bytes.data() + at, items.data(), items.size() * sizeof(T));
  return at;
}
Tensor upload_bytes(const std::vector<unsigned char>& bytes, Device device);

// A multi-tensor kernel's tables on the device: one entry of type E per tensor, and the work list
// of chunks (tensor_chunks of the tensors' sizes), one per block; `bytes` may hold a prefix (the
// AdamW constants), at `base` on the device.
template <class E>
struct ChunkTables {
  Tensor storage;
  const unsigned char* base = nullptr;
  const E* entries = nullptr;
  const TensorChunk* chunks = nullptr;
  unsigned blocks = 0;
};
template <class E>
ChunkTables<E> upload_chunk_tables(const std::vector<E>& entries, const std::vector<int64_t>& sizes,
                                   int64_t chunk, Device device,
                                   std::vector<unsigned char> bytes = {}) {
  ChunkTables<E> t;
  const std::vector<TensorChunk> chunks = tensor_chunks(sizes, chunk);
  t.blocks = unsigned(chunks.size());
  if (chunks.empty()) return t;
  const size_t at_entries = append_table(bytes, entries), at_chunks = append_table(bytes, chunks);
  t.storage = upload_bytes(bytes, device);
  t.base = static_cast<const unsigned char*>(t.storage.raw_data());
  t.entries = reinterpret_cast<const E*>(t.base + at_entries);
  t.chunks = reinterpret_cast<const TensorChunk*>(t.base + at_chunks);
  return t;
}
double sum_squares_kernel(const Tensor& x);
void add_sum_squares_kernel(const Tensor& x, const Tensor& total);
void scale_by_kernel(const Tensor& dst, const Tensor& s);

}  // namespace scion::cuda

// 2-d convolutions through cuDNN (its convolution API): NCHW or NHWC activations, groups and
// depthwise (channels-last f32/bf16 depthwise ones on scion's own kernels, depthwise.cu;
// patchify convolutions, kernel = stride, as GEMMs below). f32 runs with FMA math (no TF32, so f32 results keep f32 tolerances), bf16 on
// tensor cores with f32 accumulation, f64 plainly. With NHWC activations cuDNN's fast kernels
// want the filter in KRSC memory: scion keeps weights OIHW, so the filter is permuted into a
// scratch buffer (and its gradient permuted back). Algorithms are timed by cuDNN on the first
// call of each convolution geometry (cudnnFind*Ex, as torch.backends.cudnn.benchmark = True) and
// the fastest deterministic one is kept: cuDNN's heuristic ranking chose algorithms 10-100x
// slower than the best for ViT's patch embedding in bf16 (experiments/gpu/results).
#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>

#include "core/cuda/common.cuh"
#include "core/ops.h"

namespace scion::cuda {

namespace {

void check_dnn(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) fail(what, cudnnGetErrorString(s));
}

cudnnDataType_t dnn_type(DType dt) {
  switch (dt) {
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    case DType::f64:
      return CUDNN_DATA_DOUBLE;
    default:
      throw InputError(std::string("conv2d on CUDA: unsupported dtype ") + dtype_name(dt));
  }
}

constexpr size_t kMaxWorkspace = size_t(256) << 20;

// A convolution's workspace: a block of the caching allocator for one call (as PyTorch's cuDNN
// calls take theirs), back in the pool when the call is queued; at least 1 byte, so never null.
Tensor scratch(size_t bytes) {
  return dev_empty({int64_t(bytes) + 1}, DType::u8);
}

// The descriptors of one convolution, destroyed with it.
struct Descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  std::string key;
  Descs(const Shape& xs, const Shape& ws, const Shape& ys, const ConvShape& cs, DType dt) {
    const ConvDescriptors d =
        conv_descriptors(xs, ws, ys, cs.stride_h, cs.stride_w, cs.pad_h, cs.pad_w, cs.dil_h,
                         cs.dil_w, cs.groups, cs.channels_last);
    const cudnnDataType_t t = dnn_type(dt);
    check_dnn(cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor");
    check_dnn(cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor");
    check_dnn(cudnnCreateFilterDescriptor(&w), "cudnnCreateFilterDescriptor");
    check_dnn(cudnnCreateConvolutionDescriptor(&conv), "cudnnCreateConvolutionDescriptor");
    check_dnn(cudnnSetTensor4dDescriptorEx(x, t, d.x_dims[0], d.x_dims[1], d.x_dims[2], d.x_dims[3],
                                           d.x_strides[0], d.x_strides[1], d.x_strides[2],
                                           d.x_strides[3]),
              "cudnnSetTensor4dDescriptorEx (x)");
    check_dnn(cudnnSetTensor4dDescriptorEx(y, t, d.y_dims[0], d.y_dims[1], d.y_dims[2], d.y_dims[3],
                                           d.y_strides[0], d.y_strides[1], d.y_strides[2],
                                           d.y_strides[3]),
              "cudnnSetTensor4dDescriptorEx (y)");
    check_dnn(cudnnSetFilter4dDescriptor(w, t, d.w_nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                         d.w_dims[0], d.w_dims[1], d.w_dims[2], d.w_dims[3]),
              "cudnnSetFilter4dDescriptor");
    check_dnn(cudnnSetConvolution2dDescriptor(
                  conv, d.pad[0], d.pad[1], d.stride[0], d.stride[1], d.dilation[0], d.dilation[1],
                  CUDNN_CROSS_CORRELATION, dt == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor");
    check_dnn(cudnnSetConvolutionGroupCount(conv, d.groups), "cudnnSetConvolutionGroupCount");
    check_dnn(cudnnSetConvolutionMathType(conv, dt == DType::f32    ? CUDNN_FMA_MATH
                                                : dt == DType::bf16 ? CUDNN_TENSOR_OP_MATH
                                                                    : CUDNN_DEFAULT_MATH),
              "cudnnSetConvolutionMathType");
    key = shape_str(xs) + shape_str(ws) + shape_str(ys) + dtype_name(dt) +
          std::to_string(cs.stride_h) + "," + std::to_string(cs.stride_w) + "," +
          std::to_string(cs.pad_h) + "," + std::to_string(cs.pad_w) + "," +
          std::to_string(cs.dil_h) + "," + std::to_string(cs.dil_w) + "," +
          std::to_string(cs.groups) + (cs.channels_last ? "nhwc" : "nchw");
  }
  ~Descs() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
};

// The fastest deterministic algorithm cuDNN's timing found within the workspace limit, and its
// workspace size; cached by (kind, geometry). `get` runs cudnnFind*Ex.
struct Choice {
  int algo = 0;
  size_t bytes = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};
template <class Perf, class Get>
Choice pick(const std::string& key, Get get) {
  static std::mutex mu;
  static std::map<std::string, Choice> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  Perf perf[16];
  int n = 0;
  get(perf, 16, &n);
  for (int i = 0; i < n; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace &&
        perf[i].determinism == CUDNN_DETERMINISTIC) {
      // The math type the algorithm was timed with must be set on the descriptor to run it.
      Choice r{int(perf[i].algo), perf[i].memory, perf[i].mathType};
      std::lock_guard<std::mutex> lock(mu);
      cache[key] = r;
      return r;
    }
  fail("conv2d", "cuDNN offers no algorithm for " + key);
}

// OIHW <-> OHWI (KRSC) permutations of a filter.
Tensor to_krsc(const Tensor& w) {
  Tensor out = dev_empty({w.size(0), w.size(2), w.size(3), w.size(1)}, w.dtype());
  copy_kernel(out, w.permute({0, 2, 3, 1}));
  return out;
}

void add_channel_bias(const Tensor& y, const Tensor& b, bool channels_last) {
  const int64_t c = y.size(1), hw = y.size(2) * y.size(3);
  SCION_DISPATCH_FLOATING(y.dtype(), "conv2d bias", T, {
    T* yp = static_cast<T*>(y.raw_data());
    const T* bp = static_cast<const T*>(b.raw_data());
    for_index(y.numel(), [=] __device__(int64_t e) {
      const int64_t ch = channels_last ? e % c : (e / hw) % c;
      store(yp + e, load(yp + e) + load(bp + ch));
    });
  });
}

struct Scalars {
  float f1 = 1, f0 = 0;
  double d1 = 1, d0 = 0;
  const void* one(DType dt) const { return dt == DType::f64 ? (const void*)&d1 : (const void*)&f1; }
  const void* zero(DType dt) const {
    return dt == DType::f64 ? (const void*)&d0 : (const void*)&f0;
  }
};

// ---- patchify convolutions as GEMMs -----------------------------------------------------------
// A convolution whose kernel equals its stride, unpadded and undilated (ViT's patch embedding,
// ConvNeXt's stem and downsampling layers) is a matrix product over non-overlapping patches:
//   y (N Ho Wo, O) = P (N Ho Wo, C kh kw) W^T,   P = the patches of x in (c, i, j) order;
//   dP = dY W (scattered back into dx), dW = dY^T P.
// cuDNN's convolution API ran these 10-100x slower than the equivalent GEMM in bf16.

bool patchify(const Tensor& w, const ConvShape& cs) {
  return cs.groups == 1 && cs.pad_h == 0 && cs.pad_w == 0 && cs.dil_h == 1 && cs.dil_w == 1 &&
         w.size(2) == cs.stride_h && w.size(3) == cs.stride_w;
}

// x's patches as a (N, Ho, Wo, C, kh, kw) view of its memory (any layout).
Tensor patches_view(const Tensor& x, int64_t kh, int64_t kw, int64_t ho, int64_t wo) {
  const Shape& st = x.strides();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->offset = x.offset();
  impl->dtype = x.dtype();
  impl->shape = {x.size(0), ho, wo, x.size(1), kh, kw};
  impl->strides = {st[0], st[2] * kh, st[3] * kw, st[1], st[2], st[3]};
  return Tensor(impl);
}

Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, int64_t ho, int64_t wo) {
  Tensor p = dev_empty({x.size(0), ho, wo, x.size(1), kh, kw}, x.dtype());
  copy_kernel(p, patches_view(x, kh, kw, ho, wo));
  return p;
}

// dY as a (N Ho Wo, O) row-major matrix: dy's memory when channels-last, else a permuted copy.
Tensor rows_of(const Tensor& y, bool channels_last) {
  if (channels_last) return y;
  Tensor t = dev_empty({y.size(0), y.size(2), y.size(3), y.size(1)}, y.dtype());
  copy_kernel(t, y.permute({0, 2, 3, 1}));
  return t;
}

void patch_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                   const ConvShape& cs) {
  const int64_t kh = w.size(2), kw = w.size(3), ho = y.size(2), wo = y.size(3), o = w.size(0);
  const int64_t k = x.size(1) * kh * kw, m = x.size(0) * ho * wo;
  const Tensor p = im2col(x, kh, kw, ho, wo);
  const Tensor out = cs.channels_last ? y : dev_empty({y.size(0), ho, wo, o}, y.dtype());
  Gemm g;
  g.in = x.dtype();
  g.out = y.dtype();
  g.m = m;
  g.n = o;
  g.k = k;
  g.a = p.raw_data();
  g.la = matrix_layout(m, k, k, 1, 0);
  g.b = w.raw_data();
  g.lb = matrix_layout(k, o, 1, k, 0);  // W^T: a transposed view of the (O, K) weights
  g.c = out.raw_data();
  g.ldc = o;
  g.bias = b.defined() ? b.raw_data() : nullptr;
  gemm(g);
  if (!cs.channels_last) copy_kernel(y, out.permute({0, 3, 1, 2}));
}

void patch_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const ConvShape& cs) {
  const int64_t kh = w.size(2), kw = w.size(3), ho = dy.size(2), wo = dy.size(3), o = w.size(0);
  const int64_t k = dx.size(1) * kh * kw, m = dx.size(0) * ho * wo;
  const Tensor g_rows = rows_of(dy, cs.channels_last);
  Tensor dp = dev_empty({dx.size(0), ho, wo, dx.size(1), kh, kw}, dx.dtype());
  Gemm g;
  g.in = dy.dtype();
  g.out = dx.dtype();
  g.m = m;
  g.n = k;
  g.k = o;
  g.a = g_rows.raw_data();
  g.la = matrix_layout(m, o, o, 1, 0);
  g.b = w.raw_data();
  g.lb = matrix_layout(o, k, k, 1, 0);
  g.c = dp.raw_data();
  g.ldc = k;
  gemm(g);
  if (ho * kh != dx.size(2) || wo * kw != dx.size(3)) fill_kernel(dx, 0.0);  // uncovered edges
  copy_kernel(patches_view(dx, kh, kw, ho, wo), dp);
}

void patch_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                            const ConvShape& cs) {
  const int64_t kh = dw.size(2), kw = dw.size(3), ho = dy.size(2), wo = dy.size(3), o = dw.size(0);
  const int64_t k = x.size(1) * kh * kw, m = x.size(0) * ho * wo;
  const Tensor p = im2col(x, kh, kw, ho, wo);
  const Tensor g_rows = rows_of(dy, cs.channels_last);
  Gemm g;
  g.in = x.dtype();
  g.out = dw.dtype();
  g.m = o;
  g.n = k;
  g.k = m;
  g.a = g_rows.raw_data();
  g.la = matrix_layout(o, m, 1, o, 0);  // dY^T: a transposed view of the (M, O) rows
  g.b = p.raw_data();
  g.lb = matrix_layout(m, k, k, 1, 0);
  g.c = dw.raw_data();
  g.ldc = k;
  gemm(g);
}

}  // namespace

void conv2d_forward_kernel(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                           const ConvShape& cs) {
  if (y.numel() == 0) return;
  if (depthwise_own(x, w, cs)) return depthwise_forward(x, w, b, y, cs);
  if (patchify(w, cs)) return patch_forward(x, w, b, y, cs);
  auto h = static_cast<cudnnHandle_t>(dnn_handle());
  Descs d(x.shape(), w.shape(), y.shape(), cs, x.dtype());
  const Tensor wf = cs.channels_last ? to_krsc(w) : w;
  const Choice c = pick<cudnnConvolutionFwdAlgoPerf_t>("fwd" + d.key, [&](auto* p, int k, int* n) {
    check_dnn(cudnnFindConvolutionForwardAlgorithmEx(
                  h, d.x, x.raw_data(), d.w, wf.raw_data(), d.conv, d.y, y.raw_data(), k, n, p,
                  scratch(kMaxWorkspace).raw_data(), kMaxWorkspace),
              "cudnnFindConvolutionForwardAlgorithmEx");
  });
  check_dnn(cudnnSetConvolutionMathType(d.conv, c.math), "cudnnSetConvolutionMathType");
  const Tensor ws = scratch(c.bytes);
  Scalars s;
  check_dnn(cudnnConvolutionForward(h, s.one(x.dtype()), d.x, x.raw_data(), d.w, wf.raw_data(),
                                    d.conv, cudnnConvolutionFwdAlgo_t(c.algo), ws.raw_data(),
                                    c.bytes, s.zero(x.dtype()), d.y, y.raw_data()),
            "cudnnConvolutionForward");
  if (b.defined()) add_channel_bias(y, b, cs.channels_last);
}

void conv2d_backward_data_kernel(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                 const ConvShape& cs) {
  if (dx.numel() == 0) return;
  if (depthwise_own(dx, w, cs)) return depthwise_backward_data(dy, w, dx, cs);
  if (patchify(w, cs)) return patch_backward_data(dy, w, dx, cs);
  auto h = static_cast<cudnnHandle_t>(dnn_handle());
  Descs d(dx.shape(), w.shape(), dy.shape(), cs, dy.dtype());
  const Tensor wf = cs.channels_last ? to_krsc(w) : w;
  const Choice c =
      pick<cudnnConvolutionBwdDataAlgoPerf_t>("bwd_data" + d.key, [&](auto* p, int k, int* n) {
        check_dnn(cudnnFindConvolutionBackwardDataAlgorithmEx(
                      h, d.w, wf.raw_data(), d.y, dy.raw_data(), d.conv, d.x, dx.raw_data(), k, n,
                      p, scratch(kMaxWorkspace).raw_data(), kMaxWorkspace),
                  "cudnnFindConvolutionBackwardDataAlgorithmEx");
      });
  check_dnn(cudnnSetConvolutionMathType(d.conv, c.math), "cudnnSetConvolutionMathType");
  const Tensor ws = scratch(c.bytes);
  Scalars s;
  check_dnn(
      cudnnConvolutionBackwardData(h, s.one(dy.dtype()), d.w, wf.raw_data(), d.y, dy.raw_data(),
                                   d.conv, cudnnConvolutionBwdDataAlgo_t(c.algo), ws.raw_data(),
                                   c.bytes, s.zero(dy.dtype()), d.x, dx.raw_data()),
      "cudnnConvolutionBackwardData");
}

void conv2d_backward_weights_kernel(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                    const ConvShape& cs) {
  if (dw.numel() == 0) return;
  if (depthwise_own(x, dw, cs)) return depthwise_backward_weights(x, dy, dw, cs);
  if (patchify(dw, cs)) return patch_backward_weights(x, dy, dw, cs);
  auto h = static_cast<cudnnHandle_t>(dnn_handle());
  Descs d(x.shape(), dw.shape(), dy.shape(), cs, x.dtype());
  const Tensor dwf = cs.channels_last
                         ? dev_empty({dw.size(0), dw.size(2), dw.size(3), dw.size(1)}, dw.dtype())
                         : dw;
  const Choice c =
      pick<cudnnConvolutionBwdFilterAlgoPerf_t>("bwd_filter" + d.key, [&](auto* p, int k, int* n) {
        check_dnn(cudnnFindConvolutionBackwardFilterAlgorithmEx(
                      h, d.x, x.raw_data(), d.y, dy.raw_data(), d.conv, d.w, dwf.raw_data(), k, n,
                      p, scratch(kMaxWorkspace).raw_data(), kMaxWorkspace),
                  "cudnnFindConvolutionBackwardFilterAlgorithmEx");
      });
  check_dnn(cudnnSetConvolutionMathType(d.conv, c.math), "cudnnSetConvolutionMathType");
  const Tensor ws = scratch(c.bytes);
  Scalars s;
  check_dnn(
      cudnnConvolutionBackwardFilter(h, s.one(x.dtype()), d.x, x.raw_data(), d.y, dy.raw_data(),
                                     d.conv, cudnnConvolutionBwdFilterAlgo_t(c.algo), ws.raw_data(),
                                     c.bytes, s.zero(x.dtype()), d.w, dwf.raw_data()),
      "cudnnConvolutionBackwardFilter");
  if (cs.channels_last) copy_kernel(dw, dwf.permute({0, 3, 1, 2}));
}

}  // namespace scion::cuda

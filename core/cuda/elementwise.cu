// Elementwise kernels over strided, broadcast operands (plan_elementwise collapses them first):
// copies with dtype conversion, fills, binary and unary math, gelu's gradient, where; random
// fills and the optimizer updates with core/kernel_math.h's per-element math, so they give the
// CPU's numbers.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/cuda/common.cuh"
#include "core/ops.h"

namespace scion::cuda {

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440, kSqrt2OverPi = 0.7978845608028654,
                 kInvSqrt2Pi = 0.3989422804014327, kGeluC = 0.044715;

// The output of an elementwise op over `shape`: like `like`'s layout when the shapes match (a
// channels-last input gives a channels-last output, as on the CPU), else contiguous.
Tensor output_for(const Shape& shape, DType dt, const Tensor& like) {
  return like.shape() == shape ? empty_like(like, dt) : dev_empty(shape, dt);
}

// Binary arithmetic in the accumulation type; NaNs propagate through maximum/minimum as in torch.
__device__ __forceinline__ float arith(BinaryOp op, float x, float y) {
  switch (op) {
    case BinaryOp::add:
      return x + y;
    case BinaryOp::sub:
      return x - y;
    case BinaryOp::mul:
      return x * y;
    case BinaryOp::div:
      return x / y;
    case BinaryOp::pow:
      return ::powf(x, y);
    case BinaryOp::maximum:
      return x != x || y != y ? NAN : fmaxf(x, y);
    case BinaryOp::minimum:
      return x != x || y != y ? NAN : fminf(x, y);
    default:
      return 0.f;
  }
}
__device__ __forceinline__ double arith(BinaryOp op, double x, double y) {
  switch (op) {
    case BinaryOp::add:
      return x + y;
    case BinaryOp::sub:
      return x - y;
    case BinaryOp::mul:
      return x * y;
    case BinaryOp::div:
      return x / y;
    case BinaryOp::pow:
      return ::pow(x, y);
    case BinaryOp::maximum:
      return x != x || y != y ? double(NAN) : fmax(x, y);
    case BinaryOp::minimum:
      return x != x || y != y ? double(NAN) : fmin(x, y);
    default:
      return 0.0;
  }
}
// Integer division truncates (the CPU's int64 division); maximum/minimum without NaNs.
__device__ __forceinline__ int64_t arith(BinaryOp op, int64_t x, int64_t y) {
  switch (op) {
    case BinaryOp::add:
      return x + y;
    case BinaryOp::sub:
      return x - y;
    case BinaryOp::mul:
      return x * y;
    case BinaryOp::div:
      return y == 0 ? 0 : x / y;
    case BinaryOp::pow: {
      int64_t r = 1;
      for (int64_t i = 0; i < y; ++i) r *= x;
      return r;
    }
    case BinaryOp::maximum:
      return x > y ? x : y;
    case BinaryOp::minimum:
      return x < y ? x : y;
    default:
      return 0;
  }
}
__device__ __forceinline__ bool arith(BinaryOp op, bool x, bool y) {
  return arith(op, int64_t(x), int64_t(y)) != 0;
}

template <class A>
__device__ __forceinline__ bool compare_op(BinaryOp op, A x, A y) {
  switch (op) {
    case BinaryOp::eq:
      return x == y;
    case BinaryOp::ne:
      return x != y;
    case BinaryOp::lt:
      return x < y;
    case BinaryOp::le:
      return x <= y;
    case BinaryOp::gt:
      return x > y;
    default:
      return x >= y;
  }
}

template <class A>
__device__ __forceinline__ A unary_op(UnaryOp op, A x) {
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::exp:
      return ::exp(x);
    case UnaryOp::log:
      return ::log(x);
    case UnaryOp::sqrt:
      return ::sqrt(x);
    case UnaryOp::rsqrt:
      return A(1) / ::sqrt(x);
    case UnaryOp::tanh:
      return ::tanh(x);
    case UnaryOp::erf:
      return ::erf(x);
    case UnaryOp::relu:
      return x > A(0) ? x : (x != x ? x : A(0));
    case UnaryOp::sigmoid:
      return A(1) / (A(1) + ::exp(-x));
    case UnaryOp::gelu_erf:
      if constexpr (std::is_same_v<A, float>)
        return kmath::gelu_erf_f32(x);  // f32 and bf16: the CPU kernels' steps and bits
      else
        return A(0.5) * x * (A(1) + ::erf(x * A(kSqrt1_2)));
    case UnaryOp::gelu_tanh:
      return A(0.5) * x * (A(1) + ::tanh(A(kSqrt2OverPi) * (x + A(kGeluC) * x * x * x)));
  }
  return x;
}

template <class A>
__device__ __forceinline__ A gelu_grad(A t, bool tanh_form) {
  if (tanh_form) {
    const A u = ::tanh(A(kSqrt2OverPi) * (t + A(kGeluC) * t * t * t));
    return A(0.5) * (A(1) + u) +
           A(0.5) * t * (A(1) - u * u) * A(kSqrt2OverPi) * (A(1) + A(3 * kGeluC) * t * t);
  }
  return A(0.5) * (A(1) + ::erf(t * A(kSqrt1_2))) + t * A(kInvSqrt2Pi) * ::exp(A(-0.5) * t * t);
}
// u times gelu's derivative at t; for f32 and bf16 the exact form is the CPU kernels' steps and
// bits (kernel_math.h).
template <class A>
__device__ __forceinline__ A gelu_backward_value(A t, A u, bool tanh_form) {
  if constexpr (std::is_same_v<A, float>)
    if (!tanh_form) return kmath::gelu_erf_backward_f32(u, t);
  return gelu_grad<A>(t, tanh_form) * u;
}

}  // namespace

void copy_kernel(const Tensor& dst, const Tensor& src) {
  const StridedPlan p = plan_elementwise(dst.shape(), {operand(dst), operand(src)});
  if (p.contiguous() && is_floating(dst.dtype()) && is_floating(src.dtype())) {  // autocast's casts
    SCION_DISPATCH_FLOATING(dst.dtype(), "copy", D, {
      SCION_DISPATCH_FLOATING(src.dtype(), "copy", S, {
        map_flat(
            p.numel, [] __device__(acc<S> v) { return v; }, static_cast<D*>(dst.raw_data()),
            static_cast<const S*>(src.raw_data()));
      });
    });
    return;
  }
  SCION_DISPATCH_ALL(dst.dtype(), D, {
    SCION_DISPATCH_ALL(src.dtype(), S, {
      D* d = static_cast<D*>(dst.raw_data());
      const S* s = static_cast<const S*>(src.raw_data());
      for_each<2>(p, [=] __device__(const int64_t(&o)[2]) { store(d + o[0], load(s + o[1])); });
    });
  });
}

void fill_kernel(const Tensor& dst, double value) {
  const StridedPlan p = plan_elementwise(dst.shape(), {operand(dst)});
  SCION_DISPATCH_ALL(dst.dtype(), D, {
    D* d = static_cast<D*>(dst.raw_data());
    for_each<1>(p, [=] __device__(const int64_t(&o)[1]) { store(d + o[0], value); });
  });
}

void add_scaled_kernel(const Tensor& dst, const Tensor& src, double alpha) {
  const StridedPlan p = plan_elementwise(dst.shape(), {operand(dst), operand(src)});
  SCION_DISPATCH_FLOATING(dst.dtype(), "add_", D, {
    using A = acc<D>;
    D* d = static_cast<D*>(dst.raw_data());
    const D* s = static_cast<const D*>(src.raw_data());
    const A a = A(alpha);
    for_each<2>(p, [=] __device__(const int64_t(&o)[2]) {
      store(d + o[0], load(d + o[0]) + a * load(s + o[1]));
    });
  });
}

void scale_kernel(const Tensor& dst, double value) {
  const StridedPlan p = plan_elementwise(dst.shape(), {operand(dst)});
  SCION_DISPATCH_FLOATING(dst.dtype(), "mul_", D, {
    using A = acc<D>;
    D* d = static_cast<D*>(dst.raw_data());
    const A v = A(value);
    for_each<1>(p, [=] __device__(const int64_t(&o)[1]) { store(d + o[0], load(d + o[0]) * v); });
  });
}

// As scale_kernel with the factor read on the device; a factor of 1 leaves dst untouched.
void scale_by_kernel(const Tensor& dst, const Tensor& s) {
  const StridedPlan p = plan_elementwise(dst.shape(), {operand(dst)});
  const double* sp = s.data<double>();
  SCION_DISPATCH_FLOATING(dst.dtype(), "mul_", D, {
    using A = acc<D>;
    D* d = static_cast<D*>(dst.raw_data());
    for_each<1>(p, [=] __device__(const int64_t(&o)[1]) {
      const double v = *sp;
      if (v != 1.0) store(d + o[0], load(d + o[0]) * A(v));
    });
  });
}

namespace {

// out = op(a, b) for arithmetic ops, TO the output's element type, TA and TB the operands' (the
// same, or f32 and bf16 in either order into f32), in the operands' accumulation type.
template <class TO, class TA, class TB>
void arith_kernel(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out,
                  const StridedPlan& p) {
  using A = acc<TO>;
  TO* o = static_cast<TO*>(out.raw_data());
  const TA* x = static_cast<const TA*>(a.raw_data());
  const TB* y = static_cast<const TB*>(b.raw_data());
  if (p.contiguous()) {  // residual adds, masks, scales
    map_flat(
        p.numel, [=] __device__(A u, A w) { return arith(op, u, w); }, o, x, y);
    return;
  }
  // One operand broadcast over a dense other: a per-channel row (ConvNeXt's layer scale and its
  // gradient), a value per row (drop path's per-sample mask) or one value (tensor-scalar ops).
  // The dense operand goes first into the map; when it is b, the op keeps its order.
  using Bc = StridedPlan::Broadcast;
  auto broadcast = [&](const StridedPlan::BroadcastOf& of, auto f, const auto* dense,
                       const auto* bc) {
    if (of.kind == Bc::row) map_broadcast<Bc::row>(p.numel, of.period, f, o, dense, bc);
    if (of.kind == Bc::row_value) map_broadcast<Bc::row_value>(p.numel, of.period, f, o, dense, bc);
    if (of.kind == Bc::scalar) map_broadcast<Bc::scalar>(p.numel, of.period, f, o, dense, bc);
  };
  if (const StridedPlan::BroadcastOf bb = p.broadcast_of(2); bb.kind != Bc::none)
    return broadcast(
        bb, [=] __device__(A d, A w) { return arith(op, d, w); }, x, y);
  if (const StridedPlan::BroadcastOf ab = p.broadcast_of(1); ab.kind != Bc::none)
    return broadcast(
        ab, [=] __device__(A d, A w) { return arith(op, w, d); }, y, x);
  for_each<3>(p, [=] __device__(const int64_t(&f)[3]) {
    store(o + f[0], arith(op, A(load(x + f[1])), A(load(y + f[2]))));
  });
}

}  // namespace

Tensor binary_kernel(BinaryOp op, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  const bool cmp = op >= BinaryOp::eq, mixed = a.dtype() != b.dtype();
  SCION_CHECK(!mixed || mixed_float_operands(op, a.dtype(), b.dtype()),
              "CUDA binary op on mixed dtypes ", dtype_name(a.dtype()), " and ",
              dtype_name(b.dtype()));
  Tensor out = output_for(shape, cmp ? DType::bool_ : mixed ? DType::f32 : a.dtype(), a);
  const StridedPlan p = plan_elementwise(shape, {operand(out), operand(a), operand(b)});
  if (mixed) {
    if (a.dtype() == DType::f32)
      arith_kernel<float, float, bf16_t>(op, a, b, out, p);
    else
      arith_kernel<float, bf16_t, float>(op, a, b, out, p);
    return out;
  }
  if (!cmp && is_floating(a.dtype())) {
    SCION_DISPATCH_FLOATING(a.dtype(), "binary op", T,
                            { arith_kernel<T, T, T>(op, a, b, out, p); });
    return out;
  }
  SCION_DISPATCH_ALL(a.dtype(), T, {
    using A = acc<T>;
    const T* x = static_cast<const T*>(a.raw_data());
    const T* y = static_cast<const T*>(b.raw_data());
    if (cmp) {
      bool* o = static_cast<bool*>(out.raw_data());
      for_each<3>(p, [=] __device__(const int64_t(&f)[3]) {
        o[f[0]] = compare_op<A>(op, load(x + f[1]), load(y + f[2]));
      });
      return;
    }
    T* o = static_cast<T*>(out.raw_data());
    for_each<3>(p, [=] __device__(const int64_t(&f)[3]) {
      store(o + f[0], arith(op, load(x + f[1]), load(y + f[2])));
    });
  });
  return out;
}

Tensor unary_kernel(UnaryOp op, const Tensor& x) {
  Tensor out = empty_like(x);
  const StridedPlan p = plan_elementwise(x.shape(), {operand(out), operand(x)});
  if (!is_floating(x.dtype()) && op == UnaryOp::neg) {
    SCION_DISPATCH_ALL(x.dtype(), T, {
      const T* s = static_cast<const T*>(x.raw_data());
      T* d = static_cast<T*>(out.raw_data());
      for_each<2>(
          p, [=] __device__(const int64_t(&f)[2]) { store(d + f[0], -int64_t(load(s + f[1]))); });
    });
    return out;
  }
  SCION_DISPATCH_FLOATING(x.dtype(), "unary op", T, {
    using A = acc<T>;
    const T* s = static_cast<const T*>(x.raw_data());
    T* d = static_cast<T*>(out.raw_data());
    if (p.contiguous()) {
      map_flat(
          p.numel, [=] __device__(A v) { return unary_op<A>(op, v); }, d, s);
      return;
    }
    for_each<2>(p, [=] __device__(const int64_t(&f)[2]) {
      store(d + f[0], unary_op<A>(op, load(s + f[1])));
    });
  });
  return out;
}

Tensor gelu_backward_kernel(const Tensor& g, const Tensor& x, bool tanh_form) {
  Tensor out = empty_like(x);
  const StridedPlan p = plan_elementwise(x.shape(), {operand(out), operand(x), operand(g)});
  SCION_DISPATCH_FLOATING(x.dtype(), "gelu", T, {
    using A = acc<T>;
    const T* xs = static_cast<const T*>(x.raw_data());
    const T* gs = static_cast<const T*>(g.raw_data());
    T* d = static_cast<T*>(out.raw_data());
    if (p.contiguous()) {
      map_flat(
          p.numel, [=] __device__(A t, A u) { return gelu_backward_value<A>(t, u, tanh_form); }, d,
          xs, gs);
      return;
    }
    for_each<3>(p, [=] __device__(const int64_t(&f)[3]) {
      store(d + f[0], gelu_backward_value<A>(load(xs + f[1]), load(gs + f[2]), tanh_form));
    });
  });
  return out;
}

Tensor where_kernel(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape()));
  Tensor out = output_for(shape, a.dtype(), a);
  const StridedPlan p =
      plan_elementwise(shape, {operand(out), operand(cond), operand(a), operand(b)});
  SCION_DISPATCH_ALL(cond.dtype(), C, {
    const C* c = static_cast<const C*>(cond.raw_data());
    SCION_DISPATCH_ALL(a.dtype(), T, {
      const T* x = static_cast<const T*>(a.raw_data());
      const T* y = static_cast<const T*>(b.raw_data());
      T* o = static_cast<T*>(out.raw_data());
      for_each<4>(p, [=] __device__(const int64_t(&f)[4]) {
        o[f[0]] = load(c + f[1]) != acc<C>(0) ? x[f[2]] : y[f[3]];
      });
    });
  });
  return out;
}

void random_fill_kernel(const Tensor& t, const RandomFill& r) {
  SCION_DISPATCH_FLOATING(t.dtype(), "random fill", T, {
    T* d = static_cast<T*>(t.raw_data());
    const int kind = int(r.kind);
    const double p0 = r.p0, p1 = r.p1, p2 = r.p2, p3 = r.p3, lo = r.cdf_lo, hi = r.cdf_hi;
    const uint64_t key = r.key, counter = r.counter, strm = r.stream;
    for_index(t.numel(), [=] __device__(int64_t i) {
      const kmath::Words4 w = kmath::philox4x32(key, counter + uint64_t(i), strm);
      // Rounded as the host does: to the accumulation type first, then to T.
      store(d + i, acc<T>(kmath::random_sample(kind, p0, p1, p2, p3, lo, hi, w)));
    });
  });
}

void adamw_kernel(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const OptimStep& s) {
  const kmath::AdamWConsts c =
      kmath::adamw_consts(s.lr, s.weight_decay, s.beta1, s.beta2, s.eps, s.step);
  float* pp = p.data<float>();
  const float* gp = g.data<float>();
  float* mp = m.data<float>();
  float* vp = v.data<float>();
  for_index(p.numel(), [=] __device__(int64_t i) {
    float mi = mp[i], vi = vp[i];
    pp[i] = kmath::adamw_update(pp[i], gp[i], mi, vi, c);
    mp[i] = mi;
    vp[i] = vi;
  });
}

namespace {

// One parameter of the multi-tensor AdamW step: its four tensors, length and constants' index.
struct AdamWEntry {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  int64_t consts;
};
constexpr int64_t kAdamWChunk = 4096;  // elements per block

__global__ void __launch_bounds__(256)
    adamw_multi(const kmath::AdamWConsts* consts, const AdamWEntry* entries,
                const TensorChunk* chunks) {
  const TensorChunk ch = chunks[blockIdx.x];
  const AdamWEntry e = entries[ch.tensor];
  const kmath::AdamWConsts c = consts[e.consts];
  const int64_t end = ch.start + kAdamWChunk < e.n ? ch.start + kAdamWChunk : e.n;
  for (int64_t i = ch.start + threadIdx.x; i < end; i += blockDim.x) {
    float mi = e.m[i], vi = e.v[i];
    e.p[i] = kmath::adamw_update(e.p[i], e.g[i], mi, vi, c);
    e.m[i] = mi;
    e.v[i] = vi;
  }
}

// dst[i] *= *s over several contiguous f32 tensors (scale_all_by; a factor of 1 leaves them).
struct ScaleEntry {
  float* x;
  int64_t n;
};
constexpr int64_t kScaleChunk = 8192;

__global__ void __launch_bounds__(256)
    scale_multi(const ScaleEntry* entries, const TensorChunk* chunks, const double* s) {
  const double v = *s;
  if (v == 1.0) return;
  const TensorChunk ch = chunks[blockIdx.x];
  const ScaleEntry e = entries[ch.tensor];
  const int64_t end = ch.start + kScaleChunk < e.n ? ch.start + kScaleChunk : e.n;
  for (int64_t i = ch.start + threadIdx.x; i < end; i += blockDim.x) e.x[i] = e.x[i] * float(v);
}

// dst = bf16(src) over several contiguous pairs (copy_many: autocast's casts of the parameters),
// rounded as copy_kernel's store.
struct CastEntry {
  const float* src;
  bf16_t* dst;
  int64_t n;
};
constexpr int64_t kCastChunk = 8192;

__global__ void __launch_bounds__(256)
    cast_multi(const CastEntry* entries, const TensorChunk* chunks) {
  const TensorChunk ch = chunks[blockIdx.x];
  const CastEntry e = entries[ch.tensor];
  const int64_t end = ch.start + kCastChunk < e.n ? ch.start + kCastChunk : e.n;
  for (int64_t i = ch.start + threadIdx.x; i < end; i += blockDim.x) store(e.dst + i, e.src[i]);
}

}  // namespace

Tensor upload_bytes(const std::vector<unsigned char>& bytes, Device device) {
  Tensor host = empty({int64_t(bytes.size())}, DType::u8);
  std::memcpy(host.raw_data(), bytes.data(), bytes.size());
  return host.to(device);
}

void copy_many_kernel(const std::vector<Tensor>& dsts, const std::vector<Tensor>& srcs) {
  std::vector<CastEntry> entries;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < dsts.size(); ++i) {
    const Tensor &d = dsts[i], &s = srcs[i];
    if (d.dtype() != DType::bf16 || s.dtype() != DType::f32 || !d.is_contiguous() ||
        !s.is_contiguous() || d.shape() != s.shape()) {
      copy_kernel(d, s);  // any other pair on its own
      continue;
    }
    entries.push_back({s.data<float>(), static_cast<bf16_t*>(d.raw_data()), d.numel()});
    sizes.push_back(d.numel());
  }
  if (entries.empty()) return;
  const ChunkTables<CastEntry> t =
      upload_chunk_tables(entries, sizes, kCastChunk, dsts[0].device());
  if (t.blocks == 0) return;
  cast_multi<<<t.blocks, 256, 0, stream()>>>(t.entries, t.chunks);
  SCION_CUDA_LAUNCHED("multi-tensor cast");
}

void scale_all_by_kernel(const std::vector<Tensor>& dsts, const Tensor& s) {
  std::vector<ScaleEntry> entries;
  std::vector<int64_t> sizes;
  for (const Tensor& d : dsts) {
    if (d.dtype() != DType::f32 || !d.is_contiguous()) {  // the rare one in place, as scale_by
      scale_by_kernel(d, s);
      continue;
    }
    entries.push_back({d.data<float>(), d.numel()});
    sizes.push_back(d.numel());
  }
  const ChunkTables<ScaleEntry> t = upload_chunk_tables(entries, sizes, kScaleChunk, s.device());
  if (t.blocks == 0) return;
  scale_multi<<<t.blocks, 256, 0, stream()>>>(t.entries, t.chunks, s.data<double>());
  SCION_CUDA_LAUNCHED("multi-tensor scale");
}

void adamw_multi_kernel(const std::vector<AdamWParam>& params, const OptimStep& s) {
  std::vector<kmath::AdamWConsts> consts;
  std::vector<double> decays;
  std::vector<AdamWEntry> entries;
  std::vector<int64_t> sizes;
  for (const AdamWParam& a : params) {
    auto it = std::find(decays.begin(), decays.end(), a.weight_decay);
    if (it == decays.end()) {
      decays.push_back(a.weight_decay);
      consts.push_back(kmath::adamw_consts(s.lr, a.weight_decay, s.beta1, s.beta2, s.eps, s.step));
      it = decays.end() - 1;
    }
    entries.push_back({a.p.data<float>(), a.g.data<float>(), a.m.data<float>(), a.v.data<float>(),
                       a.p.numel(), int64_t(it - decays.begin())});
    sizes.push_back(a.p.numel());
  }
  if (params.empty()) return;
  // One upload of the three tables (queued from pinned memory: the host does not wait); the
  // constants first, at offset 0.
  std::vector<unsigned char> bytes;
  append_table(bytes, consts);
  const ChunkTables<AdamWEntry> t =
      upload_chunk_tables(entries, sizes, kAdamWChunk, params[0].p.device(), std::move(bytes));
  if (t.blocks == 0) return;
  adamw_multi<<<t.blocks, 256, 0, stream()>>>(reinterpret_cast<const kmath::AdamWConsts*>(t.base),
                                              t.entries, t.chunks);
  SCION_CUDA_LAUNCHED("multi-tensor AdamW step");
}

void sgd_kernel(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) {
  const kmath::SgdConsts c{float(s.weight_decay), float(s.momentum), float(s.lr), s.step == 1,
                           s.nesterov};
  float* pp = p.data<float>();
  const float* gp = g.data<float>();
  float* mp = m.defined() ? m.data<float>() : nullptr;
  for_index(p.numel(), [=] __device__(int64_t i) {
    float mi = mp ? mp[i] : 0.f;
    pp[i] = kmath::sgd_update(pp[i], gp[i], mi, c);
    if (mp) mp[i] = mi;
  });
}

}  // namespace scion::cuda

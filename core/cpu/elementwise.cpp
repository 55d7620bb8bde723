// Elementwise kernels. Unary math on contiguous f32/bf16 goes to oneDNN's JIT eltwise (vectorized
// exp/log/tanh/gelu-tanh) or, for exact gelu, to fast_kernels.h; the rest runs on the strided
// loops of loops.h, computing in acc_t<T>.
// NOTE: gelu's exact form is x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); the tanh form is
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), matching torch's approximate="tanh".
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/cpu/onednn.h"
#include "core/ops.h"

// clang-format off
#include "core/cpu/isa_begin.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

namespace {

template <class A>
A apply_binary(BinaryOp op, A x, A y) {
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
      return A(std::pow(x, y));
    case BinaryOp::maximum:
      return (x != x || x >= y) ? x : y;  // NaN propagates like torch
    case BinaryOp::minimum:
      return (x != x || x <= y) ? x : y;
    default:
      return A(0);
  }
}

template <class A>
bool apply_compare(BinaryOp op, A x, A y) {
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
    case BinaryOp::ge:
      return x >= y;
    default:
      return false;
  }
}

bool is_compare(BinaryOp op) {
  return op >= BinaryOp::eq;
}

// Calls body(x, y) for row elements (x of type TA, y of TB); the unit-stride branch lets the
// compiler vectorize.
template <class TO, class TA, class TB = TA, class Body>
void binary_rows(const Tensor& a, const Tensor& b, const Tensor& out, const Body& body) {
  Operands<3> ops{{static_cast<char*>(out.raw_data()), static_cast<char*>(a.raw_data()),
                   static_cast<char*>(b.raw_data())},
                  {broadcast_byte_strides(out, out.shape()), broadcast_byte_strides(a, out.shape()),
                   broadcast_byte_strides(b, out.shape())}};
  for_each_strided<3>(out.shape(), ops, [&](std::array<char*, 3> p, int64_t n, auto st) {
    TO* o = reinterpret_cast<TO*>(p[0]);
    const TA* x = reinterpret_cast<const TA*>(p[1]);
    const TB* y = reinterpret_cast<const TB*>(p[2]);
    constexpr int64_t sa = sizeof(TA), sb = sizeof(TB);
    if (st[0] == sizeof(TO) && st[1] == sa && st[2] == sb) {
      for (int64_t i = 0; i < n; ++i) o[i] = body(x[i], y[i]);
    } else if (st[0] == sizeof(TO) && st[1] == sa && st[2] == 0) {
      const TB yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = body(x[i], yv);
    } else if (st[0] == sizeof(TO) && st[1] == 0 && st[2] == sb) {
      const TA xv = *x;
      for (int64_t i = 0; i < n; ++i) o[i] = body(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<TO*>(p[0] + i * st[0]) =
            body(*reinterpret_cast<const TA*>(p[1] + i * st[1]),
                 *reinterpret_cast<const TB*>(p[2] + i * st[2]));
    }
  });
}

// add, sub, mul or div of an f32 and a bf16 operand (either order) into f32: the bf16 one widened
// as it is read (Backend::binary).
template <class TA, class TB>
void mixed_arith(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
    case BinaryOp::add:
      return binary_rows<float, TA, TB>(a, b, out, [](TA x, TB y) { return float(x) + float(y); });
    case BinaryOp::sub:
      return binary_rows<float, TA, TB>(a, b, out, [](TA x, TB y) { return float(x) - float(y); });
    case BinaryOp::mul:
      return binary_rows<float, TA, TB>(a, b, out, [](TA x, TB y) { return float(x) * float(y); });
    case BinaryOp::div:
      return binary_rows<float, TA, TB>(a, b, out, [](TA x, TB y) { return float(x) / float(y); });
    default:
      SCION_ASSERT(false, "binary kernel on mixed dtypes for op ", int(op));
  }
}

template <class A>
A apply_unary(UnaryOp op, A x) {
  constexpr A kSqrt1_2 = A(0.70710678118654752440), kSqrt2Pi = A(0.79788456080286535588);
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::rsqrt:
      return A(1) / std::sqrt(x);
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::erf:
      return std::erf(x);
    case UnaryOp::relu:
      return x > A(0) ? x : A(0);
    case UnaryOp::sigmoid:
      return A(1) / (A(1) + std::exp(-x));
    case UnaryOp::gelu_erf:
      return A(0.5) * x * (A(1) + std::erf(x * kSqrt1_2));
    case UnaryOp::gelu_tanh:
      return A(0.5) * x * (A(1) + std::tanh(kSqrt2Pi * (x + A(0.044715) * x * x * x)));
  }
  return x;
}

// The oneDNN algorithm (alpha, beta) for a unary op, when it has one.
bool dnnl_unary(UnaryOp op, dnnl::algorithm& alg, float& alpha, float& beta) {
  using a = dnnl::algorithm;
  alpha = 0.f;
  beta = 0.f;
  switch (op) {
    case UnaryOp::neg:
      alg = a::eltwise_linear;
      alpha = -1.f;
      return true;
    case UnaryOp::exp:
      alg = a::eltwise_exp;
      return true;
    case UnaryOp::log:
      alg = a::eltwise_log;
      return true;
    case UnaryOp::sqrt:
      alg = a::eltwise_sqrt;
      return true;
    case UnaryOp::rsqrt:
      alg = a::eltwise_pow;
      alpha = 1.f;
      beta = -0.5f;
      return true;
    case UnaryOp::tanh:
      alg = a::eltwise_tanh;
      return true;
    case UnaryOp::relu:
      alg = a::eltwise_relu;
      return true;
    case UnaryOp::sigmoid:
      alg = a::eltwise_logistic;
      return true;
    case UnaryOp::gelu_erf:
      return false;  // the fast kernel takes every f32/bf16 layout (unary)
    case UnaryOp::gelu_tanh:
      alg = a::eltwise_gelu_tanh;
      return true;
    case UnaryOp::erf:
      return false;
  }
  return false;
}

template <class T, class F>
void unary_rows(const Tensor& x, const Tensor& out, const F& f) {
  Operands<2> ops{
      {static_cast<char*>(out.raw_data()), static_cast<char*>(x.raw_data())},
      {broadcast_byte_strides(out, out.shape()), broadcast_byte_strides(x, out.shape())}};
  for_each_strided<2>(
      out.shape(), ops,
      [&](std::array<char*, 2> p, int64_t n, auto st) {
        T* o = reinterpret_cast<T*>(p[0]);
        const T* in = reinterpret_cast<const T*>(p[1]);
        if (st[0] == sizeof(T) && st[1] == sizeof(T)) {
          for (int64_t i = 0; i < n; ++i) o[i] = f(in[i]);
        } else {
          for (int64_t i = 0; i < n; ++i)
            *reinterpret_cast<T*>(p[0] + i * st[0]) =
                f(*reinterpret_cast<const T*>(p[1] + i * st[1]));
        }
      },
      4096);
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const bool mixed = a.dtype() != b.dtype();
  SCION_ASSERT(!mixed || mixed_float_operands(op, a.dtype(), b.dtype()),
               "binary kernel on mixed dtypes ", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()));
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  // The output takes the layout of a dense full-shape input (channels-last stays channels-last).
  const Tensor& like = a.shape() == shape && is_dense(a) ? a : b;
  auto make_out = [&](DType dt) {
    return like.shape() == shape && is_dense(like) ? empty_like(like, dt) : empty(shape, dt);
  };
  if (mixed) {
    Tensor out = make_out(DType::f32);
    if (a.dtype() == DType::f32)
      mixed_arith<float, BFloat16>(op, a, b, out);
    else
      mixed_arith<BFloat16, float>(op, a, b, out);
    return out;
  }
  if (is_compare(op)) {
    Tensor out = make_out(DType::bool_);
    dispatch_all(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      using A = acc_t<T>;
      binary_rows<bool, T>(a, b, out, [op](T x, T y) { return apply_compare(op, A(x), A(y)); });
    });
    return out;
  }
  Tensor out = make_out(a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      throw InputError(detail::str_cat("arithmetic on bool tensors is not supported"));
    } else {
      // One instantiation per op keeps the inner loops branch-free and vectorizable.
      switch (op) {
        case BinaryOp::add:
          binary_rows<T, T>(a, b, out, [](T x, T y) { return T(A(x) + A(y)); });
          break;
        case BinaryOp::sub:
          binary_rows<T, T>(a, b, out, [](T x, T y) { return T(A(x) - A(y)); });
          break;
        case BinaryOp::mul:
          binary_rows<T, T>(a, b, out, [](T x, T y) { return T(A(x) * A(y)); });
          break;
        case BinaryOp::div:
          binary_rows<T, T>(a, b, out, [](T x, T y) { return T(A(x) / A(y)); });
          break;
        default:
          binary_rows<T, T>(a, b, out, [op](T x, T y) { return T(apply_binary(op, A(x), A(y))); });
      }
    }
  });
  return out;
}

// A dense tensor viewed as the flat array of its memory (element order = memory order).
Tensor flat(const Tensor& t) {
  return as_strided(t, {t.numel()}, {1}, t.offset());
}

Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor out = empty_like(x);
  bool dense = is_dense(x) && out.strides() == x.strides();
  if (op == UnaryOp::gelu_erf && (x.dtype() == DType::f32 || x.dtype() == DType::bf16)) {
    // Exact gelu always on the fast kernel (the GPU's bits, core/kernel_math.h), a strided input
    // through a contiguous copy.
    if (!dense && !x.is_contiguous()) return unary(op, x.contiguous());
    gelu_erf_forward(flat(x), flat(out));
    return out;
  }
  dnnl::algorithm alg;
  float alpha, beta;
  if (dnnl_supports(x.dtype()) && dense && x.numel() > 0 && dnnl_unary(op, alg, alpha, beta)) {
    eltwise_forward(alg, alpha, beta, flat(x), flat(out));
    return out;
  }
  dispatch_floating(x.dtype(), "unary op", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    unary_rows<T>(x, out, [op](T v) { return T(apply_unary(op, A(v))); });
  });
  return out;
}

Tensor gelu_backward(const Tensor& g, const Tensor& x, bool tanh_form) {
  Tensor out = empty_like(x);
  bool same = g.shape() == x.shape() && g.dtype() == x.dtype() && g.strides() == x.strides() &&
              is_dense(x) && out.strides() == x.strides();
  if (!tanh_form && (x.dtype() == DType::f32 || x.dtype() == DType::bf16) &&
      g.dtype() == x.dtype() && g.shape() == x.shape()) {
    // As the forward: always the fast kernel, other layouts through contiguous copies.
    if (!same && !(g.is_contiguous() && x.is_contiguous()))
      return gelu_backward(g.contiguous(), x.contiguous(), false);
    gelu_erf_backward(flat(g), flat(x), flat(out));
    return out;
  }
  if (tanh_form && dnnl_supports(x.dtype()) && same && x.numel() > 0) {
    eltwise_backward(dnnl::algorithm::eltwise_gelu_tanh, 0.f, 0.f, flat(g), flat(x), flat(out));
    return out;
  }
  dispatch_floating(x.dtype(), "gelu_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    binary_rows<T, T>(g, x, out, [tanh_form](T gv, T xv) {
      A v = A(xv), d;
      if (tanh_form) {
        const A k = A(0.79788456080286535588), c = A(0.044715);
        A inner = k * (v + c * v * v * v), t = std::tanh(inner);
        d = A(0.5) * (A(1) + t) + A(0.5) * v * (A(1) - t * t) * k * (A(1) + A(3) * c * v * v);
      } else {
        A cdf = A(0.5) * (A(1) + std::erf(v * A(0.70710678118654752440)));
        A pdf = std::exp(A(-0.5) * v * v) * A(0.39894228040143267794);
        d = cdf + v * pdf;
      }
      return T(A(gv) * d);
    });
  });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  SCION_CHECK(cond.dtype() == DType::bool_, "where: condition must be bool, got ",
              dtype_name(cond.dtype()));
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape()), b.shape());
  Tensor out = a.shape() == shape && is_dense(a) ? empty_like(a) : empty(shape, a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Operands<4> ops{{static_cast<char*>(out.raw_data()), static_cast<char*>(cond.raw_data()),
                     static_cast<char*>(a.raw_data()), static_cast<char*>(b.raw_data())},
                    {broadcast_byte_strides(out, shape), broadcast_byte_strides(cond, shape),
                     broadcast_byte_strides(a, shape), broadcast_byte_strides(b, shape)}};
    for_each_strided<4>(shape, ops, [](std::array<char*, 4> p, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<T*>(p[0] + i * st[0]) =
            *reinterpret_cast<const bool*>(p[1] + i * st[1])
                ? *reinterpret_cast<const T*>(p[2] + i * st[2])
                : *reinterpret_cast<const T*>(p[3] + i * st[3]);
    });
  });
  return out;
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

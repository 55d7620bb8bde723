// Copies, dtype conversion, fills (constant and random) and in-place scaling on the CPU: strided
// loops over broadcast byte strides (core/cpu/loops.h), with a vectorized path for dense
// f32 <-> bf16 conversion.
#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/kernel_math.h"
// clang-format off
#include "core/cpu/isa_begin.h"
#include "core/cpu/vec.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

namespace {

// f32 <-> bf16 conversion of dense tensors with equal strides (memory order is element order);
// autocast casts and the bf16 kernels lean on it.
bool fast_convert(const Tensor& dst, const Tensor& src) {
  bool pair = (dst.dtype() == DType::f32 && src.dtype() == DType::bf16) ||
              (dst.dtype() == DType::bf16 && src.dtype() == DType::f32);
  if (vec::kLanes == 1 || !pair || dst.shape() != src.shape() || dst.strides() != src.strides() ||
      !is_dense(dst))
    return false;
  // The pointers are taken once: Tensor::raw_data() calls dtype_size(), which is not inlined,
  // and inside the loop it made these conversions about 4x slower.
  auto convert = [&](auto* d, const auto* s) {
    parallel_for(0, dst.numel(), 65536, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i += vec::kLanes)
        vec::store(d + i, vec::load(s + i, e - i), e - i);
    });
  };
  if (src.dtype() == DType::f32)
    convert(static_cast<BFloat16*>(dst.raw_data()), static_cast<const float*>(src.raw_data()));
  else
    convert(static_cast<float*>(dst.raw_data()), static_cast<const BFloat16*>(src.raw_data()));
  return true;
}

template <class D, class S>
void convert_loop(const Tensor& dst, const Tensor& src) {
  Operands<2> ops{
      {static_cast<char*>(dst.raw_data()), static_cast<char*>(src.raw_data())},
      {broadcast_byte_strides(dst, dst.shape()), broadcast_byte_strides(src, dst.shape())}};
  for_each_strided<2>(dst.shape(), ops, [](std::array<char*, 2> p, int64_t n, auto st) {
    D* d = reinterpret_cast<D*>(p[0]);
    const S* s = reinterpret_cast<const S*>(p[1]);
    if (st[0] == sizeof(D) && st[1] == sizeof(S)) {
      for (int64_t i = 0; i < n; ++i) d[i] = D(acc_t<S>(s[i]));
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<D*>(p[0] + i * st[0]) =
            D(acc_t<S>(*reinterpret_cast<const S*>(p[1] + i * st[1])));
    }
  });
}

}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  if (fast_convert(dst, src)) return;
  dispatch_all(dst.dtype(), [&](auto dtag) {
    dispatch_all(src.dtype(),
                 [&](auto stag) { convert_loop<decltype(dtag), decltype(stag)>(dst, src); });
  });
}

void fill(const Tensor& dst, double value) {
  dispatch_all(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = T(acc_t<T>(value));
    Operands<1> ops{{static_cast<char*>(dst.raw_data())},
                    {broadcast_byte_strides(dst, dst.shape())}};
    for_each_strided<1>(dst.shape(), ops, [v](std::array<char*, 1> p, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * st[0]) = v;
    });
  });
}

void add_scaled(const Tensor& dst, const Tensor& src, double alpha) {
  dispatch_floating(dst.dtype(), "add_", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    A a = A(alpha);
    Operands<2> ops{
        {static_cast<char*>(dst.raw_data()), static_cast<char*>(src.raw_data())},
        {broadcast_byte_strides(dst, dst.shape()), broadcast_byte_strides(src, dst.shape())}};
    for_each_strided<2>(dst.shape(), ops, [a](std::array<char*, 2> p, int64_t n, auto st) {
      if (st[0] == sizeof(T) && st[1] == sizeof(T)) {
        T* d = reinterpret_cast<T*>(p[0]);
        const T* s = reinterpret_cast<const T*>(p[1]);
        for (int64_t i = 0; i < n; ++i) d[i] = T(A(d[i]) + a * A(s[i]));
      } else {
        for (int64_t i = 0; i < n; ++i) {
          T* d = reinterpret_cast<T*>(p[0] + i * st[0]);
          *d = T(A(*d) + a * A(*reinterpret_cast<const T*>(p[1] + i * st[1])));
        }
      }
    });
  });
}

void random_fill(const Tensor& t, const RandomFill& r) {
  int64_t n = t.numel();
  dispatch_floating(t.dtype(), "random fill", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        p[i] = T(r.sample(philox4x32(r.key, r.counter + uint64_t(i), r.stream)));
    });
  });
}

void scale(const Tensor& dst, double value) {
  dispatch_floating(dst.dtype(), "mul_", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    A v = A(value);
    Operands<1> ops{{static_cast<char*>(dst.raw_data())},
                    {broadcast_byte_strides(dst, dst.shape())}};
    for_each_strided<1>(dst.shape(), ops, [v](std::array<char*, 1> p, int64_t n, auto st) {
      for (int64_t i = 0; i < n; ++i) {
        T* d = reinterpret_cast<T*>(p[0] + i * st[0]);
        *d = T(A(*d) * v);
      }
    });
  });
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"

// Element types. bf16 is stored as its upper 16 bits (BFloat16 below) and converted with
// round-to-nearest-even; arithmetic on bf16 tensors is done in f32 (acc_t) and rounded once.
// f64 exists for reference paths and finite-difference gradient checks.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "core/kernel_math.h"

namespace scion {

enum class DType : uint8_t { f32, bf16, f64, i32, i64, u8, bool_ };

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(round(f)) {}  // NOLINT: implicit like torch's c10::BFloat16
  operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t round(float f) { return kmath::float_to_bf16(f); }
};

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...
// The dtype two dtypes promote to, as torch.promote_types: f64 > f32 > bf16 > i64 > i32 > u8 > bool.
DType promote_types(DType a, DType b);
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::bf16 || t == DType::f64;
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<BFloat16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::bool_;
};

// The type arithmetic is done in: f64 for f64, f32 for f32 and bf16, int64 for integers.
template <class T>
using acc_t = std::conditional_t<
    std::is_same_v<T, double>, double,
    std::conditional_t<std::is_floating_point_v<T> || std::is_same_v<T, BFloat16>, float, int64_t>>;

// Calls f(T{}) with T the C++ type of a floating dtype; other dtypes are an error naming `op`.
template <class F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
      return f(float{});
    case DType::bf16:
      return f(BFloat16{});
    case DType::f64:
      return f(double{});
    default:
      break;
  }
  throw InputError(
      detail::str_cat(op, ": expected a floating dtype (f32, bf16, f64), got ", dtype_name(t)));
}

template <class F>
decltype(auto) dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(float{});
    case DType::bf16:
      return f(BFloat16{});
    case DType::f64:
      return f(double{});
    case DType::i32:
      return f(int32_t{});
    case DType::i64:
      return f(int64_t{});
    case DType::u8:
      return f(uint8_t{});
    case DType::bool_:
      return f(bool{});
  }
  throw Error("dispatch_all: corrupt dtype");
}

}  // namespace scion

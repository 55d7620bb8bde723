// dtype sizes and names.
#include "core/dtype.h"

namespace scion {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::f64:
      return 8;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::u8:
      return 1;
    case DType::bool_:
      return 1;
  }
  return 0;
}

DType promote_types(DType a, DType b) {
  auto rank = [](DType t) {
    switch (t) {
      case DType::f64:
        return 6;
      case DType::f32:
        return 5;
      case DType::bf16:
        return 4;
      case DType::i64:
        return 3;
      case DType::i32:
        return 2;
      case DType::u8:
        return 1;
      case DType::bool_:
        return 0;
    }
    return 0;
  };
  return rank(a) >= rank(b) ? a : b;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::u8:
      return "u8";
    case DType::bool_:
      return "bool";
  }
  return "?";
}

}  // namespace scion

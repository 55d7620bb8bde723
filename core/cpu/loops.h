// Strided elementwise iteration over N operands sharing one iteration shape (operands already
// broadcast: a broadcast dimension has stride 0). Dimensions are put in the memory order of operand
// 0 and coalesced, so contiguous, channels-last or simply-broadcast operands become one or two long
// rows; the flat index space is then split
// evenly across threads and each thread walks its part row by row, calling
//   inner(ptrs, n, steps)   // ptrs: byte pointers at the row start, steps: byte strides of the row
// The typed kernels pass a unit-stride path to the compiler so it can vectorize.
#pragma once

#include <algorithm>
#include <array>
#include <cstdlib>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/tensor.h"

namespace scion::cpu {

template <int N>
struct Operands {
  std::array<char*, N> base;
  std::array<std::vector<int64_t>, N> strides;  // bytes, one per dim of the iteration shape
};

// Returns coalesced (shape, strides). Size-1 dims are dropped; dims d, d+1 merge when every
// operand has stride[d] == stride[d+1] * shape[d+1].
template <int N>
void coalesce(Shape& shape, std::array<std::vector<int64_t>, N>& strides) {
  Shape s;
  std::array<std::vector<int64_t>, N> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!s.empty()) {
      bool merge = true;
      for (int k = 0; k < N; ++k) merge &= st[k].back() == strides[k][d] * shape[d];
      if (merge) {
        s.back() *= shape[d];
        for (int k = 0; k < N; ++k) st[k].back() = strides[k][d];
        continue;
      }
    }
    s.push_back(shape[d]);
    for (int k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
  }
  if (s.empty()) {
    s.push_back(1);
    for (int k = 0; k < N; ++k) st[k].push_back(0);
  }
  shape = std::move(s);
  strides = std::move(st);
}

// Reorders dims by decreasing stride of operand 0 (the output), so a channels-last output is walked
// in its memory order and coalesces to one row like a contiguous one (as torch's TensorIterator).
template <int N>
void memory_order(Shape& shape, std::array<std::vector<int64_t>, N>& strides) {
  std::vector<size_t> order(shape.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::llabs(strides[0][a]) > std::llabs(strides[0][b]);
  });
  Shape s(shape.size());
  std::array<std::vector<int64_t>, N> st;
  for (int k = 0; k < N; ++k) st[k].resize(shape.size());
  for (size_t i = 0; i < order.size(); ++i) {
    s[i] = shape[order[i]];
    for (int k = 0; k < N; ++k) st[k][i] = strides[k][order[i]];
  }
  shape = std::move(s);
  strides = std::move(st);
}

template <int N, class Inner>
void for_each_strided(Shape shape, Operands<N> ops, const Inner& inner, int64_t grain = 32768) {
  int64_t total = shape_numel(shape);
  if (total == 0) return;
  memory_order<N>(shape, ops.strides);
  coalesce<N>(shape, ops.strides);
  const int nd = int(shape.size());
  const int64_t row = shape[nd - 1];
  std::array<int64_t, N> steps;
  for (int k = 0; k < N; ++k) steps[k] = ops.strides[k][nd - 1];
  parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
    // Multi-index of `begin` over the outer dims, and the position inside its row.
    std::vector<int64_t> idx(nd, 0);
    int64_t rest = begin / row;
    for (int d = nd - 2; d >= 0; --d) {
      idx[d] = rest % shape[d];
      rest /= shape[d];
    }
    int64_t col = begin % row, pos = begin;
    while (pos < end) {
      std::array<char*, N> p;
      for (int k = 0; k < N; ++k) {
        int64_t off = col * steps[k];
        for (int d = 0; d < nd - 1; ++d) off += idx[d] * ops.strides[k][d];
        p[k] = ops.base[k] + off;
      }
      int64_t n = std::min(row - col, end - pos);
      inner(p, n, steps);
      pos += n;
      col = 0;
      for (int d = nd - 2; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
  });
}

// Byte strides of `t` as seen from an iteration shape `shape` it broadcasts to.
inline std::vector<int64_t> broadcast_byte_strides(const Tensor& t, const Shape& shape) {
  std::vector<int64_t> st(shape.size(), 0);
  int64_t off = int64_t(shape.size()) - t.dim();
  int64_t es = int64_t(dtype_size(t.dtype()));
  for (int64_t d = 0; d < t.dim(); ++d)
    st[off + d] = t.shape()[d] == 1 && shape[off + d] != 1 ? 0 : t.strides()[d] * es;
  return st;
}

}  // namespace scion::cpu

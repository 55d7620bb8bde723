// The body of the CUDA column sums with vector loads (reduce.cu's sum_columns_vec: bias gradients,
// a channels-last tensor summed over N, H, W), plain C++ that nvcc compiles for the device and g++
// for the host, where tests/core/test_column_sums_emulated.cpp runs it on an emulated block
// against the CPU backend's sum.
// Pass 1 (ColumnVecSplit, plan.h): thread t of a block of kThreads takes column vector
// block.x * per_row + t % per_row (W neighbouring columns, one access) and the rows r = t /
// per_row (mod rows) of the block's chunk (block.y) in order; the threads of one column vector
// then add up in shared memory in a fixed order, and the block writes one partial sum per column
// and chunk. The row loop has no stores, so its unrolled loads are in flight together.
// Pass 2 (chunk_total): each output adds its chunks' partial sums in chunk order.
// A body runs as one thread through an Env that gives the thread's index, the block's (x, y) and
// the block's barrier: thread(), block(), block_y(), sync(). Elements are elements.h's (f32 and
// bf16 add in f32, f64 in f64).
#pragma once

#include <cstdint>

#include "core/cuda/elements.h"
#include "core/cuda/plan.h"

#if defined(__CUDA_ARCH__)  // the device pass only: g++ compiles the host pass
#define SCION_COLS_UNROLL _Pragma("unroll")
#define SCION_COLS_UNROLL4 _Pragma("unroll 4")
#else
#define SCION_COLS_UNROLL
#define SCION_COLS_UNROLL4
#endif

namespace scion::cuda::cols {

constexpr int kThreads = 256;

// The partial sums s (W per thread) of the threads that share a column vector (t % per_row), added
// over their phases (t / per_row) in a fixed order through tile (kThreads * W of shared memory):
// true for the thread of phase 0, which then holds the block's sums. Every thread of the block
// calls it (it has a barrier).
template <int W, class A, class Env>
SCION_HD bool add_phases(Env& env, A (&s)[W], A* tile, const ColumnVecSplit& cs, int phase, int at,
                         bool active) {
  const int t = env.thread();
  SCION_COLS_UNROLL
  for (int k = 0; k < W; ++k) tile[t * W + k] = s[k];
  env.sync();
  if (phase != 0 || !active) return false;
  for (int q = 1; q < cs.rows; ++q) SCION_COLS_UNROLL
  for (int k = 0; k < W; ++k) s[k] += tile[(q * cs.per_row + at) * W + k];
  return true;
}

// Pass 1. row_offset(r): the element offset of reduced row r (the plan's reduced dimensions);
// tile: kThreads * W sums of the block's shared memory; part: (chunks, vectors * W).
template <int W, class T, class Env, class RowOffset>
SCION_HD void sum_columns_vec(Env& env, const ColumnVecSplit& cs, int64_t n_red,
                              const RowOffset& row_offset, const T* x, acc<T>* tile, acc<T>* part) {
  using A = acc<T>;
  const int t = env.thread();
  const int phase = int(t / cs.per_row), at = int(t % cs.per_row);
  const int64_t v = env.block() * cs.per_row + at;
  const int64_t r0 = env.block_y() * cs.chunk_len,
                r1 = r0 + cs.chunk_len < n_red ? r0 + cs.chunk_len : n_red;
  const bool active = phase < cs.rows && v < cs.vectors;
  A s[W];
  SCION_COLS_UNROLL
  for (int k = 0; k < W; ++k) s[k] = 0;
  if (active) {
    SCION_COLS_UNROLL4
    for (int64_t r = r0 + phase; r < r1; r += cs.rows) {
      const packed::Vec<T, W> p =
          *reinterpret_cast<const packed::Vec<T, W>*>(x + row_offset(r) + v * W);
      SCION_COLS_UNROLL
      for (int k = 0; k < W; ++k) s[k] += load(&p.v[k]);
    }
  }
  if (!add_phases(env, s, tile, cs, phase, at, active)) return;
  A* out = part + env.block_y() * cs.vectors * W + v * W;
  SCION_COLS_UNROLL
  for (int k = 0; k < W; ++k) out[k] = s[k];
}

// Pass 2: output o's sum over the chunks' partial sums (part: chunks x n_out), in chunk order.
template <class A>
SCION_HD A chunk_total(const A* part, int64_t chunks, int64_t n_out, int64_t o) {
  A s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += part[c * n_out + o];
  return s;
}

}  // namespace scion::cuda::cols

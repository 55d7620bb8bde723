// The bodies of the CUDA row kernels: the layer norm, and below it the residual add of a
// layer-scaled branch (addcmul) on the same rows. The layer norm's take rows that sit in registers
// (f32 and bf16 rows of d = 4 k <= 1024 elements, aligned to 4), as PyTorch's and Apex's
// vectorized layer norms: a row is held by a group of `lanes` neighbouring lanes of a warp (a
// power of two), lane l of the group holding the row's 4-element vectors l, l + lanes, ... (at
// most K of them), read from memory once as one access each. The forward takes the mean and then
// the variance of the values in registers (two passes, no cancellation) and writes y; the
// backward reads x and dy once, writes dx and adds the row's dw and db terms to the lane's own
// columns, which the block then adds up in shared memory into one partial sum per block
// (partials[(block * 2 + {0, 1}) * d + j]), in a fixed order. No row is read twice: the
// warp-per-row kernels (reduce.cu) read x three times in the forward, and x and dy twice for dx
// and once more for dw and db, in 4-byte loads.
//
// A body runs as one thread of a block of kThreads, through an Env that gives the thread's and
// block's index, the grid's size, the block's shared memory (floats) and barrier, and the warp's
// shuffle:
//   thread(), block(), blocks(), smem(), sync(), shfl_xor(v, mask)
// layer_norm.cu's Env is the GPU's; tests/core/test_norm_rows_emulated.cpp runs the same bodies on
// the host, a fiber per GPU thread, against the CPU backend's layer norm.
//
// Every lane of a warp runs the same number of iterations (the loop walks the warp's first row),
// so the shuffles are never divergent; a group past the last row computes on zeros and stores
// nothing. bf16 values are their 16 bits here (uint16_t).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/cuda/packed.h"
#include "core/kernel_math.h"

#if defined(__CUDA_ARCH__)  // the device pass only: g++ compiles the host pass
#define SCION_ROWS_UNROLL _Pragma("unroll")
#else
#define SCION_ROWS_UNROLL
#endif

namespace scion::cuda::rows {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // elements per access

template <class T>
using Vec = packed::Vec<T, kVec>;
using packed::from_float;
using packed::to_float;

// This thread's place: the group's row offset within the warp's rows and the lane in the group.
struct Place {
  int lane;      // in the group
  int group;     // in the warp
  int groups;    // per warp
  int64_t warp;  // in the grid
  int64_t warps;
};
template <class Env>
SCION_HD Place place(const Env& env, int lanes) {
  const int t = env.thread();
  return {t % lanes, (t % 32) / lanes, 32 / lanes, env.block() * (kThreads / 32) + t / 32,
          env.blocks() * (kThreads / 32)};
}

// The sum over a group's lanes, the same in every lane (a butterfly: a + b in one lane is b + a
// in its partner).
template <class Env>
SCION_HD float group_sum(Env& env, float v, int lanes) {
  for (int o = lanes / 2; o > 0; o >>= 1) v += env.shfl_xor(v, o);
  return v;
}

// This lane's vectors of a row: vec[k] is the index of its k-th in the row, or -1 where it has
// none (past the row's end, or no row: `live` false).
template <int K>
SCION_HD void row_vectors(int (&vec)[K], const Place& p, int lanes, int vectors, bool live) {
  SCION_ROWS_UNROLL
  for (int k = 0; k < K; ++k) {
    const int v = p.lane + k * lanes;
    vec[k] = live && v < vectors ? v : -1;
  }
}

// Calls row(r, vec) for each row r of this thread's group, vec its vectors of the row (all -1 for a
// row past the last): every lane of a warp runs the same number of times, so the warp's shuffles
// in `row` are never divergent.
template <int K, class F>
SCION_HD void for_each_row(const Place& pl, int lanes, int vectors, int64_t rows, F&& row) {
  for (int64_t first = pl.warp * pl.groups; first < rows; first += pl.warps * pl.groups) {
    const int64_t r = first + pl.group;
    int vec[K];
    row_vectors(vec, pl, lanes, vectors, r < rows);
    row(r, vec);
  }
}

// The lane's vectors of a row as floats (zeros for vec[k] = -1).
template <int K, class T>
SCION_HD void load_row(float (&r)[K][kVec], const T* row, const int (&vec)[K]) {
  SCION_ROWS_UNROLL
  for (int k = 0; k < K; ++k) {
    Vec<T> p{};
    if (vec[k] >= 0) p = reinterpret_cast<const Vec<T>*>(row)[vec[k]];
    SCION_ROWS_UNROLL
    for (int e = 0; e < kVec; ++e) r[k][e] = to_float(p.v[e]);
  }
}

// r = v everywhere.
template <int K>
SCION_HD void set_all(float (&r)[K][kVec], float v) {
  SCION_ROWS_UNROLL
  for (int k = 0; k < K; ++k) {
    SCION_ROWS_UNROLL
    for (int e = 0; e < kVec; ++e) r[k][e] = v;
  }
}

// The lane's columns of an optional per-column vector (w or b), `fallback` without one.
template <int K, class W>
SCION_HD void load_columns(float (&r)[K][kVec], const W* p, float fallback, const Place& pl,
                           int lanes, int vectors) {
  if (!p) return set_all(r, fallback);
  int vec[K];
  row_vectors(vec, pl, lanes, vectors, true);
  load_row<K>(r, p, vec);
}

template <class T, class W, class Y>
struct ForwardArgs {
  const T* x;
  const W* w;  // or null
  const W* b;  // or null
  float eps;
  int64_t rows, d;
  int lanes;
  Y* y;
  float *mean, *rstd;
};

template <int K, class T, class W, class Y, class Env>
SCION_HD void forward_rows(Env& env, const ForwardArgs<T, W, Y>& a) {
  const Place pl = place(env, a.lanes);
  const int vectors = int(a.d / kVec);
  const float n = float(a.d);
  float w[K][kVec], b[K][kVec];
  load_columns<K>(w, a.w, 1.0f, pl, a.lanes, vectors);
  load_columns<K>(b, a.b, 0.0f, pl, a.lanes, vectors);
  for_each_row<K>(pl, a.lanes, vectors, a.rows, [&](int64_t r, const int(&vec)[K]) {
    float v[K][kVec];
    load_row<K>(v, a.x + r * a.d, vec);
    float s = 0;
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e) s += v[k][e];
    }
    const float mu = group_sum(env, s, a.lanes) / n;
    float q = 0;
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e) {
        const float c = vec[k] >= 0 ? v[k][e] - mu : 0.0f;
        q += c * c;
      }
    }
    const float rs = 1.0f / std::sqrt(group_sum(env, q, a.lanes) / n + a.eps);
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      if (vec[k] < 0) continue;
      Vec<Y> out;
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e)
        out.v[e] = from_float<Y>((v[k][e] - mu) * rs * w[k][e] + b[k][e]);
      reinterpret_cast<Vec<Y>*>(a.y + r * a.d)[vec[k]] = out;
    }
    if (r < a.rows && pl.lane == 0) {
      a.mean[r] = mu;
      a.rstd[r] = rs;
    }
  });
}

template <class T, class W, class G>
struct BackwardArgs {
  const G* dy;
  const T* x;
  const W* w;  // or null
  const float *mean, *rstd;
  int64_t rows, d;
  int lanes;
  T* dx;
  float* partials;  // (blocks * 2) x d: this block's dw row, then its db row
};

// Shared memory the backward needs: a row of d floats per group of the block.
inline int64_t backward_smem_bytes(int64_t d, int lanes) {
  return int64_t(kThreads / lanes) * d * int64_t(sizeof(float));
}

// The block's sum of every group's `own` (this lane's columns, vec) into partials row `out`: each
// group's row in shared memory, then a column per thread adds the groups in order.
template <int K, class Env>
SCION_HD void block_columns(Env& env, const float (&own)[K][kVec], const int (&vec)[K], int64_t d,
                            int lanes, float* out) {
  float* s = env.smem();
  const int group = env.thread() / lanes, groups = kThreads / lanes;
  SCION_ROWS_UNROLL
  for (int k = 0; k < K; ++k) {
    if (vec[k] < 0) continue;
    SCION_ROWS_UNROLL
    for (int e = 0; e < kVec; ++e) s[group * d + vec[k] * kVec + e] = own[k][e];
  }
  env.sync();
  for (int64_t j = env.thread(); j < d; j += kThreads) {
    float t = 0;
    for (int g = 0; g < groups; ++g) t += s[g * d + j];
    out[j] = t;
  }
  env.sync();  // before shared memory is written again
}

template <int K, class T, class W, class G, class Env>
SCION_HD void backward_rows(Env& env, const BackwardArgs<T, W, G>& a) {
  const Place pl = place(env, a.lanes);
  const int vectors = int(a.d / kVec);
  const float n = float(a.d);
  float w[K][kVec], pw[K][kVec], pb[K][kVec];
  load_columns<K>(w, a.w, 1.0f, pl, a.lanes, vectors);
  set_all(pw, 0.0f);
  set_all(pb, 0.0f);
  for_each_row<K>(pl, a.lanes, vectors, a.rows, [&](int64_t r, const int(&vec)[K]) {
    const bool live = r < a.rows;
    float xh[K][kVec], g[K][kVec];
    load_row<K>(xh, a.x + r * a.d, vec);
    load_row<K>(g, a.dy + r * a.d, vec);
    const float mu = live ? a.mean[r] : 0.0f, rs = live ? a.rstd[r] : 0.0f;
    float m1 = 0, m2 = 0;
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e) {
        xh[k][e] = (xh[k][e] - mu) * rs;
        pw[k][e] += g[k][e] * xh[k][e];  // zeros past the row: g is 0 there
        pb[k][e] += g[k][e];
        g[k][e] *= w[k][e];
        m1 += g[k][e];
        m2 += g[k][e] * xh[k][e];
      }
    }
    m1 = group_sum(env, m1, a.lanes) / n;
    m2 = group_sum(env, m2, a.lanes) / n;
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      if (vec[k] < 0) continue;
      Vec<T> out;
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e) out.v[e] = from_float<T>(rs * (g[k][e] - m1 - xh[k][e] * m2));
      reinterpret_cast<Vec<T>*>(a.dx + r * a.d)[vec[k]] = out;
    }
  });
  int cols[K];
  row_vectors(cols, pl, a.lanes, vectors, true);
  block_columns<K>(env, pw, cols, a.d, a.lanes, a.partials + env.block() * 2 * a.d);
  block_columns<K>(env, pb, cols, a.d, a.lanes, a.partials + (env.block() * 2 + 1) * a.d);
}

// The blocks' partial column sums added up: `sums` rows of d floats per block
// (partials[(block * sums + i) * d + j], i < sums <= 2) into out[i][j]. A warp per column (every
// warp of the grid in turn), its lanes adding every 32nd block in order, then a butterfly over the
// warp: a fixed order for a given grid.
template <class T, class Env>
SCION_HD void finish_columns(Env& env, const float* partials, int64_t blocks, int64_t d, int sums,
                             T* const (&out)[2]) {
  const int lane = env.thread() % 32;
  const int64_t warps = env.blocks() * (kThreads / 32);
  for (int64_t j = env.block() * (kThreads / 32) + env.thread() / 32; j < d; j += warps) {
    for (int i = 0; i < sums; ++i) {
      float t = 0;
      for (int64_t b = lane; b < blocks; b += 32) t += partials[(b * sums + i) * d + j];
      t = group_sum(env, t, 32);
      if (lane == 0) out[i][j] = from_float<T>(t);
    }
  }
}

// ---- a residual add of a layer-scaled branch: out = x + t s ------------------------------------
// Rows of d = 4 k <= 1024 elements (ConvNeXt's channels, innermost in memory) on the same groups
// of lanes, s's columns held by each lane for every row. Each product and sum is rounded as
// add(x, mul(t, s)) rounds it: the product to T (f32, or bf16 for a bf16 x), then the sum.

// v rounded to T and widened again (the bf16 result of a bf16 op; f32 as it is).
template <class T>
SCION_HD float rounded(float v) {
  return to_float(from_float<T>(v));
}

template <class T, class H>
struct ScaleArgs {
  const T* x;
  const H* t;  // T, or bf16 for an f32 x
  const T* s;
  int64_t rows, d;
  int lanes;
  T* out;
};

template <int K, class T, class H, class Env>
SCION_HD void layer_scale_rows(Env& env, const ScaleArgs<T, H>& a) {
  const Place pl = place(env, a.lanes);
  const int vectors = int(a.d / kVec);
  float s[K][kVec];
  load_columns<K>(s, a.s, 1.0f, pl, a.lanes, vectors);
  for_each_row<K>(pl, a.lanes, vectors, a.rows, [&](int64_t r, const int(&vec)[K]) {
    float x[K][kVec], t[K][kVec];
    load_row<K>(x, a.x + r * a.d, vec);
    load_row<K>(t, a.t + r * a.d, vec);
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      if (vec[k] < 0) continue;
      Vec<T> out;
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e)
        out.v[e] =
            from_float<T>(kmath::add_rn(x[k][e], rounded<T>(kmath::mul_rn(t[k][e], s[k][e]))));
      reinterpret_cast<Vec<T>*>(a.out + r * a.d)[vec[k]] = out;
    }
  });
}

template <class T, class H>
struct ScaleBackwardArgs {
  const T* g;
  const H* t;
  const T* s;
  int64_t rows, d;
  int lanes;
  H* dt;            // or null: not wanted
  float* partials;  // blocks x d: this block's column sums of g t; or null: not wanted
};

// dt = g s rounded to T, then to t's dtype (mul's product, narrowed as binary ops narrow a mixed
// operand's gradient); the column sums of g t (each product rounded to T) per block.
template <int K, class T, class H, class Env>
SCION_HD void layer_scale_rows_backward(Env& env, const ScaleBackwardArgs<T, H>& a) {
  const Place pl = place(env, a.lanes);
  const int vectors = int(a.d / kVec);
  float s[K][kVec], ps[K][kVec];
  load_columns<K>(s, a.s, 1.0f, pl, a.lanes, vectors);
  set_all(ps, 0.0f);
  for_each_row<K>(pl, a.lanes, vectors, a.rows, [&](int64_t r, const int(&vec)[K]) {
    float g[K][kVec], t[K][kVec];
    load_row<K>(g, a.g + r * a.d, vec);
    if (a.partials)
      load_row<K>(t, a.t + r * a.d, vec);
    else
      set_all(t, 0.0f);
    SCION_ROWS_UNROLL
    for (int k = 0; k < K; ++k) {
      if (vec[k] < 0) continue;
      Vec<H> out;
      SCION_ROWS_UNROLL
      for (int e = 0; e < kVec; ++e) {
        out.v[e] = from_float<H>(rounded<T>(kmath::mul_rn(g[k][e], s[k][e])));
        if (a.partials)
          ps[k][e] = kmath::add_rn(ps[k][e], rounded<T>(kmath::mul_rn(g[k][e], t[k][e])));
      }
      if (a.dt) reinterpret_cast<Vec<H>*>(a.dt + r * a.d)[vec[k]] = out;
    }
  });
  if (!a.partials) return;
  int cols[K];
  row_vectors(cols, pl, a.lanes, vectors, true);
  block_columns<K>(env, ps, cols, a.d, a.lanes, a.partials + env.block() * a.d);
}

}  // namespace scion::cuda::rows

// The bodies of the fused attention kernels on PTX's warp-level tensor-core product,
// mma.sync.m16n8k16 (bf16 operands, f32 accumulators), as FlashAttention-2 runs on sm_80 and
// later. Unlike WMMA's, these fragments have documented layouts (mma_layout.h), so a warp keeps
// its scores in registers: the softmax (or the backward's P and dS) works on the accumulators
// where the product left them, and they feed the second product as its A fragment without a trip
// through shared memory. Operands come from shared-memory tiles through ldmatrix (.trans for the
// operands whose rows are the product's k).
//   forward   a block per 64 queries of one (image, head): each warp holds its 16 queries' A
//             fragments, walks the keys in tiles of 64 (S = q k^T, the online softmax on the
//             accumulators, O = O alpha + P v) and writes O / l and lse = m + log l;
//   backward  a block per 64 keys: each warp holds its 16 keys' k and v fragments and walks the
//             queries 16 at a time: S^T = k q^T and dP^T = v dO^T, P = exp(scale S - lse) and
//             dS = P (dP - D) scale in registers, dv += P^T dO and dk += dS^T q, and dS^T to
//             memory for flash.cu's dq GEMM.
// The rounding is flash_wmma.cu's: f32 scores and sums, P and dS rounded to bf16 as operands,
// outputs rounded once; only the tensor cores' order of summation within a product differs.
//
// A body runs as one thread of a block of kThreads, through an Env that gives it the thread's and
// block's index, the block's shared memory and barrier, and the warp's collective operations:
//   thread(), block(), smem(), sync()
//   shfl_xor(v, mask)           the value of lane (this lane ^ mask)
//   ldmatrix<Trans>(r, p)       ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16, p this lane's
//                               row address
//   mma(c, a, b0, b1)           mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, c += a b
//   copy16(dst, src, valid)     cp.async.cg of 16 bytes from global memory into shared memory
//                               (zeros when not valid; src is then not read)
//   copy4(dst, src, valid)      the same for one float (cp.async.ca)
//   commit(), wait<N>()         cp.async.commit_group and cp.async.wait_group N: the copies of all
//                               but the N latest committed groups are in shared memory (for this
//                               thread; a sync() then shows them to the block)
// flash_mma.cu's Env is the GPU's (inline PTX); tests/core/test_flash_emulated.cpp's runs each
// thread of a block on a fiber and computes ldmatrix and mma from the PTX ISA's rules (and
// lands each asynchronous copy at the latest moment the rules allow, or at once, in turn).
//
// Tiles are double-buffered: the copies of the next key (forward) or query (backward) tile are
// queued before the current tile's products, so its loads from memory overlap them
// (FlashAttention-2's pipelining with cp.async).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/cuda/flash_tiling.h"
#include "core/cuda/mma_layout.h"

namespace scion::cuda::flash {

using mma::Quarters;

// The four registers ldmatrix.x4 gives this lane for the 16 x 16 block at (row0, col0) of a
// shared tile with rows of P bf16, its quarters in order Q (mma_layout.h): with rows_first an A
// fragment, or with .trans (Trans) the B fragments of two n-tiles of a k x n block; with
// cols_first the B fragments of two n-tiles of an n x k block.
template <int P, Quarters Q, bool Trans, class Env>
SCION_FLASH_FN void load_block(Env& env, uint32_t (&r)[4], const uint16_t* tile, int row0,
                               int col0) {
  const mma::At at = mma::ldmatrix_address(env.thread() % 32, Q);
  env.template ldmatrix<Trans>(r, tile + (row0 + at.row) * P + col0 + at.col);
}

// acc[2 j], acc[2 j + 1] += a times the two n-tiles of the block at (row0, 16 j) for every j:
// a (16 x 16) times 16 rows of a k x n tile, into the product's n columns.
template <int P, int Cols, class Env>
SCION_FLASH_FN void accumulate_kn(Env& env, float (&acc)[Cols / 8][4], const uint32_t (&a)[4],
                                  const uint16_t* tile, int row0) {
  SCION_UNROLL
  for (int j = 0; j < Cols / 16; ++j) {
    uint32_t b[4];
    load_block<P, Quarters::rows_first, true>(env, b, tile, row0, 16 * j);
    env.mma(acc[2 * j], a, b[0], b[1]);
    env.mma(acc[2 * j + 1], a, b[2], b[3]);
  }
}

// The A fragment of k-step s of a 16-row product whose left factor sits in the accumulators
// c (FlashAttention-2's register reuse), rounded to bf16.
template <int Tiles>
SCION_FLASH_FN void a_from_c(uint32_t (&a)[4], const float (&c)[Tiles][4], int s) {
  SCION_UNROLL
  for (int r = 0; r < 4; ++r) {
    const int t = 2 * s + mma::a_from_c_tile(r), i = mma::a_from_c_first(r);
    a[r] = pack_bf16(c[t][i], c[t][i + 1]);
  }
}

// Queues the copies of rows [r0, r0 + 64) of a (tokens x D) bf16 matrix whose token t starts at
// src + t * stride into a shared tile (as load_tile; rows past n become zeros).
template <int D, class Env>
SCION_FLASH_FN void load_tile_async(Env& env, uint16_t* dst, const uint16_t* src, int64_t stride,
                                    int r0, int n) {
  constexpr int kVec = D / 8;  // 16-byte vectors per row
  for (int e = env.thread(); e < kTile * kVec; e += kThreads) {
    const int r = e / kVec, c = e % kVec;
    const bool valid = r0 + r < n;
    env.copy16(dst + r * pitch<D>() + c * 8, src + int64_t(valid ? r0 + r : 0) * stride + c * 8,
               valid);
  }
}

// The double-buffered pipeline's step at tile t: queue_next() queues tile t + 1's copies into the
// other buffers (when `more`; those were read in the last step, which ended with a sync), then
// tile t's copies are waited for and shown to the whole block.
template <class Env, class F>
SCION_FLASH_FN void next_tile(Env& env, bool more, F&& queue_next) {
  if (more) {
    queue_next();
    env.commit();
    env.template wait<1>();
  } else {
    env.template wait<0>();
  }
  env.sync();
}

// The sum (or maximum) of v over the four lanes of a group: the lanes holding one row of an
// accumulator.
template <class Env>
SCION_FLASH_FN float group_sum(Env& env, float v) {
  v += env.shfl_xor(v, 1);
  return v + env.shfl_xor(v, 2);
}
template <class Env>
SCION_FLASH_FN float group_max(Env& env, float v) {
  v = fmaxf(v, env.shfl_xor(v, 1));
  return fmaxf(v, env.shfl_xor(v, 2));
}

// Forward: q, then two buffers each of k and v. Backward: k, v, then two buffers each of q, dO,
// and the rows' lse and D.
template <int D>
constexpr size_t forward_smem() {
  return size_t(5 * kTile * pitch<D>()) * sizeof(uint16_t);
}

template <int D>
constexpr size_t backward_smem() {
  return size_t(6 * kTile * pitch<D>()) * sizeof(uint16_t) + size_t(4 * kTile) * sizeof(float);
}

template <int D, class Env>
SCION_FLASH_FN void forward_body(Env& env, const uint16_t* qkv, int n, int heads, float scale,
                                 uint16_t* out, float* lse) {
  constexpr int P = pitch<D>();
  uint16_t* sq = reinterpret_cast<uint16_t*>(env.smem());
  // Buffer b of k and of v (pointer arithmetic: an array of pointers would sit in local memory).
  auto sk2 = [&](int b) { return sq + (1 + b) * kTile * P; };
  auto sv2 = [&](int b) { return sq + (3 + b) * kTile * P; };
  const int tiles = (n + kTile - 1) / kTile;
  const Where w = where(env.block(), heads, tiles);
  const int warp = env.thread() / 32, lane = env.thread() % 32;
  const int64_t stride = 3LL * heads * D;  // between tokens of qkv (B, N, 3, H, D)
  const uint16_t* q = qkv + w.b * n * stride + int64_t(w.head) * D;
  const uint16_t *keys = q + int64_t(heads) * D, *values = q + 2LL * heads * D;
  const int q0 = w.tile * kTile;
  load_tile_async<D>(env, sq, q, stride, q0, n);
  load_tile_async<D>(env, sk2(0), keys, stride, 0, n);
  load_tile_async<D>(env, sv2(0), values, stride, 0, n);
  env.commit();
  uint32_t qa[D / 16][4];  // the warp's 16 queries, one A fragment per 16 of D
  // Accumulator element i of a tile is row r = i / 2 of this lane's two (g and g + 8), column
  // col + i % 2 of the tile's 8.
  const int col = mma::c_element(lane, 0).col;
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  for (int k0 = 0, t = 0; k0 < n; k0 += kTile, ++t) {
    next_tile(env, k0 + kTile < n, [&] {  // (and on the first tile, q's copies are waited for)
      load_tile_async<D>(env, sk2((t + 1) % 2), keys, stride, k0 + kTile, n);
      load_tile_async<D>(env, sv2((t + 1) % 2), values, stride, k0 + kTile, n);
    });
    const uint16_t *sk = sk2(t % 2), *sv = sv2(t % 2);
    if (t == 0) {
      SCION_UNROLL
      for (int k = 0; k < D / 16; ++k)
        load_block<P, Quarters::rows_first, false>(env, qa[k], sq, warp * 16, 16 * k);
    }
    float s[kTile / 8][4] = {};  // S = q k^T: 16 queries x 64 keys
    SCION_UNROLL
    for (int k = 0; k < D / 16; ++k) {
      SCION_UNROLL
      for (int j = 0; j < kTile / 16; ++j) {
        uint32_t b[4];
        load_block<P, Quarters::cols_first, false>(env, b, sk, 16 * j, 16 * k);
        env.mma(s[2 * j], qa[k], b[0], b[1]);
        env.mma(s[2 * j + 1], qa[k], b[2], b[3]);
      }
    }
    // The online softmax, on the accumulators: keys past n count as -inf.
    const int valid = n - k0;
    float mx[2] = {-INFINITY, -INFINITY};
    SCION_UNROLL
    for (int j = 0; j < kTile / 8; ++j) {
      SCION_UNROLL
      for (int i = 0; i < 4; ++i) {
        s[j][i] = 8 * j + col + i % 2 < valid ? s[j][i] * scale : -INFINITY;
        mx[i / 2] = fmaxf(mx[i / 2], s[j][i]);
      }
    }
    float alpha[2], sum[2] = {0.0f, 0.0f};
    SCION_UNROLL
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(m[r], group_max(env, mx[r]));  // finite: the tile has a key
      alpha[r] = expf(m[r] - m_new);                           // 0 on the first tile
      m[r] = m_new;
    }
    SCION_UNROLL
    for (int j = 0; j < kTile / 8; ++j) {
      SCION_UNROLL
      for (int i = 0; i < 4; ++i) {
        s[j][i] = expf(s[j][i] - m[i / 2]);
        sum[i / 2] += s[j][i];
      }
    }
    SCION_UNROLL
    for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + group_sum(env, sum[r]);
    SCION_UNROLL
    for (int j = 0; j < D / 8; ++j) {
      SCION_UNROLL
      for (int i = 0; i < 4; ++i) o[j][i] *= alpha[i / 2];
    }
    // O += P v, P's A fragments straight from the accumulators, 16 keys at a time.
    SCION_UNROLL
    for (int k = 0; k < kTile / 16; ++k) {
      uint32_t pa[4];
      a_from_c(pa, s, k);
      accumulate_kn<P, D>(env, o, pa, sv, 16 * k);
    }
    env.sync();  // this tile's buffers are read: the next iteration refills them
  }
  SCION_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int i = q0 + warp * 16 + mma::c_element(lane, 2 * r).row;
    if (i >= n) continue;
    const float inv = 1.0f / l[r];
    uint16_t* dst = out + ((w.b * n + i) * heads + w.head) * D + col;
    SCION_UNROLL
    for (int j = 0; j < D / 8; ++j)
      *reinterpret_cast<uint32_t*>(dst + 8 * j) =
          pack_bf16(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
    if (lane % 4 == 0) lse[(w.b * heads + w.head) * n + i] = m[r] + logf(l[r]);
  }
}

template <int D, class Env>
SCION_FLASH_FN void backward_dkv_body(Env& env, const uint16_t* qkv, const uint16_t* dout,
                                      const float* lse, const float* dvec, int n, int heads,
                                      float scale, uint16_t* dqkv, uint16_t* ds_t, int ld) {
  constexpr int P = pitch<D>();
  uint16_t* sk = reinterpret_cast<uint16_t*>(env.smem());
  uint16_t* sv = sk + kTile * P;
  // Buffer b of q, dO, lse and D (pointer arithmetic: an array of pointers would sit in local
  // memory).
  auto sq2 = [&](int b) { return sv + (1 + b) * kTile * P; };
  auto sdo2 = [&](int b) { return sv + (3 + b) * kTile * P; };
  float* const rows = reinterpret_cast<float*>(sv + 5 * kTile * P);
  auto slse2 = [&](int b) { return rows + b * kTile; };
  auto sdvec2 = [&](int b) { return rows + (2 + b) * kTile; };
  const int tiles = (n + kTile - 1) / kTile;
  const Where w = where(env.block(), heads, tiles);
  const int warp = env.thread() / 32, lane = env.thread() % 32;
  const int64_t stride = 3LL * heads * D, ostride = int64_t(heads) * D;
  const uint16_t* q = qkv + w.b * n * stride + int64_t(w.head) * D;
  const uint16_t* g = dout + w.b * n * ostride + int64_t(w.head) * D;
  const int k0 = w.tile * kTile, key0 = k0 + warp * 16;  // the warp's first key
  const float* row_lse = lse + (w.b * heads + w.head) * n;
  const float* row_d = dvec + (w.b * heads + w.head) * n;
  // Queues query tile q0's copies (q, dO, lse and D) into buffer b.
  auto load_queries = [&](int q0, int b) {
    load_tile_async<D>(env, sq2(b), q, stride, q0, n);
    load_tile_async<D>(env, sdo2(b), g, ostride, q0, n);
    for (int i = env.thread(); i < kTile; i += kThreads) {
      const bool valid = q0 + i < n;
      env.copy4(slse2(b) + i, row_lse + (valid ? q0 + i : 0), valid);
      env.copy4(sdvec2(b) + i, row_d + (valid ? q0 + i : 0), valid);
    }
  };
  load_tile_async<D>(env, sk, q + int64_t(heads) * D, stride, k0, n);
  load_tile_async<D>(env, sv, q + 2LL * heads * D, stride, k0, n);
  load_queries(0, 0);
  env.commit();
  uint32_t ka[D / 16][4], va[D / 16][4];  // the warp's 16 keys of k and v, as A fragments
  uint16_t* ds_rows = ds_t + (w.b * heads + w.head) * n * int64_t(ld);  // row j: key j's dS^T
  const int col = mma::c_element(lane, 0).col;
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  for (int q0 = 0, t = 0; q0 < n; q0 += kTile, ++t) {
    // (On the first tile, k's and v's copies are waited for too.)
    next_tile(env, q0 + kTile < n, [&] { load_queries(q0 + kTile, (t + 1) % 2); });
    const uint16_t *sq = sq2(t % 2), *sdo = sdo2(t % 2);
    const float *slse = slse2(t % 2), *sdvec = sdvec2(t % 2);
    if (t == 0) {
      SCION_UNROLL
      for (int k = 0; k < D / 16; ++k) {
        load_block<P, Quarters::rows_first, false>(env, ka[k], sk, warp * 16, 16 * k);
        load_block<P, Quarters::rows_first, false>(env, va[k], sv, warp * 16, 16 * k);
      }
    }
    for (int c0 = 0; c0 < kTile; c0 += 16) {  // 16 queries at a time
      float st[2][4] = {}, dpt[2][4] = {};    // S^T = k q^T and dP^T = v dO^T
      SCION_UNROLL
      for (int k = 0; k < D / 16; ++k) {
        uint32_t b[4];
        load_block<P, Quarters::cols_first, false>(env, b, sq, c0, 16 * k);
        env.mma(st[0], ka[k], b[0], b[1]);
        env.mma(st[1], ka[k], b[2], b[3]);
        load_block<P, Quarters::cols_first, false>(env, b, sdo, c0, 16 * k);
        env.mma(dpt[0], va[k], b[0], b[1]);
        env.mma(dpt[1], va[k], b[2], b[3]);
      }
      // P^T and dS^T in place: element i of tile j is key key0 + c_element's row, query
      // c0 + 8 j + col + i % 2 of the tile (0 past n either way).
      SCION_UNROLL
      for (int j = 0; j < 2; ++j) {
        SCION_UNROLL
        for (int i = 0; i < 4; ++i) {
          const int c = c0 + 8 * j + col + i % 2;
          const bool inside = key0 + mma::c_element(lane, i).row < n && q0 + c < n;
          const float p = inside ? expf(st[j][i] * scale - slse[c]) : 0.0f;
          st[j][i] = p;
          dpt[j][i] = p * (dpt[j][i] - sdvec[c]) * scale;
        }
      }
      uint32_t pa[4], da[4];
      a_from_c(pa, st, 0);
      a_from_c(da, dpt, 0);
      // dS^T to memory as the bf16 operand it is: register r holds keys and queries a_element's.
      SCION_UNROLL
      for (int r = 0; r < 4; ++r) {
        const mma::At e = mma::a_element(lane, r, 0);
        const int key = key0 + e.row, query = q0 + c0 + e.col;
        if (key < n && query < n)
          *reinterpret_cast<uint32_t*>(ds_rows + int64_t(key) * ld + query) = da[r];
      }
      accumulate_kn<P, D>(env, dv, pa, sdo, c0);  // dv += P^T dO
      accumulate_kn<P, D>(env, dk, da, sq, c0);   // dk += dS^T q
    }
    env.sync();  // this tile's buffers are read: the next iteration refills them
  }
  SCION_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int key = key0 + mma::c_element(lane, 2 * r).row;
    if (key >= n) continue;
    uint16_t* dst = dqkv + (w.b * n + key) * stride + int64_t(w.head) * D + col;
    SCION_UNROLL
    for (int j = 0; j < D / 8; ++j) {
      *reinterpret_cast<uint32_t*>(dst + int64_t(heads) * D + 8 * j) =
          pack_bf16(dk[j][2 * r], dk[j][2 * r + 1]);
      *reinterpret_cast<uint32_t*>(dst + 2LL * heads * D + 8 * j) =
          pack_bf16(dv[j][2 * r], dv[j][2 * r + 1]);
    }
  }
}

}  // namespace scion::cuda::flash

// The fused attention kernels written with the WMMA tensor-core API (16x16x16 bf16 fragments,
// f32 accumulation): the kernels of runs 7 and 8, kept as the reference for flash_mma.cu's
// (SCION_CUDA_FLASH=wmma or set_flash_kernels selects them). WMMA's fragment layouts are opaque, so every product goes
// through shared memory: the scores are stored as f32, read back for the softmax, and the
// probabilities stored again as the next product's operand.
//   forward   its four warps own 16 queries each and walk the keys in tiles of 64 with the
//             online softmax (running max m, sum l); it writes the output and lse = m + log l;
//   backward  dk/dv per 64 keys walking the query tiles, recomputing P = exp(scale q.k - lse),
//             and dS^T (rounded to bf16, as the operand it is) to memory for flash.cu's dq GEMM.
#include <mma.h>

#include "core/cuda/flash_tile.cuh"

namespace scion::cuda::flash {

namespace {

using namespace nvcuda;

constexpr int kScorePitch = kTile + 4;  // f32 rows of a warp's 16 x 64 scores in shared memory
constexpr int kProbPitch = kTile + 8;   // bf16 rows of a warp's 16 x 64 probabilities

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;  // X^T
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// out (16 x 64 f32, pitch kScorePitch) = a (16 x D) b^T, b being 64 rows of D.
template <int D>
__device__ void product_abt(float* out, const bf16* a, const bf16* b) {
  FragC acc[kTile / 16];
#pragma unroll
  for (int j = 0; j < kTile / 16; ++j) wmma::fill_fragment(acc[j], 0.0f);
#pragma unroll
  for (int k = 0; k < D; k += 16) {
    FragA fa;
    wmma::load_matrix_sync(fa, a + k, pitch<D>());
#pragma unroll
    for (int j = 0; j < kTile / 16; ++j) {
      FragBt fb;
      wmma::load_matrix_sync(fb, b + j * 16 * pitch<D>() + k, pitch<D>());
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < kTile / 16; ++j)
    wmma::store_matrix_sync(out + j * 16, acc[j], kScorePitch, wmma::mem_row_major);
}

// acc (16 x D) += a (16 x 64 bf16, pitch kProbPitch) b, b being 64 rows of D.
template <int D>
__device__ void accumulate_ab(FragC (&acc)[D / 16], const bf16* a, const bf16* b) {
#pragma unroll
  for (int k = 0; k < kTile; k += 16) {
    FragA fa;
    wmma::load_matrix_sync(fa, a + k, kProbPitch);
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      FragB fb;
      wmma::load_matrix_sync(fb, b + k * pitch<D>() + j * 16, pitch<D>());
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
}

// Writes a warp's 16 x D accumulator rows to dst + row * stride (bf16), through `scratch`
// (16 x kScorePitch f32); rows at or past `valid` are skipped.
template <int D>
__device__ void write_rows(FragC (&acc)[D / 16], float* scratch, bf16_t* dst, int64_t stride,
                           int valid) {
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
    wmma::store_matrix_sync(scratch + j * 16, acc[j], kScorePitch, wmma::mem_row_major);
  __syncwarp();
  const int lane = threadIdx.x % 32, row = lane / 2, half = lane % 2;
  if (row < valid) {
    const float* src = scratch + row * kScorePitch + half * (D / 2);
    bf16_t* out = dst + row * stride + half * (D / 2);
#pragma unroll
    for (int c = 0; c < D / 2; ++c) out[c].bits = kmath::float_to_bf16(src[c]);
  }
  __syncwarp();
}

// n floats from 16-byte aligned shared memory into registers, four per read.
template <int N>
__device__ __forceinline__ void read_row(const float* src, float (&dst)[N]) {
#pragma unroll
  for (int c = 0; c < N; c += 4) {
    const float4 f = *reinterpret_cast<const float4*>(src + c);
    dst[c] = f.x, dst[c + 1] = f.y, dst[c + 2] = f.z, dst[c + 3] = f.w;
  }
}

// n floats rounded to bf16 (to nearest even) into 16-byte aligned shared memory, eight per write.
template <int N>
__device__ __forceinline__ void write_bf16_row(bf16* dst, const float (&src)[N]) {
#pragma unroll
  for (int c = 0; c < N; c += 8) {
    *reinterpret_cast<uint4*>(dst + c) =
        make_uint4(pack_bf16(src[c], src[c + 1]), pack_bf16(src[c + 2], src[c + 3]),
                   pack_bf16(src[c + 4], src[c + 5]), pack_bf16(src[c + 6], src[c + 7]));
  }
}

template <int D>
constexpr size_t forward_smem() {
  return size_t(3 * kTile * pitch<D>()) * sizeof(bf16) +
         size_t(kWarps * 16 * kScorePitch) * sizeof(float) +
         size_t(kWarps * 16 * kProbPitch) * sizeof(bf16);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_forward(const bf16_t* qkv, int n, int heads, float scale, bf16_t* out, float* lse) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int P = pitch<D>();
  bf16* sq = reinterpret_cast<bf16*>(smem);
  bf16* sk = sq + kTile * P;
  bf16* sv = sk + kTile * P;
  float* scores = reinterpret_cast<float*>(sv + kTile * P);
  bf16* probs = reinterpret_cast<bf16*>(scores + kWarps * 16 * kScorePitch);
  const int tiles = (n + kTile - 1) / kTile;
  const Where w = where(heads, tiles);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row = lane / 2, half = lane % 2;
  const int64_t stride = 3LL * heads * D;  // between tokens of qkv (B, N, 3, H, D)
  const bf16_t* q = qkv + w.b * n * stride + int64_t(w.head) * D;
  const int q0 = w.tile * kTile;
  load_tile<D>(sq, q, stride, q0, n);
  float* my_scores = scores + warp * 16 * kScorePitch;
  bf16* my_probs = probs + warp * 16 * kProbPitch;
  // This lane's row of the warp's 16 and half of the columns; its share of the output row.
  float o[D / 2];
#pragma unroll
  for (int c = 0; c < D / 2; ++c) o[c] = 0;
  float m = -INFINITY, l = 0;
  for (int k0 = 0; k0 < n; k0 += kTile) {
    __syncthreads();  // the last tile's keys and values are read
    load_tile<D>(sk, q + int64_t(heads) * D, stride, k0, n);
    load_tile<D>(sv, q + 2LL * heads * D, stride, k0, n);
    __syncthreads();
    product_abt<D>(my_scores, sq + warp * 16 * P, sk);
    __syncwarp();
    // This lane's 32 scores, read 8 at a time in 16-byte reads (every row of a warp's block
    // starts 16-byte aligned) in each of two passes; its probabilities written 8 bf16 at a time.
    const float* s = my_scores + row * kScorePitch + half * 32;
    bf16* p = my_probs + row * kProbPitch + half * 32;
    const int valid = min(kTile, n - k0) - half * 32;  // keys of this lane's half
    float mx = -INFINITY;
#pragma unroll
    for (int c0 = 0; c0 < 32; c0 += 8) {
      float x[8];
      read_row<8>(s + c0, x);
#pragma unroll
      for (int c = 0; c < 8; ++c) mx = fmaxf(mx, c0 + c < valid ? x[c] * scale : -INFINITY);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx), alpha = expf(m - m_new);  // alpha 0 on the first tile
    float sum = 0;
#pragma unroll
    for (int c0 = 0; c0 < 32; c0 += 8) {
      float x[8];
      read_row<8>(s + c0, x);
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        x[c] = c0 + c < valid ? expf(x[c] * scale - m_new) : 0.0f;
        sum += x[c];
      }
      write_bf16_row<8>(p + c0, x);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    __syncwarp();
    FragC pv[D / 16];
#pragma unroll
    for (int j = 0; j < D / 16; ++j) wmma::fill_fragment(pv[j], 0.0f);
    accumulate_ab<D>(pv, my_probs, sv);
#pragma unroll
    for (int j = 0; j < D / 16; ++j)
      wmma::store_matrix_sync(my_scores + j * 16, pv[j], kScorePitch, wmma::mem_row_major);
    __syncwarp();
    const float* t = my_scores + row * kScorePitch + half * (D / 2);
#pragma unroll
    for (int c0 = 0; c0 < D / 2; c0 += 4) {
      float x[4];
      read_row<4>(t + c0, x);
#pragma unroll
      for (int c = 0; c < 4; ++c) o[c0 + c] = o[c0 + c] * alpha + x[c];
    }
    __syncwarp();
  }
  const int i = q0 + warp * 16 + row;
  if (i >= n) return;
  const float inv = 1.0f / l;
  bf16_t* dst = out + ((w.b * n + i) * heads + w.head) * D + half * (D / 2);
#pragma unroll
  for (int c = 0; c < D / 2; ++c) dst[c].bits = kmath::float_to_bf16(o[c] * inv);
  if (half == 0) lse[(w.b * heads + w.head) * n + i] = m + logf(l);
}

template <int D>
constexpr size_t backward_smem() {
  return size_t(4 * kTile * pitch<D>()) * sizeof(bf16) +
         size_t(2 * kWarps * 16 * kScorePitch) * sizeof(float) +
         size_t(2 * kWarps * 16 * kProbPitch) * sizeof(bf16) + size_t(2 * kTile) * sizeof(float);
}

// The backward kernel's shared memory: four bf16 tiles, per warp two f32 score blocks and
// two bf16 operand blocks, two rows of 64 floats.
template <int D>
struct BackwardSmem {
  bf16 *t0, *t1, *t2, *t3;
  float *s, *dp;
  bf16 *p, *ds;
  float *lse, *dvec;
  __device__ explicit BackwardSmem(unsigned char* smem) {
    constexpr int P = pitch<D>();
    const int warp = threadIdx.x / 32;
    t0 = reinterpret_cast<bf16*>(smem);
    t1 = t0 + kTile * P;
    t2 = t1 + kTile * P;
    t3 = t2 + kTile * P;
    float* f = reinterpret_cast<float*>(t3 + kTile * P);
    s = f + warp * 16 * kScorePitch;
    dp = f + (kWarps + warp) * 16 * kScorePitch;
    bf16* h = reinterpret_cast<bf16*>(f + 2 * kWarps * 16 * kScorePitch);
    p = h + warp * 16 * kProbPitch;
    ds = h + (kWarps + warp) * 16 * kProbPitch;
    lse = reinterpret_cast<float*>(h + 2 * kWarps * 16 * kProbPitch);
    dvec = lse + kTile;
  }
};

// dk and dv for 64 keys, summed over the query tiles in order: dv = sum P^T dO, dk = sum dS^T q.
// The warps compute the transposed blocks (their 16 keys x 64 queries) directly, and store them:
// ds_t (B, H, N, ld) holds dS^T, the row of key j holding dS[i, j] for the queries i < N (ld is N
// rounded up to 8, so every row starts 16-byte aligned; the columns past N get zeros).
// Two blocks per multiprocessor: ptxas's own choice (168 registers) spilled on sm_80.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    flash_backward_dkv(const bf16_t* qkv, const bf16_t* dout, const float* lse, const float* dvec,
                       int n, int heads, float scale, bf16_t* dqkv, bf16_t* ds_t, int ld) {
  extern __shared__ __align__(128) unsigned char smem[];
  BackwardSmem<D> sm(smem);
  bf16 *sk = sm.t0, *sv = sm.t1, *sq = sm.t2, *sdo = sm.t3;
  constexpr int P = pitch<D>();
  const int tiles = (n + kTile - 1) / kTile;
  const Where w = where(heads, tiles);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t stride = 3LL * heads * D, ostride = int64_t(heads) * D;
  const bf16_t* q = qkv + w.b * n * stride + int64_t(w.head) * D;
  const bf16_t* g = dout + w.b * n * ostride + int64_t(w.head) * D;
  const int k0 = w.tile * kTile;
  load_tile<D>(sk, q + int64_t(heads) * D, stride, k0, n);
  load_tile<D>(sv, q + 2LL * heads * D, stride, k0, n);
  const float* row_lse = lse + (w.b * heads + w.head) * n;
  const float* row_d = dvec + (w.b * heads + w.head) * n;
  FragC dk[D / 16], dv[D / 16];
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
    wmma::fill_fragment(dk[j], 0.0f), wmma::fill_fragment(dv[j], 0.0f);
  for (int q0 = 0; q0 < n; q0 += kTile) {
    __syncthreads();
    load_tile<D>(sq, q, stride, q0, n);
    load_tile<D>(sdo, g, ostride, q0, n);
    for (int t = threadIdx.x; t < kTile; t += kThreads) {
      sm.lse[t] = q0 + t < n ? row_lse[q0 + t] : 0.0f;
      sm.dvec[t] = q0 + t < n ? row_d[q0 + t] : 0.0f;
    }
    __syncthreads();
    product_abt<D>(sm.s, sk + warp * 16 * P, sq);    // S^T: 16 keys x 64 queries
    product_abt<D>(sm.dp, sv + warp * 16 * P, sdo);  // dP^T = v dO^T
    __syncwarp();
    // Two neighbouring queries per lane (8-byte reads, 4-byte writes), lanes along a row: no bank
    // conflicts.
#pragma unroll 2
    for (int e = lane; e < 16 * (kTile / 2); e += 32) {
      const int rr = e / (kTile / 2), c = e % (kTile / 2) * 2, at = rr * kScorePitch + c;
      const float2 s2 = *reinterpret_cast<const float2*>(sm.s + at);
      const float2 dp2 = *reinterpret_cast<const float2*>(sm.dp + at);
      const float2 l2 = *reinterpret_cast<const float2*>(sm.lse + c);
      const float2 d2 = *reinterpret_cast<const float2*>(sm.dvec + c);
      const bool key = k0 + warp * 16 + rr < n;
      const float p0 = key && q0 + c < n ? expf(s2.x * scale - l2.x) : 0.0f;
      const float p1 = key && q0 + c + 1 < n ? expf(s2.y * scale - l2.y) : 0.0f;
      *reinterpret_cast<uint32_t*>(sm.p + rr * kProbPitch + c) = pack_bf16(p0, p1);
      *reinterpret_cast<uint32_t*>(sm.ds + rr * kProbPitch + c) =
          pack_bf16(p0 * (dp2.x - d2.x) * scale, p1 * (dp2.y - d2.y) * scale);
    }
    __syncwarp();
    // dS^T of the warp's 16 keys and the tile's queries, 8 per 16-byte store. A vector that
    // starts below N ends within the row's ld; its entries past N are zeros (P is 0 there).
    const int c = lane % (kTile / 8) * 8;  // this lane's 8 queries; rows rr = lane / 8 + 4 u
    bf16_t* ds_rows = ds_t + ((w.b * heads + w.head) * n + k0 + warp * 16) * int64_t(ld) + q0 + c;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int rr = lane / (kTile / 8) + 4 * u;
      if (k0 + warp * 16 + rr < n && q0 + c < n)
        *reinterpret_cast<uint4*>(ds_rows + rr * ld) =
            *reinterpret_cast<const uint4*>(sm.ds + rr * kProbPitch + c);
    }
    accumulate_ab<D>(dv, sm.p, sdo);
    accumulate_ab<D>(dk, sm.ds, sq);
  }
  bf16_t* base = dqkv + (w.b * n + k0 + warp * 16) * stride + int64_t(w.head) * D;
  const int valid = n - k0 - warp * 16;
  write_rows<D>(dk, sm.s, base + int64_t(heads) * D, stride, valid);
  write_rows<D>(dv, sm.s, base + 2LL * heads * D, stride, valid);
}

template <int D>
void forward(const ForwardArgs& a) {
  launch(flash_forward<D>, forward_smem<D>(), a.images, a.heads, a.n,
         "flash attention forward (WMMA)", a.qkv, a.n, a.heads, a.scale, a.out, a.lse);
}

template <int D>
void backward_dkv(const BackwardArgs& a) {
  launch(flash_backward_dkv<D>, backward_smem<D>(), a.images, a.heads, a.n,
         "flash attention backward (dk, dv, dS; WMMA)", a.qkv, a.dout, a.lse, a.dvec, a.n, a.heads,
         a.scale, a.dqkv, a.ds_t, a.ld);
}

}  // namespace

void forward_wmma(const ForwardArgs& a, int d) {
  d == 64 ? forward<64>(a) : forward<32>(a);
}

void backward_dkv_wmma(const BackwardArgs& a, int d) {
  d == 64 ? backward_dkv<64>(a) : backward_dkv<32>(a);
}

}  // namespace scion::cuda::flash

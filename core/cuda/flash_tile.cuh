// What the two sets of fused attention kernels share (flash_mma.cu, the default, and
// flash_wmma.cu): the tiling, the tile loads, and the arguments of their launches (flash.cu
// queues them). A block takes 64 queries (forward) or 64 keys (backward) of one (image, head);
// its four warps own 16 rows each.
#pragma once

#include <cuda_bf16.h>

#include "core/cuda/common.cuh"

namespace scion::cuda::flash {

using bf16 = __nv_bfloat16;

constexpr int kTile = 64;  // queries and keys per tile
constexpr int kWarps = 4;  // each owns 16 rows of a tile
constexpr int kThreads = 32 * kWarps;
// bf16 rows of a (64 x D) tile in shared memory: 16 bytes more than a row, so the rows of any
// 8 x 8 (ldmatrix) or 16 x 16 (WMMA) block start 16-byte aligned and on different banks.
template <int D>
constexpr int pitch() {
  return D + 8;
}

// Rows [r0, r0 + 64) of a (tokens x D) bf16 matrix whose token t starts at src + t * stride into
// shared memory; rows past n are zero.
template <int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16_t* src, int64_t stride, int r0,
                                          int n) {
  constexpr int kVec = D / 8;  // 16-byte vectors per row
  for (int e = threadIdx.x; e < kTile * kVec; e += kThreads) {
    const int r = e / kVec, c = e % kVec;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < n) v = *reinterpret_cast<const uint4*>(src + int64_t(r0 + r) * stride + c * 8);
    *reinterpret_cast<uint4*>(dst + r * pitch<D>() + c * 8) = v;
  }
}

// Two floats rounded to bf16 (to nearest even), the first in the low half: two neighbouring
// elements in memory.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(kmath::float_to_bf16(lo)) | (uint32_t(kmath::float_to_bf16(hi)) << 16);
}

// The geometry of one block: which (image, head) and which tile.
struct Where {
  int64_t b;
  int head, tile;
};
__device__ __forceinline__ Where where(int heads, int tiles) {
  const int64_t x = blockIdx.x;
  return {x / (int64_t(heads) * tiles), int((x / tiles) % heads), int(x % tiles)};
}

// The forward over `images` images of qkv (B, N, 3 H D): out (B, N, H D) and lse (B, H, N).
struct ForwardArgs {
  const bf16_t* qkv;
  int64_t images;
  int n, heads;
  float scale;
  bf16_t* out;
  float* lse;
};
// dk, dv (into dqkv's k and v slots) and dS^T (ds_t: (images, H, N, ld), ld = N rounded up to
// 8) of `images` images, given dvec[r] = sum_e dO[r, e] O[r, e] for the rows r = (b H + h) N + i.
struct BackwardArgs {
  const bf16_t* qkv;
  const bf16_t* dout;
  const float* lse;
  const float* dvec;
  int64_t images;
  int n, heads;
  float scale;
  bf16_t* dqkv;
  bf16_t* ds_t;
  int ld;
};

// The launches, for head dims 32 and 64.
void forward_mma(const ForwardArgs& a, int d);
void backward_dkv_mma(const BackwardArgs& a, int d);
void forward_wmma(const ForwardArgs& a, int d);
void backward_dkv_wmma(const BackwardArgs& a, int d);

template <class K>
void allow_smem(K kernel, size_t bytes) {
  SCION_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace scion::cuda::flash

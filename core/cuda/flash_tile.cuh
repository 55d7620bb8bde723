// The device side of what the two sets of fused attention kernels share (flash_mma.cu, the
// default, and flash_wmma.cu): the tiling of flash_tiling.h on __nv_bfloat16 tiles, and the
// arguments of their launches (flash.cu queues them).
#pragma once

#include <cuda_bf16.h>

#include "core/cuda/common.cuh"
#include "core/cuda/flash_tiling.h"

namespace scion::cuda::flash {

using bf16 = __nv_bfloat16;

// The tiles' loads through the device's thread index, on __nv_bfloat16 tiles.
template <int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16_t* src, int64_t stride, int r0,
                                          int n) {
  load_tile<D>(reinterpret_cast<uint16_t*>(dst), reinterpret_cast<const uint16_t*>(src), stride, r0,
               n, int(threadIdx.x));
}
__device__ __forceinline__ Where where(int heads, int tiles) {
  return where(int64_t(blockIdx.x), heads, tiles);
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

// Queues `kernel` with `smem` bytes of shared memory over the blocks of `images` images, `heads`
// heads and n rows in tiles of 64.
template <class... P, class... Args>
void launch(void (*kernel)(P...), size_t smem, int64_t images, int heads, int n, const char* what,
            Args... args) {
  SCION_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const int64_t blocks = images * heads * ((n + kTile - 1) / kTile);
  kernel<<<unsigned(blocks), kThreads, smem, stream()>>>(args...);
  SCION_CUDA_LAUNCHED(what);
}

}  // namespace scion::cuda::flash

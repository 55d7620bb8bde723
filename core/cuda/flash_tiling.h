// The tiling both sets of fused attention kernels share (flash_mma.cu and flash_wmma.cu), in plain
// C++ that nvcc compiles for the device and g++ for the host, where the tests run the mma.sync
// kernels' bodies on an emulated warp (tests/core/test_flash_emulated.cpp). A block takes 64
// queries (forward) or 64 keys (backward) of one (image, head); its four warps own 16 rows each.
// bf16 values are their 16 bits here (uint16_t).
#pragma once

#include <cstdint>

#include "core/kernel_math.h"

#if defined(__CUDACC__)
#define SCION_FLASH_FN __device__ __forceinline__
#define SCION_UNROLL _Pragma("unroll")
#else
#define SCION_FLASH_FN inline
#define SCION_UNROLL
#endif

namespace scion::cuda::flash {

constexpr int kTile = 64;  // queries and keys per tile
constexpr int kWarps = 4;  // each owns 16 rows of a tile
constexpr int kThreads = 32 * kWarps;
// bf16 rows of a (64 x D) tile in shared memory: 16 bytes more than a row, so the rows of any
// 8 x 8 (ldmatrix) or 16 x 16 (WMMA) block start 16-byte aligned and on different banks.
template <int D>
constexpr int pitch() {
  return D + 8;
}

// 16 bytes, copied as one access.
struct alignas(16) Vec16 {
  uint32_t x, y, z, w;
};

// Rows [r0, r0 + 64) of a (tokens x D) bf16 matrix whose token t starts at src + t * stride into
// a shared tile (by the block's `thread`s together); rows past n are zero.
template <int D>
SCION_FLASH_FN void load_tile(uint16_t* dst, const uint16_t* src, int64_t stride, int r0, int n,
                              int thread) {
  constexpr int kVec = D / 8;  // 16-byte vectors per row
  for (int e = thread; e < kTile * kVec; e += kThreads) {
    const int r = e / kVec, c = e % kVec;
    Vec16 v{0, 0, 0, 0};
    if (r0 + r < n) v = *reinterpret_cast<const Vec16*>(src + int64_t(r0 + r) * stride + c * 8);
    *reinterpret_cast<Vec16*>(dst + r * pitch<D>() + c * 8) = v;
  }
}

// Two floats rounded to bf16 (to nearest even), the first in the low half: two neighbouring
// elements in memory.
SCION_FLASH_FN uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(kmath::float_to_bf16(lo)) | (uint32_t(kmath::float_to_bf16(hi)) << 16);
}

// The geometry of block `block`: which (image, head) and which tile.
struct Where {
  int64_t b;
  int head, tile;
};
SCION_FLASH_FN Where where(int64_t block, int heads, int tiles) {
  return {block / (int64_t(heads) * tiles), int((block / tiles) % heads), int(block % tiles)};
}

}  // namespace scion::cuda::flash

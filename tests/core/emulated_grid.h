// A CUDA grid on the host, for the tests that run kernel bodies written against an Env (the
// thread's and block's indices, the block's shared memory and barrier, the warp's shuffle; see
// core/cuda/norm_rows.h and column_sums.h): each GPU thread of a block on its own fiber
// (fibers.h), one block at a time, with __syncthreads and __shfl_xor_sync emulated. Shared memory
// starts as NaN, so a value read before any thread wrote it shows.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/core/fibers.h"

namespace scion::test {

// The lanes of one warp exchanging floats (shfl_xor): two slots used in turn, so a lane may write
// the next exchange's while slower lanes still read this one's, and one barrier per exchange.
struct EmulatedWarp {
  Barrier barrier{32};
  float value[2][32];
};

struct EmulatedBlock {
  explicit EmulatedBlock(int threads) : barrier(threads), warps(size_t((threads + 31) / 32)) {}
  int64_t x = 0, y = 0, blocks_x = 1, blocks_y = 1;
  std::vector<float> shared;
  Barrier barrier;
  std::vector<EmulatedWarp> warps;
};

// The Env of one thread of an emulated block.
class HostEnv {
 public:
  HostEnv(EmulatedBlock& block, int thread) : block_(block), thread_(thread) {}
  int thread() const { return thread_; }
  int64_t block() const { return block_.x; }
  int64_t block_y() const { return block_.y; }
  int64_t blocks() const { return block_.blocks_x; }
  float* smem() const { return block_.shared.data(); }
  void sync() { block_.barrier.wait(); }
  float shfl_xor(float v, int mask) {
    EmulatedWarp& w = block_.warps[size_t(thread_ / 32)];
    float* slot = w.value[turn_++ % 2];
    slot[thread_ % 32] = v;
    w.barrier.wait();
    return slot[(thread_ % 32) ^ mask];
  }

 private:
  EmulatedBlock& block_;
  const int thread_;
  uint64_t turn_ = 0;  // the warp's exchanges so far (the same in every lane)
};

// body(env) for every thread of a (blocks_x, blocks_y) grid of blocks of `threads` threads (a
// multiple of 32) with `smem_bytes` of shared memory each.
template <class Body>
void run_grid(int threads, int64_t blocks_x, int64_t blocks_y, int64_t smem_bytes, Body body) {
  for (int64_t by = 0; by < blocks_y; ++by)
    for (int64_t bx = 0; bx < blocks_x; ++bx) {
      EmulatedBlock block(threads);
      block.x = bx, block.y = by, block.blocks_x = blocks_x, block.blocks_y = blocks_y;
      block.shared.assign(size_t(smem_bytes / 4), NAN);
      on_fibers(threads, [&block, &body](int t) {
        HostEnv env(block, t);
        body(env);
      });
    }
}

}  // namespace scion::test

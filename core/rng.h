// A counter-based RNG (Philox-4x32-10, as in cuRAND and PyTorch's CUDA generator). Element i of a
// draw uses counter (offset + i), so the numbers depend only on (seed, offset, i): the same on any
// thread count and any split of the work. Each draw advances the generator's offset past what it
// used, so consecutive draws never overlap. Forking by a key (seed, epoch, sample) gives
// independent streams for data augmentation that can be recomputed exactly after a resume.
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace scion {

// Philox-4x32-10 block: 4 random 32-bit words for (key, counter).
std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // An independent generator for a sub-stream (e.g. per epoch or per sample).
  Generator fork(uint64_t key) const;
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }
  uint64_t stream() const { return stream_; }
  // Scalar draws for sequential code (shuffles, augmentation parameters).
  uint32_t next_u32();
  double next_uniform();  // [0, 1)
  double next_normal();

 private:
  uint64_t seed_;
  uint64_t stream_;
  uint64_t offset_ = 0;
};

// One random fill for a backend: element i gets sample(philox4x32(key, counter + i, stream)), so a
// fill gives the same numbers on every backend and thread count.
enum class RandomKind { uniform, normal, trunc_normal, bernoulli };
struct RandomFill {
  RandomKind kind = RandomKind::uniform;
  double p0 = 0, p1 = 1, p2 = 0, p3 = 0;  // uniform: low, high; normal: mean, std;
                                          // trunc_normal: mean, std, a, b; bernoulli: p
  double cdf_lo = 0, cdf_hi = 0;          // trunc_normal: the bounds' positions in erf space
  uint64_t key = 0, counter = 0, stream = 0;
  double sample(const std::array<uint32_t, 4>& words) const;
};

// Data-parallel training: one rank runs rows [first_row, first_row + rows) of a global batch of
// global_rows. While a BatchShardGuard is alive on a thread, a random fill there whose leading
// dimension is `rows` (a dropout or drop-path mask over the batch) draws as for the whole global
// batch and keeps this shard's rows, so every sample gets the mask the one-process run gives it
// and the generator advances as there.
struct BatchShard {
  int64_t global_rows = 0, first_row = 0, rows = 0;
};
class BatchShardGuard {
 public:
  explicit BatchShardGuard(BatchShard shard);
  ~BatchShardGuard();
  BatchShardGuard(const BatchShardGuard&) = delete;
  BatchShardGuard& operator=(const BatchShardGuard&) = delete;

 private:
  BatchShard previous_;
};

// The process-wide generator, seeded by manual_seed (0 until then).
Generator& default_generator();
void manual_seed(uint64_t seed);

// In-place fills of floating tensors (not recorded by autograd).
Tensor& uniform_(Tensor& t, double low, double high, Generator& gen = default_generator());
Tensor& normal_(Tensor& t, double mean, double std, Generator& gen = default_generator());
// Normal(mean, std) truncated to [a, b] by inverse-CDF sampling, as timm's trunc_normal_.
Tensor& trunc_normal_(Tensor& t, double mean, double std, double a, double b,
                      Generator& gen = default_generator());
// A tensor of 0/1 (dtype) with P(1) = p, on `device`.
Tensor bernoulli(const Shape& shape, double p, DType dtype, Generator& gen = default_generator(),
                 Device device = Device{});
// A random permutation of 0..n-1 (i64), Fisher-Yates.
Tensor randperm(int64_t n, Generator& gen = default_generator());
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator& gen = default_generator());
Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator& gen = default_generator());

}  // namespace scion

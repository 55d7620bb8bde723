// Philox-4x32-10 and the distributions built on it. Uniform floats take the top 24 (f32) or 53
// (f64) bits of a word so they lie in [0, 1); normals use Box-Muller on one counter's 4 words.
#include "core/rng.h"

#include <cmath>

#include "core/backend.h"
#include "core/kernel_math.h"

namespace scion {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi) {
  const kmath::Words4 w = kmath::philox4x32(key, counter_lo, counter_hi);
  return {w.w[0], w.w[1], w.w[2], w.w[3]};
}

namespace {

using kmath::u32_to_unit;

// Draws n counters for a contiguous floating tensor and lets its backend fill it.
thread_local BatchShard t_shard;

void fill_random(Tensor& t, Generator& gen, RandomFill r) {
  SCION_CHECK(t.is_contiguous(), "random fill: tensor must be contiguous, got strides ",
              shape_str(t.strides()));
  SCION_CHECK(is_floating(t.dtype()), "random fill: expected a floating tensor, got ",
              dtype_name(t.dtype()));
  const BatchShard& s = t_shard;
  if (s.global_rows > 0 && t.dim() >= 1 && t.size(0) == s.rows && s.rows > 0) {
    // Row-major: the shard's rows are one contiguous run of the global draw's counters.
    const uint64_t per_row = uint64_t(t.numel() / s.rows);
    r.counter = gen.advance(uint64_t(s.global_rows) * per_row) + uint64_t(s.first_row) * per_row;
  } else {
    r.counter = gen.advance(uint64_t(t.numel()));
  }
  r.key = gen.seed();
  r.stream = gen.stream();
  backend(t.device()).random_fill(t, r);
}

}  // namespace

BatchShardGuard::BatchShardGuard(BatchShard shard) : previous_(t_shard) {
  t_shard = shard;
}

BatchShardGuard::~BatchShardGuard() {
  t_shard = previous_;
}

Generator Generator::fork(uint64_t key) const {
  auto w = philox4x32(seed_ ^ 0x5851F42D4C957F2Dull, key, stream_ + 0x9E3779B97F4A7C15ull);
  return Generator((uint64_t(w[0]) << 32) | w[1], (uint64_t(w[2]) << 32) | w[3]);
}

uint32_t Generator::next_u32() {
  return philox4x32(seed_, advance(1), stream_)[0];
}

double Generator::next_uniform() {
  auto w = philox4x32(seed_, advance(1), stream_);
  return u32_to_unit(w[0], w[1]);
}

double Generator::next_normal() {
  auto w = philox4x32(seed_, advance(1), stream_);
  double u1 = 1.0 - u32_to_unit(w[0], w[1]), u2 = u32_to_unit(w[2], w[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) {
  default_generator() = Generator(seed);
}

double RandomFill::sample(const std::array<uint32_t, 4>& w) const {
  return kmath::random_sample(int(kind), p0, p1, p2, p3, cdf_lo, cdf_hi,
                              kmath::Words4{{w[0], w[1], w[2], w[3]}});
}

Tensor& uniform_(Tensor& t, double low, double high, Generator& gen) {
  RandomFill r;
  r.kind = RandomKind::uniform;
  r.p0 = low;
  r.p1 = high;
  fill_random(t, gen, r);
  return t;
}

Tensor& normal_(Tensor& t, double mean, double std, Generator& gen) {
  RandomFill r;
  r.kind = RandomKind::normal;
  r.p0 = mean;
  r.p1 = std;
  fill_random(t, gen, r);
  return t;
}

Tensor& trunc_normal_(Tensor& t, double mean, double std, double a, double b, Generator& gen) {
  SCION_CHECK(std > 0 && a < b, "trunc_normal_: need std > 0 and a < b, got std=", std, " a=", a,
              " b=", b);
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  RandomFill r;
  r.kind = RandomKind::trunc_normal;
  r.p0 = mean;
  r.p1 = std;
  r.p2 = a;
  r.p3 = b;
  r.cdf_lo = 2.0 * cdf((a - mean) / std) - 1.0;
  r.cdf_hi = 2.0 * cdf((b - mean) / std) - 1.0;
  fill_random(t, gen, r);
  return t;
}

Tensor bernoulli(const Shape& shape, double p, DType dtype, Generator& gen, Device device) {
  Tensor t = empty(shape, dtype, device);
  RandomFill r;
  r.kind = RandomKind::bernoulli;
  r.p0 = p;
  fill_random(t, gen, r);
  return t;
}

Tensor randperm(int64_t n, Generator& gen) {
  Tensor t = arange(0, double(n), 1, DType::i64);
  int64_t* p = t.data<int64_t>();
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = int64_t(gen.next_uniform() * double(i + 1));
    std::swap(p[i], p[j]);
  }
  return t;
}

Tensor randn(const Shape& shape, DType dtype, Generator& gen) {
  Tensor t = empty(shape, dtype);
  return normal_(t, 0.0, 1.0, gen);
}

Tensor rand(const Shape& shape, DType dtype, Generator& gen) {
  Tensor t = empty(shape, dtype);
  return uniform_(t, 0.0, 1.0, gen);
}

}  // namespace scion

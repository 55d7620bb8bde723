// Philox-4x32-10 and the distributions built on it. Uniform floats take the top 24 (f32) or 53
// (f64) bits of a word so they lie in [0, 1); normals use Box-Muller on one counter's 4 words.
#include "core/rng.h"

#include <cmath>

#include "core/backend.h"

namespace scion {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = uint32_t(counter_lo), c1 = uint32_t(counter_lo >> 32);
  uint32_t c2 = uint32_t(counter_hi), c3 = uint32_t(counter_hi >> 32);
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(kM0) * c0, p1 = uint64_t(kM1) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

namespace {

inline double u32_to_unit(uint32_t a, uint32_t b) {  // 53 random bits -> [0, 1)
  uint64_t v = (uint64_t(a) << 21) ^ uint64_t(b >> 11);
  return double(v & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Inverse error function: Giles' single-precision-style initial guess refined by two Newton steps
// in double, accurate to ~1e-15 on (-1, 1).
double erfinv(double y) {
  if (y <= -1) return -INFINITY;
  if (y >= 1) return INFINITY;
  double w = -std::log((1.0 - y) * (1.0 + y)), x;
  if (w < 5.0) {
    w -= 2.5;
    double p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
    x = p * y;
  } else {
    w = std::sqrt(w) - 3.0;
    double p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
    x = p * y;
  }
  for (int i = 0; i < 2; ++i) {
    double err = std::erf(x) - y;
    x -= err / (2.0 / std::sqrt(M_PI) * std::exp(-x * x));
  }
  return x;
}

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
  switch (kind) {
    case RandomKind::uniform:
      return p0 + (p1 - p0) * u32_to_unit(w[0], w[1]);
    case RandomKind::normal: {
      double u1 = 1.0 - u32_to_unit(w[0], w[1]), u2 = u32_to_unit(w[2], w[3]);
      return p0 + p1 * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
    }
    case RandomKind::trunc_normal: {  // p0 mean, p1 std, [p2, p3] bounds; lo/hi in cdf_lo/cdf_hi
      double u = cdf_lo + (cdf_hi - cdf_lo) * u32_to_unit(w[0], w[1]);
      double x = p0 + p1 * std::sqrt(2.0) * erfinv(u);
      return std::min(std::max(x, p2), p3);
    }
    case RandomKind::bernoulli:
      return u32_to_unit(w[0], w[1]) < p0 ? 1.0 : 0.0;
  }
  return 0.0;
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

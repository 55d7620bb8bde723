// Finite-difference gradient checks (central differences, f64) for every differentiable core op.
// Inputs stay away from kinks (relu at 0, maximum ties, sqrt/log near 0). The worst relative error
// max |numeric - analytic| / max(1, |numeric|) must stay below 1e-6.
#include "tests/support.h"

using namespace scion;
using scion::test::gradcheck;
using scion::test::rand_f64;

namespace {

constexpr double kTol = 1e-6;
using Ins = std::vector<Tensor>;

Tensor input(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return rand_f64(s, seed, lo, hi).requires_grad_();
}

// Pushes |x| >= 0.2 so relu, maximum and friends are differentiable at every sample.
Tensor away_from_zero(const Shape& s, uint64_t seed) {
  Tensor x = rand_f64(s, seed, 0.2, 1.0);
  Tensor sign = rand_f64(s, seed + 1, -1.0, 1.0);
  Tensor y = where(gt(sign, scalar_tensor(0.0, DType::f64)), x, neg(x));
  return y.contiguous().detach().requires_grad_();
}

}  // namespace

TEST_CASE("gradcheck: unary elementwise", "[gradcheck]") {
  std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>> any_x = {
      {"neg", neg}, {"exp", exp}, {"tanh", tanh}, {"erf", erf}, {"sigmoid", sigmoid}};
  for (auto& [name, op] : any_x) {
    INFO(name);
    CHECK(gradcheck([op = op](const Ins& in) { return op(in[0]); }, {input({3, 4}, 1, -2, 2)}) <
          kTol);
  }
  std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>> positive = {
      {"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}};
  for (auto& [name, op] : positive) {
    INFO(name);
    CHECK(gradcheck([op = op](const Ins& in) { return op(in[0]); }, {input({3, 4}, 2, 0.3, 2.0)}) <
          kTol);
  }
  CHECK(gradcheck([](const Ins& in) { return relu(in[0]); }, {away_from_zero({3, 4}, 3)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return gelu(in[0]); }, {input({3, 4}, 4, -3, 3)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return gelu(in[0], "tanh"); }, {input({3, 4}, 5, -3, 3)}) <
        kTol);
}

TEST_CASE("gradcheck: binary elementwise with broadcasting", "[gradcheck]") {
  std::vector<std::pair<const char*, Tensor (*)(const Tensor&, const Tensor&)>> ops = {
      {"add", add}, {"sub", sub}, {"mul", mul}};
  for (auto& [name, op] : ops) {
    INFO(name);
    CHECK(gradcheck([op = op](const Ins& in) { return op(in[0], in[1]); },
                    {input({2, 1, 3}, 6), input({4, 3}, 7)}) < kTol);
  }
  CHECK(gradcheck([](const Ins& in) { return div(in[0], in[1]); },
                  {input({2, 1, 3}, 8), input({4, 3}, 9, 0.5, 2.0)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return pow(in[0], in[1]); },
                  {input({2, 3}, 10, 0.5, 2.0), input({3}, 11, -1.5, 1.5)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return pow(in[0], 2.5); }, {input({2, 3}, 12, 0.5, 2.0)}) <
        kTol);
  // maximum/minimum away from ties: b = a + offsets with |offset| >= 0.2.
  Tensor a = input({3, 4}, 13);
  Tensor off = away_from_zero({3, 4}, 14);
  Tensor b = (a.detach() + off.detach()).contiguous().requires_grad_();
  CHECK(gradcheck([](const Ins& in) { return maximum(in[0], in[1]); }, {a, b}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return minimum(in[0], in[1]); }, {a, b}) < kTol);
  Tensor cond = gt(rand_f64({3, 4}, 15), scalar_tensor(0.0, DType::f64));
  CHECK(gradcheck([cond](const Ins& in) { return where(cond, in[0], in[1]); },
                  {input({3, 4}, 16), input({4}, 17)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return (in[0] * 3.0 - 1.0) / 2.0 + 2.0 * in[0]; },
                  {input({5}, 18)}) < kTol);
}

TEST_CASE("gradcheck: reductions", "[gradcheck]") {
  CHECK(gradcheck([](const Ins& in) { return sum(in[0]); }, {input({2, 3, 4}, 20)}) < kTol);
  CHECK(gradcheck(
            [](const Ins& in) {
              return sum(in[0], {0, 2}, true);
            },
            {input({2, 3, 4}, 21)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return mean(in[0], {1}); }, {input({2, 3, 4}, 22)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return var(in[0], {2}); }, {input({2, 3, 4}, 23)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return var(in[0], {}, 0); }, {input({2, 3, 4}, 24)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return max(in[0], 1).values; }, {input({2, 5, 3}, 25)}) <
        kTol);
  CHECK(gradcheck([](const Ins& in) { return max(in[0], -1, true).values; },
                  {input({2, 5, 3}, 26)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return max(in[0]); }, {input({4, 3}, 27)}) < kTol);
}

TEST_CASE("gradcheck: matmul and linear", "[gradcheck]") {
  auto mm = [](const Ins& in) { return matmul(in[0], in[1]); };
  CHECK(gradcheck(mm, {input({3, 4}, 30), input({4, 2}, 31)}) < kTol);
  CHECK(gradcheck(mm, {input({2, 1, 3, 4}, 32), input({3, 4, 2}, 33)}) < kTol);
  CHECK(gradcheck(mm, {input({4}, 34), input({2, 4, 3}, 35)}) < kTol);
  CHECK(gradcheck(mm, {input({3, 4}, 36), input({4}, 37)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return matmul(in[0].transpose(0, 1), in[1].t()); },
                  {input({4, 3}, 38), input({2, 4}, 39)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return linear(in[0], in[1], in[2]); },
                  {input({2, 3, 5}, 40), input({4, 5}, 41), input({4}, 42)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return linear(in[0], in[1]); },
                  {input({3, 5}, 43), input({2, 5}, 44)}) < kTol);
}

TEST_CASE("gradcheck: conv2d", "[gradcheck]") {
  auto conv = [](Conv2dOptions o, bool bias) {
    return [o, bias](const Ins& in) { return conv2d(in[0], in[1], bias ? in[2] : Tensor(), o); };
  };
  Conv2dOptions plain;
  CHECK(gradcheck(conv(plain, true),
                  {input({2, 3, 5, 5}, 50), input({4, 3, 3, 3}, 51), input({4}, 52)}) < kTol);
  Conv2dOptions s;
  s.stride = {2, 1};
  s.padding = {1, 2};
  CHECK(gradcheck(conv(s, false), {input({1, 2, 6, 5}, 53), input({3, 2, 3, 2}, 54)}) < kTol);
  Conv2dOptions d;
  d.dilation = {2, 2};
  d.padding = {1, 1};
  CHECK(gradcheck(conv(d, false), {input({1, 2, 6, 6}, 55), input({2, 2, 3, 3}, 56)}) < kTol);
  Conv2dOptions g;
  g.groups = 2;
  CHECK(gradcheck(conv(g, true),
                  {input({1, 4, 4, 4}, 57), input({6, 2, 2, 2}, 58), input({6}, 59)}) < kTol);
  Conv2dOptions dw;
  dw.groups = 3;
  dw.padding = {3, 3};
  CHECK(gradcheck(conv(dw, true),
                  {input({1, 3, 5, 5}, 60), input({3, 1, 7, 7}, 61), input({3}, 62)}) < kTol);
}

TEST_CASE("gradcheck: layer_norm, softmax, losses, dropout", "[gradcheck]") {
  CHECK(gradcheck([](const Ins& in) { return layer_norm(in[0], {5}, in[1], in[2], 1e-6); },
                  {input({3, 5}, 70), input({5}, 71), input({5}, 72)}) < kTol);
  CHECK(gradcheck(
            [](const Ins& in) {
              return layer_norm(in[0], {2, 3});
            },
            {input({2, 2, 3}, 73)}) < kTol);
  // layer_norm_to in x's own dtype (its bf16 output is tested bit for bit against layer_norm then
  // the cast, test_autograd.cpp: finite differences need f64 throughout).
  CHECK(gradcheck(
            [](const Ins& in) {
              return layer_norm_to(in[0], {5}, in[1], in[2], 1e-6, in[0].dtype());
            },
            {input({3, 5}, 82), input({5}, 83), input({5}, 84)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return softmax(in[0], -1); }, {input({3, 5}, 74)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return attention(in[0], 2, 0.7); }, {input({2, 5, 12}, 79)}) <
        kTol);
  CHECK(gradcheck([](const Ins& in) { return softmax(in[0], 0); }, {input({3, 5}, 75)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return log_softmax(in[0], 1); }, {input({2, 4, 3}, 76)}) <
        kTol);
  Tensor labels = from_vector({1, 0, 3}, {3}, DType::i64);
  CHECK(gradcheck([labels](const Ins& in) { return cross_entropy(in[0], labels); },
                  {input({3, 4}, 77)}) < kTol);
  CHECK(gradcheck([labels](const Ins& in) { return cross_entropy(in[0], labels, 0.2); },
                  {input({3, 4}, 78)}) < kTol);
  Tensor soft = softmax(rand_f64({3, 4}, 79), 1).detach().contiguous().requires_grad_();
  CHECK(gradcheck([](const Ins& in) { return cross_entropy(in[0], in[1], 0.1); },
                  {input({3, 4}, 80), soft}) < kTol);
  // The same generator state gives the same mask on every evaluation.
  CHECK(gradcheck(
            [](const Ins& in) {
              Generator g(99);
              return dropout(in[0], 0.3, true, g);
            },
            {input({4, 5}, 81)}) < kTol);
}

TEST_CASE("gradcheck: indexing, joining, views, conversion", "[gradcheck]") {
  Tensor idx = from_vector({2, 0, 2}, {3}, DType::i64);
  CHECK(gradcheck([idx](const Ins& in) { return index_select(in[0], 1, idx); },
                  {input({2, 3, 2}, 90)}) < kTol);
  Tensor gidx = from_vector({0, 2, 2, 1, 0, 0}, {2, 3}, DType::i64);
  CHECK(gradcheck([gidx](const Ins& in) { return gather(in[0], 1, gidx); }, {input({2, 4}, 91)}) <
        kTol);
  CHECK(gradcheck(
            [](const Ins& in) {
              return cat({in[0], in[1]}, 0);
            },
            {input({2, 3}, 92), input({1, 3}, 93)}) < kTol);
  CHECK(gradcheck(
            [](const Ins& in) {
              auto s = split(in[0], 2, 1);
              auto c = chunk(in[0], 2, 0);
              return cat({cat({s[0] * 2.0, s[1]}, 1), c[1]}, 0);
            },
            {input({2, 3}, 94)}) < kTol);
  CHECK(gradcheck(
            [](const Ins& in) {
              return in[0].permute({1, 2, 0}).transpose(0, 1).reshape({4, 6}).narrow(0, 1, 2).slice(
                  1, 1, 6, 2);
            },
            {input({2, 3, 4}, 95)}) < kTol);
  CHECK(gradcheck(
            [](const Ins& in) {
              return in[0].unsqueeze(1).expand({3, 4, 2}).squeeze().select(2, 1).contiguous().view(
                  {12});
            },
            {input({3, 2}, 96)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return in[0].flatten().clone(); }, {input({2, 3}, 97)}) <
        kTol);
  // f64 -> f32 -> f64 is the identity up to f32 rounding: a step of 1e-2 keeps that below 1e-6.
  CHECK(gradcheck([](const Ins& in) { return in[0].to(DType::f32).to(DType::f64); },
                  {input({4}, 98)}, 1e-2) < 1e-4);
  // to_all: each input its own cast, the same way there and back, weighted so that every
  // input's gradient is checked.
  CHECK(gradcheck(
            [](const Ins& in) {
              const std::vector<Tensor> low = to_all({in[0], in[1]}, DType::f32);
              const std::vector<Tensor> back = to_all(low, DType::f64);
              return sum(back[0] * 2.0) + sum(back[1] * back[1]);
            },
            {input({4}, 99), input({2, 3}, 100)}, 1e-2) < 1e-4);
}

TEST_CASE("gradcheck: device transfers (to(Device), cpu()) and ops on the reference device",
          "[gradcheck]") {
  const Device ref{DeviceType::reference, 0};
  CHECK(gradcheck(
            [&](const Ins& in) {
              Tensor a = in[0].to(ref), b = in[1].to(ref);
              return sum(gelu(a) * b.t(), {1}).cpu();
            },
            {input({3, 4}, 41, -2, 2), input({4, 3}, 42)}) < kTol);
}

TEST_CASE("gradcheck: addcmul, fused (channels-last rows) and as add and mul", "[gradcheck]") {
  // Channels-last x and t (contiguous (B, H, W, C) inputs viewed as (B, C, H, W)) with a
  // (1, C, 1, 1) scale: Backend::layer_scale_rows, its backward when the gradient arrives in that
  // layout (the result viewed back) and add and mul's when it arrives in NCHW order.
  auto scaled = [](const Ins& in) {
    return addcmul(in[0].permute({0, 3, 1, 2}), in[1].permute({0, 3, 1, 2}),
                   in[2].reshape({1, 4, 1, 1}));
  };
  const Ins ins{input({2, 3, 2, 4}, 40), input({2, 3, 2, 4}, 41), input({4}, 42)};
  CHECK(gradcheck([&](const Ins& in) { return scaled(in).permute({0, 2, 3, 1}); }, ins) < kTol);
  CHECK(gradcheck(scaled, ins) < kTol);
  // Tokens with a (D) scale; a scale broadcast along two dims (add and mul).
  CHECK(gradcheck([](const Ins& in) { return addcmul(in[0], in[1], in[2]); },
                  {input({2, 3, 4}, 43), input({2, 3, 4}, 44), input({4}, 45)}) < kTol);
  CHECK(gradcheck([](const Ins& in) { return addcmul(in[0], in[1], in[2]); },
                  {input({2, 3, 4}, 46), input({2, 3, 4}, 47), input({3, 4}, 48)}) < kTol);
}

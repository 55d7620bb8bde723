// Autograd semantics: accumulation into leaves, shared subexpressions, gradients through views and
// broadcasting reduced to the input's shape, NoGradGuard, detach, and the freed-graph error.
#include <optional>

#include "nn/layers.h"
#include "tests/support.h"

using namespace scion;

TEST_CASE("gradients accumulate into leaves across backward calls", "[autograd]") {
  Tensor x = from_vector({1, 2, 3}, {3}).requires_grad_();
  sum(x * x).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2, 4, 6});
  sum(x * 3.0).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a value used twice receives both gradients (diamond)", "[autograd]") {
  Tensor x = from_vector({2}, {1}).requires_grad_();
  Tensor y = exp(x);
  Tensor z = y * y + y;  // dz/dx = (2y + 1) y
  z.backward(ones({1}));
  double e2 = std::exp(2.0);
  CHECK(x.grad().item() == Approx((2 * e2 + 1) * e2).epsilon(1e-6));
}

TEST_CASE("broadcast gradients are reduced to the input's shape", "[autograd]") {
  Tensor a = ones({3, 1}).requires_grad_();
  Tensor b = ones({4}).requires_grad_();
  sum(a * b).backward();
  CHECK(a.grad().shape() == Shape{3, 1});
  CHECK(a.grad().to_vector() == std::vector<double>{4, 4, 4});
  CHECK(b.grad().shape() == Shape{4});
  CHECK(b.grad().to_vector() == std::vector<double>{3, 3, 3, 3});
}

TEST_CASE("gradients flow through views to the base tensor", "[autograd]") {
  Tensor x = arange(0, 6, 1, DType::f32).reshape({2, 3}).detach().requires_grad_();
  Tensor v = x.t().narrow(0, 1, 2);  // rows 1..2 of x^T = columns 1..2 of x
  sum(v * 2.0).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{0, 2, 2, 0, 2, 2});
  Tensor grad = x.grad();
  CHECK(grad.is_contiguous());
}

TEST_CASE("leaf gradients do not alias each other", "[autograd]") {
  Tensor a = ones({2}).requires_grad_(), b = ones({2}).requires_grad_();
  sum(a + b).backward();
  a.grad().mul_(5.0);
  CHECK(b.grad().to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("NoGradGuard and detach record nothing", "[autograd]") {
  Tensor x = ones({2}).requires_grad_();
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK((x * 2.0).requires_grad());
  Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.storage() == x.storage());
  Tensor y = d * x;
  y.backward(ones({2}));
  CHECK(x.grad().to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("backward errors are clear", "[autograd]") {
  Tensor x = ones({2}).requires_grad_();
  Tensor y = sum(x * x);
  y.backward();
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("second time"));
  CHECK_THROWS_WITH((x * 2.0).backward(), Catch::Contains("one-element"));
  Tensor c = ones({2});
  CHECK_THROWS_WITH(sum(c).backward(), Catch::Contains("does not require grad"));
  CHECK_THROWS_AS(arange(0, 3).requires_grad_(), InputError);
}

TEST_CASE("bad shapes and dtypes are rejected with the shapes named", "[autograd][ops]") {
  CHECK_THROWS_WITH(add(ones({2, 3}), ones({4})),
                    Catch::Contains("(2, 3)") && Catch::Contains("(4,)"));
  CHECK_THROWS_WITH(matmul(ones({2, 3}), ones({4, 2})), Catch::Contains("cannot be multiplied"));
  CHECK_THROWS_WITH(linear(ones({2, 3}), ones({4, 5})), Catch::Contains("does not match weight"));
  CHECK_THROWS_WITH(conv2d(ones({1, 3, 4, 4}), ones({2, 2, 3, 3})),
                    Catch::Contains("does not fit"));
  CHECK_THROWS_WITH(matmul(ones({2, 2}), ones({2, 2}, DType::f64)),
                    Catch::Contains("dtypes differ"));
  CHECK_THROWS_WITH(cross_entropy(ones({2, 3}), from_vector({0, 3}, {2}, DType::i64)),
                    Catch::Contains("out of range"));
  CHECK_THROWS_WITH(layer_norm(ones({2, 3}), {4}), Catch::Contains("normalized_shape"));
}

TEST_CASE("dropout: identity in eval, zeroes about p and keeps the expectation in training",
          "[ops]") {
  Tensor x = ones({200000});
  CHECK(dropout(x, 0.5, false).storage() == x.storage());
  Generator g(5);
  Tensor y = dropout(x, 0.25, true, g);
  std::vector<double> v = y.to_vector();
  int64_t zeros_n = std::count(v.begin(), v.end(), 0.0);
  CHECK(std::fabs(double(zeros_n) / 200000.0 - 0.25) < 0.01);
  for (double e : v) CHECK((e == 0.0 || std::fabs(e - 1.0 / 0.75) < 1e-6));
  CHECK(std::fabs(mean(y).item() - 1.0) < 0.01);
}

TEST_CASE("post-accumulate-grad hooks run once per backward, after the leaf's last gradient",
          "[autograd]") {
  Tensor w = from_vector({1, 2, 3}, {3}).requires_grad_();  // used twice: two contributions
  Tensor b = from_vector({0.5}, {1}).requires_grad_();
  Tensor unused = ones({2}).requires_grad_();
  std::vector<std::string> order;
  std::vector<double> seen;
  w.register_post_accumulate_grad_hook([&](const Tensor& t) {
    order.push_back("w");
    seen = t.grad().to_vector();  // the whole gradient is there when the hook runs
  });
  b.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("b"); });
  unused.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("unused"); });
  Tensor y = sum(w * w) + sum(w * b) * 3.0;  // dy/dw = 2w + 3b, dy/db = 3 sum(w)
  y.backward();
  REQUIRE(order.size() == 2);
  CHECK(std::count(order.begin(), order.end(), "w") == 1);
  CHECK(std::count(order.begin(), order.end(), "b") == 1);
  CHECK(seen == std::vector<double>{3.5, 5.5, 7.5});
  // A second pass accumulates and runs the hooks again; removing one stops it.
  b.register_post_accumulate_grad_hook(nullptr);
  order.clear();
  (sum(w * w) + sum(w * b) * 3.0).backward();
  CHECK(order == std::vector<std::string>{"w"});
  CHECK(seen == std::vector<double>{7, 11, 15});
  CHECK_THROWS_WITH((w * 2.0).register_post_accumulate_grad_hook([](const Tensor&) {}),
                    Catch::Contains("needs a leaf"));
}

// The graph keeps what backward needs and no more (as torch): an add or sub no operand at all, a
// mul its operands as they were given. Under bf16 autocast a residual add of a bf16 branch to the
// f32 stream, or a bf16 branch times an f32 layer scale, used to keep an f32 copy of the branch
// until backward (ViT-T kept 17% more for backward than with this rule).
TEST_CASE("mixed-dtype add and mul keep no promoted copy of an operand for backward",
          "[autograd]") {
  auto& alloc = CachingAllocator::cpu();
  const int64_t n = 256;
  const size_t f32_bytes = size_t(n * n) * 4, bf16_bytes = size_t(n * n) * 2, slack = 16 << 10;
  Tensor x = full({n, n}, 0.5).requires_grad_();
  {
    const size_t start = alloc.live_bytes();
    Tensor out;
    {
      Tensor branch = (x * 2.0).to(DType::bf16);  // released at the end of this scope
      out = x + branch;                           // f32 output
    }
    CHECK(out.dtype() == DType::f32);
    CHECK(alloc.live_bytes() - start <= f32_bytes + slack);  // the output alone
    sum(out).backward();
    CHECK(x.grad().to_vector() == std::vector<double>(size_t(n * n), 3.0));  // 1 + 2
  }
  x.zero_grad();
  {
    Tensor scale = full({n, n}, 1.5).requires_grad_();
    const size_t start = alloc.live_bytes();
    Tensor out;
    {
      Tensor branch = (x * 2.0).to(DType::bf16);
      out = scale * branch;
    }
    // The output and the bf16 branch as given (the gradient of scale needs it), no f32 copy.
    CHECK(alloc.live_bytes() - start <= f32_bytes + bf16_bytes + slack);
    sum(out).backward();
    CHECK(scale.grad().to_vector() == std::vector<double>(size_t(n * n), 1.0));  // branch = 1
    CHECK(x.grad().to_vector() == std::vector<double>(size_t(n * n), 3.0));      // 2 * 1.5
  }
}

// As torch's mul and div: an operand is kept only when the other one's gradient needs it, so that
// x * mask (dropout, drop path) keeps the mask and not x, and x / s keeps s and not x.
TEST_CASE("mul and div keep an operand only when a gradient needs it", "[autograd]") {
  auto& alloc = CachingAllocator::cpu();
  const int64_t n = 256;
  const size_t bytes = size_t(n * n) * 4, slack = 16 << 10;
  Tensor x = full({n, n}, 0.5).requires_grad_();
  Tensor mask = full({n, n}, 2.0), scale = full({n, 1}, 4.0);
  const size_t start = alloc.live_bytes();
  Tensor prod, quot;
  {
    Tensor y = x + 0.0;  // released at the end of this scope unless the graph keeps it
    prod = y * mask;
    quot = y / scale;
  }
  CHECK(alloc.live_bytes() - start <= 2 * bytes + slack);  // the two outputs alone
  (sum(prod) + sum(quot)).backward();
  CHECK(x.grad().to_vector() == std::vector<double>(size_t(n * n), 2.25));  // 2 + 1/4
}

// Under bf16 autocast a depthwise convolution runs in f32 (scion's kernels compute it in f32) but
// keeps a bf16 copy of its input for the weight gradient, as torch's bf16 convolution keeps its
// bf16 input: half the bytes of an f32 copy, and the weight gradient is exactly the f32 one of the
// bf16-rounded input. The output and the input's gradient are those of the f32 convolution.
TEST_CASE("depthwise conv under autocast keeps a bf16 copy of its input for the weight gradient",
          "[autograd][ops]") {
  auto& alloc = CachingAllocator::cpu();
  Generator gen(3);
  const int64_t n = 2, c = 16, h = 24, w = 24;
  Conv2dOptions opt;
  opt.padding = {3, 3};
  opt.groups = c;
  for (bool channels_last : {false, true}) {
    INFO("channels_last " << channels_last);
    Tensor x = randn({n, h, w, c}, DType::f32, gen).permute({0, 3, 1, 2});
    if (!channels_last) x = x.contiguous();
    Tensor weight = (randn({c, 1, 7, 7}, DType::f32, gen) * 0.1).requires_grad_();
    Tensor bias = zeros({c}).requires_grad_();
    Tensor gy = randn({n, c, h, w}, DType::f32, gen);
    x.requires_grad_();

    const size_t start = alloc.live_bytes();
    Tensor y;
    {
      AutocastGuard autocast;
      Tensor x_in = x * 1.0;  // released at the end of this scope unless the graph keeps it
      y = conv2d(x_in, weight, bias, opt);
    }
    CHECK(y.dtype() == DType::f32);
    const size_t kept =
        alloc.live_bytes() - start - CachingAllocator::round_size(size_t(y.numel()) * 4);
    CHECK(kept <= CachingAllocator::round_size(size_t(x.numel()) * 2) + (16 << 10));
    sum(y * gy).backward();
    Tensor gx = x.grad(), gw = weight.grad();

    // The f32 convolution of x gives y and the input's gradient; that of x rounded to bf16 gives
    // the weight's gradient.
    // the weight's gradient (not the f32 input's: the rounding shows in it).
    weight.zero_grad();
    Tensor x32 = x.detach().requires_grad_();
    Tensor y32 = conv2d(x32, weight, bias, opt);
    sum(y32 * gy).backward();
    CHECK(test::max_abs(y - y32) == 0.0);
    CHECK(test::max_abs(gx - x32.grad()) == 0.0);
    CHECK(test::max_abs(gw - weight.grad()) > 0.0);
    weight.zero_grad();
    Tensor x_rounded = x.detach().to(DType::bf16).to(DType::f32);
    sum(conv2d(x_rounded, weight, bias, opt) * gy).backward();
    CHECK(test::max_abs(gw - weight.grad()) == 0.0);
  }
}

// layer_norm_to(x, ..., bf16) against layer_norm(x).to(bf16), on the CPU and reference backends:
// the same output bits, and the same gradient bits for x, weight and bias from a bf16 gradient
// (the cast's backward widens it exactly; the fused op widens it in its own pass). And
// LayerNorm::forward_low under autocast is LayerNorm::forward then the cast linear would apply.
TEST_CASE("layer_norm_to is layer_norm then the cast, bit for bit both ways", "[autograd][ops]") {
  for (const Device dev : {cpu_device(), Device{DeviceType::reference, 0}}) {
    INFO(dev.str());
    const Tensor x0 = test::rand_f64({5, 3, 40}, 1, -3, 3).to(DType::f32).to(dev);
    const Tensor w0 = test::rand_f64({40}, 2, 0.5, 1.5).to(DType::f32).to(dev);
    const Tensor b0 = test::rand_f64({40}, 3).to(DType::f32).to(dev);
    const Tensor g = test::rand_f64({5, 3, 40}, 4).to(DType::bf16).to(dev);
    Tensor x = x0.detach().requires_grad_(), w = w0.detach().requires_grad_(),
           b = b0.detach().requires_grad_();
    Tensor y = layer_norm_to(x, {40}, w, b, 1e-6, DType::bf16);
    CHECK(y.dtype() == DType::bf16);
    y.backward(g);
    Tensor xr = x0.detach().requires_grad_(), wr = w0.detach().requires_grad_(),
           br = b0.detach().requires_grad_();
    Tensor yr = layer_norm(xr, {40}, wr, br, 1e-6).to(DType::bf16);
    yr.backward(g);
    CHECK(y.cpu().to_vector() == yr.cpu().to_vector());
    CHECK(x.grad().dtype() == DType::f32);
    CHECK(x.grad().cpu().to_vector() == xr.grad().cpu().to_vector());
    CHECK(w.grad().cpu().to_vector() == wr.grad().cpu().to_vector());
    CHECK(b.grad().cpu().to_vector() == br.grad().cpu().to_vector());
  }
  // Only x's dtype or, for an f32 x, bf16.
  CHECK_THROWS_WITH(
      layer_norm_to(ones({2, 4}, DType::f64), {4}, Tensor(), Tensor(), 1e-6, DType::bf16),
      Catch::Contains("layer_norm_to: a f64 input gives f64, not bf16"));

  nn::LayerNorm norm(40);
  norm.weight.detach().copy_(test::rand_f64({40}, 5, 0.5, 1.5).to(DType::f32));
  const Tensor x = test::rand_f64({2, 7, 40}, 6, -3, 3).to(DType::f32);
  AutocastGuard autocast;
  const Tensor low = norm.forward_low(x), ref = norm.forward(x);
  CHECK(low.dtype() == DType::bf16);
  CHECK(ref.dtype() == DType::f32);
  CHECK(low.to_vector() == ref.to(DType::bf16).to_vector());
}

// add, sub, mul and div of an f32 and a bf16 operand run without a widened copy of the bf16 one
// (mixed_float_operands); outputs and both gradients are bit for bit those of widening it first,
// with broadcasting (gradients summed, then narrowed to bf16), on the CPU and reference backends.
TEST_CASE("f32 with bf16 operands: the widened op's numbers, bit for bit", "[autograd][ops]") {
  for (const Device dev : {cpu_device(), Device{DeviceType::reference, 0}}) {
    const Tensor a0 = test::rand_f64({3, 5, 8}, 11, -2, 2).to(DType::f32).to(dev);
    const Tensor b0 = test::rand_f64({5, 1}, 12, 0.5, 2).to(DType::bf16).to(dev);
    const Tensor g = test::rand_f64({3, 5, 8}, 13).to(DType::f32).to(dev);
    for (int op = 0; op < 4; ++op) {
      for (bool bf16_first : {false, true}) {
        INFO(dev.str() << ", op " << op << ", bf16 first " << bf16_first);
        auto apply = [&](const Tensor& a, const Tensor& b) {
          const Tensor& x = bf16_first ? b : a;
          const Tensor& y = bf16_first ? a : b;
          return op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y;
        };
        Tensor a = a0.detach().requires_grad_(), b = b0.detach().requires_grad_();
        Tensor y = apply(a, b);
        y.backward(g);
        Tensor ar = a0.detach().requires_grad_(), br = b0.detach().requires_grad_();
        Tensor yr = apply(ar, br.to(DType::f32));
        yr.backward(g);
        CHECK(y.dtype() == DType::f32);
        CHECK(y.cpu().to_vector() == yr.cpu().to_vector());
        CHECK(b.grad().dtype() == DType::bf16);
        CHECK(a.grad().cpu().to_vector() == ar.grad().cpu().to_vector());
        CHECK(b.grad().cpu().to_vector() == br.grad().cpu().to_vector());
      }
    }
  }
}

// A model's forward under autocast casts its parameters at once (AutocastCache, one kernel on a
// GPU): autocast_low of a parameter then gives that cast, and the loss and every gradient are
// those of one cast per use, bit for bit.
TEST_CASE("AutocastCache: the parameters cast at once give autocast's numbers and gradients",
          "[autograd]") {
  Generator gen(3);
  Tensor w1 = randn({16, 8}, DType::f32, gen).requires_grad_(),
         b1 = randn({16}, DType::f32, gen).requires_grad_(),
         w2 = randn({4, 16}, DType::f32, gen).requires_grad_(),
         ln = randn({16}, DType::f32, gen).requires_grad_();
  const Tensor x = randn({5, 8}, DType::f32, gen);
  const std::vector<Tensor> params{w1, b1, w2, ln};
  auto run = [&](bool cached) {
    for (Tensor p : params) p.zero_grad();
    AutocastGuard ac(true);
    std::optional<AutocastCache> cache;
    if (cached) {
      cache.emplace(params);
      CHECK(autocast_low(w1).impl() == autocast_low(w1).impl());  // the one cast, each time
      CHECK(autocast_low(w1).dtype() == DType::bf16);
    }
    // ln's cast goes unused (layer_norm runs in f32), as a norm's in a model.
    Tensor h = layer_norm(linear(x, w1, b1), {16}, ln, Tensor(), 1e-6);
    Tensor loss = sum(linear(gelu(h), w2));
    loss.backward();
    return std::vector<Tensor>{loss.detach(), w1.grad(), b1.grad(), w2.grad(), ln.grad()};
  };
  const std::vector<Tensor> plain = run(false), cached = run(true);
  for (size_t i = 0; i < plain.size(); ++i) {
    INFO("result " << i);
    REQUIRE(cached[i].defined());
    CHECK(cached[i].dtype() == plain[i].dtype());
    CHECK(cached[i].to_vector() == plain[i].to_vector());
  }
  // Scopes nest; outside every scope, and without autocast, nothing is cached.
  AutocastGuard ac(true);
  {
    const AutocastCache outer({w1});
    const Tensor w1_low = autocast_low(w1);
    {
      const AutocastCache inner({w2});
      CHECK(autocast_low(w1).impl() == w1_low.impl());
      CHECK(autocast_low(w2).impl() == autocast_low(w2).impl());
    }
    CHECK(autocast_low(w2).impl() != autocast_low(w2).impl());
  }
  CHECK(autocast_low(w1).impl() != autocast_low(w1).impl());
  {
    // Cast without grad mode, then needed with it: a fresh cast, which carries the gradient.
    std::optional<AutocastCache> no_grad_casts;
    {
      NoGradGuard ng;
      no_grad_casts.emplace(std::vector<Tensor>{w1});
      CHECK(autocast_low(w1).impl() == autocast_low(w1).impl());
    }
    const Tensor w1_low = autocast_low(w1);
    CHECK(w1_low.requires_grad());
    w1.zero_grad();
    sum(w1_low.to(DType::f32)).backward();
    REQUIRE(w1.grad().defined());
    CHECK(sum(w1.grad()).item() == double(w1.numel()));
  }
  AutocastGuard off(false);
  const AutocastCache none({w1});
  CHECK(autocast_low(w1).impl() == w1.impl());
}

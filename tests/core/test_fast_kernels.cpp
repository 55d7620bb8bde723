// The hand-vectorized kernels against f64 references over dense ranges, including row lengths that
// leave masked tails (1, 15, 17, 65): gelu within 1e-6 + 1e-6 |ref| (the erf approximation's
// 4.2e-7 absolute error times |x|/2), its derivative alike, softmax and layer norm within 1e-6.
#include "tests/support.h"

using namespace scion;

TEST_CASE("fast gelu matches the exact formula over [-10, 10]", "[ops][fast]") {
  int64_t n = 20001;
  Tensor x64 = arange(-10, 10.0005, 0.001, DType::f64).narrow(0, 0, n);
  Tensor x = x64.to(DType::f32).detach().requires_grad_();
  Tensor y = gelu(x);
  Tensor ref = 0.5 * x64 * (1.0 + erf(x64 * (1.0 / std::sqrt(2.0))));
  CHECK_CLOSE(y.to(DType::f64), ref, 1e-6, 1e-6);
  y.backward(ones({n}));
  Tensor cdf = 0.5 * (1.0 + erf(x64 * (1.0 / std::sqrt(2.0))));
  Tensor dref = cdf + x64 * exp(x64 * x64 * -0.5) * (1.0 / std::sqrt(2.0 * M_PI));
  CHECK_CLOSE(x.grad().to(DType::f64), dref, 2e-6, 2e-6);
}

TEST_CASE("exact gelu of any layout gives the dense kernel's bits, forward and backward",
          "[ops][fast]") {
  // A strided input (a transposed slice) and a channels-last one against the same values dense:
  // one kernel for every layout, so one set of bits (the GPU's, core/kernel_math.h).
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt));
    Tensor base = test::rand_f64({6, 9, 10}, 3, -6, 6).to(dt);
    Tensor g = test::rand_f64({9, 6}, 4, -2, 2).to(dt);
    Tensor strided = base.select(2, 3).transpose(0, 1);  // (9, 6), not dense
    Tensor dense = strided.contiguous();
    REQUIRE_FALSE(is_dense(strided));
    Tensor a = strided.detach().requires_grad_(), b = dense.detach().requires_grad_();
    Tensor ya = gelu(a), yb = gelu(b);
    CHECK(ya.to_vector() == yb.to_vector());
    ya.backward(g.transpose(0, 1).contiguous().transpose(0, 1));  // a strided gradient too
    yb.backward(g);
    CHECK(a.grad().to_vector() == b.grad().to_vector());
    Tensor cl = test::rand_f64({2, 5, 3, 4}, 5, -6, 6).to(dt).permute({0, 2, 3, 1});
    CHECK(gelu(cl).to_vector() == gelu(cl.contiguous()).to_vector());
  }
}

TEST_CASE("fast softmax and layer norm handle every tail length", "[ops][fast]") {
  for (int64_t d : {1, 15, 16, 17, 65, 192}) {
    INFO("row length " << d);
    Tensor x64 = test::rand_f64({7, d}, uint64_t(d), -3, 3);
    Tensor x = x64.to(DType::f32);
    CHECK_CLOSE(softmax(x, -1).to(DType::f64), softmax(x64, -1), 1e-6, 1e-5);
    Tensor w64 = test::rand_f64({d}, 1000 + uint64_t(d)),
           b64 = test::rand_f64({d}, 2000 + uint64_t(d));
    Tensor ln = layer_norm(x, {d}, w64.to(DType::f32), b64.to(DType::f32), 1e-6);
    CHECK_CLOSE(ln.to(DType::f64), layer_norm(x64, {d}, w64, b64, 1e-6), 1e-5, 1e-5);
  }
}

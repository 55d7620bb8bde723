// The fused attention kernels (core/cpu/attention.cpp) against the unfused composition of matmul
// and softmax in f64, over token counts and head dims that leave tails in every tile dimension
// (1, 5, 17 and 65 tokens; head dims 8, 12, 64 and the odd 7): outputs and qkv gradients. f32
// within 1e-5 of the scale of each tensor; bf16 inputs within 2^-6 (P and dS are rounded to bf16
// for their products, as autocast's matmuls round them), on the bf16 engine where this CPU has
// one (AMX tiles, or the AVX512-BF16 micro-kernel) and on the f32 engine
// (SCION_ATTENTION_BF16_KERNEL=0) everywhere; where it has AMX, the AMX engine against the
// micro-kernel, closer.
#include <cstdlib>

#include "core/cpu/kernels.h"
#include "tests/support.h"

using namespace scion;

namespace {

// The unfused math timm runs without fused_attn.
Tensor composite(const Tensor& qkv, int64_t heads, double scale) {
  int64_t b = qkv.size(0), n = qkv.size(1), c = qkv.size(2) / 3;
  Tensor t = qkv.reshape({b, n, 3, heads, c / heads}).permute({2, 0, 3, 1, 4});
  Tensor q = t.select(0, 0), k = t.select(0, 1), v = t.select(0, 2);
  Tensor p = softmax(matmul(q * scale, k.transpose(-2, -1)), -1);
  return matmul(p, v).transpose(1, 2).reshape({b, n, c});
}

// max |a - b| / max |b|.
double rel_err(const Tensor& a, const Tensor& b) {
  auto max_abs = [](const Tensor& t) { return max(maximum(t, neg(t))).item(); };
  return max_abs(a.to(DType::f64) - b) / max_abs(b);
}

void check_against_f64(DType dt, int64_t n, int64_t heads, int64_t d, double tol) {
  INFO("dtype " << dtype_name(dt) << ", " << n << " tokens, " << heads << " heads of " << d);
  const double scale = 1 / std::sqrt(double(d));
  // Values exactly representable in dt, so both sides start from the same inputs.
  Tensor x64 =
      test::rand_f64({2, n, 3 * heads * d}, uint64_t(n * 100 + d), -2, 2).to(dt).to(DType::f64);
  Tensor g64 = test::rand_f64({2, n, heads * d}, uint64_t(n * 100 + d + 1)).to(dt).to(DType::f64);
  Tensor x = x64.to(dt).detach().requires_grad_(), xr = x64.detach().requires_grad_();
  Tensor y = attention(x, heads, scale), yr = composite(xr, heads, scale);
  REQUIRE(y.dtype() == dt);
  CHECK(rel_err(y, yr) < tol);
  y.backward(g64.to(dt));
  yr.backward(g64);
  CHECK(rel_err(x.grad(), xr.grad()) < tol);
}

struct ScopedEnv {
  explicit ScopedEnv(const char* value) { setenv("SCION_ATTENTION_BF16_KERNEL", value, 1); }
  ~ScopedEnv() { unsetenv("SCION_ATTENTION_BF16_KERNEL"); }
};

}  // namespace

TEST_CASE("fused attention in f64 is the composite math", "[ops][attention]") {
  Tensor x = test::rand_f64({2, 7, 18}, 5, -2, 2);
  Tensor a = x.detach().requires_grad_(), b = x.detach().requires_grad_();
  Tensor g = test::rand_f64({2, 7, 6}, 6);
  Tensor y = attention(a, 3, 0.8), yr = composite(b, 3, 0.8);
  CHECK_CLOSE(y, yr, 1e-12, 1e-12);
  y.backward(g);
  yr.backward(g);
  CHECK_CLOSE(a.grad(), b.grad(), 1e-12, 1e-12);
}

TEST_CASE("fused attention f32 kernel over tile tails", "[ops][attention]") {
  for (int64_t n : {1, 5, 17, 65})
    for (int64_t d : {7, 8, 12, 64}) check_against_f64(DType::f32, n, 2, d, 1e-5);
}

TEST_CASE("fused attention bf16 kernels over tile tails", "[ops][attention]") {
  INFO("AVX512-BF16 micro-kernel on this CPU: " << cpu::attention_bf16_kernel_available());
  for (int64_t n : {1, 5, 17, 65})
    for (int64_t d : {7, 8, 12, 64}) check_against_f64(DType::bf16, n, 2, d, 1.0 / 64);
  ScopedEnv f32_engine("0");
  for (int64_t n : {5, 65}) check_against_f64(DType::bf16, n, 3, 8, 1.0 / 64);
}

TEST_CASE("fused attention bf16 on AMX tiles is the vdpbf16ps micro-kernel's math",
          "[ops][attention]") {
  if (!cpu::attention_amx_kernel_available()) {
    WARN("no AMX tiles on this CPU (or under this SCION_MAX_ISA): the AMX engine is not run");
    return;
  }
  // The same bf16 products summed in f32: outputs and gradients within a few bf16 roundings (on a
  // Sapphire Rapids VM most shapes came out bit for bit equal, the larger ones not). Token counts
  // and head dims leave partial tiles in rows (16-row tiles, 32-row blocks), columns and the
  // reduction (16 pairs a chunk): 197 tokens is ViT's 224 px sequence.
  for (int64_t n : {1, 16, 17, 33, 64, 65, 197})
    for (int64_t d : {8, 12, 32, 64}) {
      INFO(n << " tokens, heads of " << d);
      Tensor x = test::rand_f64({2, n, 3 * 2 * d}, uint64_t(n * 10 + d), -2, 2).to(DType::bf16);
      Tensor g = test::rand_f64({2, n, 2 * d}, uint64_t(n * 10 + d + 1)).to(DType::bf16);
      std::vector<Tensor> y, dx;
      for (const char* engine : {"", "vdpbf16ps"}) {
        ScopedEnv env(engine);
        Tensor xi = x.detach().requires_grad_();
        Tensor yi = attention(xi, 2, 1 / std::sqrt(double(d)));
        yi.backward(g);
        y.push_back(yi.to(DType::f64));
        dx.push_back(xi.grad().to(DType::f64));
      }
      CHECK(rel_err(y[0], y[1]) < 1.0 / 128);
      CHECK(rel_err(dx[0], dx[1]) < 1.0 / 128);
    }
}

TEST_CASE("fused attention rejects a qkv that does not split into heads", "[ops][attention]") {
  CHECK_THROWS_WITH(attention(zeros({2, 5, 20}), 3, 1.0),
                    Catch::Contains("attention: expected qkv (B, N, 3 * num_heads * head_dim)"));
  CHECK_THROWS_WITH(attention(zeros({2, 5, 18}, DType::i64), 3, 1.0),
                    Catch::Contains("attention: expected a floating tensor"));
}

// The per-ISA kernel builds (isa_plain, isa_avx2, isa_avx512) called directly, each one this CPU
// can run, against f64 references: every path is tested on every machine that has it, whatever
// SCION_MAX_ISA says (the capped reruns of the suite in CMakeLists.txt test the dispatch on top).
// Tolerances as in test_fast_kernels.cpp (f32: 1e-6..1e-5 relative; the erf approximation's 4.2e-7
// absolute); bf16 conversions must be bit-exact against BFloat16's round-to-nearest-even.
// Also: SCION_MAX_ISA parsing, and that a cap in the environment took effect for scion and oneDNN.
#include <cstdlib>
#include <cstring>

#include "core/cpu/isa.h"
#include "core/cpu/kernels.h"
#include "core/cpu/onednn.h"
#include "core/kernel_math.h"
#include "tests/support.h"

using namespace scion;
using cpu::Isa;

namespace {

// One build's kernels under test.
struct Variant {
  const char* name;
  Isa isa;
  decltype(&cpu::isa_plain::gelu_erf_forward) gelu_forward;
  decltype(&cpu::isa_plain::gelu_erf_backward) gelu_backward;
  decltype(&cpu::isa_plain::softmax_lastdim_forward) softmax_forward;
  decltype(&cpu::isa_plain::softmax_lastdim_backward) softmax_backward;
  decltype(&cpu::isa_plain::layer_norm_forward) layer_norm_forward;
  decltype(&cpu::isa_plain::layer_norm_backward) layer_norm_backward;
  decltype(&cpu::isa_plain::copy) copy;
  decltype(&cpu::isa_plain::attention_forward) attention_forward;
  decltype(&cpu::isa_plain::adamw_step) adamw_step;
  decltype(&cpu::isa_plain::matmul_bf16_widened) matmul_bf16_widened;
};

#define SCION_VARIANT(ns, level)                                                         \
  Variant {                                                                              \
#ns, level, &cpu::ns::gelu_erf_forward, &cpu::ns::gelu_erf_backward,                 \
        &cpu::ns::softmax_lastdim_forward, &cpu::ns::softmax_lastdim_backward,           \
        &cpu::ns::layer_norm_forward, &cpu::ns::layer_norm_backward, &cpu::ns::copy,     \
        &cpu::ns::attention_forward, &cpu::ns::adamw_step, &cpu::ns::matmul_bf16_widened \
  }

// The builds this CPU can run (never capped: each is called directly).
std::vector<Variant> runnable_variants() {
#if defined(__x86_64__)
  std::vector<Variant> all{SCION_VARIANT(isa_plain, Isa::plain), SCION_VARIANT(isa_avx2, Isa::avx2),
                           SCION_VARIANT(isa_avx512, Isa::avx512)};
#else
  std::vector<Variant> all{SCION_VARIANT(isa_plain, Isa::plain)};  // the only build elsewhere
#endif
  std::vector<Variant> out;
  for (const auto& v : all)
    if (v.isa <= cpu::cpu_isa()) out.push_back(v);
  return out;
}

Tensor f64(const Tensor& t) {
  return t.to(DType::f64);
}

}  // namespace

TEST_CASE("isa: every kernel build this CPU runs is tested, the plain one always", "[isa]") {
  auto variants = runnable_variants();
  REQUIRE(!variants.empty());
  CHECK(std::string(variants[0].name) == "isa_plain");
  INFO("CPU " << cpu::cpu_model() << ", level " << cpu::isa_name(cpu::cpu_isa()));
  CHECK(variants.size() == size_t(std::min(int(cpu::cpu_isa()), int(Isa::avx512)) + 1));
}

TEST_CASE("isa: gelu and its derivative in every build, f32 and bf16", "[isa][fast]") {
  const int64_t n = 4001;  // odd: every build ends in a tail
  Tensor x64 = arange(-10, 10.0025, 0.005, DType::f64).narrow(0, 0, n);
  Tensor g64 = test::rand_f64({n}, 7, -2, 2);
  Tensor cdf = 0.5 * (1.0 + erf(x64 * (1.0 / std::sqrt(2.0))));
  Tensor ref = x64 * cdf;
  Tensor dref = g64 * (cdf + x64 * exp(x64 * x64 * -0.5) * (1.0 / std::sqrt(2.0 * M_PI)));
  for (const auto& v : runnable_variants()) {
    INFO(v.name);
    Tensor x = x64.to(DType::f32), g = g64.to(DType::f32), y = empty({n}), dx = empty({n});
    v.gelu_forward(x, y);
    v.gelu_backward(g, x, dx);
    CHECK_CLOSE(f64(y), ref, 1e-6, 1e-6);
    CHECK_CLOSE(f64(dx), dref, 4e-6, 2e-6);
    // bf16: the same math on bf16-exact inputs, one rounding of the output (2^-8 relative).
    Tensor xb = x64.to(DType::bf16), yb = empty({n}, DType::bf16);
    v.gelu_forward(xb, yb);
    Tensor xr = f64(xb), refb = xr * 0.5 * (1.0 + erf(xr * (1.0 / std::sqrt(2.0))));
    CHECK_CLOSE(f64(yb), refb, 1e-6, 1.0 / 256);
  }
}

TEST_CASE("isa: exact gelu and its derivative in every build are kernel_math.h's, bit for bit",
          "[isa][fast][cuda-host]") {
  // The scalar functions the CUDA kernels run for f32 and bf16 against each build's kernels, over
  // a fine grid, random bit patterns of every exponent, and the edges: the clamps of exp's and
  // erf's arguments, denormals, the largest floats, infinities, NaN. Every build with an FMA
  // instruction: the x86-64 plain build has none, and rounds products and sums separately
  // (core/cpu/activation.cpp; the test above checks it against f64).
#if defined(__FP_FAST_FMAF)
  const bool plain_has_fma = true;  // the plain build's flags are this file's
#else
  const bool plain_has_fma = false;
#endif
  std::vector<float> xs;
  for (int i = -16 * 512; i <= 16 * 512; ++i) xs.push_back(float(i) / 512.f);
  for (float e : {0.f, -0.f, 1e-45f, -1e-45f, 1.1754944e-38f, -1.1754944e-38f, 3.4028235e38f,
                  -3.4028235e38f, 4.f, -4.f, 5.656854f, -5.656854f, 13.63f, -13.63f, 14.42f,
                  -14.42f, INFINITY, -INFINITY, NAN})
    xs.push_back(e);
  uint64_t state = 0x9e3779b97f4a7c15u;
  auto next = [&] {  // splitmix64
    uint64_t z = (state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return uint32_t((z ^ (z >> 31)) >> 32);
  };
  while (xs.size() < 60000) {
    uint32_t u = next();
    float f;
    std::memcpy(&f, &u, 4);
    if (!std::isnan(f)) xs.push_back(f);
  }
  const int64_t n = int64_t(xs.size());
  std::vector<float> gs(xs.size());
  for (float& g : gs) g = float(int32_t(next())) * 0x1p-30f;  // in [-2, 2)
  gs[0] = INFINITY;
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  // Equal bits, or NaN on both sides (a NaN's payload is not compared).
  auto same = [&](float got, float want) {
    return std::isnan(want) ? std::isnan(got) : bits(got) == bits(want);
  };
  Tensor x = from_vector(std::vector<double>(xs.begin(), xs.end()), {n}, DType::f32);
  Tensor g = from_vector(std::vector<double>(gs.begin(), gs.end()), {n}, DType::f32);
  Tensor xb = x.to(DType::bf16), gb = g.to(DType::bf16);
  int builds = 0;
  for (const auto& v : runnable_variants()) {
    if (v.isa == Isa::plain && !plain_has_fma) continue;
    ++builds;
    INFO(v.name);
    Tensor y = empty({n}), dx = empty({n});
    v.gelu_forward(x, y);
    v.gelu_backward(g, x, dx);
    int64_t bad_y = 0, bad_dx = 0;
    std::string first;
    for (int64_t i = 0; i < n; ++i) {
      const float xi = x.data<float>()[i], gi = g.data<float>()[i];
      const float want_y = kmath::gelu_erf_f32(xi), want_dx = kmath::gelu_erf_backward_f32(gi, xi);
      const bool ok_y = same(y.data<float>()[i], want_y),
                 ok_dx = same(dx.data<float>()[i], want_dx);
      if ((!ok_y || !ok_dx) && first.empty())
        first =
            detail::str_cat("first mismatch: x = ", xi, ", g = ", gi, ": gelu ", y.data<float>()[i],
                            " vs ", want_y, ", backward ", dx.data<float>()[i], " vs ", want_dx);
      bad_y += !ok_y;
      bad_dx += !ok_dx;
    }
    INFO(first);
    CHECK(bad_y == 0);
    CHECK(bad_dx == 0);
    // bf16: widened exactly, the same f32 steps, one rounding of the result.
    Tensor yb = empty({n}, DType::bf16), dxb = empty({n}, DType::bf16);
    v.gelu_forward(xb, yb);
    v.gelu_backward(gb, xb, dxb);
    int64_t bad_b = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float xi = float(xb.data<BFloat16>()[i]), gi = float(gb.data<BFloat16>()[i]);
      const float want_y = float(BFloat16(kmath::gelu_erf_f32(xi)));
      const float want_dx = float(BFloat16(kmath::gelu_erf_backward_f32(gi, xi)));
      bad_b += !same(float(yb.data<BFloat16>()[i]), want_y);
      bad_b += !same(float(dxb.data<BFloat16>()[i]), want_dx);
    }
    CHECK(bad_b == 0);
  }
  CHECK(builds >= (cpu::cpu_isa() >= Isa::avx2 ? 1 : 0));
  // The functions themselves stay within the approximation's bounds against f64 (the grid only:
  // the bit patterns reach where gelu is x or 0).
  for (int i = -8 * 512; i <= 8 * 512; i += 7) {
    const double t = double(i) / 512.0, cdf = 0.5 * (1.0 + std::erf(t / std::sqrt(2.0)));
    CHECK(std::abs(kmath::gelu_erf_f32(float(t)) - t * cdf) <= 1e-6 * (1.0 + std::abs(t)));
    const double d = cdf + t * std::exp(-0.5 * t * t) / std::sqrt(2.0 * M_PI);
    CHECK(std::abs(kmath::gelu_erf_backward_f32(1.f, float(t)) - d) <= 4e-6 * (1.0 + std::abs(d)));
  }
}

TEST_CASE("isa: softmax and layer norm in every build, every tail, exp down to the denormals",
          "[isa][fast]") {
  for (const auto& v : runnable_variants()) {
    for (int64_t d : {1, 7, 8, 9, 15, 16, 17, 65}) {
      INFO(v.name << ", row length " << d);
      Tensor x64 = test::rand_f64({5, d}, uint64_t(d), -3, 3), g64 = test::rand_f64({5, d}, 99);
      Tensor x = x64.to(DType::f32), y = empty({5, d}), dx = empty({5, d});
      v.softmax_forward(x, y);
      Tensor yr = softmax(x64, -1);
      CHECK_CLOSE(f64(y), yr, 1e-6, 1e-5);
      v.softmax_backward(y, g64.to(DType::f32), dx);
      Tensor dref = yr * (g64 - sum(yr * g64, {1}, true));
      CHECK_CLOSE(f64(dx), dref, 1e-6, 1e-5);
      Tensor w64 = test::rand_f64({d}, 1000 + uint64_t(d)), b64 = test::rand_f64({d}, 2000);
      Tensor ln, mean, rstd, dxl, dw, db;
      v.layer_norm_forward(x, w64.to(DType::f32), b64.to(DType::f32), 1e-6, d, DType::f32, ln, mean,
                           rstd);
      // The same rows with a bf16 output: the f32 result rounded once, the same statistics.
      Tensor ln16, mean16, rstd16;
      v.layer_norm_forward(x, w64.to(DType::f32), b64.to(DType::f32), 1e-6, d, DType::bf16, ln16,
                           mean16, rstd16);
      CHECK(ln16.dtype() == DType::bf16);
      CHECK(ln16.to_vector() == ln.to(DType::bf16).to_vector());
      CHECK(mean16.to_vector() == mean.to_vector());
      CHECK(rstd16.to_vector() == rstd.to_vector());
      Tensor xr = x64.detach().requires_grad_(), wr = w64.detach().requires_grad_(),
             br = b64.detach().requires_grad_();
      Tensor lr = layer_norm(xr, {d}, wr, br, 1e-6);
      CHECK_CLOSE(f64(ln), lr, 1e-5, 1e-5);
      // A row of one: dx is 0 in exact arithmetic, but rstd = 1/sqrt(eps) = 1000 multiplies the
      // rounding of w * dy (fused or not, as the compiler contracts it): no useful test of dx.
      if (d == 1) continue;
      lr.backward(g64);
      v.layer_norm_backward(g64.to(DType::f32), x, w64.to(DType::f32), mean, rstd, d, dxl, dw, db);
      CHECK_CLOSE(f64(dxl), xr.grad(), 1e-5, 1e-5);
      CHECK_CLOSE(f64(dw), wr.grad(), 1e-5, 1e-5);
      CHECK_CLOSE(f64(db), br.grad(), 1e-5, 1e-5);
      // A bf16 dy is widened exactly: the f32 backward of the widened dy, bit for bit.
      const Tensor g16 = g64.to(DType::bf16);
      Tensor dx16, dw16, db16, dxw, dww, dbw;
      v.layer_norm_backward(g16, x, w64.to(DType::f32), mean, rstd, d, dx16, dw16, db16);
      v.layer_norm_backward(g16.to(DType::f32), x, w64.to(DType::f32), mean, rstd, d, dxw, dww,
                            dbw);
      CHECK(dx16.dtype() == DType::f32);
      CHECK(dx16.to_vector() == dxw.to_vector());
      CHECK(dw16.to_vector() == dww.to_vector());
      CHECK(db16.to_vector() == dbw.to_vector());
    }
    // exp(-87) .. exp(-103): normal floats down to the smallest denormals (the AVX2 build scales
    // by 2^k in two halves for these); past -103.9 the result is 0 or the smallest denormal.
    INFO(v.name << ", extreme row");
    Tensor row = from_vector({0, -20, -50, -87, -90, -95, -100, -103, -110}, {1, 9});
    Tensor y = empty({1, 9});
    v.softmax_forward(row, y);
    CHECK_CLOSE(f64(y), softmax(f64(row), -1), 3e-45, 1e-5);
  }
}

TEST_CASE("isa: f32 <-> bf16 conversion is bit-exact round-to-nearest-even in every build",
          "[isa]") {
  std::vector<uint32_t> bits{0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x7f7fffffu,
                             0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                             0xffc12345u, 0x00000001u, 0x80008000u, 0x00018000u, 0x00000000u,
                             0x80000000u, 0x3f800000u, 0xbf7fffffu};
  for (int i = 0; i < 29; ++i) bits.push_back(0x40490fdbu + uint32_t(i) * 0x1234567u);
  const int64_t n = int64_t(bits.size());  // 47: a tail in every build
  std::vector<float> values(bits.size());
  std::memcpy(values.data(), bits.data(), bits.size() * 4);
  Tensor src = empty({n});  // bit patterns as they are (a double round trip would quiet NaNs)
  std::memcpy(src.data<float>(), values.data(), values.size() * 4);
  for (const auto& v : runnable_variants()) {
    INFO(v.name);
    Tensor b = empty({n}, DType::bf16), back = empty({n});
    v.copy(b, src);
    v.copy(back, b);
    const BFloat16* bp = b.data<BFloat16>();
    const float* fp = back.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      INFO("f32 bits 0x" << std::hex << bits[size_t(i)]);
      CHECK(bp[i].bits == BFloat16::round(values[size_t(i)]));
      uint32_t wide;
      std::memcpy(&wide, &fp[i], 4);
      CHECK(wide == uint32_t(bp[i].bits) << 16);
    }
  }
}

TEST_CASE("isa: fused attention and AdamW in every build", "[isa][attention]") {
  const int64_t b = 2, n = 17, heads = 2, d = 12;
  const double scale = 1 / std::sqrt(double(d));
  Tensor qkv64 = test::rand_f64({b, n, 3 * heads * d}, 3, -2, 2);
  Tensor ref = attention(qkv64, heads, scale);
  Tensor p0 = test::rand_f64({1000}, 11), g = test::rand_f64({1000}, 12);
  OptimStep s;
  s.lr = 1e-2;
  s.beta1 = 0.9;
  s.beta2 = 0.999;
  s.eps = 1e-8;
  s.weight_decay = 0.05;
  s.step = 3;
  // AdamW from the same state (m, v from two earlier steps' worth of g) in f64.
  Tensor m0 = g * 0.19, v0 = g * g * 0.002;
  Tensor m1 = m0 * 0.9 + g * 0.1, v1 = v0 * 0.999 + g * g * 0.001;
  Tensor pref = p0 * (1 - 1e-2 * 0.05) - (m1 * (1e-2 / (1 - std::pow(0.9, 3)))) /
                                             (sqrt(v1 * (1 / (1 - std::pow(0.999, 3)))) + 1e-8);
  for (const auto& v : runnable_variants()) {
    INFO(v.name);
    Tensor out = empty({b, n, heads * d}), lse = empty({b * heads * n});
    v.attention_forward(qkv64.to(DType::f32), heads, scale, out, lse);
    CHECK_CLOSE(f64(out), ref, 1e-5, 1e-5);
    Tensor p = p0.to(DType::f32), m = m0.to(DType::f32), vv = v0.to(DType::f32);
    v.adamw_step(p, g.to(DType::f32), m, vv, s);
    CHECK_CLOSE(f64(p), pref, 1e-6, 1e-5);
  }
}

TEST_CASE("isa: bf16 matmul on widened blocks in every build, by rows and by reduction",
          "[isa][matmul]") {
  // bf16 operands (each either layout), f32 accumulation, the bias added in f32, one rounding:
  // against the f64 product of the same bf16 values, within one rounding to bf16 (relative 2^-8)
  // plus f32 accumulation error. The shapes give several blocks and a partial last one in both
  // ways of cutting (blocks of 64Ki floats / (K + N) rows or / (M + N) reduction steps), and
  // vector tails in N.
  struct Case {
    int64_t m, k, n;
    bool a_t, b_t, bias;
  };
  const std::vector<Case> cases{
      {1000, 200, 137, false, true, true},    // rows: a linear layer's forward (b = w.t())
      {1000, 200, 137, false, false, false},  // rows: its input gradient (b = w)
      {1000, 200, 137, true, true, false},    // rows, a transposed
      {60, 3001, 50, true, false, false},     // reduction: a weight gradient (a = g.t())
      {60, 3001, 50, false, true, true},      // reduction, the other layouts
      {7, 9, 5, false, false, true},          // one small block
  };
  for (const auto& v : runnable_variants()) {
    INFO(v.name);
    for (const auto& c : cases) {
      INFO("m " << c.m << " k " << c.k << " n " << c.n << " a_t " << c.a_t << " b_t " << c.b_t);
      // A transposed operand is stored (cols x rows) and viewed transposed: unit row stride.
      auto operand = [](int64_t rows, int64_t cols, bool transposed, uint64_t seed) {
        Tensor t = test::rand_f64({1, transposed ? cols : rows, transposed ? rows : cols}, seed)
                       .to(DType::bf16);
        return transposed ? t.transpose(1, 2) : t;
      };
      Tensor a = operand(c.m, c.k, c.a_t, 21), b = operand(c.k, c.n, c.b_t, 22);
      REQUIRE((a.strides()[1] == 1) == c.a_t);
      REQUIRE((b.strides()[1] == 1) == c.b_t);
      Tensor bias = c.bias ? test::rand_f64({c.n}, 23).to(DType::bf16) : Tensor();
      Tensor ref = matmul(f64(a), f64(b));
      if (c.bias) ref = ref + f64(bias);
      Tensor out = full({1, c.m, c.n}, 7.0, DType::bf16);
      REQUIRE(v.matmul_bf16_widened(a, b, bias, out));
      CHECK_CLOSE(f64(out), ref, 1e-6 * double(c.k), 1.0 / 256);
    }
    // What it leaves to the whole-tensor path, untouched: a batch, an output wider than M and K,
    // a shared operand over 1 MiB (here b, 600 x 500 floats once widened).
    Tensor out = full({2, 8, 8}, 7.0, DType::bf16);
    CHECK_FALSE(v.matmul_bf16_widened(full({2, 8, 4}, 1.0, DType::bf16),
                                      full({2, 4, 8}, 1.0, DType::bf16), Tensor(), out));
    Tensor wide = full({1, 8, 64}, 7.0, DType::bf16);
    CHECK_FALSE(v.matmul_bf16_widened(full({1, 8, 16}, 1.0, DType::bf16),
                                      full({1, 16, 64}, 1.0, DType::bf16), Tensor(), wide));
    Tensor big = full({1, 600, 500}, 7.0, DType::bf16);
    CHECK_FALSE(v.matmul_bf16_widened(full({1, 600, 600}, 1.0, DType::bf16),
                                      full({1, 600, 500}, 1.0, DType::bf16), Tensor(), big));
    CHECK(sum(f64(big)).item() == 7.0 * 300000);
    CHECK(sum(f64(out)).item() == 7.0 * 128);
    CHECK(sum(f64(wide)).item() == 7.0 * 512);
  }
}

TEST_CASE("isa: SCION_MAX_ISA names a level, and a cap in the environment took effect", "[isa]") {
  CHECK(cpu::parse_isa("AVX2", "x") == Isa::avx2);
  CHECK(cpu::parse_isa("plain", "x") == Isa::plain);
  CHECK(cpu::parse_isa("amx", "x") == Isa::amx);
  CHECK_THROWS_WITH(cpu::parse_isa("sse9", "SCION_MAX_ISA"),
                    Catch::Contains("SCION_MAX_ISA: unknown ISA 'sse9'") &&
                        Catch::Contains("plain, avx2, avx512, avx512_bf16, amx"));
  CHECK(cpu::active_isa() == std::min(cpu::cpu_isa(), cpu::isa_cap()));
  // A CPU whose OS saves the tile state (cpu_isa's amx) should grant it to the process on request
  // (Linux 5.16 and later); a sandbox that refuses arch_prctl leaves the attention on vdpbf16ps.
  if (cpu::cpu_isa() == Isa::amx && !cpu::amx_tiles_permitted())
    WARN("AMX present but this process was refused the tile state: attention on vdpbf16ps");
  const char* cap = std::getenv("SCION_MAX_ISA");
  if (cap && *cap) {
    Isa want = std::min(cpu::cpu_isa(), cpu::parse_isa(cap, "SCION_MAX_ISA"));
    CHECK(cpu::active_isa() == want);
    const char* own = std::getenv("ONEDNN_MAX_CPU_ISA");
    INFO("oneDNN runs " << cpu::onednn_isa_name());
    if (want == Isa::avx2 && (!own || std::string(own) == "AVX2"))
      CHECK(cpu::onednn_isa_name() == "avx2");
    if (want == Isa::plain && (!own || std::string(own) == "SSE41"))
      CHECK(cpu::onednn_isa_name() == "sse41");
    if (want < Isa::avx512) {
      CHECK_FALSE(cpu::onednn_has_bf16());
      CHECK_FALSE(cpu::native_bf16());
      CHECK_FALSE(cpu::attention_bf16_kernel_available());
    }
    if (want < Isa::amx) CHECK_FALSE(cpu::attention_amx_kernel_available());
  }
}

TEST_CASE("isa: the CPU model names the core, family and model (VMs hide the brand's rest)",
          "[isa]") {
  // The development machines: an AMD EPYC VM on Zen 3 and on Zen 4, an Intel Xeon VM on Emerald
  // Rapids; the display family and model are as Linux's /proc/cpuinfo prints them.
  CHECK(cpu::x86_core_name("AuthenticAMD", 25, 1) == "Zen 3");     // Milan
  CHECK(cpu::x86_core_name("AuthenticAMD", 25, 0x11) == "Zen 4");  // Genoa
  CHECK(cpu::x86_core_name("AuthenticAMD", 25, 0x21) == "Zen 3");  // Vermeer (Ryzen 5000)
  CHECK(cpu::x86_core_name("AuthenticAMD", 25, 0x61) == "Zen 4");  // Raphael (Ryzen 7000)
  CHECK(cpu::x86_core_name("AuthenticAMD", 23, 0x31) == "Zen 2");  // Rome
  CHECK(cpu::x86_core_name("AuthenticAMD", 26, 0x02) == "Zen 5");
  CHECK(cpu::x86_core_name("GenuineIntel", 6, 207) == "Emerald Rapids");
  CHECK(cpu::x86_core_name("GenuineIntel", 6, 143) == "Sapphire Rapids");
  CHECK(cpu::x86_core_name("GenuineIntel", 6, 0x9a) == "Alder Lake");
  CHECK(cpu::x86_core_name("GenuineIntel", 25, 1).empty());  // the family belongs to the vendor
  CHECK(cpu::x86_core_name("AuthenticAMD", 6, 207).empty());
  CHECK(cpu::x86_core_name("GenuineIntel", 6, 0x01).empty());
  const std::string model = cpu::cpu_model();
  INFO(model);
  CHECK(!model.empty());
#if defined(__x86_64__)
  CHECK(model.find(" model ") != std::string::npos);  // "... family F model M)"
  CHECK(model.back() == ')');
#endif
}

TEST_CASE("isa: bf16 outpaces f32 with AMX or on AMD cores, not on Intel's vdpbf16ps alone",
          "[isa]") {
  CHECK_FALSE(cpu::bf16_outpaces_f32(false, false, "AuthenticAMD"));  // not native: never
  CHECK_FALSE(cpu::bf16_outpaces_f32(false, true, "GenuineIntel"));
  CHECK(cpu::bf16_outpaces_f32(true, false, "AuthenticAMD"));  // Zen 4
  CHECK(cpu::bf16_outpaces_f32(true, false, "HygonGenuine"));
  CHECK(cpu::bf16_outpaces_f32(true, true, "GenuineIntel"));         // Sapphire Rapids, AMX on
  CHECK_FALSE(cpu::bf16_outpaces_f32(true, false, "GenuineIntel"));  // Cooper Lake, AMX hidden
  CHECK_FALSE(cpu::bf16_outpaces_f32(true, false, ""));
  // This machine: the rule on its own facts, and never without native bf16 (so never under an
  // AVX2 or plain cap).
  const std::string vendor = cpu::cpu_vendor();
  INFO("vendor " << vendor << ", oneDNN " << cpu::onednn_isa_name());
#if defined(__x86_64__)
  CHECK((vendor == "GenuineIntel" || vendor == "AuthenticAMD" || vendor == "HygonGenuine"));
#endif
  CHECK(cpu::bf16_outpaces_f32() ==
        cpu::bf16_outpaces_f32(cpu::native_bf16(),
                               cpu::onednn_isa_name().find("amx") != std::string::npos, vendor));
  if (!cpu::native_bf16()) CHECK_FALSE(cpu::bf16_outpaces_f32());
}

TEST_CASE("isa: a cap changes the kernels unless the CPU is at or below it, oneDNN's levels too",
          "[isa]") {
  using cpu::Isa;
  const auto changes = [](Isa cpu_level, Isa cap, bool avx, bool avx512f, bool avx_vnni) {
    return cpu::isa_cap_changes_kernels(cpu_level, cap, avx, avx512f, avx_vnni);
  };
  CHECK_FALSE(changes(Isa::avx512, Isa::amx, true, true, false));  // no cap
  CHECK_FALSE(changes(Isa::avx2, Isa::avx2, true, false, false));  // Zen 3, Haswell: a rerun
  CHECK(changes(Isa::avx2, Isa::avx2, true, false, true));         // Alder Lake: oneDNN's avx2_vnni
  CHECK(changes(Isa::avx2, Isa::avx2, true, true, false));  // AVX-512F without BW/VL/DQ (KNL)
  CHECK(changes(Isa::avx512, Isa::avx2, true, true, false));
  CHECK(changes(Isa::amx, Isa::avx2, true, true, true));
  CHECK(changes(Isa::avx2, Isa::plain, true, false, false));
  CHECK(changes(Isa::plain, Isa::plain, true, false, false));  // Sandy Bridge: oneDNN's avx
  CHECK_FALSE(changes(Isa::plain, Isa::plain, false, false, false));
  CHECK(changes(Isa::avx512, Isa::avx512, true, true, false));  // oneDNN's levels between ours
  // This machine: where the cap changes nothing, scion's kernels run at the CPU's own level.
  INFO("CPU " << cpu::isa_name(cpu::cpu_isa()) << ", cap " << cpu::isa_name(cpu::isa_cap()));
  if (!cpu::isa_cap_changes_kernels()) CHECK(cpu::active_isa() == cpu::cpu_isa());
  if (cpu::isa_cap() == Isa::amx) CHECK_FALSE(cpu::isa_cap_changes_kernels());
  if (cpu::active_isa() < cpu::cpu_isa()) CHECK(cpu::isa_cap_changes_kernels());
}

TEST_CASE(
    "isa: oneDNN without bf16 is routed around, and asked directly it names op, dtype and ISA",
    "[isa]") {
  Tensor a = test::rand_f64({4, 6}, 21).to(DType::bf16),
         b = test::rand_f64({6, 5}, 22).to(DType::bf16);
  // The op always works: native bf16 primitives, or f32 ones on widened copies.
  Tensor ref = matmul(a.to(DType::f64), b.to(DType::f64));
  CHECK_CLOSE(f64(matmul(a, b)), ref, 1e-6, 1.0 / 128);
  Tensor out = empty({4, 5}, DType::bf16);
  if (cpu::onednn_has_bf16()) {
    cpu::matmul(a, b, Tensor(), out);
    CHECK_CLOSE(f64(out), ref, 1e-6, 1.0 / 128);
  } else {  // the wrapper itself, below the backend's routing: an error, not a oneDNN status
    CHECK_THROWS_WITH(
        cpu::matmul(a, b, Tensor(), out),
        Catch::Contains("matmul: no oneDNN kernel for bf16(4, 6)") &&
            Catch::Contains("oneDNN ISA " + cpu::onednn_isa_name()) &&
            Catch::Contains("scion kernels " + std::string(cpu::isa_name(cpu::active_isa()))));
  }
}

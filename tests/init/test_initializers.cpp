// Classic initializers: timm's default (trunc_normal) per parameter kind, and Xavier/Kaiming
// statistics against torch.nn.init's formulas; checkpoint initialization excludes a mismatched
// head.
#include <cmath>

#include "core/safetensors.h"
#include "init/initializers.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::init;

namespace {

double stddev(const Tensor& t) {
  return std::sqrt(var(t.to(DType::f64)).item());
}

nn::ModelPtr vit() {
  nn::ModelConfig c;
  c.name = "vit_tiny";
  c.depth = 2;
  c.layer_scale = 1e-5;
  return nn::create_model(c);
}

}  // namespace

TEST_CASE("trunc_normal reproduces timm's default initialization", "[init]") {
  nn::ModelPtr m = vit();
  Generator g(0);
  trunc_normal_init(*m, g);
  CHECK(stddev(m->find("blocks.0.attn.qkv.weight")) == Approx(0.02).epsilon(0.02));
  CHECK(stddev(m->find("pos_embed")) == Approx(0.02).epsilon(0.05));
  CHECK(stddev(m->find("cls_token")) < 1e-5);
  CHECK(sum(m->find("blocks.0.attn.qkv.bias")).item() == 0.0);
  CHECK(mean(m->find("blocks.1.norm2.weight")).item() == 1.0);
  CHECK(m->find("blocks.1.ls2.gamma").to_vector()[0] == Approx(1e-5));
  // Patch embedding: PyTorch's Conv2d default, U(+-1/sqrt(fan_in)) with fan_in = 3 * 16 * 16.
  double bound = 1.0 / std::sqrt(768.0);
  CHECK(stddev(m->find("patch_embed.proj.weight")) == Approx(bound / std::sqrt(3.0)).epsilon(0.03));
  nn::ModelConfig c;
  c.name = "convnext_femto";
  nn::ModelPtr cn = nn::create_model(c);
  trunc_normal_init(*cn, g);
  CHECK(stddev(cn->find("stages.1.blocks.0.conv_dw.weight")) == Approx(0.02).epsilon(0.05));
  CHECK(cn->find("stages.1.blocks.0.gamma").to_vector()[0] == Approx(1e-6));
  CHECK(mean(cn->find("stem.1.weight")).item() == 1.0);
}

TEST_CASE("Xavier and Kaiming follow torch.nn.init's formulas", "[init]") {
  Generator g(1);
  for (std::string type :
       {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"}) {
    INFO(type);
    nn::ModelPtr m = vit();
    InitConfig ic;
    ic.type = type;
    initialize(*m, ic, g, "test");
    Tensor w = m->find("blocks.0.mlp.fc1.weight");  // (768, 192): fan_in 192, fan_out 768
    double expected = type.rfind("xavier", 0) == 0 ? std::sqrt(2.0 / (192 + 768))
                                                   : std::sqrt(2.0) / std::sqrt(192.0);
    CHECK(stddev(w) == Approx(expected).epsilon(0.02));
    CHECK(mean(m->find("norm.weight")).item() == 1.0);
  }
  nn::ModelPtr m = vit();
  InitConfig fan_out;
  fan_out.type = "kaiming_normal";
  fan_out.mode = "fan_out";
  fan_out.gain = 1.0;
  initialize(*m, fan_out, g, "test");
  CHECK(stddev(m->find("blocks.0.mlp.fc1.weight")) == Approx(1.0 / std::sqrt(768.0)).epsilon(0.02));
  InitConfig bad;
  bad.type = "orthogonal";
  CHECK_THROWS_WITH(initialize(*m, bad, g, "cfg.yaml"),
                    Catch::Contains("cfg.yaml") && Catch::Contains("orthogonal"));
}

TEST_CASE("checkpoint initialization loads by key and skips a head of another class count",
          "[init]") {
  nn::ModelPtr src = vit();
  Generator g(2);
  trunc_normal_init(*src, g);
  src->save(test::tmp() + "/scion_ckpt_init.safetensors");
  nn::ModelConfig c;
  c.name = "vit_tiny";
  c.depth = 2;
  c.layer_scale = 1e-5;
  c.num_classes = 7;
  nn::ModelPtr dst = nn::create_model(c);
  InitConfig ic;
  ic.type = "checkpoint";
  ic.checkpoint = test::tmp() + "/scion_ckpt_init.safetensors";
  initialize(*dst, ic, g, "test");
  CHECK(dst->find("blocks.1.attn.proj.weight").to_vector() ==
        src->find("blocks.1.attn.proj.weight").to_vector());
  CHECK(dst->find("head.weight").shape() == Shape{7, 192});
}

TEST_CASE("svd_square: singular values equal LAPACK's (torch.linalg.svdvals), factors orthogonal",
          "[init]") {
  SafetensorsFile f = SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/svd.safetensors");
  const std::vector<double> a = f.get("a").to_vector(), want = f.get("s").to_vector();
  const int64_t n = 48;
  std::vector<double> u, s, v;
  svd_square(a, n, u, s, v);
  for (int64_t k = 0; k < n; ++k) CHECK(s[size_t(k)] == Approx(want[size_t(k)]).margin(1e-10));
  double worst_rebuild = 0, worst_orth = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double r = 0, uu = 0, vv = 0;
      for (int64_t k = 0; k < n; ++k) {
        r += u[size_t(i * n + k)] * s[size_t(k)] * v[size_t(j * n + k)];
        uu += u[size_t(k * n + i)] * u[size_t(k * n + j)];
        vv += v[size_t(k * n + i)] * v[size_t(k * n + j)];
      }
      worst_rebuild = std::max(worst_rebuild, std::fabs(r - a[size_t(i * n + j)]));
      worst_orth = std::max({worst_orth, std::fabs(uu - (i == j)), std::fabs(vv - (i == j))});
    }
  CHECK(worst_rebuild < 1e-10);
  CHECK(worst_orth < 1e-10);
}

TEST_CASE(
    "mimetic init: per head W_q^T W_k of rank k with a positive diagonal, W_v^T W_proj^T = "
    "alpha2 Z - beta2 I",
    "[init]") {
  nn::ModelConfig c;
  c.name = "vit_tiny";
  c.embed_dim = 64;
  c.num_heads = 4;
  c.depth = 2;
  c.img_size = 32;
  c.patch_size = 8;
  c.num_classes = 10;
  nn::ModelPtr m = nn::create_model(c);
  Generator g(3, 0x494E4954);
  InitConfig ic;
  ic.type = "mimetic";
  initialize(*m, ic, g, "test");
  const int64_t d = 64, k = 16;
  for (int64_t b = 0; b < 2; ++b) {
    const std::string p = "blocks." + std::to_string(b) + ".attn.";
    const std::vector<double> w = m->find(p + "qkv.weight").to_vector(),
                              pr = m->find(p + "proj.weight").to_vector();
    // Value path: M2 = W_v^T W_proj^T (x W_v^T W_proj^T in timm's Linear convention).
    double trace = 0, off = 0;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) {
        double mij = 0;
        for (int64_t r = 0; r < d; ++r)
          mij += w[size_t((2 * d + r) * d + i)] * pr[size_t(j * d + r)];
        if (i == j)
          trace += mij;
        else
          off += mij * mij;
      }
    CHECK(trace / double(d) == Approx(-0.4).margin(0.02));  // -beta2 + alpha2 mean(diag Z)
    CHECK(std::sqrt(off / double(d * (d - 1))) ==
          Approx(0.4 / 8.0).epsilon(0.1));  // alpha2/sqrt(d)
    // Query-key path per head: rank k (the truncation) and a positive diagonal.
    for (int64_t h = 0; h < 4; ++h) {
      std::vector<double> qk(size_t(d * d));
      double qtrace = 0;
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) {
          double mij = 0;
          for (int64_t r = 0; r < k; ++r)
            mij += w[size_t((h * k + r) * d + i)] * w[size_t((d + h * k + r) * d + j)];
          qk[size_t(i * d + j)] = mij;
          if (i == j) qtrace += mij;
        }
      std::vector<double> u, s, v;
      svd_square(qk, d, u, s, v);
      CHECK(s[size_t(k)] < 1e-6 * s[0]);
      CHECK(s[size_t(k - 1)] > 0.1 * s[0]);
      // trace / k of the rank-16 truncation of 0.7 Z + 0.7 I at d = 64: 1.23..1.31 over 50 torch
      // draws (mean 1.26); a trunc-normal pair gives about 0.
      CHECK(qtrace / double(k) > 1.15);
      CHECK(qtrace / double(k) < 1.40);
    }
    for (const char* bias : {"qkv.bias", "proj.bias"})
      for (double x : m->find(p + bias).to_vector()) CHECK(x == 0.0);
  }
  c.name = "convnext_atto";
  nn::ModelPtr cnx = nn::create_model(c);
  CHECK_THROWS_WITH(initialize(*cnx, ic, g, "c.yaml"), Catch::Contains("is not a ViT"));
}

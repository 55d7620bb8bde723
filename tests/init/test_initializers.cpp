// Classic initializers: timm's default (trunc_normal) per parameter kind, and Xavier/Kaiming
// statistics against torch.nn.init's formulas; checkpoint initialization excludes a mismatched
// head.
#include <cmath>

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

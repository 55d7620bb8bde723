// The module system and models: exact parameter counts (timm's, 1000 classes, 224 px), timm key
// names, strict loading errors that list every problem, train/eval propagation, Dropout/DropPath
// semantics, model options and their errors.
#include <regex>
#include <set>

#include "nn/convnext.h"
#include "nn/layers.h"
#include "nn/vit.h"
#include "tests/support.h"

using namespace scion;

namespace {
nn::ModelPtr make(const std::string& name,
                  std::vector<std::pair<std::string, std::string>> opts = {}) {
  nn::ModelConfig c;
  c.name = name;
  for (auto& [k, v] : opts) nn::set_model_option(c, k, v);
  return nn::create_model(c);
}
}  // namespace

TEST_CASE("parameter counts equal timm's at 1000 classes and 224 px", "[nn]") {
  // timm 1.0.31: vit_*_patch16_224; convnext_* with conv_mlp=False (the Linear-MLP form).
  std::vector<std::pair<std::string, int64_t>> expected = {
      {"vit_tiny", 5717416},        {"vit_small", 22050664},     {"vit_base", 86567656},
      {"convnext_atto", 3695520},   {"convnext_femto", 5217784}, {"convnext_pico", 9045672},
      {"convnext_nano", 15593560},  {"convnext_tiny", 28589128}, {"vit_large", 304326632},
      {"convnext_small", 50223688}, {"convnext_base", 88591464}};
  for (auto& [name, count] : expected) {
    INFO(name);
    CHECK(make(name)->num_parameters() == count);
  }
  CHECK(nn::model_names().size() == expected.size());
}

TEST_CASE("parameter names are timm's state_dict keys", "[nn]") {
  auto vit = make("vit_tiny");
  std::set<std::string> names;
  for (auto& [n, t] : vit->named_parameters()) names.insert(n);
  for (const char* k :
       {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.3.attn.qkv.weight",
        "blocks.3.mlp.fc2.bias", "blocks.11.norm2.weight", "norm.weight", "head.weight"})
    CHECK(names.count(k));
  CHECK(vit->find("pos_embed").shape() == Shape{1, 197, 192});
  auto vls = make("vit_tiny", {{"layer_scale", "1e-5"}});
  CHECK(vls->find("blocks.0.ls1.gamma").shape() == Shape{192});
  auto cnx = make("convnext_tiny");
  for (const char* k : {"stem.0.weight", "stem.1.bias", "stages.1.downsample.1.weight",
                        "stages.2.blocks.5.conv_dw.weight", "stages.2.blocks.5.gamma",
                        "head.norm.weight", "head.fc.weight"})
    CHECK_NOTHROW(cnx->find(k));
  CHECK(cnx->find("stages.2.blocks.5.conv_dw.weight").shape() == Shape{384, 1, 7, 7});
  CHECK(cnx->find("stages.0.blocks.0.mlp.fc1.weight").shape() == Shape{384, 96});
  CHECK_THROWS_WITH(cnx->find("stages.9.x"), Catch::Contains("stages.9.x"));
  auto no_ls = make("convnext_femto", {{"layer_scale", "0"}});
  CHECK_THROWS(no_ls->find("stages.0.blocks.0.gamma"));
}

TEST_CASE("architecture overrides and options", "[nn]") {
  auto v = make("vit_tiny", {{"img_size", "32"},
                             {"patch_size", "4"},
                             {"num_classes", "10"},
                             {"depth", "3"},
                             {"embed_dim", "96"},
                             {"num_heads", "4"},
                             {"mlp_ratio", "2"}});
  CHECK(v->find("pos_embed").shape() == Shape{1, 65, 96});
  CHECK(v->find("blocks.2.mlp.fc1.weight").shape() == Shape{192, 96});
  CHECK_THROWS(v->find("blocks.3.norm1.weight"));
  CHECK(v->forward(zeros({2, 3, 32, 32})).shape() == Shape{2, 10});
  auto c = make("convnext_femto",
                {{"dims", "[8, 16, 32, 64]"}, {"depths", "[1,1,1,1]"}, {"num_classes", "5"}});
  CHECK(c->find("head.fc.weight").shape() == Shape{5, 64});
  CHECK(c->forward(zeros({1, 3, 32, 32})).shape() == Shape{1, 5});
  nn::ModelConfig cfg;
  CHECK_THROWS_WITH(nn::set_model_option(cfg, "colour", "red"), Catch::Contains("model.colour"));
  CHECK_THROWS_WITH(nn::set_model_option(cfg, "img_size", "big"),
                    Catch::Contains("model.img_size"));
  cfg.name = "resnet50";
  CHECK_THROWS_WITH(nn::create_model(cfg), Catch::Contains("unknown model 'resnet50'"));
  CHECK_THROWS_WITH(make("vit_tiny", {{"img_size", "30"}, {"patch_size", "4"}}),
                    Catch::Contains("not a multiple"));
  CHECK_THROWS_WITH(make("vit_tiny", {{"num_heads", "5"}}), Catch::Contains("divisible"));
}

TEST_CASE("load_state_dict reports every problem in one error", "[nn]") {
  auto m = make("convnext_femto", {{"dims", "[8,16,32,64]"}, {"depths", "[1,1,1,1]"}});
  NamedTensors sd = m->state_dict();
  sd.erase(sd.begin());                         // missing stem.0.weight
  sd.emplace_back("extra.weight", zeros({3}));  // unexpected
  for (auto& [n, t] : sd)
    if (n == "head.fc.bias") t = zeros({7});  // shape mismatch
  try {
    m->load_state_dict(sd, true, "weights.safetensors");
    FAIL("no error");
  } catch (const InputError& e) {
    std::string msg = e.what();
    CHECK(msg.find("weights.safetensors") != std::string::npos);
    CHECK(msg.find("missing keys (1)") != std::string::npos);
    CHECK(msg.find("stem.0.weight") != std::string::npos);
    CHECK(msg.find("unexpected keys (1)") != std::string::npos);
    CHECK(msg.find("extra.weight") != std::string::npos);
    CHECK(msg.find("head.fc.bias: expected (1000,), got (7,)") != std::string::npos);
  }
  // Non-strict: missing/unexpected skipped, shapes still checked; loaded values land in place.
  NamedTensors partial{{"head.fc.bias", full({1000}, 2.0)}, {"other", zeros({1})}};
  Tensor bias = m->find("head.fc.bias");
  m->load_state_dict(partial, false);
  CHECK(bias.to_vector()[5] == 2.0);
}

TEST_CASE("train/eval propagates, Dropout and DropPath are identity in eval", "[nn]") {
  auto m = make("vit_tiny",
                {{"img_size", "32"}, {"patch_size", "4"}, {"drop_path", "0.5"}, {"depth", "2"}});
  auto vit = std::dynamic_pointer_cast<nn::VisionTransformer>(m);
  REQUIRE(vit);
  auto block = std::dynamic_pointer_cast<nn::VitBlock>((*vit->blocks)[1]);
  CHECK(block->drop_path1->p == Approx(0.5));  // linear rule: last block gets drop_path
  CHECK(std::dynamic_pointer_cast<nn::VitBlock>((*vit->blocks)[0])->drop_path1->p == 0.0);
  m->eval();
  CHECK_FALSE(block->drop_path1->is_training());
  Tensor x = randn({4, 5});
  CHECK(block->drop_path1->forward(x).storage() == x.storage());
  nn::Dropout d(0.3);
  d.eval();
  CHECK(d.forward(x).storage() == x.storage());
  m->train();
  CHECK(block->drop_path1->is_training());
}

TEST_CASE("DropPath drops whole samples and keeps the expectation", "[nn]") {
  nn::DropPath dp(0.25);
  dp.train();
  Tensor x = ones({20000, 3, 2});
  std::vector<double> v = dp.forward(x).to_vector();
  int64_t dropped = 0;
  for (int64_t s = 0; s < 20000; ++s) {
    double first = v[size_t(s * 6)];
    for (int64_t k = 1; k < 6; ++k)
      CHECK(v[size_t(s * 6 + k)] == first);  // one decision per sample
    if (first == 0.0)
      ++dropped;
    else
      CHECK(first == Approx(1.0 / 0.75));
  }
  CHECK(std::fabs(double(dropped) / 20000.0 - 0.25) < 0.015);
}

TEST_CASE("size-like model options are bounded with input errors naming the key", "[nn]") {
  CHECK_THROWS_AS(make("convnext_femto", {{"depths", "[1000000, 1, 1, 1]"}}), InputError);
  CHECK_THROWS_WITH(make("convnext_femto", {{"depths", "[1000000, 1, 1, 1]"}}),
                    Catch::Contains("model.depths"));
  CHECK_THROWS_WITH(make("convnext_femto", {{"dims", "[48, 96]"}}), Catch::Contains("4 entries"));
  for (const char* img : {"1", "8", "30"})
    CHECK_THROWS_WITH(make("convnext_femto", {{"img_size", img}}),
                      Catch::Contains("model.img_size"));
  CHECK_NOTHROW(make("convnext_atto", {{"img_size", "32"}, {"num_classes", "10"}}));
  CHECK_THROWS_WITH(make("vit_tiny", {{"depth", "100000"}}), Catch::Contains("model.depth"));
  CHECK_THROWS_WITH(make("vit_tiny", {{"embed_dim", "1000000"}}),
                    Catch::Contains("model.embed_dim"));
}

// The tensors a model's forward casts at once under autocast (AutocastCache) are exactly those
// its linear and non-depthwise convolution layers cast: not the norms, positions, class token,
// layer scales or depthwise filters, which run in f32.
TEST_CASE("autocast_parameters: the linear and convolution weights and biases by timm name",
          "[nn]") {
  const std::vector<std::pair<std::string, std::string>> models{
      {"vit_tiny",
       R"(.*(patch_embed\.proj|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|^head)\.(weight|bias))"},
      {"convnext_femto", R"(.*(stem\.0|downsample\.1|mlp\.fc1|mlp\.fc2|head\.fc)\.(weight|bias))"}};
  for (const auto& [name, pattern] : models) {
    INFO(name);
    nn::ModelPtr m = make(name);
    std::set<const TensorImpl*> selected;
    for (const Tensor& t : nn::autocast_parameters(*m)) selected.insert(t.impl());
    std::set<const TensorImpl*> expected;
    for (const auto& [key, t] : m->named_parameters())
      if (std::regex_match(key, std::regex(pattern))) expected.insert(t.impl());
    CHECK(selected == expected);
    CHECK(expected.size() == (name == "vit_tiny" ? 100 : 2 + 6 + 12 * 4 + 2));
  }
}

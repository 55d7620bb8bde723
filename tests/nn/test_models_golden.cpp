// Whole models against timm (fixtures from tests/golden/make_golden_models.py): vit_tiny,
// vit_small and vit_large (32 px, patch 4), convnext_femto, convnext_tiny, convnext_small and
// convnext_base (32 px), 10 classes; and timm's conv_mlp ConvNeXt checkpoint form. Weights are
// recreated from scion's RNG exactly as the generator filled the timm model (seed = FNV-1a of the
// parameter name, uniform range from the fixture), so the two models hold identical f32 weights.
// Checked: logits (max error <= 1e-5 of max |logit|), loss (1e-5 relative), and every parameter
// gradient at 1e-4: small ones element by element, large ones at 256 seeded positions plus sum,
// sum of squares and two random projections over all elements, scaled by the gradient's RMS/norm.
// bf16 autocast logits against timm under torch.autocast: within 2% of max |logit| (measured
// 0.4-0.9%: bf16 keeps 8 significant bits, and the two sides round at different points).
#include <nlohmann/json.hpp>
#include <set>

#include "nn/model.h"
#include "tests/support.h"

using namespace scion;

namespace {

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

std::string fixture(const std::string& stem) {
  return std::string(SCION_GOLDEN_DIR) + "/models/" + stem + ".safetensors";
}

nn::ModelPtr build(const std::string& stem, const SafetensorsFile& f) {
  nn::ModelConfig cfg;
  cfg.name = stem;
  auto kwargs = nlohmann::json::parse(f.metadata().at("timm_kwargs"));
  for (auto it = kwargs.begin(); it != kwargs.end(); ++it)
    if (it.key() != "conv_mlp") nn::set_model_option(cfg, it.key(), it.value().dump());
  if (!kwargs.contains("img_size")) cfg.img_size = 32;
  return nn::create_model(cfg);
}

void fill_like_fixture(nn::Module& model, const SafetensorsFile& f) {
  auto spec = nlohmann::json::parse(f.metadata().at("init"));
  std::set<std::string> ours, theirs;
  for (auto it = spec.begin(); it != spec.end(); ++it) theirs.insert(it.key());
  NoGradGuard ng;
  for (auto& [name, p] : model.named_parameters()) {
    ours.insert(name);
    REQUIRE(spec.contains(name));
    Generator g(fnv1a64(name));
    Tensor t = p;
    uniform_(t, spec[name][0].get<double>(), spec[name][1].get<double>(), g);
  }
  CHECK(ours == theirs);  // exactly timm's parameter names
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

void check_gradient(const std::string& name, const Tensor& grad, const SafetensorsFile& f) {
  INFO("gradient of " << name);
  REQUIRE(grad.defined());
  std::vector<double> g = grad.contiguous().to_vector();
  std::vector<double> stats = f.get("grad_stats." + name).to_vector();
  double n = double(g.size()), norm = std::sqrt(stats[1]), rms = norm / std::sqrt(n);
  constexpr double kTol = 1e-4;
  if (f.contains("grad_full." + name)) {
    std::vector<double> ref = f.get("grad_full." + name).to_vector();
    REQUIRE(ref.size() == g.size());
    for (size_t i = 0; i < g.size(); ++i)
      CHECK(std::fabs(g[i] - ref[i]) <= kTol * (std::fabs(ref[i]) + rms));
  } else {
    std::vector<double> idx = f.get("grad_idx." + name).to_vector();
    std::vector<double> val = f.get("grad_val." + name).to_vector();
    for (size_t k = 0; k < idx.size(); ++k) {
      double v = g[size_t(idx[k])];
      CHECK(std::fabs(v - val[k]) <= kTol * (std::fabs(val[k]) + rms));
    }
  }
  uint64_t seed = fnv1a64(name);
  Tensor r1 = empty({int64_t(g.size())}, DType::f64), r2 = empty({int64_t(g.size())}, DType::f64);
  Generator g1(seed + 1), g2(seed + 2);
  uniform_(r1, -1, 1, g1);
  uniform_(r2, -1, 1, g2);
  std::vector<double> v1 = r1.to_vector(), v2 = r2.to_vector();
  double s = 0, s2 = 0, p1 = 0, p2 = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    s += g[i];
    s2 += g[i] * g[i];
    p1 += g[i] * v1[i];
    p2 += g[i] * v2[i];
  }
  CHECK(std::fabs(s - stats[0]) <= kTol * (std::fabs(stats[0]) + norm));
  CHECK(std::fabs(s2 - stats[1]) <= 2 * kTol * stats[1] + 1e-30);
  CHECK(std::fabs(p1 - stats[2]) <= kTol * (std::fabs(stats[2]) + norm));
  CHECK(std::fabs(p2 - stats[3]) <= kTol * (std::fabs(stats[3]) + norm));
}

void check_model(const std::string& stem) {
  INFO("model " << stem);
  SafetensorsFile f = SafetensorsFile::open(fixture(stem));
  nn::ModelPtr model = build(stem, f);
  fill_like_fixture(*model, f);
  model->eval();
  Tensor x = f.get("input"), y = f.get("labels");
  Tensor logits = model->forward(x);
  Tensor ref = f.get("logits");
  double scale = max_abs(ref);
  CHECK_CLOSE(logits, ref, 1e-5 * scale, 0.0);
  Tensor loss = cross_entropy(logits, y);
  double ref_loss = f.get("loss").item();
  CHECK(std::fabs(loss.item() - ref_loss) <= 1e-5 * std::fabs(ref_loss));
  loss.backward();
  for (auto& [name, p] : model->named_parameters()) check_gradient(name, p.grad(), f);
  Tensor logits_bf16;
  {
    NoGradGuard ng;
    AutocastGuard ac;
    logits_bf16 = model->forward(x).to(DType::f32);
  }
  auto c =
      test::compare(logits_bf16, f.get("logits_bf16"), 0.02 * max_abs(f.get("logits_bf16")), 0.0);
  INFO("bf16 logits: max abs error " << c.max_abs_err << " vs max |logit| " << scale);
  CHECK(c.ok());
}

// The small convnext_atto of the round-trip fixtures (make_golden_models.py make_roundtrip).
nn::ModelConfig roundtrip_convnext_config() {
  nn::ModelConfig c;
  c.name = "convnext_atto";
  c.img_size = 32;
  c.num_classes = 10;
  c.depths = std::vector<int64_t>{1, 1, 2, 1};
  c.dims = std::vector<int64_t>{16, 32, 64, 128};
  return c;
}

}  // namespace

TEST_CASE("vit_tiny matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("vit_tiny");
}
TEST_CASE("vit_small matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("vit_small");
}
TEST_CASE("convnext_femto matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("convnext_femto");
}
TEST_CASE("convnext_tiny matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("convnext_tiny");
}

TEST_CASE("vit_large matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("vit_large");
}
TEST_CASE("convnext_small matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("convnext_small");
}
TEST_CASE("convnext_base matches timm: logits, loss, every gradient, bf16 logits",
          "[nn][golden][models]") {
  check_model("convnext_base");
}

TEST_CASE("timm conv_mlp ConvNeXt weights ((4C, C, 1, 1) fc) load into either form, saved as used",
          "[nn][golden]") {
  const std::string path = fixture("roundtrip_convnext_convmlp");
  SafetensorsFile timm_file = SafetensorsFile::open(path);
  REQUIRE(timm_file.shape("stages.0.blocks.0.mlp.fc1.weight") == Shape{64, 16, 1, 1});
  SafetensorsFile io = SafetensorsFile::open(fixture("roundtrip_convnext_convmlp_io"));
  Tensor ref = io.get("logits");
  std::string dir = test::temp_dir();
  for (bool conv_mlp : {false, true}) {
    INFO("conv_mlp " << conv_mlp);
    nn::ModelConfig c = roundtrip_convnext_config();
    c.conv_mlp = conv_mlp;
    nn::ModelPtr model = nn::create_model(c);
    model->load(path, /*strict=*/true);
    model->eval();
    CHECK_CLOSE(model->forward(io.get("input")), ref, 1e-5 * max_abs(ref), 0.0);
    std::string out = dir + "/convnext_" + std::to_string(conv_mlp) + ".safetensors";
    model->save(out);
    SafetensorsFile ours = SafetensorsFile::open(out);
    Shape fc1 = conv_mlp ? Shape{64, 16, 1, 1} : Shape{64, 16};
    CHECK(ours.shape("stages.0.blocks.0.mlp.fc1.weight") == fc1);
    for (const auto& name : timm_file.names())
      CHECK(ours.get(name).to_vector() == timm_file.get(name).to_vector());
    nn::ModelPtr back = nn::create_model(c);  // the saved form loads back into either form
    c.conv_mlp = !conv_mlp;
    nn::create_model(c)->load(out, /*strict=*/true);
    back->load(out, /*strict=*/true);
  }
}

TEST_CASE("timm-saved weights load strictly, scion saves exactly timm's keys and shapes",
          "[nn][golden]") {
  struct Case {
    const char* stem;
    nn::ModelConfig cfg;
  };
  nn::ModelConfig vit;
  vit.name = "vit_tiny";
  vit.img_size = 32;
  vit.patch_size = 4;
  vit.num_classes = 10;
  vit.depth = 2;
  vit.embed_dim = 64;
  vit.num_heads = 2;
  nn::ModelConfig cnx = roundtrip_convnext_config();
  for (const Case& c : {Case{"roundtrip_vit", vit}, Case{"roundtrip_convnext", cnx}}) {
    INFO(c.stem);
    std::string path = fixture(c.stem);
    nn::ModelPtr model = nn::create_model(c.cfg);
    model->load(path, /*strict=*/true);
    model->eval();
    SafetensorsFile io = SafetensorsFile::open(fixture(std::string(c.stem) + "_io"));
    Tensor ref = io.get("logits");
    CHECK_CLOSE(model->forward(io.get("input")), ref, 1e-5 * max_abs(ref), 0.0);
    std::string out = test::tmp() + "/scion_roundtrip_" + std::string(c.stem) + ".safetensors";
    model->save(out);
    SafetensorsFile timm_file = SafetensorsFile::open(path), ours = SafetensorsFile::open(out);
    std::set<std::string> a(timm_file.names().begin(), timm_file.names().end());
    std::set<std::string> b(ours.names().begin(), ours.names().end());
    CHECK(a == b);
    for (const auto& name : a) {
      CHECK(ours.shape(name) == timm_file.shape(name));
      CHECK(ours.get(name).to_vector() == timm_file.get(name).to_vector());
    }
  }
}

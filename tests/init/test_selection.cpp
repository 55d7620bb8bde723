// Weight selection: element indices identical to the official code (fixtures from
// tests/golden/make_golden_init.py), consistency of random selection and its absence for
// random-inconsistent, layer maps, qkv block alignment, head handling, ConvNeXt per-stage mapping,
// errors for mismatched families and too-small teachers, and `scion select` output that loads
// strictly into the student.
#include <cstdlib>

#include "init/initializers.h"
#include "init/weight_selection.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::init;

namespace {

nn::ModelPtr model(const std::string& name,
                   std::vector<std::pair<std::string, std::string>> opts = {}) {
  nn::ModelConfig c;
  c.name = name;
  for (auto& [k, v] : opts) nn::set_model_option(c, k, v);
  return nn::create_model(c);
}

NamedTensors random_weights(nn::Model& m, uint64_t seed) {
  Generator g(seed);
  NamedTensors out;
  for (auto& [n, p] : m.named_parameters()) {
    Tensor t = empty(p.shape());
    normal_(t, 0.0, 1.0, g);
    out.emplace_back(n, t);
  }
  return out;
}

Tensor get(const NamedTensors& ts, const std::string& n) {
  for (auto& [k, t] : ts)
    if (k == n) return t;
  FAIL("no tensor " << n);
  return Tensor();
}

}  // namespace

TEST_CASE("uniform element indices equal the official formula", "[init]") {
  SafetensorsFile f = SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/init.safetensors");
  Generator g(0);
  for (const std::string& key : f.names()) {
    int64_t t = std::stoll(key.substr(8, key.find('.', 8) - 8)),
            s = std::stoll(key.substr(key.rfind('.') + 1));
    INFO(t << " -> " << s);
    std::vector<int64_t> idx = element_indices("uniform", t, s, g);
    std::vector<double> got(idx.begin(), idx.end());
    CHECK(got == f.get(key).to_vector());
  }
  CHECK(element_indices("uniform", 384, 192, g)[1] == 2);
  CHECK(element_indices("consecutive", 10, 4, g) == std::vector<int64_t>{0, 1, 2, 3});
}

TEST_CASE("random selection is consistent per size pair; random-inconsistent is not", "[init]") {
  Generator g(5);
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> cache;
  auto a = element_indices("random", 384, 192, g, &cache),
       b = element_indices("random", 384, 192, g, &cache);
  CHECK(a == b);
  CHECK(std::is_sorted(a.begin(), a.end()));
  CHECK(std::adjacent_find(a.begin(), a.end()) == a.end());
  auto c = element_indices("random", 1536, 768, g, &cache);
  CHECK(c.size() == 768);
  auto d = element_indices("random-inconsistent", 384, 192, g, &cache),
       e = element_indices("random-inconsistent", 384, 192, g, &cache);
  CHECK(d != e);
  CHECK(d.size() == 192);
  CHECK_THROWS_WITH(element_indices("median", 4, 2, g), Catch::Contains("init.elements"));
}

TEST_CASE("layer maps: first, uniform, last", "[init]") {
  std::vector<int64_t> first, uniform, last;
  for (int64_t i = 0; i < 6; ++i) {
    first.push_back(teacher_layer("first", i, 6, 12));
    uniform.push_back(teacher_layer("uniform", i, 6, 12));
    last.push_back(teacher_layer("last", i, 6, 12));
  }
  CHECK(first == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(uniform == std::vector<int64_t>{0, 2, 4, 7, 9, 11});  // round(i * 11 / 5)
  CHECK(last == std::vector<int64_t>{6, 7, 8, 9, 10, 11});
  CHECK_THROWS_WITH(teacher_layer("first", 0, 13, 12), Catch::Contains("13 layers"));
}

TEST_CASE("vit_small -> vit_tiny: selected values, qkv blocks aligned, head kept", "[init]") {
  nn::ModelPtr teacher = model("vit_small", {{"num_classes", "10"}});
  NamedTensors tw = random_weights(*teacher, 1);
  nn::ModelPtr student = model("vit_tiny", {{"num_classes", "100"}, {"depth", "6"}});
  Generator g(2);
  trunc_normal_init(*student, g);
  Tensor head_before = student->find("head.weight").clone();
  SelectionOptions o;
  o.layers = "uniform";
  auto selected = select_weights(*student, tw, o, "teacher");
  CHECK(std::find(selected.begin(), selected.end(), "head.weight") == selected.end());
  CHECK(student->find("head.weight").to_vector() ==
        head_before.to_vector());  // class counts differ
  // blocks.1 takes teacher block round(1 * 11 / 5) = 2; fc1 (768, 192) from (1536, 384): even
  // indices.
  Tensor sf = student->find("blocks.1.mlp.fc1.weight"), tf = get(tw, "blocks.2.mlp.fc1.weight");
  CHECK(sf.to_vector()[size_t(5 * 192 + 7)] == tf.to_vector()[size_t(10 * 384 + 14)]);
  // qkv (576, 192) from (1152, 384): row r of the k block (192 + r) is teacher row 384 + 2r.
  Tensor sq = student->find("blocks.0.attn.qkv.weight"), tq = get(tw, "blocks.0.attn.qkv.weight");
  for (int64_t r : {0, 3, 191}) {
    CHECK(sq.to_vector()[size_t((192 + r) * 192 + 1)] ==
          tq.to_vector()[size_t((384 + 2 * r) * 384 + 2)]);
    CHECK(sq.to_vector()[size_t((384 + r) * 192)] == tq.to_vector()[size_t((768 + 2 * r) * 384)]);
  }
  CHECK(student->find("pos_embed").to_vector()[1] == get(tw, "pos_embed").to_vector()[2]);
  // With --head and equal class counts the head is selected too.
  nn::ModelPtr s10 = model("vit_tiny", {{"num_classes", "10"}});
  o.head = true;
  auto with_head = select_weights(*s10, tw, o, "teacher");
  CHECK(std::find(with_head.begin(), with_head.end(), "head.weight") != with_head.end());
  CHECK(s10->find("head.weight").to_vector()[1] == get(tw, "head.weight").to_vector()[2]);
}

TEST_CASE("convnext_tiny -> convnext_femto maps blocks per stage", "[init]") {
  nn::ModelPtr teacher = model("convnext_tiny");
  NamedTensors tw = random_weights(*teacher, 3);
  nn::ModelPtr student = model("convnext_femto");
  SelectionOptions o;
  o.layers = "last";
  select_weights(*student, tw, o, "teacher");
  // stage 2: 6 of 9 blocks, last -> student block 0 takes teacher block 3; dims 192 of 384: even.
  Tensor s = student->find("stages.2.blocks.0.conv_dw.weight"),
         t = get(tw, "stages.2.blocks.3.conv_dw.weight");
  CHECK(s.to_vector()[size_t(5 * 49 + 10)] == t.to_vector()[size_t(10 * 49 + 10)]);
  CHECK(student->find("stages.0.blocks.1.gamma").to_vector()[3] ==
        get(tw, "stages.0.blocks.2.gamma").to_vector()[6]);
}

TEST_CASE("weight selection errors: other family, smaller teacher", "[init]") {
  nn::ModelPtr vit = model("vit_tiny");
  NamedTensors vw = random_weights(*vit, 4);
  nn::ModelPtr cnx = model("convnext_femto");
  SelectionOptions o;
  CHECK_THROWS_WITH(select_weights(*cnx, vw, o, "t.safetensors"),
                    Catch::Contains("t.safetensors") && Catch::Contains("one family"));
  nn::ModelPtr bigger = model("vit_small");
  CHECK_THROWS_WITH(select_weights(*bigger, vw, o, "t.safetensors"),
                    Catch::Contains("teacher is smaller"));
  nn::ModelPtr deeper = model("vit_tiny", {{"depth", "13"}});
  CHECK_THROWS_WITH(select_weights(*deeper, vw, o, "t.safetensors"), Catch::Contains("12 blocks"));
}

TEST_CASE("scion select writes complete student weights that load strictly", "[init][programs]") {
  nn::ModelPtr teacher =
      model("vit_small",
            {{"img_size", "32"}, {"patch_size", "4"}, {"num_classes", "10"}, {"depth", "4"}});
  Generator g(9);
  trunc_normal_init(*teacher, g);
  std::string tpath = "/tmp/scion_teacher.safetensors", spath = "/tmp/scion_student.safetensors";
  teacher->save(tpath);
  std::string cmd = std::string(SCION_BINARY_DIR) + "/scion select --teacher " + tpath +
                    " --model vit_tiny --set model.img_size=32 --set model.patch_size=4 --set "
                    "model.num_classes=10"
                    " --set model.depth=2 --elements random --out " +
                    spath + " > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  nn::ModelPtr student = model(
      "vit_tiny", {{"img_size", "32"}, {"patch_size", "4"}, {"num_classes", "10"}, {"depth", "2"}});
  student->load(spath, /*strict=*/true);
  CHECK(student->find("norm.weight").numel() == 192);
  std::string bad = std::string(SCION_BINARY_DIR) + "/scion select --teacher " + tpath +
                    " --model convnext_femto --out /tmp/x.safetensors > /dev/null 2>&1";
  CHECK(WEXITSTATUS(std::system(bad.c_str())) == 2);
}

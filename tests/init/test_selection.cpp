// Weight selection: element indices identical to the official code (fixtures from
// tests/golden/make_golden_init.py), consistency of random selection and its absence for
// random-inconsistent, layer maps, qkv block alignment, head handling, ConvNeXt per-stage mapping,
// errors for mismatched families and too-small teachers, and `scion select` output that loads
// strictly into the student.
#include <cstdlib>
#include <fstream>
#include <set>

#include "core/autograd.h"
#include "core/safetensors.h"
#include "init/initializers.h"
#include "init/weight_selection.h"
#include "tests/process.h"
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

TEST_CASE("random selection is consistent per size pair, random-inconsistent is not", "[init]") {
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

TEST_CASE("layer maps: first, uniform, last, mid", "[init]") {
  std::vector<int64_t> first, uniform, last, mid, mid_odd;
  for (int64_t i = 0; i < 6; ++i) {
    first.push_back(teacher_layer("first", i, 6, 12));
    uniform.push_back(teacher_layer("uniform", i, 6, 12));
    last.push_back(teacher_layer("last", i, 6, 12));
    mid.push_back(teacher_layer("mid", i, 6, 12));
    mid_odd.push_back(teacher_layer("mid", i, 6, 11));
  }
  CHECK(first == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  CHECK(uniform == std::vector<int64_t>{0, 2, 4, 7, 9, 11});  // round(i * 11 / 5)
  CHECK(last == std::vector<int64_t>{6, 7, 8, 9, 10, 11});
  CHECK(mid == std::vector<int64_t>{3, 4, 5, 6, 7, 8});      // the middle 6 of 12
  CHECK(mid_odd == std::vector<int64_t>{2, 3, 4, 5, 6, 7});  // floor(5 / 2) = 2 blocks skipped
  CHECK(teacher_layer("mid", 0, 1, 12) == 5);
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
  std::string tpath = test::tmp() + "/scion_teacher.safetensors",
              spath = test::tmp() + "/scion_student.safetensors";
  teacher->save(tpath);
  std::string cmd = test::program_command("scion") + " select --teacher " + tpath +
                    " --model vit_tiny --set model.img_size=32 --set model.patch_size=4 --set "
                    "model.num_classes=10"
                    " --set model.depth=2 --elements random --out " +
                    spath + " > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  nn::ModelPtr student = model(
      "vit_tiny", {{"img_size", "32"}, {"patch_size", "4"}, {"num_classes", "10"}, {"depth", "2"}});
  student->load(spath, /*strict=*/true);
  CHECK(student->find("norm.weight").numel() == 192);
  std::string bad = test::program_command("scion") + " select --teacher " + tpath +
                    " --model convnext_femto --out " + test::tmp() +
                    "/x.safetensors > /dev/null 2>&1";
  CHECK(WEXITSTATUS(std::system(bad.c_str())) == 2);
}

namespace {

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// The ConvNeXt pair of tests/golden/make_golden_init.py: teacher depths (2, 2, 3, 2), dims
// (20, 40, 80, 160), every tensor uniform(-1, 1) from seed fnv1a64("teacher." + key); student
// depths (1, 1, 2, 1), dims (12, 24, 48, 96); 10 classes.
NamedTensors official_teacher() {
  nn::ModelPtr t =
      model("convnext_atto",
            {{"num_classes", "10"}, {"depths", "[2, 2, 3, 2]"}, {"dims", "[20, 40, 80, 160]"}});
  NamedTensors out;
  for (auto& [n, p] : t->named_parameters()) {
    Tensor v = empty(p.shape());
    Generator g(fnv1a64("teacher." + n));
    uniform_(v, -1.0, 1.0, g);
    out.emplace_back(n, v);
  }
  return out;
}

nn::ModelPtr official_student() {
  nn::ModelPtr s =
      model("convnext_atto",
            {{"num_classes", "10"}, {"depths", "[1, 1, 2, 1]"}, {"dims", "[12, 24, 48, 96]"}});
  Generator g(5);
  trunc_normal_init(*s, g);
  return s;
}

}  // namespace

TEST_CASE("ConvNeXt selection equals the official code: no 'head' key selected by default",
          "[init][golden]") {
  SafetensorsFile f =
      SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/init_convnext.safetensors");
  NamedTensors teacher = official_teacher();
  nn::ModelPtr student = official_student();
  NamedTensors before;
  for (auto& [n, p] : student->named_parameters()) before.emplace_back(n, p.clone());
  auto selected = select_weights(*student, teacher, SelectionOptions{}, "teacher");
  size_t official = 0;
  for (auto& [n, p] : student->named_parameters()) {
    INFO(n);
    if (f.contains("official." + n)) {
      ++official;
      CHECK(p.to_vector() == f.get("official." + n).to_vector());
    } else {  // head.norm.* and head.fc.*: the student's own initialization, untouched
      CHECK(n.find("head") != std::string::npos);
      CHECK(p.to_vector() == get(before, n).to_vector());
    }
  }
  CHECK(official == selected.size());
  CHECK(official + 4 == student->named_parameters().size());
  // head_norm (scion's earlier default) also selects head.norm by the same formula.
  nn::ModelPtr with_norm = official_student();
  SelectionOptions o;
  o.head_norm = true;
  select_weights(*with_norm, teacher, o, "teacher");
  for (const char* n : {"head.norm.weight", "head.norm.bias"})
    CHECK(with_norm->find(n).to_vector() == f.get(std::string("head_norm.") + n).to_vector());
  CHECK(with_norm->find("head.fc.weight").to_vector() == get(before, "head.fc.weight").to_vector());
}

TEST_CASE("a timm conv_mlp teacher (fc weights as 1x1 convs) selects like its Linear form",
          "[init]") {
  NamedTensors linear = official_teacher(), conv;
  for (auto& [n, t] : linear)
    conv.emplace_back(n, n.find(".mlp.fc") != std::string::npos && t.dim() == 2
                             ? t.reshape({t.size(0), t.size(1), 1, 1})
                             : t);
  nn::ModelPtr a = official_student(), b = official_student();
  select_weights(*a, linear, SelectionOptions{}, "linear");
  select_weights(*b, conv, SelectionOptions{}, "conv");
  for (auto& [n, p] : a->named_parameters()) CHECK(p.to_vector() == b->find(n).to_vector());
}

TEST_CASE("a timm hub folder (config.json + model.safetensors) is a teacher", "[init][programs]") {
  std::string dir = test::temp_dir();
  nn::ModelPtr teacher =
      model("vit_small",
            {{"img_size", "32"}, {"patch_size", "4"}, {"num_classes", "10"}, {"depth", "2"}});
  Generator g(9);
  trunc_normal_init(*teacher, g);
  teacher->Module::save(dir + "/model.safetensors");  // as timm writes it: no scion metadata
  std::ofstream(dir + "/config.json")
      << R"({"architecture": "vit_small_patch4_32", "num_classes": 10, "num_features": 384})";
  std::string out = dir + "/student.safetensors";
  std::string scion = test::program_command("scion") + " ";
  std::string args =
      " --model vit_tiny --set model.img_size=32 --set model.patch_size=4"
      " --set model.num_classes=10 --set model.depth=2 --out " +
      out;
  REQUIRE(std::system((scion + "select --teacher " + dir + args + " > /dev/null").c_str()) == 0);
  nn::ModelPtr student = model(
      "vit_tiny", {{"img_size", "32"}, {"patch_size", "4"}, {"num_classes", "10"}, {"depth", "2"}});
  student->load(out, /*strict=*/true);
  CHECK(student->find("blocks.1.norm1.weight").to_vector()[1] ==
        teacher->find("blocks.1.norm1.weight").to_vector()[2]);
  // An architecture scion does not build: exit 2, the file and the known names listed.
  std::ofstream(dir + "/config.json") << R"({"architecture": "resnet50"})";
  std::string log = dir + "/log.txt";
  int st = std::system((scion + "select --teacher " + dir + args + " > " + log + " 2>&1").c_str());
  CHECK(WEXITSTATUS(st) == 2);
  std::ifstream in(log);
  std::string msg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(msg.find(dir + "/config.json") != std::string::npos);
  CHECK(msg.find("resnet50") != std::string::npos);
  CHECK(msg.find("convnext_base") != std::string::npos);
}

TEST_CASE(
    "components: every parameter of both families is named, and an ablation selects only "
    "the listed ones",
    "[init]") {
  for (const char* name : {"vit_tiny", "convnext_femto"}) {
    nn::ModelPtr m = model(name, {{"num_classes", "10"}, {"layer_scale", "0.1"}});
    for (auto& [n, p] : m->named_parameters()) {
      INFO(name << " " << n);
      const std::string c = component_of(n);
      CHECK(std::find(component_names().begin(), component_names().end(), c) !=
            component_names().end());
    }
  }
  CHECK(component_of("blocks.3.attn.qkv.weight") == "attn");
  CHECK(component_of("blocks.3.norm1.bias") == "norm");
  CHECK(component_of("cls_token") == "pos_embed");
  CHECK(component_of("stem.0.weight") == "patch_embed");
  CHECK(component_of("stem.1.weight") == "norm");
  CHECK(component_of("stages.2.downsample.1.weight") == "downsample");
  CHECK(component_of("stages.2.blocks.0.gamma") == "layer_scale");
  CHECK(component_of("head.norm.weight") == "norm");
  CHECK(parse_components("all", "k") == component_names());
  CHECK(parse_components("attn, mlp", "k") == std::vector<std::string>{"attn", "mlp"});
  std::vector<std::string> no_attn = parse_components("-attn", "k");
  CHECK(no_attn.size() == component_names().size() - 1);
  CHECK(std::find(no_attn.begin(), no_attn.end(), "attn") == no_attn.end());
  CHECK_THROWS_WITH(parse_components("atn", "c.yaml: init.components"),
                    Catch::Contains("c.yaml: init.components: unknown component 'atn'"));
  CHECK_THROWS_WITH(parse_components("attn,-mlp", "k"), Catch::Contains("mixes"));
  CHECK_THROWS_WITH(parse_components(" , ", "k"), Catch::Contains("empty"));

  nn::ModelPtr teacher = model("vit_small", {{"num_classes", "10"}});
  NamedTensors tw = random_weights(*teacher, 3);
  nn::ModelPtr student = model("vit_tiny", {{"num_classes", "10"}, {"depth", "2"}});
  Generator g(4);
  trunc_normal_init(*student, g);
  NamedTensors before;
  for (auto& [n, p] : student->named_parameters()) before.emplace_back(n, p.clone());
  SelectionOptions o;
  o.components = parse_components("attn,mlp", "k");
  auto selected = select_weights(*student, tw, o, "teacher");
  for (auto& [n, p] : student->named_parameters()) {
    INFO(n);
    const std::string c = component_of(n);
    const bool chosen = std::find(selected.begin(), selected.end(), n) != selected.end();
    CHECK(chosen == (c == "attn" || c == "mlp"));
    if (!chosen) CHECK(p.to_vector() == get(before, n).to_vector());  // the student's own init
  }
}

TEST_CASE("qkv official: the fused-row linspace of the official code, ViT-L width 1024 -> 192",
          "[init]") {
  // One block at ViT-L's width (the official code's ViT-L -> ViT-T row) and one at ViT-T's.
  nn::ModelPtr teacher = model("vit_tiny", {{"embed_dim", "1024"},
                                            {"num_heads", "16"},
                                            {"depth", "1"},
                                            {"img_size", "32"},
                                            {"patch_size", "16"},
                                            {"num_classes", "10"}});
  NamedTensors tw = random_weights(*teacher, 7);
  auto student = [] {
    return model("vit_tiny",
                 {{"depth", "1"}, {"img_size", "32"}, {"patch_size", "16"}, {"num_classes", "10"}});
  };
  nn::ModelPtr official = student(), per_block = student();
  SelectionOptions o;
  o.qkv = "official";
  select_weights(*official, tw, o, "teacher");
  o.qkv = "per_block";
  select_weights(*per_block, tw, o, "teacher");
  // The official formula's indices, from torch (tests/golden/make_golden_init.py).
  SafetensorsFile f = SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/init.safetensors");
  const std::vector<double> rows = f.get("uniform.3072.576").to_vector(),
                            cols = f.get("uniform.1024.192").to_vector();
  const std::vector<double> t = get(tw, "blocks.0.attn.qkv.weight").to_vector(),
                            s = official->find("blocks.0.attn.qkv.weight").to_vector(),
                            b = per_block->find("blocks.0.attn.qkv.weight").to_vector();
  int64_t mismatches = 0, differ_from_per_block = 0;
  for (int64_t r = 0; r < 576; ++r) {
    bool row_differs = false;
    for (int64_t c = 0; c < 192; ++c) {
      mismatches += s[size_t(r * 192 + c)] !=
                    t[size_t(int64_t(rows[size_t(r)]) * 1024 + int64_t(cols[size_t(c)]))];
      row_differs = row_differs || s[size_t(r * 192 + c)] != b[size_t(r * 192 + c)];
    }
    differ_from_per_block += row_differs;
  }
  CHECK(mismatches == 0);
  CHECK(differ_from_per_block == 444);  // the README's count for 1024 -> 192
  const std::vector<double> tb = get(tw, "blocks.0.attn.qkv.bias").to_vector(),
                            sb = official->find("blocks.0.attn.qkv.bias").to_vector();
  for (int64_t r : {0, 1, 287, 575}) CHECK(sb[size_t(r)] == tb[size_t(rows[size_t(r)])]);
}

TEST_CASE("pruning-style selection (l1, magnitude): the most important indices, one set per axis",
          "[init]") {
  CHECK(most_important({0.5, 3.0, 1.0, 3.0, 0.1}, 3) == std::vector<int64_t>{1, 2, 3});
  CHECK(most_important({2.0, 2.0, 2.0}, 2) == std::vector<int64_t>{0, 1});  // ties: lower first
  // A ViT teacher whose residual channels 5, 17 and 40.. are made heavy everywhere they appear,
  // and whose block-0 MLP hidden unit 3 is heavy in fc1 and fc2.
  nn::ModelPtr teacher = model("vit_tiny", {{"embed_dim", "64"},
                                            {"num_heads", "2"},
                                            {"depth", "2"},
                                            {"img_size", "32"},
                                            {"patch_size", "8"},
                                            {"num_classes", "10"}});
  NamedTensors tw = random_weights(*teacher, 11);
  const std::set<int64_t> heavy{5, 17, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53};
  for (auto& [n, t] : tw) {
    NoGradGuard ng;
    Tensor c = t.contiguous();
    float* v = c.data<float>();
    if (n == "blocks.0.mlp.fc1.weight")
      for (int64_t i = 0; i < 64; ++i) v[3 * 64 + i] *= 50;
    if (n == "blocks.0.mlp.fc2.weight")
      for (int64_t r = 0; r < 64; ++r) v[r * 256 + 3] *= 50;
    if (n == "norm.weight")
      for (int64_t j : heavy) v[j] = 1e4;  // a LayerNorm weight alone marks the channel
    t = c;
  }
  nn::ModelPtr student = model("vit_tiny", {{"embed_dim", "32"},
                                            {"num_heads", "1"},
                                            {"depth", "1"},
                                            {"img_size", "32"},
                                            {"patch_size", "8"},
                                            {"num_classes", "10"}});
  SelectionOptions o;
  o.elements = "l1";
  select_weights(*student, tw, o, "teacher");
  // norm.weight: the 16 heavy channels are among the 32 kept, in the teacher's order.
  std::vector<double> kept = student->find("norm.weight").to_vector();
  CHECK(std::count(kept.begin(), kept.end(), 1e4) == 16);
  // The same residual indices everywhere: cls_token's entries are the teacher's at those indices.
  std::vector<double> tn = get(tw, "norm.weight").to_vector(),
                      tc = get(tw, "cls_token").to_vector(),
                      sc = student->find("cls_token").to_vector();
  std::vector<int64_t> idx;  // the kept indices: `kept` is an ordered subsequence of the teacher's
  for (int64_t j = 0; j < 64; ++j)
    if (idx.size() < 32 && kept[idx.size()] == tn[size_t(j)]) idx.push_back(j);
  REQUIRE(idx.size() == 32);
  for (size_t k = 0; k < 32; ++k) CHECK(sc[k] == tc[size_t(idx[k])]);
  // Block 0's MLP kept hidden unit 3 (its fc1 row sums to the largest L1 norm).
  std::vector<double> f1 = student->find("blocks.0.mlp.fc1.weight").to_vector(),
                      t1 = get(tw, "blocks.0.mlp.fc1.weight").to_vector();
  bool unit3 = false;
  for (int64_t r = 0; r < 128 && !unit3; ++r)
    unit3 = f1[size_t(r * 32)] == t1[size_t(3 * 64 + idx[0])];
  CHECK(unit3);
  o.elements = "magnitude";
  nn::ModelPtr by_mag = model("vit_tiny", {{"embed_dim", "32"},
                                           {"num_heads", "1"},
                                           {"depth", "1"},
                                           {"img_size", "32"},
                                           {"patch_size", "8"},
                                           {"num_classes", "10"}});
  select_weights(*by_mag, tw, o, "teacher");
  std::vector<double> kept_mag = by_mag->find("norm.weight").to_vector();
  CHECK(std::count(kept_mag.begin(), kept_mag.end(), 1e4) == 16);
  // ConvNeXt: per-stage axes are consistent (conv_dw and the block norms agree on channels).
  nn::ModelPtr ct =
      model("convnext_atto",
            {{"dims", "[16,32,64,128]"}, {"depths", "[1,1,2,1]"}, {"num_classes", "10"}});
  NamedTensors cw = random_weights(*ct, 12);
  nn::ModelPtr cs = model(
      "convnext_atto", {{"dims", "[8,16,32,64]"}, {"depths", "[1,1,1,1]"}, {"num_classes", "10"}});
  o.elements = "l1";
  CHECK_NOTHROW(select_weights(*cs, cw, o, "teacher"));
}

// The `scion` program's models and inspect subcommands: output and exit statuses (0, 2).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "tests/data/support_data.h"
#include "tests/support.h"

using namespace scion;

namespace {

struct Run {
  int status;
  std::string output;
};

Run run(const std::string& args) {
  std::string cmd = std::string(SCION_BINARY_DIR) + "/scion " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST_CASE("scion models lists every model with its parameter count", "[programs]") {
  Run r = run("models");
  CHECK(r.status == 0);
  CHECK(r.output.find("vit_tiny") != std::string::npos);
  CHECK(r.output.find("5717416") != std::string::npos);
  CHECK(r.output.find("convnext_tiny") != std::string::npos);
  CHECK(r.output.find("28589128") != std::string::npos);
}

TEST_CASE("scion inspect summarizes a file, bad input exits 2 naming the file", "[programs]") {
  std::string path = std::string(SCION_GOLDEN_DIR) + "/models/roundtrip_vit.safetensors";
  Run r = run("inspect " + path);
  CHECK(r.status == 0);
  CHECK(r.output.find("blocks.1.attn.qkv.weight") != std::string::npos);
  CHECK(r.output.find("(192, 64)") != std::string::npos);
  CHECK(r.output.find("metadata format = pt") != std::string::npos);
  Run missing = run("inspect /nonexistent/w.safetensors");
  CHECK(missing.status == 2);
  CHECK(missing.output.find("/nonexistent/w.safetensors") != std::string::npos);
  std::string bad = test::tmp() + "/scion_bad_inspect.safetensors";
  std::ofstream(bad) << "not a safetensors file";
  Run broken = run("inspect " + bad);
  CHECK(broken.status == 2);
  CHECK(broken.output.find(bad) != std::string::npos);
  CHECK(run("frobnicate").status == 2);
  CHECK(run("inspect").status == 2);
}

TEST_CASE("scion eval prints loss/acc1/acc5/images as its last line", "[programs]") {
  std::string root = std::string(SCION_SOURCE_DIR) + "/../shared/data/cifar10-jpg";
  std::string weights = std::string(SCION_GOLDEN_DIR) + "/models/roundtrip_vit.safetensors";
  std::string model =
      "--model vit_tiny --set model.img_size=32 --set model.patch_size=4 --set "
      "model.num_classes=10 "
      "--set model.depth=2 --set model.embed_dim=64 --set model.num_heads=2 ";
  Run r = run("eval " + model + "--weights " + weights + " --data image_folder --root " + root +
              " --split test --limit 150 --crop-pct 1.0");
  SCION_REQUIRE_DATA(root);
  REQUIRE(r.status == 0);
  std::string last = r.output.substr(r.output.rfind('{'));
  CHECK(last.find("\"images\":150") != std::string::npos);
  CHECK(last.find("\"acc1\":") != std::string::npos);
  // Mismatched architecture: strict loading names the weights file and the problem; exit 2.
  Run bad = run("eval --model vit_tiny --set model.num_classes=10 --weights " + weights +
                " --data image_folder --root " + root + " --split test --limit 10");
  CHECK(bad.status == 2);
  CHECK(bad.output.find("roundtrip_vit.safetensors") != std::string::npos);
  CHECK(bad.output.find("shape mismatches") != std::string::npos);
}

TEST_CASE("careless arguments: --out a folder, --config a folder, an empty --output-dir",
          "[programs]") {
  std::string dir = test::temp_dir();
  std::string weights = std::string(SCION_GOLDEN_DIR) + "/models/roundtrip_vit.safetensors";
  Run sel = run("select --teacher " + weights +
                " --model vit_tiny --set model.img_size=32 --set model.patch_size=4 --set "
                "model.depth=2 --set model.embed_dim=32 --set model.num_heads=2 --out " +
                dir);
  CHECK(sel.status == 2);
  CHECK(sel.output.find("is a folder") != std::string::npos);
  std::string train = std::string(SCION_BINARY_DIR) + "/train ";
  CHECK(WEXITSTATUS(
            std::system((train + "--config " + dir + " > " + dir + "/a.log 2>&1").c_str())) == 2);
  std::ifstream a(dir + "/a.log");
  std::string text((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
  CHECK(text.find("not a regular file") != std::string::npos);
  std::ofstream(dir + "/c.yaml") << "data: {dataset: cifar10, root: /tmp}\n";
  CHECK(WEXITSTATUS(std::system(
            (train + "--config " + dir + "/c.yaml --output-dir '' > " + dir + "/b.log 2>&1")
                .c_str())) == 2);
  std::ifstream b(dir + "/b.log");
  std::string text_b((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
  CHECK(text_b.find("--output-dir: empty") != std::string::npos);
}

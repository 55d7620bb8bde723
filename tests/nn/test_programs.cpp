// The `scion` program's models and inspect subcommands: output and exit statuses (0, 2).
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/safetensors.h"
#include "tests/data/support_data.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;

namespace {

struct Run {
  int status;
  std::string output;
};

Run run(const std::string& args) {
  std::string cmd = test::program_command("scion") + " " + args + " 2>&1";
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
  std::string train = test::program_command("train") + " ";
  CHECK(WEXITSTATUS(
            std::system((train + "--config " + dir + " > " + dir + "/a.log 2>&1").c_str())) == 2);
  std::ifstream a(dir + "/a.log");
  std::string text((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
  CHECK(text.find("is a folder; expected a YAML config file") != std::string::npos);
  std::ofstream(dir + "/c.yaml") << "data: {dataset: cifar10, root: /tmp}\n";
  CHECK(WEXITSTATUS(std::system(
            (train + "--config " + dir + "/c.yaml --output-dir '' > " + dir + "/b.log 2>&1")
                .c_str())) == 2);
  std::ifstream b(dir + "/b.log");
  std::string text_b((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
  CHECK(text_b.find("--output-dir: empty") != std::string::npos);
}

TEST_CASE("select/grow outputs: never a device, FIFO or an input, and non-finite results refused",
          "[programs]") {
  const std::string dir = test::temp_dir();
  const std::string weights = std::string(SCION_GOLDEN_DIR) + "/models/roundtrip_vit.safetensors";
  const std::string student =
      " --model vit_tiny --set model.img_size=32 --set model.patch_size=4 --set model.depth=1 "
      "--set model.embed_dim=32 --set model.num_heads=1";
  // A FIFO and a device as --out: refused, left as they were.
  const std::string fifo = dir + "/fifo.safetensors";
  REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
  Run to_fifo = run("select --teacher " + weights + student + " --out " + fifo);
  CHECK(to_fifo.status == 2);
  CHECK(to_fifo.output.find("exists and is a FIFO") != std::string::npos);
  Run to_dev = run("select --teacher " + weights + student + " --out /dev/full");
  CHECK(to_dev.status == 2);
  CHECK(to_dev.output.find("/dev/full: exists and is a character device") != std::string::npos);
  struct stat st;
  REQUIRE(stat("/dev/full", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  // The output is an input: refused, the input intact.
  const std::string copy = dir + "/teacher.safetensors";
  std::ifstream src(weights, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  std::ofstream(copy, std::ios::binary) << bytes;
  Run same = run("select --teacher " + copy + student + " --out " + copy);
  CHECK(same.status == 2);
  CHECK(same.output.find("is the same file as --teacher") != std::string::npos);
  Run grow_same = run("grow --from " + copy +
                      " --from-model vit_tiny --model vit_tiny --set model.img_size=32 --set "
                      "model.patch_size=4 --set model.num_classes=10 --out " +
                      copy);
  CHECK(grow_same.status == 2);
  CHECK(grow_same.output.find("is the same file as --from") != std::string::npos);
  std::ifstream after(copy, std::ios::binary);
  CHECK(std::string((std::istreambuf_iterator<char>(after)), std::istreambuf_iterator<char>()) ==
        bytes);
  // A teacher of NaN: refused naming a tensor, nothing written.
  NamedTensors nan_weights;
  {
    SafetensorsFile f = SafetensorsFile::open(weights);
    for (const auto& n : f.names()) nan_weights.emplace_back(n, f.get(n).clone().fill_(NAN));
  }
  const std::string nan_teacher = dir + "/nan.safetensors", out = dir + "/out.safetensors";
  save_safetensors(nan_teacher, nan_weights, {{"format", "pt"}});
  Run nan_sel = run("select --teacher " + nan_teacher + student + " --out " + out);
  CHECK(nan_sel.status == 2);
  CHECK(nan_sel.output.find("not finite") != std::string::npos);
  CHECK(nan_sel.output.find("NaN") != std::string::npos);
  CHECK_FALSE(test::exists(out));
  // Noise that overflows: refused, nothing written. (The source carries its config, 2 heads.)
  const std::string small = dir + "/small.safetensors";
  REQUIRE(run("init --model vit_tiny --set model.img_size=32 --set model.patch_size=4 --set "
              "model.num_classes=10 --set model.embed_dim=64 --set model.num_heads=2 --set "
              "model.depth=1 --out " +
              small)
              .status == 0);
  Run huge = run("grow --from " + small +
                 " --from-model vit_tiny --model vit_tiny --set model.img_size=32 --set "
                 "model.patch_size=4 --set model.num_classes=10 --set model.embed_dim=128 --set "
                 "model.num_heads=4 --set model.depth=1 --noise 1e308 --out " +
                 out);
  INFO(huge.output);
  CHECK(huge.status == 2);
  CHECK(huge.output.find("not finite") != std::string::npos);
  CHECK_FALSE(test::exists(out));
  // A hub folder whose config.json is a folder: named.
  const std::string hub = dir + "/hub";
  REQUIRE(mkdir(hub.c_str(), 0755) == 0);
  REQUIRE(mkdir((hub + "/config.json").c_str(), 0755) == 0);
  std::ofstream(hub + "/model.safetensors", std::ios::binary) << bytes;
  Run folder_json = run("select --teacher " + hub + student + " --out " + out);
  CHECK(folder_json.status == 2);
  CHECK(folder_json.output.find(hub + "/config.json: is a folder") != std::string::npos);
  // --check: flags and options only, nothing read or written.
  CHECK(run("select --teacher /nonexistent" + student + " --out " + out + " --check").status == 0);
  CHECK(run("select --teacher /nonexistent" + student + " --layers sideways --out " + out +
            " --check")
            .status == 2);
  CHECK_FALSE(test::exists(out));
}

// The `scion` program's models and inspect subcommands: output and exit statuses (0, 2).
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "tests/support.h"

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

TEST_CASE("scion inspect summarizes a file; bad input exits 2 naming the file", "[programs]") {
  std::string path = std::string(SCION_GOLDEN_DIR) + "/models/roundtrip_vit.safetensors";
  Run r = run("inspect " + path);
  CHECK(r.status == 0);
  CHECK(r.output.find("blocks.1.attn.qkv.weight") != std::string::npos);
  CHECK(r.output.find("(192, 64)") != std::string::npos);
  CHECK(r.output.find("metadata format = pt") != std::string::npos);
  Run missing = run("inspect /nonexistent/w.safetensors");
  CHECK(missing.status == 2);
  CHECK(missing.output.find("/nonexistent/w.safetensors") != std::string::npos);
  std::string bad = "/tmp/scion_bad_inspect.safetensors";
  std::ofstream(bad) << "not a safetensors file";
  Run broken = run("inspect " + bad);
  CHECK(broken.status == 2);
  CHECK(broken.output.find(bad) != std::string::npos);
  CHECK(run("frobnicate").status == 2);
  CHECK(run("inspect").status == 2);
}

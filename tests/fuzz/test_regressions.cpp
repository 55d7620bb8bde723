// Every saved input in tests/fuzz/regressions/<target>/ (crashers the fuzzers found, and the bad
// files the issues reported) goes through its fuzz target: it must be rejected with an InputError
// or read with every property holding. Runs without clang or libFuzzer, in `make test`.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/fuzz/targets.h"

namespace fs = std::filesystem;

TEST_CASE("fuzz regressions: every saved input goes through its target cleanly", "[fuzz]") {
  const fs::path root = fs::path(SCION_SOURCE_DIR) / "tests/fuzz/regressions";
  for (const auto& target : scion::fuzz::targets()) {
    const fs::path dir = root / target.name;
    INFO("folder " << dir.string());
    REQUIRE(fs::is_directory(dir));
    int inputs = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
      INFO("input " << entry.path().string());
      CHECK_NOTHROW(target.run(bytes.data(), bytes.size()));
      ++inputs;
    }
    CHECK(inputs > 0);
  }
}

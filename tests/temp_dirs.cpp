#include "tests/temp_dirs.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>

namespace scion::test {

TempDirs& TempDirs::process() {
  static TempDirs dirs;
  return dirs;
}

std::string TempDirs::make() {
  char tmpl[] = "/tmp/scion_test_XXXXXX";
  if (!mkdtemp(tmpl)) return "";
  std::lock_guard<std::mutex> lock(mu_);
  dirs_.push_back(tmpl);
  return tmpl;
}

int TempDirs::finish(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& dir : dirs_) {
    if (status != 0) {
      std::printf("kept for inspection: %s\n", dir.c_str());
      continue;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (ec) std::printf("could not remove %s: %s\n", dir.c_str(), ec.message().c_str());
  }
  dirs_.clear();
  return status;
}

}  // namespace scion::test

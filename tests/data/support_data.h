// Paths of the real data sets beside the repository (../shared/data) for the data tests.
#pragma once

#include <sys/stat.h>

#include <string>

namespace scion::test {

inline std::string shared_data(const std::string& rel) {
  return std::string(SCION_SOURCE_DIR) + "/../shared/data/" + rel;
}

inline bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// Data-dependent tests fail when their data is missing (CI always has it): a test that passes
// without running would be worse than none.
#define SCION_REQUIRE_DATA(path)                                               \
  do {                                                                         \
    if (!::scion::test::exists(path))                                          \
      FAIL("test data missing: " << (path)                                     \
                                 << " (../shared/data beside the repository, " \
                                    "or Debian's dataset-fashion-mnist)");     \
  } while (0)

}  // namespace scion::test
